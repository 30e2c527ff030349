"""STOW-RS throughput through the gateway vs DCMTK storescu sending the same files.

Run with ``.venv/bin/python -m pytest bench/test_bench_stow.py -s -p no:cacheprovider``;
results in ``bench/results/stow.json``. Every run stores fresh UIDs, so no PACS
answers "already stored". Timings are reported, never asserted.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import pydicom
import pytest
from extra_pacs import storescu
from pydicom.uid import generate_uid
from record import comparison, save
from timing import stats

from conftest import GatewayProcess
from corpus import _testdata
from pacs_fixtures import RunningPacs

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
INSTANCES = int(os.environ.get("BENCH_STOW_INSTANCES", "200"))


def _fresh_study(folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    template = pydicom.dcmread(_testdata("CT_small.dcm"))
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


@pytest.mark.pacs
def test_stow_throughput(gateway: GatewayProcess, dcmqrscp_pacs: RunningPacs,
                         orthanc_pacs: RunningPacs, tmp_path: Path) -> None:
    runs = iter(range(10_000))
    comparisons = []
    for name, pacs in (("dcmqrscp", dcmqrscp_pacs), ("Orthanc", orthanc_pacs)):
        node = name.lower()
        rows = {}
        senders: tuple[tuple[str, Callable[[list[Path]], float]], ...] = (
            ("gateway STOW-RS -> C-STORE", partial(_stow, f"{gateway.dicomweb(node)}/studies")),
            ("storescu", partial(storescu, pacs)),
        )
        for label, send in senders:
            # A fresh study per run (written untimed), so no PACS answers "already stored".
            seconds = [send(_fresh_study(tmp_path / str(next(runs)))) for _ in range(RUNS)]
            rows[label] = stats([INSTANCES / value for value in seconds])
        comparisons.append(comparison(f"stow.{node}", f"to {name}", "instances/s", rows,
                                      better="higher", reference="storescu"))
    save("stow", f"STOW-RS: {INSTANCES} CT_small instances ({INSTANCES * 39 // 1000} MB) per "
         "request vs storescu in one association", comparisons,
         notes=[f"Median (min-max) of {RUNS} runs, fresh UIDs each run."])
