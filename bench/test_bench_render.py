"""Rendered JPEG latency of a 512x512 CT frame, gateway vs Orthanc's own DICOMweb.

Run with ``.venv/bin/python -m pytest bench/test_bench_render.py -s -p no:cacheprovider``;
results in ``bench/results/render.json``. Timings are reported, never asserted.
"""

from __future__ import annotations

import os

import pytest
from record import comparison, save
from timing import cold_ms, latency_ms, per_second

from conftest import GatewayProcess
from corpus import Corpus
from pacs_fixtures import RunningPacs

RUNS = int(os.environ.get("BENCH_RUNS", "20"))
JPEG = {"Accept": "image/jpeg"}


@pytest.mark.pacs
def test_rendered_latency(gateway: GatewayProcess, corpus: Corpus,
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
    cold = cold_ms(gateway.url, "orthanc", big.study_uid, mine + frame, JPEG)
    comparisons = [
        comparison("render.frame", "one frame rendered, 512x512 CT", "ms", {
            "gateway (warm)": jpeg_ms(mine + frame),
            "Orthanc": jpeg_ms(theirs + frame),
        }, reference="Orthanc"),
        comparison("render.viewport", "the same frame, viewport=256,256", "ms", {
            "gateway (warm)": jpeg_ms(mine + viewport),
            "Orthanc": jpeg_ms(theirs + viewport),
        }, reference="Orthanc"),
        comparison("render.gateway_only", "gateway only: first time, OHIF thumbnail", "ms", {
            "frame, first time (instance retrieved by C-GET)": cold,
            "series thumbnail, viewport=256,256, warm": jpeg_ms(
                mine + series_path + "/thumbnail?viewport=256,256"),
        }),
    ]
    per_second([mine + p for p in frame_paths], JPEG)  # every instance cached
    comparisons.append(comparison(
        "render.concurrent", "frames rendered, 8 concurrent clients over 100 instances",
        "images/s", {"gateway (warm)": per_second([mine + p for p in frame_paths], JPEG),
                     "Orthanc": per_second([theirs + p for p in frame_paths], JPEG)},
        better="higher", reference="Orthanc"))
    save("render", "Rendered JPEG (/rendered, /thumbnail)", comparisons,
         notes=[f"Latencies: median (min-max) of {RUNS} runs after one warm-up."])
