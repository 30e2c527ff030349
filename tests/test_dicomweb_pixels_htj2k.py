"""PixelService: an HTJ2K frame is encoded once, then served from the converted-frame
cache, so cornerstone3D's range requests for its prefix and rest cost no re-encode."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openjpeg
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import HTJ2KLossless, generate_uid

from dicomweb_gw.cache.disk import DiskInstanceStore
from dicomweb_gw.codecs.part10 import instance_from_file
from dicomweb_gw.dicomweb import pixels as pixels_module
from dicomweb_gw.dicomweb.pixels import PixelService
from dicomweb_gw.dicomweb.source import InstanceSource
from dicomweb_gw.http.negotiation import negotiate_pixels
from dicomweb_gw.model import QueryLevel, RetrievedInstance, RetrieveKeys, RetrieveReport
from testdata import pydicom_file

STUDY, SERIES = generate_uid(), generate_uid()


@dataclass
class OneInstancePacs:
    instance: RetrievedInstance
    name: str = "fake"

    async def find(self, level: QueryLevel, identifier: Dataset) -> AsyncGenerator[Dataset, None]:
        return
        yield

    async def retrieve(self, keys: RetrieveKeys, *, report: RetrieveReport | None = None
                       ) -> AsyncGenerator[RetrievedInstance, None]:
        yield self.instance
        if report is not None:
            report.succeeded, report.reported, report.received = True, 1, 1

    async def echo(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


@pytest.fixture
def service(tmp_path: Path) -> Iterator[PixelService]:
    store = DiskInstanceStore(tmp_path / "cache", 10**9)
    try:
        yield PixelService(InstanceSource(lambda: store, ttl=3600))
    finally:
        store.close()


def test_an_htj2k_frame_is_encoded_once(service: PixelService, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    ds = dcmread(pydicom_file("emri_small.dcm"))  # 10 frames of 64x64, 16-bit
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, SERIES
    path = tmp_path / "emri.dcm"
    ds.save_as(path, enforce_file_format=True)
    pacs = OneInstancePacs(instance_from_file(path))
    calls: list[int] = []
    real = pixels_module.encode_frame

    def counting(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pixels_module, "encode_frame", counting)
    keys = RetrieveKeys(STUDY, SERIES, str(ds.SOPInstanceUID))
    request = negotiate_pixels("image/jhc")

    async def frame() -> bytes:
        (part,) = await service.frames(pacs, keys, [4], request)  # type: ignore[arg-type]
        assert part.content_type == f"image/jphc; transfer-syntax={HTJ2KLossless}"
        return b"".join(part.chunks)

    first, second = asyncio.run(frame()), asyncio.run(frame())
    assert len(calls) == 1
    assert first == second
    assert np.array_equal(openjpeg.decode(first), ds.pixel_array[3])
