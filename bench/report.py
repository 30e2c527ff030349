"""Charts and the generated parts of docs/benchmarks.md, from ``bench/results/*.json``.

Run after the benchmarks (``bench/run`` does both)::

    .venv/bin/python -m bench.report        # or: .venv/bin/python bench/report.py

It writes one PNG per benchmark into ``docs/charts/`` and rewrites the
sections of ``docs/benchmarks.md`` between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` (environment, targets, results, profiles), and the
targets table of the README's benchmark section; the prose around them is
left alone. Every results file has the format described in
``bench/record.py``; this script needs nothing else, so it also runs where
the benchmarks did not (e.g. to re-render after editing it).

``bench/results/`` is not committed, so a machine usually holds the results
of the benchmarks it ran and no others. What it lacks, the page keeps: a
benchmark's subsection (found by its chart link), a target's row and a
profile (found by their heading) stay as they were unless this run measured
them again, and so does the environment table without an environment.json.
Each subsection says the date of its run. ``--no-readme`` leaves README.md
alone and prints its targets table instead.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import textwrap
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; set before pyplot is imported
import matplotlib.pyplot as plt
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PROFILES = RESULTS / "profiles"
DOC = ROOT / "docs" / "benchmarks.md"
README = ROOT / "README.md"
CHARTS = ROOT / "docs" / "charts"
# The order of the results section; files not listed come after, alphabetically.
ORDER = ["retrieve", "retrieve_link", "viewer", "ohif", "ohif_traffic", "ohif_progressive",
         "render", "transcode", "stow", "qido", "qido_mix", "memory", "soak", "cluster", "storm"]
GATEWAY, REFERENCE, OTHER = "#1f6fb4", "#8c8c8c", "#f0a04b"

Result = dict[str, Any]
Comparison = dict[str, Any]


# --------------------------------------------------------------------------- formatting


def number(value: float) -> str:
    """About three significant digits, without exponents; whole numbers as they are."""
    if math.isnan(value):
        return "-"
    if value == int(value):
        return f"{int(value):,}"
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def spread(row: dict[str, float]) -> str:
    shown = number(row["median"])
    if "min" in row and row["min"] != row["max"]:
        shown += f" ({number(row['min'])}-{number(row['max'])})"
    return shown


def ratio(comp: Comparison, label: str) -> float | None:
    reference = comp["reference"]
    if reference is None:
        return None
    base = comp["rows"][reference]["median"]
    return comp["rows"][label]["median"] / base if base else math.nan


def ratio_text(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.2f}x" if value < 10 else f"{value:.0f}x"


# --------------------------------------------------------------------------- charts


def _colour(comp: Comparison, label: str) -> str:
    if label == comp["reference"]:
        return REFERENCE
    # Without a reference every row is the gateway's (memory, cold metadata, ...).
    return GATEWAY if label.startswith("gateway") or comp["reference"] is None else OTHER


def chart(result: Result, path: Path) -> None:
    """One horizontal bar panel per comparison: medians, min-max whiskers, ratios."""
    comparisons = result["comparisons"]
    heights = [0.75 + 0.32 * len(c["rows"]) for c in comparisons]
    figure, axes = plt.subplots(len(comparisons), 1, figsize=(9, sum(heights) + 0.5),
                                gridspec_kw={"height_ratios": heights}, squeeze=False)
    for axis, comp in zip(axes[:, 0], comparisons, strict=True):
        labels = list(comp["rows"])
        rows = [comp["rows"][label] for label in labels]
        medians = [row["median"] for row in rows]
        lows = [row["median"] - row.get("min", row["median"]) for row in rows]
        highs = [row.get("max", row["median"]) - row["median"] for row in rows]
        positions = range(len(labels))
        axis.barh(positions, medians, color=[_colour(comp, label) for label in labels],
                  xerr=[lows, highs], error_kw={"ecolor": "#333333", "capsize": 2,
                                                "elinewidth": 0.8})
        axis.set_yticks(list(positions), labels, fontsize=8)
        axis.invert_yaxis()
        positive = [m for m in medians if m > 0]
        if positive and max(positive) / min(positive) > 30:
            axis.set_xscale("log")  # one slow path would flatten every other bar
        top = max(row.get("max", row["median"]) for row in rows)
        if axis.get_xscale() == "log":
            axis.set_xlim(right=top * 4)
        else:
            axis.set_xlim(0, top * 1.3 if top > 0 else 1)  # all zero (errors): still an axis
        for position, label, row in zip(positions, labels, rows, strict=True):
            text = f" {number(row['median'])} {comp['unit']}"
            if label != comp["reference"] and comp["reference"] is not None:
                text += f"  ({ratio_text(ratio(comp, label))})"
            # Right of the whisker, so the two never overlap.
            axis.text(row.get("max", row["median"]), position, text, va="center",
                      fontsize=7.5)
        axis.set_title(textwrap.fill(f"{comp['title']} ({comp['better']} is better)", 105),
                       fontsize=9, loc="left")
        axis.tick_params(axis="x", labelsize=7)
        axis.grid(axis="x", alpha=0.3)
    figure.suptitle(result["title"], fontsize=10, x=0.01, ha="left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    # A 64-colour palette: a third of the size, and these charts are committed.
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


# --------------------------------------------------------------------------- markdown


def comparisons_table(result: Result) -> list[str]:
    lines = ["| measurement | path | median (min-max) | ratio |", "|---|---|---|---|"]
    for comp in result["comparisons"]:
        first = True
        for label, row in comp["rows"].items():
            what = (f"{comp['title']} ({comp['unit']}, {comp['better']} is better)"
                    if first else "")
            reference = comp["reference"]
            shown = ("1 (reference)" if label == reference
                     else ratio_text(ratio(comp, label)) + (f" {reference}"
                                                           if reference else ""))
            lines.append(f"| {what} | {label} | {spread(row)} | {shown} |")
            first = False
    return lines


def _mib(size: float) -> str:
    return f"{size / 2**20:.0f}"


def storm_table(result: Result) -> list[str]:
    """The storm's counts (from ``raw``), its re-request latencies and what it left.

    The counters cover the warm-up round too; the latencies do not (the bench
    clears them after it).
    """
    raw = result["raw"]
    latency = next(comp["rows"] for comp in result["comparisons"]
                   if comp["key"] == "storm.re_request_latency")
    rss = raw["rss_bytes"]
    left = {what: count for what, count in raw["leftovers"].items() if count}
    leftovers = ", ".join(f"{what} {number(count)}" for what, count in left.items()) or "none"
    findings = raw["findings"]
    if findings:
        # Only the first findings are kept in the results file: their kinds, counted.
        kinds = Counter(finding.split(":", 1)[0] for finding in raw["first_findings"])
        shown = "; ".join(f"{count}x {kind}" for kind, count in kinds.most_common())
        outcome = (f"**{number(findings)} findings** (the first "
                   f"{len(raw['first_findings'])}: {shown}); leftovers: {leftovers}.")
    elif left:
        outcome = f"No wrong answer, but the gateway was left with {leftovers}."
    else:
        outcome = ("Every re-request answered 200 with the PACS's bytes, and once the "
                   "rounds were over the gateway held no request, association or "
                   "unfinished cache file.")
    growth = (rss["after"] - rss["after warm-up"]) / 2**20
    return [
        f"{outcome} The gateway's RSS changed by {growth:+.0f} MiB from the end of the "
        f"warm-up round to the end of the last round.", "",
        "| rounds | requests | dropped | re-requests | wrong bytes | findings | leftovers | "
        "re-request p50 / p95 | RSS before / after |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {raw['rounds']} + 1 warm-up | {number(raw['requests'])} | {number(raw['dropped'])} | "
        f"{number(raw['re_requests'])} | {number(raw['wrong_bytes'])} | {number(findings)} | "
        f"{leftovers} | {number(latency['p50']['median'])} / "
        f"{number(latency['p95']['median'])} ms | {_mib(rss['after warm-up'])} / "
        f"{_mib(rss['after'])} MiB |",
    ]


# Benchmarks whose raw figures say more than their comparisons: their own table.
TABLES: dict[str, Callable[[Result], list[str]]] = {"storm": storm_table}


def _sentence(note: str) -> str:
    return note if note.rstrip().endswith((".", "!", "?")) else f"{note.rstrip()}."


def result_section(result: Result) -> str:
    notes = " ".join(_sentence(note) for note in result["notes"])
    table = TABLES.get(result["name"], comparisons_table)(result)
    return "\n".join([
        f"### {result['title']}", "",
        f"{notes} Run {result['date']}, load average {result['load_average'][0]} at the end.",
        "", f"![{result['title']}](charts/{result['name']}.png)", "", *table, ""])


def _order(name: str) -> tuple[int, str]:
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)


def results_section(results: Sequence[Result], kept: Mapping[str, str]) -> str:
    """This run's subsections, and the ``kept`` ones (by name) of benchmarks it did not run."""
    sections = {**kept, **{result["name"]: result_section(result) for result in results}}
    return "\n".join(sections[name] for name in sorted(sections, key=_order))


@dataclass(frozen=True)
class Target:
    """A target (issues #8, #16): every (comparison key, row) listed must meet ``bound``."""

    what: str
    goal: str
    checks: tuple[tuple[str, str], ...]
    bound: float
    at_least: bool
    # False: compare the ratio to the comparison's reference; True: the value itself.
    absolute: bool = False


#: The gateway's cold retrieves in the retrieve benchmark: (PACS, path).
_COLD_RETRIEVES = (("dcmqrscp", "gateway, C-MOVE"), ("orthanc", "gateway, C-GET"),
                   ("orthanc", "gateway, C-MOVE"))


def _cold(figure: str) -> tuple[tuple[str, str], ...]:
    """Every cold retrieve's ``figure`` ("throughput", "first") as a target checks it."""
    return tuple((f"retrieve.{pacs}.{figure}", path) for pacs, path in _COLD_RETRIEVES)


TARGETS = [
    Target("Cold study retrieve, throughput", ">= 0.35x getscu",
           _cold("throughput"), 0.35, at_least=True),
    Target("Cold study retrieve, first part", "<= 2x getscu's first file",
           _cold("first"), 2, at_least=False),
    # Issue #16, part 3: the CPU path on loopback.
    Target("Cold study on loopback, throughput (issue #16)", ">= 0.5x getscu",
           _cold("throughput"), 0.5, at_least=True),
    # Issue #16: over a 10 ms link, round trips bound a retrieve, not the CPU.
    Target("Cold study over the 10 ms link, C-GET, time", "<= 0.35x getscu's",
           (("retrieve_link.dcmqrscp.c-get.time", "gateway, C-GET"),
            ("retrieve_link.orthanc.c-get.time", "gateway, C-GET")), 0.35, at_least=False),
    Target("Cold study over the 10 ms link, C-MOVE, time", "<= 0.35x movescu -> storescp's",
           (("retrieve_link.dcmqrscp.c-move.time", "gateway, C-MOVE"),
            ("retrieve_link.orthanc.c-move.time", "gateway, C-MOVE")), 0.35, at_least=False),
    Target("Warm study retrieve, throughput", ">= 1x Orthanc",
           (("retrieve.warm.throughput", "gateway, from its cache"),), 1, at_least=True),
    Target("Warm series metadata, time", "<= 1x Orthanc's",
           (("viewer.metadata_100", "gateway (warm)"),
            ("viewer.metadata_600", "gateway (warm)")), 1, at_least=False),
    Target("Frames per second (warm)", ">= 1x Orthanc",
           (("viewer.frames", "gateway (warm)"),), 1, at_least=True),
    # Issue #16: time to first image in the real OHIF (bench/test_bench_ohif.py), for
    # the CT and the 7-series MR, both gateway paths, against OHIF on Orthanc's DICOMweb.
    Target("OHIF time to first image, warm", "<= 0.9x OHIF on Orthanc",
           tuple((f"ohif.{study}.warm.loopback", path) for study in ("big_ct", "mr_7series")
                 for path in ("gateway, C-MOVE", "gateway, C-GET")), 0.9, at_least=False),
    Target("OHIF time to first image, cold on loopback", "<= 1.1x OHIF on Orthanc",
           tuple((f"ohif.{study}.cold.loopback", path) for study in ("big_ct", "mr_7series")
                 for path in ("gateway, C-MOVE", "gateway, C-GET")), 1.1, at_least=False),
    Target("OHIF time to first image, cold over the 10 ms link",
           "<= 1.2x OHIF on Orthanc over the same link",
           tuple((f"ohif.{study}.cold.link", path) for study in ("big_ct", "mr_7series")
                 for path in ("gateway, C-MOVE", "gateway, C-GET")), 1.2, at_least=False),
    # Issue #18: OHIF's progressive loading (HTJ2K RPCL, byte ranges) vs its default
    # path, same gateway (bench/test_bench_ohif_progressive.py). The issue sets no bound:
    # the ratio is reported (always "met" once measured).
    Target("OHIF progressive (HTJ2K, ranges), time to first image of a 512-slice CT, warm",
           "measured; ratio to OHIF's default (non-progressive) path",
           tuple((f"ohif_progressive.{network}", "progressive: HTJ2K RPCL, byte ranges")
                 for network in ("loopback", "link", "slow")), math.inf, at_least=False),
    # Issue #18: HTJ2K encoding, HTTP revalidation, compressed metadata.
    Target("HTJ2K frame encode (issue #18)",
           "<= 0.1x the JPEG 2000 lossless encoder's time (10x faster)",
           (("htj2k.encode", "HTJ2K lossless (OpenJPH, imagecodecs)"),
            ("htj2k.encode", "HTJ2K lossless RPCL + TLM (OpenJPH)")), 0.1, at_least=False),
    Target("304 revalidation of a warm frame (issue #18)",
           "<= 0.05x a full warm frame answer's time (20x faster)",
           tuple((f"http_caching.revalidation.{network}", "revalidation (304)")
                 for network in ("loopback", "link", "slow_link")), 0.05, at_least=False),
    Target("600-instance series metadata, gzip (issue #18)", "<= 0.2x the bytes (5x fewer)",
           (("http_caching.metadata_600.bytes", "gzip"),), 0.2, at_least=False),
    Target("QIDO latency, 1,000 studies", "<= 1.5x Orthanc's",
           tuple((f"qido_mix.{key}", "gateway -> Orthanc")
                 for key in ("patient_id", "patient_name", "study_date", "modality", "list")),
           1.5, at_least=False),
    Target("Peak RSS streaming a 1 GB study", "< 300 MB",
           (("memory.rss", "peak, cold (C-MOVE from dcmqrscp)"),
            ("memory.rss", "peak, warm (from the cache)")), 300, at_least=False, absolute=True),
    # Issue #16: with a retrieve split across 4 associations (bench/test_bench_memory.py).
    Target("Peak RSS streaming a 1 GB study, cold, 4 associations", "< 200 MB",
           (("memory.rss", "peak, cold, 4 associations"),), 200, at_least=False, absolute=True),
    Target("Soak: errors under 64 concurrent clients", "0",
           (("soak.errors", "gateway (warm)"),), 0, at_least=False, absolute=True),
]


@dataclass(frozen=True)
class Outcome:
    target: Target
    measured: list[str]  # one "value (where)" per check that ran
    worst: float | None  # None: not run
    unit: str
    met: bool
    gap: str


def evaluate(target: Target, comparisons: dict[str, Comparison]) -> Outcome:
    measured, values = [], []
    for key, label in target.checks:
        comp = comparisons.get(key)
        if comp is None or label not in comp["rows"]:
            continue
        value = comp["rows"][label]["median"] if target.absolute else ratio(comp, label)
        assert value is not None
        values.append(value)
        suffix = f" {comp['unit']}" if target.absolute else "x"
        where = key.split(".", 1)[1].replace("_", " ")
        measured.append(f"{number(value)}{suffix} ({where}, {label})")
    if not target.absolute:
        unit = "x"
    else:
        first = comparisons.get(target.checks[0][0])
        unit = f" {first['unit']}" if first else ""
    if not values:
        return Outcome(target, [], None, "", False, "-")
    worst = min(values) if target.at_least else max(values)
    if target.at_least:
        met = worst >= target.bound
    else:
        met = worst < target.bound if target.absolute and target.bound else worst <= target.bound
    if met:
        gap = "-"
    elif target.at_least:
        gap = f"{target.bound / worst:.1f}x short ({number(worst)} vs {number(target.bound)})"
    elif target.bound:
        gap = f"{worst / target.bound:.1f}x over ({number(worst)} vs {number(target.bound)})"
    else:
        gap = f"{number(worst)} (must be 0)"
    return Outcome(target, measured, worst, unit, met, gap)


def _verdict(outcome: Outcome) -> str:
    if outcome.worst is None:
        return "not run"
    return "met" if outcome.met else "**missed**"


def table_rows(block: str) -> dict[str, str]:
    """A generated markdown table's rows by their first cell."""
    return {line.split("|")[1].strip(): line for line in block.splitlines()
            if line.startswith("| ") and line.count("|") > 2}


def targets_section(outcomes: Sequence[Outcome], kept: Mapping[str, str]) -> str:
    """One row per target; a target not measured in this run keeps its ``kept`` row."""
    lines = ["| target | goal | measured | met? | by how much (worst case) |",
             "|---|---|---|---|---|"]
    for o in outcomes:
        old = kept.get(o.target.what) if o.worst is None else None
        lines.append(old or f"| {o.target.what} | {o.target.goal} | "
                     f"{'; '.join(o.measured) or '-'} | {_verdict(o)} | {o.gap} |")
    return "\n".join(lines) + "\n"


def readme_targets(outcomes: Sequence[Outcome], date: str, kept: Mapping[str, str]) -> str:
    """The short version for the README: worst case per target (``kept`` as above)."""
    lines = ["| target | goal | worst measured | met? |", "|---|---|---|---|"]
    for o in outcomes:
        worst = "-" if o.worst is None else number(o.worst) + o.unit
        old = kept.get(o.target.what) if o.worst is None else None
        lines.append(old or f"| {o.target.what} | {o.target.goal} | {worst} | {_verdict(o)} |")
    return "\n".join(lines) + f"\n\n(Generated by `bench/report.py` from the run of {date}.)\n"


def environment_section(info: dict[str, Any] | None, kept: str | None) -> str:
    if info is None:
        return kept or "_No run recorded yet (bench/results/environment.json is missing)._\n"
    packages = ", ".join(f"{name} {version}" for name, version in info["packages"].items())
    return "\n".join([
        "| | |", "|---|---|",
        f"| last full or partial run | {info['date']}, {info['minutes']} min, "
        f"commit {info['commit']} |",
        f"| machine | {info['cpus']} cores ({info['cpu_model']}), {info['memory_gib']} GiB, "
        f"{info['os']} |",
        f"| load average (1 min) | {info['load_average_start'][0]} at the start, "
        f"{info['load_average_end'][0]} at the end |",
        f"| Python | {info['python']}; {packages} |",
        f"| PACS (Debian packages) | dcmtk {info['dcmtk']}, orthanc {info['orthanc']}, "
        f"orthanc-dicomweb {info['orthanc-dicomweb']} |",
    ]) + "\n"


# --------------------------------------------------------------------------- profiles


def _function(frame: str) -> str:
    """``func (path/file.py:123)`` -> ``func (path/file.py)``: lines apart, one function."""
    return re.sub(r":\d+\)$", ")", frame)


def _package(frame: str) -> str:
    match = re.search(r"\(([^)]*?)(?::\d+)?\)$", frame)
    path = match.group(1) if match else frame
    if path.startswith("<"):
        return "interpreter"
    parts = path.split("/")
    if parts[0] in ("dicomweb_gw",):
        return "/".join(parts[:2]) if len(parts) > 2 else parts[0]
    if len(parts) == 1:
        return f"stdlib {parts[0].removesuffix('.py')}"
    return parts[0]


def _thread(stack: list[str]) -> str:
    """What a sample's thread does: the first frame below threading's own."""
    if not stack[0].startswith("Thread._bootstrap"):
        return "main thread (event loop)"
    for frame in stack:
        if "threading.py" not in frame:
            return _function(frame)
    return "thread"


def profile_summary(path: Path, top: int = 10) -> str:
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text().splitlines():
        frames, _, samples = line.rpartition(" ")
        if frames and samples.isdigit():
            stacks.append((frames.split(";"), int(samples)))
    total = sum(count for _, count in stacks)
    if not total:
        return f"#### {path.stem}\n\nNo samples.\n"
    by_function: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    by_thread: Counter[str] = Counter()
    for stack, count in stacks:
        by_function[_function(stack[-1])] += count
        by_package[_package(stack[-1])] += count
        by_thread[_thread(stack)] += count

    def table(title: str, counter: Counter[str], rows: int) -> list[str]:
        out = [f"| {title} | share of samples |", "|---|---|"]
        out += [f"| `{name}` | {count / total:.0%} |" for name, count in
                counter.most_common(rows)]
        return [*out, ""]

    sidecar = path.with_suffix(".json")
    busy = ""
    if sidecar.exists():
        timing = json.loads(sidecar.read_text())
        share = total / (timing["seconds"] * timing["rate"])
        busy = (f" over {timing['seconds']:.1f} s of work: the GIL was held {share:.0%} of "
                "the time")
    return "\n".join([
        f"#### {path.stem}", "",
        f"{total:,} samples of the thread holding the GIL{busy}.", "",
        *table("thread (what it runs)", by_thread, 5),
        *table("package of the innermost frame (self time)", by_package, 8),
        *table("function (self time)", by_function, top),
    ])


def profiles_section(paths: Iterable[Path], kept: Mapping[str, str]) -> str:
    """This run's profiles, and the ``kept`` ones (by name) it did not take again."""
    summaries = {**kept, **{path.stem: profile_summary(path) for path in paths}}
    if not summaries:
        return "_No profiles (py-spy missing or BENCH_PROFILE=0)._\n"
    return "\n".join(summaries[name].rstrip() + "\n" for name in sorted(summaries))


# --------------------------------------------------------------------------- main


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_section(text: str, name: str, body: str) -> str:
    start, end = _markers(name)
    if start not in text or end not in text:
        raise SystemExit(f"markers {start} ... {end} are missing (docs/benchmarks.md, README)")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body.rstrip()}\n{end}{tail}"


def current_section(text: str, name: str) -> str:
    """What the page holds between NAME's markers now ("" without them)."""
    start, end = _markers(name)
    if start not in text or end not in text:
        return ""
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n") + "\n"


def headed_parts(block: str, heading: str,
                 name_of: Callable[[str], str | None]) -> dict[str, str]:
    """A generated block cut at its ``heading`` lines (e.g. ``###``), by ``name_of`` each."""
    parts = {}
    for part in re.split(rf"(?m)^(?={re.escape(heading)} )", block):
        name = name_of(part) if part.startswith(f"{heading} ") else None
        if name:
            parts[name] = part.rstrip() + "\n"
    return parts


def _chart_name(part: str) -> str | None:
    match = re.search(r"\]\(charts/([\w.-]+)\.png\)", part)
    return match.group(1) if match else None


def _heading_name(part: str) -> str | None:
    return part.split("\n", 1)[0].removeprefix("#### ").strip() or None


def load_results() -> list[Result]:
    found = {path.stem: json.loads(path.read_text()) for path in RESULTS.glob("*.json")
             if path.stem != "environment"}
    results = [found.pop(name) for name in ORDER if name in found]
    results += [found[name] for name in sorted(found)]
    # Files from before bench/record.py have no "comparisons": skip them, say so.
    for result in results:
        if "comparisons" not in result:
            print(f"skipping {result!r:.60}: old format, rerun its benchmark", file=sys.stderr)
    return [result for result in results if "comparisons" in result]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Charts and docs/benchmarks.md from "
                                     "bench/results/*.json.")
    parser.add_argument("--no-readme", action="store_true",
                        help="leave README.md alone; print its targets table instead")
    args = parser.parse_args(argv)
    results = load_results()
    if not results:
        print(f"no results in {RESULTS}: run the benchmarks first (bench/run)", file=sys.stderr)
        return 1
    CHARTS.mkdir(parents=True, exist_ok=True)
    for result in results:
        chart(result, CHARTS / f"{result['name']}.png")
    environment_file = RESULTS / "environment.json"
    environment = (json.loads(environment_file.read_text()) if environment_file.exists()
                   else None)
    comparisons = {comp["key"]: comp for result in results for comp in result["comparisons"]}
    outcomes = [evaluate(target, comparisons) for target in TARGETS]
    text = DOC.read_text()
    kept_results = headed_parts(current_section(text, "results"), "###", _chart_name)
    kept_profiles = headed_parts(current_section(text, "profiles"), "####", _heading_name)
    text = replace_section(text, "environment", environment_section(
        environment, current_section(text, "environment")))
    text = replace_section(text, "targets", targets_section(
        outcomes, table_rows(current_section(text, "targets"))))
    text = replace_section(text, "results", results_section(results, kept_results))
    text = replace_section(text, "profiles", profiles_section(PROFILES.glob("*.txt"),
                                                              kept_profiles))
    DOC.write_text(text)
    date = environment["date"] if environment else max(r["date"] for r in results)
    readme = README.read_text()
    targets = readme_targets(outcomes, date, table_rows(current_section(readme,
                                                                        "bench-targets")))
    if args.no_readme:
        print(f"README.md left alone; its bench-targets section would be:\n{targets}")
    else:
        README.write_text(replace_section(readme, "bench-targets", targets))
    kept = sorted(set(kept_results) - {result["name"] for result in results})
    print(f"wrote {len(results)} charts to {CHARTS.relative_to(ROOT)} and updated "
          f"{DOC.relative_to(ROOT)}" + (f" (kept as they were: {', '.join(kept)})"
                                        if kept else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
