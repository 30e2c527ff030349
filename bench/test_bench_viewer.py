"""What a viewer feels: series metadata and frames, gateway vs Orthanc's own DICOMweb.

Run with ``.venv/bin/python -m pytest bench -s -p no:cacheprovider``; results in
``bench/results/viewer.json``. Timings are reported, never asserted.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from timing import cold_ms, latency_ms, per_second

from conftest import GatewayProcess as RunningGateway
from corpus import Corpus, SeriesInfo, StudyInfo, _stack, _StudySpec, _StudyWriter
from pacs_fixtures import RunningPacs, _load_into_orthanc

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
FRAME_REQUESTS = int(os.environ.get("BENCH_FRAME_REQUESTS", "400"))
RESULTS = Path(__file__).resolve().parent / "results"
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
def test_viewer_paths(gateway: RunningGateway, corpus: Corpus, orthanc_pacs: RunningPacs,
                      series_600: tuple[StudyInfo, SeriesInfo]) -> None:
    results: dict[str, object] = {}
    big = corpus.study("big_ct")
    cases = [("100-instance series", big, big.series[0]), ("600-instance series", *series_600)]
    for label, study, series in cases:
        path = f"/studies/{study.study_uid}/series/{series.series_uid}/metadata"
        gateway_url = gateway.dicomweb("orthanc") + path
        results[f"metadata {label}"] = {
            "gateway cold ms": cold_ms(gateway.url, "orthanc", study.study_uid, gateway_url, JSON),
            "gateway warm ms": latency_ms(gateway_url, JSON, RUNS),
            "orthanc ms": latency_ms(orthanc_pacs.dicomweb_url + path, JSON, RUNS),
        }
    series = big.series[0]
    rng = random.Random(7)
    paths = [f"/studies/{big.study_uid}/series/{series.series_uid}/instances/"
             f"{rng.choice(series.instances).sop_instance_uid}/frames/1"
             for _ in range(FRAME_REQUESTS)]
    frame = {"Accept": FRAME}
    per_second([gateway.dicomweb("orthanc") + p for p in paths[:100]], frame)  # warm
    results["frames, 8 concurrent, 100-instance series"] = {
        "gateway warm fps": per_second([gateway.dicomweb("orthanc") + p for p in paths], frame),
        "orthanc fps": per_second([orthanc_pacs.dicomweb_url + p for p in paths], frame),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "viewer.json").write_text(json.dumps(results, indent=2))
    print()
    for name, row in results.items():
        print(name)
        assert isinstance(row, dict)
        for key, value in row.items():
            shown = (f"{value['median']:.1f} ({value['min']:.1f}-{value['max']:.1f})"
                     if isinstance(value, dict) else f"{value:.1f}")
            print(f"  {key:20} {shown}")
