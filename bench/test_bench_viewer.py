"""What a viewer feels: series metadata and frames, gateway vs Orthanc's own DICOMweb.

Run with ``.venv/bin/python -m pytest bench -s -p no:cacheprovider``; results in
``bench/results/viewer.json``. Timings are reported, never asserted.
"""

from __future__ import annotations

import os
import random

import pytest
from record import comparison, save
from timing import cold_ms, latency_ms, per_second

from conftest import GatewayProcess
from corpus import Corpus, SeriesInfo, StudyInfo, _stack, _StudySpec, _StudyWriter
from pacs_fixtures import RunningPacs, _load_into_orthanc

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
FRAME_REQUESTS = int(os.environ.get("BENCH_FRAME_REQUESTS", "400"))
JSON = {"Accept": "application/dicom+json"}
FRAME = "multipart/related; type=application/octet-stream; transfer-syntax=*"


@pytest.fixture(scope="module")
def series_600(orthanc_pacs: RunningPacs, tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[StudyInfo, SeriesInfo]:
    """A 600-instance CT series (small slices), loaded into Orthanc for this benchmark."""
    writer = _StudyWriter(tmp_path_factory.mktemp("bench600"),
                          _StudySpec("bench_600", "Bench^SixHundred", "GW-BENCH600", "20250101",
                                     "ACC-B600", "600-slice series"))
    series = writer.add_series("CT", "600 slices", _stack("CT_small.dcm", 600))
    study = writer.finish()
    _load_into_orthanc(orthanc_pacs, series.instances)
    return study, series


@pytest.mark.pacs
def test_viewer_paths(gateway: GatewayProcess, corpus: Corpus, orthanc_pacs: RunningPacs,
                      series_600: tuple[StudyInfo, SeriesInfo]) -> None:
    big = corpus.study("big_ct")
    comparisons = []
    cold = {}
    for size, study, series in ((100, big, big.series[0]), (600, *series_600)):
        path = f"/studies/{study.study_uid}/series/{series.series_uid}/metadata"
        gateway_url = gateway.dicomweb("orthanc") + path
        cold[f"{size} instances"] = cold_ms(gateway.url, "orthanc", study.study_uid,
                                            gateway_url, JSON)
        comparisons.append(comparison(f"viewer.metadata_{size}", f"series metadata, {size} "
                                      "instances, warm", "ms", {
            "gateway (warm)": latency_ms(gateway_url, JSON, RUNS),
            "Orthanc": latency_ms(orthanc_pacs.dicomweb_url + path, JSON, RUNS),
        }, reference="Orthanc"))
    comparisons.append(comparison("viewer.metadata_cold", "series metadata, gateway cold "
                                  "(C-GET from Orthanc, then parsed)", "ms", cold))
    series = big.series[0]
    rng = random.Random(7)
    paths = [f"/studies/{big.study_uid}/series/{series.series_uid}/instances/"
             f"{rng.choice(series.instances).sop_instance_uid}/frames/1"
             for _ in range(FRAME_REQUESTS)]
    frame = {"Accept": FRAME}
    per_second([gateway.dicomweb("orthanc") + p for p in paths[:100]], frame)  # warm
    comparisons.append(comparison(
        "viewer.frames", "single frames, 8 concurrent clients, random order over the "
        "100-instance series", "frames/s", {
            "gateway (warm)": per_second([gateway.dicomweb("orthanc") + p for p in paths], frame),
            "Orthanc": per_second([orthanc_pacs.dicomweb_url + p for p in paths], frame),
        }, better="higher", reference="Orthanc"))
    save("viewer", "What a viewer does: series metadata and frames (Orthanc node, C-GET)",
         comparisons, notes=[f"Latencies: median (min-max) of {RUNS} runs after one warm-up; "
                             "cold: one request right after purging the study from the cache."])
