"""Decoding JPEG 2000 frames to native: through the gateway vs pydicom in one process.

Run with ``.venv/bin/python -m pytest bench/test_bench_transcode.py -s -p no:cacheprovider``;
results in ``bench/results/transcode.json``. Timings are reported, never asserted.

The instance is cached by the gateway before timing (as stored), so the
first pass measures per-frame decode + HTTP; the second pass is served from
the gateway's transcoded-frame LRU. The in-process baseline decodes each
frame with the same pydicom/pylibjpeg call, with no HTTP and no threads.
"""

from __future__ import annotations

import os
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
from record import comparison, save
from timing import per_second, repeat_ms

from conftest import GatewayProcess
from corpus import InstanceInfo, StudyInfo, _read, _StudySpec, _StudyWriter
from pacs_fixtures import RunningPacs, _load_into_orthanc

FRAMES = int(os.environ.get("BENCH_J2K_FRAMES", "60"))
SIZE = 512
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

    def decode_all() -> None:
        for frame in stored:
            decoder.as_array(encapsulate([frame]), index=0, **options)
    return FRAMES / (repeat_ms(decode_all, runs=1, warmup=0)["median"] / 1000)


def _gateway_fps(url: str, concurrency: int, accept: str = NATIVE) -> float:
    """One pass over every frame, in order, by ``concurrency`` clients."""
    # per_second's workers pop from the end: reversed, frame 1 is asked first.
    frames = [f"{url}/frames/{number}" for number in range(FRAMES, 0, -1)]
    return per_second(frames, {"Accept": accept}, concurrency)


def test_bench_j2k_frames_to_native(gateway: GatewayProcess,
                                    j2k_instance: tuple[StudyInfo, InstanceInfo]) -> None:
    study, instance = j2k_instance
    series = study.series[0].series_uid
    base = (f"{gateway.dicomweb('orthanc')}/studies/{study.study_uid}/series/{series}"
            f"/instances/{instance.sop_instance_uid}")
    in_process = _in_process_fps(instance.path)
    httpx.get(f"{base}/frames/1", headers={"Accept": AS_STORED}, timeout=120).raise_for_status()
    # A fresh gateway LRU per pass would need a restart: pass 1 decodes
    # (sequential, like one viewer), pass 2 reads back the decoded frames.
    decode = _gateway_fps(base, 1)
    lru_1 = _gateway_fps(base, 1)
    lru_6 = _gateway_fps(base, 6)
    # Decode + JPEG-LS encode, cold, as a browser's 6 connections would ask.
    to_jls = _gateway_fps(base, 6, "multipart/related; type=image/jls")
    save("transcode", f"Transcoding: {FRAMES} frames of {SIZE}x{SIZE} 16-bit JPEG 2000 lossless", [
        comparison("transcode.decode", "decoding (cold)", "frames/s", {
            "pydicom + pylibjpeg-openjpeg in one process": in_process,
            "gateway, 1 client, J2K -> uncompressed": decode,
            "gateway, 6 clients, J2K -> JPEG-LS lossless": to_jls,
        }, better="higher", reference="pydicom + pylibjpeg-openjpeg in one process"),
        comparison("transcode.lru", "the same frames again (in-memory LRU)", "frames/s", {
            "gateway, 1 client": lru_1,
            "gateway, 6 clients": lru_6,
        }, better="higher"),
    ], notes=["One pass over the frames each; the instance is cached by the gateway first "
              "(as stored), so only decoding and HTTP are timed."])
