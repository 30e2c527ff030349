"""Rendered JPEG latency of a 512x512 CT frame, gateway vs Orthanc's own DICOMweb.

Run with ``.venv/bin/python -m pytest bench/test_bench_render.py -s -p no:cacheprovider``;
results in ``bench/results/render.json``. Timings are reported, never asserted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from timing import cold_ms, latency_ms, per_second

from conftest import GatewayProcess as RunningGateway
from corpus import Corpus
from pacs_fixtures import RunningPacs

RUNS = int(os.environ.get("BENCH_RUNS", "20"))
RESULTS = Path(__file__).resolve().parent / "results"
JPEG = {"Accept": "image/jpeg"}


@pytest.mark.pacs
def test_rendered_latency(gateway: RunningGateway, corpus: Corpus,
                          orthanc_pacs: RunningPacs) -> None:
    big = corpus.study("big_ct")
    series = big.series[0]
    series_path = f"/studies/{big.study_uid}/series/{series.series_uid}"
    frame_paths = [f"{series_path}/instances/{i.sop_instance_uid}/frames/1/rendered"
                   for i in series.instances]
    mine, theirs = gateway.dicomweb("orthanc"), orthanc_pacs.dicomweb_url

    def jpeg_ms(url: str) -> dict[str, float]:
        return latency_ms(url, JPEG, RUNS, expect_type="image/jpeg")

    frame, viewport = frame_paths[0], frame_paths[0] + "?viewport=256,256"
    results: dict[str, object] = {
        "frame rendered, 512x512 CT": {
            "gateway cold ms": cold_ms(gateway.url, "orthanc", big.study_uid, mine + frame, JPEG),
            "gateway warm ms": jpeg_ms(mine + frame),
            "orthanc ms": jpeg_ms(theirs + frame),
        },
        "frame rendered, viewport=256,256": {
            "gateway warm ms": jpeg_ms(mine + viewport),
            "orthanc ms": jpeg_ms(theirs + viewport),
        },
        "series thumbnail, viewport=256,256 (OHIF)": {
            "gateway warm ms": jpeg_ms(mine + series_path + "/thumbnail?viewport=256,256"),
        },
    }
    per_second([mine + p for p in frame_paths], JPEG)  # every instance cached
    results["frames rendered, 8 concurrent, 100 instances"] = {
        "gateway warm images/s": per_second([mine + p for p in frame_paths], JPEG),
        "orthanc images/s": per_second([theirs + p for p in frame_paths], JPEG),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "render.json").write_text(json.dumps(results, indent=2))
    print()
    for name, row in results.items():
        print(name)
        assert isinstance(row, dict)
        for key, value in row.items():
            shown = (f"{value['median']:.1f} ({value['min']:.1f}-{value['max']:.1f})"
                     if isinstance(value, dict) else f"{value:.1f}")
            print(f"  {key:24} {shown}")
