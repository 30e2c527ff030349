"""Decoding JPEG 2000 frames to native: through the gateway vs pydicom in one process.

Run with ``.venv/bin/python -m pytest bench/test_bench_transcode.py -s -p no:cacheprovider``;
results in ``bench/results/transcode.json``. Timings are reported, never asserted.

The instance is cached by the gateway before timing (as stored), so the
first pass measures per-frame decode + HTTP; the second pass is served from
the gateway's transcoded-frame LRU. The in-process baseline decodes each
frame with the same pydicom/pylibjpeg call, with no HTTP and no threads.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from pydicom import uid
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import as_pixel_options

from conftest import GatewayProcess
from corpus import InstanceInfo, StudyInfo, _read, _StudySpec, _StudyWriter
from pacs_fixtures import RunningPacs, _load_into_orthanc

FRAMES = int(os.environ.get("BENCH_J2K_FRAMES", "60"))
SIZE = 512
RESULTS = Path(__file__).resolve().parent / "results"
NATIVE = 'multipart/related; type="application/octet-stream"'
AS_STORED = "multipart/related; type=application/octet-stream; transfer-syntax=*"


@pytest.fixture(scope="module")
def j2k_instance(orthanc_pacs: RunningPacs, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[StudyInfo, InstanceInfo]:
    """One FRAMES-frame 512x512 16-bit CT-like instance, JPEG 2000 lossless, in Orthanc."""
    ds = _read("CT_small.dcm")
    base = ds.pixel_array.astype(np.int32)
    rng = np.random.default_rng(1)
    frames = []
    for index in range(FRAMES):
        big = np.kron(base, np.ones((SIZE // base.shape[0], SIZE // base.shape[1]), int))
        noisy = big + rng.integers(-8, 9, size=big.shape) + index
        frames.append(noisy.clip(-2048, 2047).astype(np.int16))
    ds.Rows = ds.Columns = SIZE
    ds.NumberOfFrames = FRAMES
    ds.BitsStored, ds.HighBit = 12, 11
    ds.compress(uid.JPEG2000Lossless, np.stack(frames), generate_instance_uid=False)
    writer = _StudyWriter(tmp_path_factory.mktemp("bench-j2k"),
                          _StudySpec("bench_j2k", "Bench^JPEG2000", "GW-BENCHJ2K", "20250202",
                                     "ACC-BJ2K", "J2K multi-frame"))
    series = writer.add_series("CT", "J2K frames", iter([ds]))
    study = writer.finish()
    _load_into_orthanc(orthanc_pacs, series.instances)
    return study, series.instances[0]


def _in_process_fps(path: Path) -> float:
    ds = pydicom.dcmread(path)
    options: dict[str, Any] = as_pixel_options(ds, number_of_frames=1)
    options.pop("extended_offsets", None)
    decoder = get_decoder(uid.JPEG2000Lossless)
    stored = list(generate_frames(ds.PixelData, number_of_frames=FRAMES))
    started = time.perf_counter()
    for frame in stored:
        decoder.as_array(encapsulate([frame]), index=0, **options)
    return FRAMES / (time.perf_counter() - started)


def _gateway_fps(client: httpx.Client, url: str, concurrency: int, accept: str = NATIVE
                 ) -> float:
    def get(number: int) -> None:
        client.get(f"{url}/frames/{number}", headers={"Accept": accept}).raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(get, range(1, FRAMES + 1)))
    return FRAMES / (time.perf_counter() - started)


def test_bench_j2k_frames_to_native(gateway: GatewayProcess,
                                    j2k_instance: tuple[StudyInfo, InstanceInfo]) -> None:
    study, instance = j2k_instance
    series = study.series[0].series_uid
    base = (f"{gateway.dicomweb('orthanc')}/studies/{study.study_uid}/series/{series}"
            f"/instances/{instance.sop_instance_uid}")
    results: dict[str, Any] = {"frames": FRAMES, "size": f"{SIZE}x{SIZE}x16 bit",
                               "in_process_fps": round(_in_process_fps(instance.path), 1)}
    with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=8)) as client:
        client.get(f"{base}/frames/1", headers={"Accept": AS_STORED}).raise_for_status()
        # A fresh gateway LRU per pass would need a restart: pass 1 decodes
        # (sequential, like one viewer), pass 2 reads back the decoded frames.
        results["gateway_decode_fps_1_client"] = round(_gateway_fps(client, base, 1), 1)
        results["gateway_lru_fps_1_client"] = round(_gateway_fps(client, base, 1), 1)
        results["gateway_lru_fps_6_clients"] = round(_gateway_fps(client, base, 6), 1)
        # Decode + JPEG-LS encode, cold, as a browser's 6 connections would ask.
        results["gateway_j2k_to_jls_fps_6_clients"] = round(
            _gateway_fps(client, base, 6, "multipart/related; type=image/jls"), 1)
    print(json.dumps(results, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "transcode.json").write_text(json.dumps(results, indent=2) + "\n")
