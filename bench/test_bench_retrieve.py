"""Cold study retrieve: the gateway vs DCMTK getscu vs Orthanc's own DICOMweb.

Run with ``.venv/bin/python -m pytest bench -s -p no:cacheprovider``. Prints a
table of medians (min-max) over RUNS runs and writes ``bench/results/retrieve.json``.
Timings are reported, never asserted: these machines are noisy.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from timing import stats

from conftest import GatewayProcess as RunningGateway
from corpus import Corpus
from pacs_fixtures import RunningPacs

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
RESULTS = Path(__file__).resolve().parent / "results"


def _http_retrieve(url: str, purge: str | None = None) -> tuple[float, float, int]:
    """(seconds to the first part's DICM magic, total seconds, bytes).

    ``purge`` is the gateway's cache purge URL for the study: called (untimed)
    first, it makes the run cold, so the study comes from the PACS.
    """
    if purge is not None:
        httpx.delete(purge, timeout=30).raise_for_status()
    started = time.perf_counter()
    first = 0.0
    size = 0
    with httpx.stream("GET", url, headers={"Accept": AS_STORED}, timeout=120) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            size += len(chunk)
            if not first and b"DICM" in chunk:
                first = time.perf_counter() - started
    return first, time.perf_counter() - started, size


def _getscu(pacs: RunningPacs, study_uid: str) -> tuple[float, float, int]:
    out = Path(tempfile.mkdtemp(prefix="bench-getscu-"))
    env = dict(os.environ, TCP_NODELAY="1")
    started = time.perf_counter()
    subprocess.run(
        ["getscu", "-aet", "BENCH_GETSCU", "-aec", pacs.ae_title, "-S",
         "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}",
         "-od", str(out), pacs.host, str(pacs.port)],
        check=True, env=env, capture_output=True,
    )
    total = time.perf_counter() - started
    size = sum(p.stat().st_size for p in out.iterdir())
    count = len(list(out.iterdir()))
    shutil.rmtree(out)
    assert count == 100, f"getscu received {count} files"
    return float("nan"), total, size


def _measure(run: Callable[[], tuple[float, float, int]]) -> dict[str, object]:
    run()  # warm-up: connections, imports, page cache
    samples = [run() for _ in range(RUNS)]
    firsts = [s[0] for s in samples]
    totals = [s[1] for s in samples]
    return {
        "first_part_s": stats(firsts),
        "total_s": stats(totals),
        "bytes": samples[0][2],
        "mb_per_s": samples[0][2] / 1e6 / statistics.median(totals),
    }


@pytest.mark.pacs
def test_cold_study_retrieve(gateway: RunningGateway, corpus: Corpus,
                             dcmqrscp_pacs: RunningPacs, orthanc_pacs: RunningPacs) -> None:
    study = corpus.study("big_ct")
    uid = study.study_uid
    def cold(node: str) -> Callable[[], tuple[float, float, int]]:
        return lambda: _http_retrieve(f"{gateway.dicomweb(node)}/studies/{uid}",
                                      purge=f"{gateway.url}/pacs/{node}/cache/studies/{uid}")

    results = {
        "cold: gateway C-MOVE from dcmqrscp": _measure(cold("dcmqrscp")),
        "cold: getscu from dcmqrscp": _measure(lambda: _getscu(dcmqrscp_pacs, uid)),
        "cold: gateway C-GET from Orthanc": _measure(cold("orthanc")),
        "cold: gateway C-MOVE from Orthanc": _measure(cold("orthanc-move")),
        "cold: getscu from Orthanc": _measure(lambda: _getscu(orthanc_pacs, uid)),
        "warm: gateway (cache)": _measure(
            lambda: _http_retrieve(f"{gateway.dicomweb('orthanc')}/studies/{uid}")),
        "warm: Orthanc's own DICOMweb": _measure(
            lambda: _http_retrieve(f"{orthanc_pacs.dicomweb_url}/studies/{uid}")),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "retrieve.json").write_text(json.dumps(results, indent=2))
    print(f"\n100-instance CT study, {results['cold: getscu from Orthanc']['bytes'] / 1e6:.1f} MB, "
          f"median (min-max) of {RUNS} runs")
    print(f"{'path':34} {'first part s':>22} {'total s':>22} {'MB/s':>7}")
    for name, row in results.items():
        first, total = row["first_part_s"], row["total_s"]
        assert isinstance(first, dict)
        assert isinstance(total, dict)
        print(f"{name:34} {_fmt(first):>22} {_fmt(total):>22} {row['mb_per_s']:7.1f}")


def _fmt(stats: dict[str, float]) -> str:
    if stats["median"] != stats["median"]:  # NaN: not measurable for this tool
        return "-"
    return f"{stats['median']:.3f} ({stats['min']:.3f}-{stats['max']:.3f})"
