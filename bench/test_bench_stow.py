"""STOW-RS throughput through the gateway vs DCMTK storescu sending the same files.

Run with ``.venv/bin/python -m pytest bench/test_bench_stow.py -s -p no:cacheprovider``;
results in ``bench/results/stow.json``. Every run stores fresh UIDs, so no PACS
answers "already stored". Timings are reported, never asserted.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import time
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from conftest import GatewayProcess
from pacs_fixtures import RunningPacs

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
INSTANCES = int(os.environ.get("BENCH_STOW_INSTANCES", "200"))
RESULTS = Path(__file__).resolve().parent / "results"


def _fresh_study(folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    study, series = generate_uid(), generate_uid()
    paths = []
    for index in range(INSTANCES):
        template.StudyInstanceUID, template.SeriesInstanceUID = study, series
        template.SOPInstanceUID = generate_uid()
        template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
        template.InstanceNumber = index + 1
        path = folder / f"{index:04d}.dcm"
        template.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _stow(url: str, paths: list[Path]) -> float:
    boundary = secrets.token_hex(12).encode()
    body = b"".join(b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n"
                    + path.read_bytes() + b"\r\n" for path in paths) + b"--" + boundary + b"--\r\n"
    started = time.perf_counter()
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary.decode()}'
    response = httpx.post(url, content=body, timeout=300, headers={"Content-Type": content_type})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text[:500]
    return elapsed


def _storescu(pacs: RunningPacs, paths: list[Path]) -> float:
    env = dict(os.environ, TCP_NODELAY="1")
    started = time.perf_counter()
    subprocess.run(["storescu", "-aet", "BENCH_STORESCU", "-aec", pacs.ae_title, pacs.host,
                    str(pacs.port), *map(str, paths)], check=True, env=env, capture_output=True)
    return time.perf_counter() - started


@pytest.mark.pacs
def test_stow_throughput(gateway: GatewayProcess, dcmqrscp_pacs: RunningPacs,
                         orthanc_pacs: RunningPacs, tmp_path: Path) -> None:
    results: dict[str, dict[str, float]] = {}
    runs = iter(range(10_000))
    for name, pacs in (("dcmqrscp", dcmqrscp_pacs), ("orthanc", orthanc_pacs)):
        for label, send in (
            (f"gateway STOW-RS to {name}",
             lambda paths, n=name: _stow(f"{gateway.dicomweb(n)}/studies", paths)),
            (f"storescu to {name}", lambda paths, p=pacs: _storescu(p, paths)),
        ):
            times = [send(_fresh_study(tmp_path / str(next(runs)))) for _ in range(RUNS)]
            median = statistics.median(times)
            results[label] = {"median_s": median, "min_s": min(times), "max_s": max(times),
                              "instances_per_s": INSTANCES / median}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stow.json").write_text(json.dumps(results, indent=2))
    print(f"\n{INSTANCES} CT_small instances ({INSTANCES * 39 // 1000} MB) per request, "
          f"median (min-max) of {RUNS} runs")
    for label, row in results.items():
        print(f"  {label:30} {row['median_s']:.2f} s ({row['min_s']:.2f}-{row['max_s']:.2f})"
              f"  {row['instances_per_s']:.0f} instances/s")
