"""One results format for every benchmark, so ``bench/report.py`` needs no per-file code.

A benchmark saves ``bench/results/<name>.json``::

    {"name", "title", "notes": [...], "date", "load_average": [1, 5, 15 min at save time],
     "comparisons": [{"key", "title", "unit", "better": "lower" | "higher",
                      "reference": label | null,
                      "rows": {label: {"median", "min"?, "max"?}}}],
     "raw": whatever else the benchmark wants to keep}

A comparison is one chart panel and one table: the gateway's rows next to
their reference row; the report divides every row by the reference. ``key``
is stable (the report's targets refer to it), titles and labels are prose.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypedDict

RESULTS = Path(__file__).resolve().parent / "results"

Value = Mapping[str, float] | float


class Comparison(TypedDict):
    key: str
    title: str
    unit: str
    better: Literal["lower", "higher"]
    reference: str | None
    rows: dict[str, dict[str, float]]


def comparison(key: str, title: str, unit: str, rows: Mapping[str, Value], *,
               better: Literal["lower", "higher"] = "lower",
               reference: str | None = None) -> Comparison:
    """A comparison; a plain float row is one measurement (no spread)."""
    normal = {label: ({"median": float(value)} if isinstance(value, int | float)
                      else {k: float(v) for k, v in value.items()})
              for label, value in rows.items()}
    if reference is not None and reference not in normal:
        raise ValueError(f"{key}: reference {reference!r} is not a row")
    return Comparison(key=key, title=title, unit=unit, better=better, reference=reference,
                      rows=normal)


def ratio(row: Mapping[str, float], reference: Mapping[str, float]) -> float:
    return row["median"] / reference["median"] if reference["median"] else math.nan


def save(name: str, title: str, comparisons: Sequence[Comparison], *,
         notes: Sequence[str] = (), raw: object = None) -> None:
    """Write ``bench/results/<name>.json`` and print the comparisons (``pytest -s``)."""
    RESULTS.mkdir(exist_ok=True)
    document = {"name": name, "title": title, "notes": list(notes),
                "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "load_average": [round(v, 2) for v in os.getloadavg()],
                "comparisons": list(comparisons), "raw": raw}
    # allow_nan=False: a NaN would be invalid JSON for anything but Python.
    (RESULTS / f"{name}.json").write_text(json.dumps(document, indent=2, allow_nan=False)
                                          + "\n")
    print(f"\n{title}")
    for comp in comparisons:
        print(f"  {comp['title']} [{comp['unit']}, {comp['better']} is better]")
        reference = comp["rows"].get(comp["reference"] or "")
        for label, row in comp["rows"].items():
            shown = f"{row['median']:.4g}"
            if "min" in row:
                shown += f" ({row['min']:.4g}-{row['max']:.4g})"
            if reference is not None:
                shown += f"  {ratio(row, reference):.2f}x"
            print(f"    {label:44} {shown}")
