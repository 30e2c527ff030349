"""StowService against a fake PACS: validation, status codes, the response body, cache purge."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom import uid
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from dicomweb_gw.dicomweb.stow import (
    CANNOT_UNDERSTAND,
    DOES_NOT_MATCH_SOP_CLASS,
    STUDY_MISMATCH,
    StowResult,
    StowService,
)
from dicomweb_gw.errors import BadRequest, PacsUnavailable
from dicomweb_gw.http.multipart_reader import PayloadTooLarge, UploadedPart
from dicomweb_gw.pacs.protocol import StoreOutcome, StoreRequest

BASE = "http://gw.example/dicom-web"
CT = "1.2.840.10008.5.1.4.1.1.2"


class FakePacs:
    """Records what it was asked to store and answers the statuses it was given."""

    name = "fake"

    def __init__(self, statuses: Sequence[int | None] = (), *,
                 error: Exception | None = None) -> None:
        self.statuses = list(statuses)
        self.error = error
        self.requests: list[StoreRequest] = []
        self.files: list[bytes] = []

    async def store(self, requests: Sequence[StoreRequest]) -> list[StoreOutcome]:
        self.requests.extend(requests)
        self.files.extend(request.path.read_bytes() for request in requests)  # still there
        if self.error is not None:
            raise self.error
        statuses = self.statuses or [0x0000] * len(requests)
        return [StoreOutcome(r.sop_class_uid, r.sop_instance_uid, status, "fake",
                             None if status is not None else 0x0110)
                for r, status in zip(requests, statuses, strict=True)]


class FakeCache:
    def __init__(self) -> None:
        self.purged: list[str] = []

    def purge(self, study_uid: str, series_uid: str | None = None) -> int:
        self.purged.append(study_uid)
        return 0


def instance(study_uid: str | None = None, **changes: Any) -> Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    ds.StudyInstanceUID = study_uid or uid.generate_uid()
    ds.SeriesInstanceUID = uid.generate_uid()
    ds.SOPInstanceUID = uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def encode(ds: Dataset) -> bytes:
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


async def as_parts(bodies: Sequence[bytes], error: Exception | None = None
                   ) -> AsyncIterator[UploadedPart]:
    for body in bodies:
        spool = tempfile.SpooledTemporaryFile(max_size=1024)  # noqa: SIM115  # the service closes it
        spool.write(body)
        spool.seek(0)
        yield UploadedPart({"content-type": "application/dicom"}, spool, len(body))
    if error is not None:
        raise error


def run(pacs: FakePacs, bodies: Sequence[bytes], *, study_uid: str | None = None,
        cache: FakeCache | None = None, error: Exception | None = None) -> StowResult:
    service = StowService((lambda: cache) if cache else None)  # type: ignore[arg-type, return-value]
    return asyncio.run(service.store(pacs, as_parts(bodies, error), study_uid=study_uid,
                                     base_url=BASE + "/"))


def values(item: dict[str, Any], tag: str) -> list[Any]:
    return list(item.get(tag, {}).get("Value", []))


def referenced(result: StowResult) -> list[dict[str, Any]]:
    return values(result.body, "00081199")


def failed(result: StowResult) -> list[dict[str, Any]]:
    return values(result.body, "00081198")


def test_all_stored_is_200_with_retrieve_urls() -> None:
    study = uid.generate_uid()
    datasets = [instance(study), instance(study)]
    pacs, cache = FakePacs(), FakeCache()
    result = run(pacs, [encode(ds) for ds in datasets], cache=cache)
    assert result.status_code == 200
    assert result.body["00081190"] == {"vr": "UR", "Value": [f"{BASE}/studies/{study}"]}
    assert "00081198" not in result.body
    items = referenced(result)
    assert [values(i, "00081155")[0] for i in items] == [ds.SOPInstanceUID for ds in datasets]
    ds = datasets[0]
    assert items[0] == {
        "00081150": {"vr": "UI", "Value": [CT]},
        "00081155": {"vr": "UI", "Value": [ds.SOPInstanceUID]},
        "00081190": {"vr": "UR", "Value": [
            f"{BASE}/studies/{study}/series/{ds.SeriesInstanceUID}/instances/"
            f"{ds.SOPInstanceUID}"]},
    }
    assert [r.sop_instance_uid for r in pacs.requests] == [d.SOPInstanceUID for d in datasets]
    assert pacs.requests[0].transfer_syntax_uid == uid.ExplicitVRLittleEndian
    assert pacs.files == [encode(ds) for ds in datasets]  # sent byte for byte
    assert cache.purged == [study]


def test_some_failed_is_202_and_nothing_unconfirmed_is_reported_stored() -> None:
    datasets = [instance() for _ in range(4)]
    pacs = FakePacs([0x0000, 0xA700, None, 0xB000])
    result = run(pacs, [encode(ds) for ds in datasets])
    assert result.status_code == 202
    stored = [values(i, "00081155")[0] for i in referenced(result)]
    assert stored == [datasets[0].SOPInstanceUID, datasets[3].SOPInstanceUID]
    assert values(referenced(result)[1], "00081196") == [0xB000]  # WarningReason
    assert [(values(i, "00081155")[0], values(i, "00081197")[0]) for i in failed(result)] == [
        (datasets[1].SOPInstanceUID, 0xA700), (datasets[2].SOPInstanceUID, 0x0110)]
    assert result.body["00081190"] == {"vr": "UR"}  # two studies stored: no single study URL
    assert len(result.warnings) == 2


def test_warning_only_is_202() -> None:
    assert run(FakePacs([0xB007]), [encode(instance())]).status_code == 202


def test_none_stored_is_409() -> None:
    result = run(FakePacs([0xC000, 0x0122]), [encode(instance()), encode(instance())])
    assert result.status_code == 409
    assert "00081199" not in result.body
    assert [values(i, "00081197")[0] for i in failed(result)] == [0xC000, 0x0122]


def test_study_mismatch_fails_that_instance_only() -> None:
    study = uid.generate_uid()
    good, other = instance(study), instance()
    pacs, cache = FakePacs(), FakeCache()
    result = run(pacs, [encode(good), encode(other)], study_uid=study, cache=cache)
    assert result.status_code == 202
    assert [r.sop_instance_uid for r in pacs.requests] == [good.SOPInstanceUID]
    [item] = failed(result)
    assert values(item, "00081155") == [other.SOPInstanceUID]
    assert values(item, "00081150") == [CT]
    assert values(item, "00081197") == [STUDY_MISMATCH]
    assert result.body["00081190"]["Value"] == [f"{BASE}/studies/{study}"]
    assert cache.purged == [study]


def test_all_mismatched_is_409_and_the_pacs_is_not_asked() -> None:
    pacs = FakePacs()
    result = run(pacs, [encode(instance())], study_uid=uid.generate_uid())
    assert result.status_code == 409
    assert pacs.requests == []


@pytest.mark.parametrize(("body", "reason"), [
    (b"this is not DICOM", CANNOT_UNDERSTAND),
    (b"", CANNOT_UNDERSTAND),
    (encode(instance())[:100], CANNOT_UNDERSTAND),  # cut inside the File Meta
])
def test_not_dicom_part_fails_without_uids(body: bytes, reason: int) -> None:
    good = instance()
    result = run(FakePacs(), [body, encode(good)])
    assert result.status_code == 202
    [item] = failed(result)
    assert item == {"00081197": {"vr": "US", "Value": [reason]}}
    assert [values(i, "00081155")[0] for i in referenced(result)] == [good.SOPInstanceUID]


def test_dataset_without_preamble_is_not_accepted() -> None:
    raw = encode(instance())[132:]  # no preamble, no DICM: force=False refuses it
    assert failed(run(FakePacs(), [raw]))[0]["00081197"]["Value"] == [CANNOT_UNDERSTAND]


def test_missing_identity_attributes() -> None:
    no_series = instance(SeriesInstanceUID=None)
    no_class = instance(SOPClassUID=None)
    result = run(FakePacs(), [encode(no_series), encode(no_class)])
    assert [values(i, "00081197")[0] for i in failed(result)] == [
        DOES_NOT_MATCH_SOP_CLASS, CANNOT_UNDERSTAND]
    assert values(failed(result)[0], "00081155") == [no_series.SOPInstanceUID]


def test_file_meta_disagreeing_with_the_data_set() -> None:
    ds = instance()
    encoded = encode(ds)  # pydicom would fix the File Meta on write: edit the bytes instead
    meta_end = 144 + int.from_bytes(encoded[140:144], "little")
    own = ds.SOPInstanceUID.encode()
    other = own[:-1] + (b"1" if own[-1:] != b"1" else b"2")
    assert encoded[:meta_end].count(own) == 1
    result = run(FakePacs(), [encoded[:meta_end].replace(own, other) + encoded[meta_end:]])
    assert failed(result)[0]["00081197"]["Value"] == [CANNOT_UNDERSTAND]


def test_no_parts_is_400() -> None:
    with pytest.raises(BadRequest):
        run(FakePacs(), [])


def test_body_error_after_some_parts_stores_nothing() -> None:
    pacs = FakePacs()
    with pytest.raises(PayloadTooLarge):
        run(pacs, [encode(instance())], error=PayloadTooLarge("too big"))
    assert pacs.requests == []


def test_pacs_down_raises_and_still_purges() -> None:
    ds = instance()
    pacs, cache = FakePacs(error=PacsUnavailable("fake", "down")), FakeCache()
    with pytest.raises(PacsUnavailable):
        run(pacs, [encode(ds)], cache=cache)
    assert cache.purged == [ds.StudyInstanceUID]  # it may hold what it never confirmed


def test_spool_is_removed_afterwards() -> None:
    pacs = FakePacs()
    run(pacs, [encode(instance())])
    assert pacs.requests
    assert not any(r.path.exists() for r in pacs.requests)
    assert not Path(pacs.requests[0].path).parent.exists()


def test_compressed_and_implicit_instances_keep_their_syntax() -> None:
    jpeg = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm", download=False))
    implicit = instance()
    implicit.file_meta.TransferSyntaxUID = uid.ImplicitVRLittleEndian
    pacs = FakePacs()
    assert run(pacs, [encode(jpeg), encode(implicit)]).status_code == 200
    assert [r.transfer_syntax_uid for r in pacs.requests] == [
        uid.JPEGBaseline8Bit, uid.ImplicitVRLittleEndian]
