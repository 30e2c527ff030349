"""STOW-RS through the gateway into real dcmqrscp and Orthanc, then back out by QIDO/WADO."""

from __future__ import annotations

import io
import secrets
from dataclasses import replace
from pathlib import Path

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicomweb_gw.settings import PacsNode
from gateway_fixtures import RunningGateway, make_settings, node_for, running_gateway
from multipart_helpers import parse_multipart
from pacs_fixtures import RunningPacs, free_port

pytestmark = pytest.mark.pacs
DICOM = 'multipart/related; type="application/dicom"'


def _new_study(count: int, *, patient: str = "Stow^Batch") -> list[Dataset]:
    study_uid, series_uid = generate_uid(), generate_uid()
    datasets = []
    for index in range(count):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientName, ds.PatientID = patient, f"STOW-{study_uid[-8:]}"
        ds.InstanceNumber = index + 1
        datasets.append(ds)
    return datasets


def _encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _multipart(bodies: list[bytes], *, quoted: bool = True) -> tuple[bytes, str]:
    boundary = secrets.token_hex(12)
    payload = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n"
                       + body + b"\r\n" for body in bodies) + b"--" + boundary.encode() + b"--\r\n"
    kind = '"application/dicom"' if quoted else "application/dicom"
    return payload, f"multipart/related; type={kind}; boundary={boundary}"


def _post(url: str, bodies: list[bytes], **kwargs: bool) -> httpx.Response:
    payload, content_type = _multipart(bodies, **kwargs)
    return httpx.post(url, content=payload, headers={"Content-Type": content_type,
                                                     "Accept": "application/dicom+json"},
                      timeout=120)


def _sequence(body: dict, tag: str) -> list[dict]:
    return body.get(tag, {}).get("Value", [])


@pytest.mark.parametrize("node", ["dcmqrscp", "orthanc"])
def test_batch_of_200_round_trips(gateway: RunningGateway, node: str) -> None:
    datasets = _new_study(200)
    study_uid = datasets[0].StudyInstanceUID
    response = _post(f"{gateway.dicomweb(node)}/studies", [_encode(ds) for ds in datasets],
                     quoted=node == "orthanc")
    assert response.status_code == 200, response.text
    body = response.json()
    referenced = _sequence(body, "00081199")
    assert {item["00081155"]["Value"][0] for item in referenced} == {
        str(ds.SOPInstanceUID) for ds in datasets}
    assert all(item["00081190"]["Value"][0].startswith(gateway.dicomweb(node))
               for item in referenced)
    assert "00081198" not in body or _sequence(body, "00081198") == []
    found = httpx.get(f"{gateway.dicomweb(node)}/studies/{study_uid}/series/"
                      f"{datasets[0].SeriesInstanceUID}/instances", timeout=60).json()
    assert len(found) == 200
    back = httpx.get(f"{gateway.dicomweb(node)}/studies/{study_uid}",
                     headers={"Accept": DICOM}, timeout=120)
    parts = parse_multipart(back.headers["content-type"], back.content)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in datasets}
    assert len(parts) == 200
    for part in parts[::20]:
        received = part.dataset()
        assert received.PixelData == by_uid[received.SOPInstanceUID].PixelData


def test_partial_failure_is_202_and_lists_the_bad_ones(gateway: RunningGateway) -> None:
    good = _new_study(3, patient="Stow^Partial")
    other = _new_study(1, patient="Stow^Other")[0]
    study_uid = good[0].StudyInstanceUID
    response = _post(f"{gateway.dicomweb('orthanc')}/studies/{study_uid}",
                     [_encode(ds) for ds in good] + [b"this is not DICOM", _encode(other)])
    assert response.status_code == 202, response.text
    body = response.json()
    stored = {i["00081155"]["Value"][0] for i in _sequence(body, "00081199")}
    assert stored == {str(ds.SOPInstanceUID) for ds in good}
    failed = _sequence(body, "00081198")
    assert str(other.SOPInstanceUID) in {i.get("00081155", {}).get("Value", [""])[0]
                                         for i in failed}
    assert all("00081197" in item for item in failed)
    assert stored.isdisjoint({i.get("00081155", {}).get("Value", [""])[0] for i in failed})
    found = httpx.get(f"{gateway.dicomweb('orthanc')}/instances",
                      params={"SOPInstanceUID": str(other.SOPInstanceUID)}, timeout=30).json()
    assert found == []


def test_nothing_stored_is_409(gateway: RunningGateway) -> None:
    ds = _new_study(1)[0]
    response = _post(f"{gateway.dicomweb('orthanc')}/studies/{generate_uid()}", [_encode(ds)])
    assert response.status_code == 409
    assert _sequence(response.json(), "00081198")


@pytest.mark.parametrize(("content_type", "status"), [
    ("application/dicom", 415),
    ('multipart/related; type="application/json"; boundary=x', 415),
    ("multipart/related; type=application/dicom", 400),  # no boundary
])
def test_bad_content_type(gateway: RunningGateway, content_type: str, status: int) -> None:
    response = httpx.post(f"{gateway.dicomweb('orthanc')}/studies", content=b"--x--\r\n",
                          headers={"Content-Type": content_type}, timeout=30)
    assert response.status_code == status


def test_truncated_multipart_is_400_and_stores_nothing(gateway: RunningGateway) -> None:
    ds = _new_study(2)
    payload, content_type = _multipart([_encode(d) for d in ds])
    response = httpx.post(f"{gateway.dicomweb('orthanc')}/studies",
                          content=payload[: len(payload) - 200],
                          headers={"Content-Type": content_type}, timeout=30)
    assert response.status_code == 400
    found = httpx.get(f"{gateway.dicomweb('orthanc')}/studies",
                      params={"StudyInstanceUID": str(ds[0].StudyInstanceUID)}, timeout=30)
    assert found.json() == []


def test_oversized_upload_is_413(orthanc_pacs: RunningPacs, tmp_path: Path) -> None:
    node = node_for(orthanc_pacs, "orthanc", "c-get")
    settings = replace(make_settings((node,), store_port=free_port(), tmp=tmp_path),
                       upload_max_bytes=100_000)
    with running_gateway(settings) as small:
        response = _post(f"{small.dicomweb()}/studies",
                         [_encode(ds) for ds in _new_study(5)])
    assert response.status_code == 413


def test_pacs_down_is_503_and_nothing_reported_stored(tmp_path: Path) -> None:
    node = PacsNode(name="gone", host="127.0.0.1", port=free_port(), ae_title="GONE",
                    retrieve="c-get", timeout=5)
    with running_gateway(make_settings((node,), store_port=free_port(), tmp=tmp_path)) as gw:
        response = _post(f"{gw.dicomweb()}/studies", [_encode(ds) for ds in _new_study(2)])
    assert response.status_code == 503
    assert "gone" in response.text


def test_stored_instances_are_visible_at_once_through_a_warm_cache(
    gateway: RunningGateway
) -> None:
    # A study of its own (stored first): the shared corpus studies must not change.
    datasets = _new_study(3, patient="Stow^Warm")
    study_uid, series_uid = datasets[0].StudyInstanceUID, datasets[0].SeriesInstanceUID
    first = _post(f"{gateway.dicomweb('orthanc')}/studies", [_encode(ds) for ds in datasets[:2]])
    assert first.status_code == 200, first.text
    base = f"{gateway.dicomweb('orthanc')}/studies/{study_uid}/series/{series_uid}"
    before = httpx.get(f"{base}/metadata", timeout=60).json()  # cached now
    extra = datasets[2]
    response = _post(f"{gateway.dicomweb('orthanc')}/studies/{study_uid}", [_encode(extra)])
    assert response.status_code == 200, response.text
    after = httpx.get(f"{base}/metadata", timeout=60).json()
    assert len(after) == len(before) + 1
    assert str(extra.SOPInstanceUID) in {i["00080018"]["Value"][0] for i in after}


def test_dicomweb_client_store_instances(gateway: RunningGateway) -> None:
    client = DICOMwebClient(url=gateway.dicomweb("orthanc"))
    datasets = _new_study(3, patient="Stow^Client")
    result = client.store_instances(datasets)
    stored = {str(item.ReferencedSOPInstanceUID) for item in result.ReferencedSOPSequence}
    assert stored == {str(ds.SOPInstanceUID) for ds in datasets}
