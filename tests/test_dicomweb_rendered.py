"""RenderService over a real PixelService, InstanceSource and DiskInstanceStore.

Only the PACS is fake: it hands out instances made from pydicom's test files.
Each image instance of the "numbered" series has flat pixels of
InstanceNumber x 100, so the rendered grey level tells which instance was chosen.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncGenerator, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import generate_uid

from dicomweb_gw.cache.disk import DiskInstanceStore
from dicomweb_gw.codecs.part10 import instance_from_file
from dicomweb_gw.codecs.render import RenderParams, Viewport, Window
from dicomweb_gw.dicomweb.pixels import PixelService
from dicomweb_gw.dicomweb.rendered import NoPixelData, RenderService
from dicomweb_gw.dicomweb.source import InstanceSource
from dicomweb_gw.errors import GatewayError, NotFound
from dicomweb_gw.model import QueryLevel, RetrievedInstance, RetrieveKeys, RetrieveReport
from testdata import pydicom_file

T = TypeVar("T")
STUDY = generate_uid()
NUMBERED = generate_uid()  # SeriesNumber 2: five MR images, InstanceNumbers 3, 1, 5, 2, 4
REPORTS = generate_uid()  # SeriesNumber 1: a structured report only
MULTIFRAME = generate_uid()  # SeriesNumber 3: one 10-frame MR and one broken JPEG
# Flat pixels of value v render to v / 2 through this window: 50 per InstanceNumber.
FLAT_WINDOW = Window(255, 510, "LINEAR_EXACT")
PNG = RenderParams("image/png", window=FLAT_WINDOW)


@dataclass
class FakePacs:
    instances: list[tuple[str, str, RetrievedInstance]]
    name: str = "fake"
    retrieves: list[RetrieveKeys] = field(default_factory=list)

    async def find(self, level: QueryLevel, identifier: Dataset) -> AsyncGenerator[Dataset, None]:
        return
        yield

    async def retrieve(
        self, keys: RetrieveKeys, *, report: RetrieveReport | None = None,
    ) -> AsyncGenerator[RetrievedInstance, None]:
        self.retrieves.append(keys)
        sent = 0
        for study, series, instance in self.instances:
            if keys.covers(study, series, instance.sop_instance_uid):
                sent += 1
                yield instance
        if report is not None:
            report.succeeded, report.reported, report.received = True, sent, sent

    async def echo(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def _save(ds: Dataset, series: str, series_number: int, folder: Path) -> RetrievedInstance:
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SeriesNumber = STUDY, series, series_number
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return instance_from_file(path)


@pytest.fixture
def pacs(tmp_path: Path) -> FakePacs:
    folder = tmp_path / "pacs"
    folder.mkdir()
    made: list[tuple[str, str, RetrievedInstance]] = []
    for number in (3, 1, 5, 2, 4):  # landing order is not instance order
        ds = dcmread(pydicom_file("MR_small.dcm"))
        ds.InstanceNumber = number
        ds.PixelData = np.full((64, 64), number * 100, np.int16).tobytes()
        made.append((STUDY, NUMBERED, _save(ds, NUMBERED, 2, folder)))
    made.append((STUDY, REPORTS, _save(dcmread(pydicom_file("reportsi.dcm")), REPORTS, 1, folder)))
    made.append((STUDY, MULTIFRAME, _save(dcmread(pydicom_file("emri_small.dcm")), MULTIFRAME, 3,
                                          folder)))
    broken = dcmread(pydicom_file("SC_rgb_jpeg_dcmtk.dcm"))
    broken.PixelData = encapsulate([b"\xff\xd8\xff\xc0" + b"\x00\x07garbage" * 20])
    broken.InstanceNumber = 99
    made.append((STUDY, MULTIFRAME, _save(broken, MULTIFRAME, 3, folder)))
    return FakePacs(made)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RenderService]:
    store = DiskInstanceStore(tmp_path / "cache", 10**9)
    try:
        yield RenderService(PixelService(InstanceSource(lambda: store, ttl=3600)))
    finally:
        store.close()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def pixels(data: bytes) -> np.ndarray[Any, Any]:
    return np.asarray(Image.open(io.BytesIO(data)))


def shows(image: np.ndarray[Any, Any], instance_number: int) -> bool:
    """Is ``image`` the flat image of the instance with this InstanceNumber?"""
    return bool((np.abs(image.astype(int) - instance_number * 50) <= 1).all())


def uid_of(pacs: FakePacs, series: str, index: int = 0) -> str:
    return [i.sop_instance_uid for _, s, i in pacs.instances if s == series][index]


def test_series_thumbnail_is_the_middle_instance_by_instance_number(
        service: RenderService, pacs: FakePacs) -> None:
    keys = RetrieveKeys(STUDY, NUMBERED)
    image = pixels(run(service.thumbnail(pacs, keys, None, PNG)))
    assert image.shape == (128, 128)  # the default thumbnail viewport
    assert shows(image, 3)
    # Warm: answered from the cache, which now knows the series is complete.
    again = run(service.thumbnail(pacs, keys, None, RenderParams("image/jpeg", Viewport(256, 256),
                                                                 FLAT_WINDOW)))
    assert Image.open(io.BytesIO(again)).size == (256, 256)
    assert pacs.retrieves == [keys]


def test_series_and_study_rendered_is_the_first_instance(service: RenderService,
                                                          pacs: FakePacs) -> None:
    series = pixels(run(service.rendered(pacs, RetrieveKeys(STUDY, NUMBERED), None, PNG)))
    assert series.shape == (64, 64)
    assert shows(series, 1)
    # The study's first series by SeriesNumber holds only a report: it is skipped.
    study = pixels(run(service.rendered(pacs, RetrieveKeys(STUDY), None, PNG)))
    assert shows(study, 1)
    thumbnail = pixels(run(service.thumbnail(pacs, RetrieveKeys(STUDY), None, PNG)))
    assert shows(thumbnail, 3)


def test_rendered_instance(service: RenderService, pacs: FakePacs) -> None:
    keys = RetrieveKeys(STUDY, NUMBERED, uid_of(pacs, NUMBERED, 1))  # InstanceNumber 1
    image = pixels(run(service.rendered(pacs, keys, None, PNG)))
    assert shows(image, 1)
    assert pacs.retrieves == [keys]  # just the instance, not its series


def test_frames_of_a_multiframe_instance(service: RenderService, pacs: FakePacs) -> None:
    keys = RetrieveKeys(STUDY, MULTIFRAME, uid_of(pacs, MULTIFRAME))
    png = RenderParams("image/png")
    first, second = (pixels(run(service.rendered(pacs, keys, n, png))) for n in (1, 2))
    assert not np.array_equal(first, second)
    assert np.array_equal(pixels(run(service.rendered(pacs, keys, None, png))), first)
    # An instance's thumbnail shows its middle frame.
    small = RenderParams("image/png", Viewport(32, 32))
    assert np.array_equal(pixels(run(service.thumbnail(pacs, keys, None, small))),
                          pixels(run(service.rendered(pacs, keys, 5, small))))
    with pytest.raises(NotFound) as caught:
        run(service.rendered(pacs, keys, 11, png))
    assert caught.value.status_code == 404
    assert "10 frames" in caught.value.message


def test_a_report_has_nothing_to_render(service: RenderService, pacs: FakePacs) -> None:
    keys = RetrieveKeys(STUDY, REPORTS, uid_of(pacs, REPORTS))
    with pytest.raises(NoPixelData) as caught:
        run(service.rendered(pacs, keys, None, RenderParams()))
    assert caught.value.status_code == 406
    assert "no pixel data" in caught.value.message
    assert "SR" in caught.value.message
    with pytest.raises(NoPixelData) as series:
        run(service.thumbnail(pacs, RetrieveKeys(STUDY, REPORTS), None, RenderParams()))
    assert "no instance with pixel data" in series.value.message


def test_a_corrupt_codestream_is_a_gateway_error(service: RenderService,
                                                 pacs: FakePacs) -> None:
    keys = RetrieveKeys(STUDY, MULTIFRAME, uid_of(pacs, MULTIFRAME, 1))
    with pytest.raises(GatewayError) as caught:
        run(service.rendered(pacs, keys, None, RenderParams()))
    assert 400 <= caught.value.status_code < 600
    assert "could not be decoded" in caught.value.message


def test_unknown_series_is_404(service: RenderService, pacs: FakePacs) -> None:
    with pytest.raises(NotFound):
        run(service.thumbnail(pacs, RetrieveKeys(STUDY, generate_uid()), None, RenderParams()))
