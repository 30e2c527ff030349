"""Transfer-syntax negotiation decided per stored instance, part headers and WADO-URI's
contentType, through the real gateway and PACS (issue #14.3, #14.8, #14.9).

A syntax the gateway cannot encode (JPEG baseline) is served when the instance is
stored in it: the bytes sent are the stored bytes.
"""

from __future__ import annotations

import io
import re
import secrets

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom import uid
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames

from corpus import Corpus, InstanceInfo, StudyInfo
from gateway_fixtures import RunningGateway
from multipart_helpers import ReceivedPart, parse_multipart

pytestmark = pytest.mark.pacs
JPEG = uid.JPEGBaseline8Bit
AS_JPEG = f'multipart/related; type="application/dicom"; transfer-syntax={JPEG}'


def _instance_url(gateway: RunningGateway, node: str | None, study: StudyInfo,
                  instance: InstanceInfo) -> str:
    series = next(s for s in study.series if instance in s.instances)
    return (f"{gateway.dicomweb(node)}/studies/{study.study_uid}/series/{series.series_uid}"
            f"/instances/{instance.sop_instance_uid}")


def _get(url: str, accept: str) -> httpx.Response:
    return httpx.get(url, headers={"Accept": accept}, timeout=60)


def _parts(response: httpx.Response) -> list[ReceivedPart]:
    assert response.status_code == 200, response.text
    return parse_multipart(response.headers["content-type"], response.content)


def _stored_frames(instance: InstanceInfo) -> list[bytes]:
    source = pydicom.dcmread(instance.path)
    return list(generate_frames(source.PixelData, number_of_frames=instance.number_of_frames))


# -- #14.3: the stored syntax, decided once the instance is known ---------------------


@pytest.mark.parametrize("label", ["jpeg_colour", "us_multiframe_jpeg"])
def test_instance_in_its_stored_jpeg_baseline_is_sent_as_stored(
        gateway: RunningGateway, corpus: Corpus, label: str) -> None:
    study = corpus.study(label)
    [instance] = study.instances
    for url in (_instance_url(gateway, "orthanc", study, instance),
                f"{gateway.dicomweb('orthanc')}/studies/{study.study_uid}"):
        [part] = _parts(_get(url, AS_JPEG))
        assert part.headers["content-type"] == f"application/dicom; transfer-syntax={JPEG}"
        received, source = part.dataset(), pydicom.dcmread(instance.path)
        assert received.file_meta.TransferSyntaxUID == JPEG
        assert received.PixelData == source.PixelData  # the stored bytes, not re-encoded
        assert received.SOPInstanceUID == instance.sop_instance_uid


@pytest.mark.parametrize("accept", [
    f'multipart/related; type="application/octet-stream"; transfer-syntax={JPEG}',
    f"multipart/related; transfer-syntax={JPEG}",
    f'multipart/related; type="image/jpeg"; transfer-syntax={JPEG}',
])
def test_frames_in_their_stored_jpeg_baseline_are_the_stored_bytes(
        gateway: RunningGateway, corpus: Corpus, accept: str) -> None:
    study = corpus.study("us_multiframe_jpeg")
    [instance] = study.instances
    parts = _parts(_get(_instance_url(gateway, "orthanc", study, instance) + "/frames/1,60",
                        accept))
    stored = _stored_frames(instance)
    assert [p.body for p in parts] == [stored[0], stored[59]]
    for part in parts:
        assert part.headers["content-type"] == f"image/jpeg; transfer-syntax={JPEG}"


def test_jpeg_baseline_asked_of_a_native_instance_is_406(gateway: RunningGateway,
                                                         corpus: Corpus) -> None:
    study = corpus.study("ct_small")
    instance = study.instances[0]
    for url, accept in (
            (_instance_url(gateway, "dcmqrscp", study, instance), AS_JPEG),
            (_instance_url(gateway, "dcmqrscp", study, instance) + "/frames/1",
             f'multipart/related; type="application/octet-stream"; transfer-syntax={JPEG}')):
        response = _get(url, accept)
        assert response.status_code == 406, response.text
        message = response.json()["message"]
        assert "transfer-syntax=*" in message or uid.ExplicitVRLittleEndian in message


def _mixed_study(gateway: RunningGateway) -> tuple[str, Dataset, Dataset]:
    """A study of one JPEG baseline instance and one native one, stored into Orthanc."""
    study_uid = pydicom.uid.generate_uid()
    datasets = []
    for name in ("SC_rgb_jpeg_dcmtk.dcm", "CT_small.dcm"):
        ds = pydicom.dcmread(get_testdata_file(name, download=False))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, pydicom.uid.generate_uid()
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientName, ds.PatientID = "Mixed^Syntaxes", f"GW-MIX-{study_uid[-8:]}"
        datasets.append(ds)
    boundary = secrets.token_hex(12)
    body = b""
    for ds in datasets:
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        body += (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                 + buffer.getvalue() + b"\r\n")
    body += f"--{boundary}--\r\n".encode()
    response = httpx.post(
        f"{gateway.dicomweb('orthanc')}/studies", content=body, timeout=60,
        headers={"Content-Type": f'multipart/related; type="application/dicom"; '
                                 f"boundary={boundary}", "Accept": "application/dicom+json"})
    assert response.status_code == 200, response.text
    return study_uid, datasets[0], datasets[1]


def test_mixed_study_is_406_before_the_first_byte_or_sent_with_a_fallback(
        gateway: RunningGateway) -> None:
    """Any instance that cannot be sent makes the whole response a 406, decided before the
    first part (never a 200 broken off midway); with a fallback, each instance gets its best."""
    study_uid, jpeg, native = _mixed_study(gateway)
    url = f"{gateway.dicomweb('orthanc')}/studies/{study_uid}"
    refused = _get(url, AS_JPEG)
    assert refused.status_code == 406, refused.text
    assert native.SOPInstanceUID in refused.json()["message"]
    parts = _parts(_get(url, f'{AS_JPEG}, multipart/related; type="application/dicom"; q=0.5'))
    by_uid = {p.dataset().SOPInstanceUID: p for p in parts}
    assert by_uid[jpeg.SOPInstanceUID].dataset().PixelData == jpeg.PixelData
    assert by_uid[jpeg.SOPInstanceUID].headers["content-type"].endswith(JPEG)
    assert by_uid[native.SOPInstanceUID].dataset().file_meta.TransferSyntaxUID == (
        uid.ExplicitVRLittleEndian)


# -- #14.8: Content-Location of each part, one multipart Content-Type form -------------


_MULTIPART = re.compile(r'multipart/related; type="([^";]+)"; boundary=[0-9a-f]+')


def _assert_resolves(location: str, accept: str) -> None:
    response = _get(location, accept)
    assert response.status_code == 200, (location, response.text)


def test_instance_parts_carry_their_content_location(gateway: RunningGateway,
                                                     corpus: Corpus) -> None:
    study = corpus.study("ct_small")
    accept = 'multipart/related; type="application/dicom"'
    response = _get(f"{gateway.dicomweb()}/studies/{study.study_uid}", accept)
    assert _MULTIPART.fullmatch(response.headers["content-type"]).group(1) == "application/dicom"
    expected = {_instance_url(gateway, None, study, i) for i in study.instances}
    parts = _parts(response)
    assert {p.headers["content-location"] for p in parts} == expected
    for part in parts:
        assert part.headers["content-location"].endswith(part.dataset().SOPInstanceUID)
    _assert_resolves(parts[0].headers["content-location"], accept)


def test_frame_parts_carry_their_frame_url_and_own_transfer_syntax(gateway: RunningGateway,
                                                                   corpus: Corpus) -> None:
    study = corpus.study("mr_multiframe")
    [instance] = study.instances
    base = _instance_url(gateway, "dcmqrscp", study, instance)
    accept = "multipart/related; type=application/octet-stream; transfer-syntax=*"  # OHIF's
    response = _get(base + "/frames/3,1", accept)
    # The multipart header names the bare part type; the syntax is each part's own.
    match = _MULTIPART.fullmatch(response.headers["content-type"])
    assert match is not None, response.headers["content-type"]
    assert match.group(1) == "application/octet-stream"
    parts = _parts(response)
    assert [p.headers["content-location"] for p in parts] == [f"{base}/frames/3",
                                                              f"{base}/frames/1"]
    for part in parts:
        assert part.headers["content-type"] == (
            f"application/octet-stream; transfer-syntax={uid.ExplicitVRLittleEndian}")
    _assert_resolves(parts[0].headers["content-location"], accept)
    # dicomweb-client still reads the frames
    client = DICOMwebClient(url=gateway.dicomweb("dcmqrscp"))
    frames = client.retrieve_instance_frames(study.study_uid, study.series[0].series_uid,
                                             instance.sop_instance_uid, frame_numbers=[3, 1])
    assert frames == [p.body for p in parts]


def test_bulk_data_parts_carry_their_bulk_data_uri(gateway: RunningGateway,
                                                   corpus: Corpus) -> None:
    study = corpus.study("mr_multiframe")
    [instance] = study.instances
    base = _instance_url(gateway, "orthanc", study, instance)
    accept = 'multipart/related; type="application/octet-stream"'
    response = _get(f"{base}/bulkdata/7FE00010", accept)
    assert _MULTIPART.fullmatch(response.headers["content-type"]).group(1) == (
        "application/octet-stream")
    [part] = _parts(response)
    assert part.headers["content-location"] == f"{base}/bulkdata/7FE00010"
    assert part.body == pydicom.dcmread(instance.path).PixelData
    # Compressed pixel data comes frame by frame: each part is a frame resource.
    jpeg_study = corpus.study("jpeg_colour")
    [jpeg] = jpeg_study.instances
    jpeg_base = _instance_url(gateway, "orthanc", jpeg_study, jpeg)
    [frame] = _parts(_get(f"{jpeg_base}/bulkdata/7FE00010",
                          "multipart/related; type=application/octet-stream; transfer-syntax=*"))
    assert frame.headers["content-location"] == f"{jpeg_base}/frames/1"
    assert frame.body == _stored_frames(jpeg)[0]


def test_content_location_follows_the_forwarded_base(gateway: RunningGateway,
                                                     corpus: Corpus) -> None:
    study = corpus.study("ct_small")
    instance = study.instances[0]
    response = httpx.get(_instance_url(gateway, None, study, instance), timeout=60,
                         headers={"Accept": 'multipart/related; type="application/dicom"',
                                  "X-Forwarded-Proto": "https", "X-Forwarded-Host": "pacs.example",
                                  "X-Forwarded-Prefix": "/gw"})
    [part] = _parts(response)
    series = next(s for s in study.series if instance in s.instances)
    assert part.headers["content-location"] == (
        f"https://pacs.example/gw/dicom-web/studies/{study.study_uid}/series/"
        f"{series.series_uid}/instances/{instance.sop_instance_uid}")


# -- #14.9: WADO-URI contentType=image/jpg ---------------------------------------------


def test_wado_uri_image_jpg_is_image_jpeg(gateway: RunningGateway, corpus: Corpus) -> None:
    study = corpus.study("ct_small")
    series = study.series[-1]
    instance = series.instances[0]
    params = {"requestType": "WADO", "studyUID": study.study_uid,
              "seriesUID": series.series_uid, "objectUID": instance.sop_instance_uid}
    jpg = httpx.get(f"{gateway.url}/wado", params={**params, "contentType": "image/jpg"},
                    timeout=60)
    assert jpg.status_code == 200, jpg.text
    assert jpg.headers["content-type"] == "image/jpeg"
    jpeg = httpx.get(f"{gateway.url}/wado", params={**params, "contentType": "image/jpeg"},
                     timeout=60)
    assert jpg.content == jpeg.content
