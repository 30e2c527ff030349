"""WADO-RS retrieve through the gateway: dcmqrscp (C-MOVE), Orthanc (C-GET and C-MOVE)."""

from __future__ import annotations

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from corpus import Corpus
from gateway_fixtures import RunningGateway
from multipart_helpers import parse_multipart

pytestmark = pytest.mark.pacs
DICOM = 'multipart/related; type="application/dicom"'
AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def _get(url: str, accept: str = DICOM) -> httpx.Response:
    return httpx.get(url, headers={"Accept": accept}, timeout=60)


@pytest.mark.parametrize("node", ["dcmqrscp", "orthanc", "orthanc-move"])
def test_big_study_is_byte_identical(gateway: RunningGateway, corpus: Corpus, node: str) -> None:
    study = corpus.study("big_ct")
    response = _get(f"{gateway.dicomweb(node)}/studies/{study.study_uid}", AS_STORED)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("multipart/related")
    assert 'type="application/dicom"' in response.headers["content-type"]
    parts = parse_multipart(response.headers["content-type"], response.content)
    expected = {i.sop_instance_uid: i for s in study.series for i in s.instances}
    assert len(parts) == len(expected) == 100
    for part in parts:
        assert part.headers["content-type"] == (
            f"application/dicom; transfer-syntax={ExplicitVRLittleEndian}")
        received = part.dataset()
        source = pydicom.dcmread(expected.pop(received.SOPInstanceUID).path)
        assert received.PixelData == source.PixelData
        assert received.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert expected == {}


@pytest.mark.parametrize("node", ["dcmqrscp", "orthanc"])
def test_series_and_instance_retrieve(gateway: RunningGateway, corpus: Corpus, node: str) -> None:
    study = corpus.study("ct_small")
    series = study.series[-1]
    base = f"{gateway.dicomweb(node)}/studies/{study.study_uid}/series/{series.series_uid}"
    response = _get(base)
    parts = parse_multipart(response.headers["content-type"], response.content)
    assert {p.dataset().SOPInstanceUID for p in parts} == {
        i.sop_instance_uid for i in series.instances}
    one = series.instances[0]
    response = _get(f"{base}/instances/{one.sop_instance_uid}")
    (part,) = parse_multipart(response.headers["content-type"], response.content)
    assert part.dataset().SOPInstanceUID == one.sop_instance_uid


@pytest.mark.parametrize("node", ["dcmqrscp", "orthanc"])
def test_implicit_vr_is_converted_to_explicit_by_default(gateway: RunningGateway,
                                                         corpus: Corpus, node: str) -> None:
    study = corpus.study("mr_implicit")
    url = f"{gateway.dicomweb(node)}/studies/{study.study_uid}"
    # Unquoted parameters, as OHIF sends them.
    response = _get(url, "multipart/related; type=application/dicom")
    parts = parse_multipart(response.headers["content-type"], response.content)
    assert parts
    for part in parts:
        dataset = part.dataset()
        assert dataset.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert f"transfer-syntax={ExplicitVRLittleEndian}" in part.headers["content-type"]
        source = pydicom.dcmread(corpus.instance(dataset.SOPInstanceUID).path)
        assert dataset.PixelData == source.PixelData
    as_stored = _get(url, AS_STORED)
    stored = parse_multipart(as_stored.headers["content-type"], as_stored.content)
    # "As stored" is what the PACS sends over DIMSE: it may itself pick Explicit VR
    # for an Implicit VR file when we accept both (dcmqrscp does).
    syntaxes = {p.dataset().file_meta.TransferSyntaxUID for p in stored}
    assert syntaxes <= {ImplicitVRLittleEndian, ExplicitVRLittleEndian}
    for part in stored:
        assert part.headers["content-type"].endswith(
            f"transfer-syntax={part.dataset().file_meta.TransferSyntaxUID}")


def test_compressed_instance_as_stored_and_decompressed(gateway: RunningGateway,
                                                        corpus: Corpus) -> None:
    study = corpus.study("jpeg_colour")
    url = f"{gateway.dicomweb('orthanc')}/studies/{study.study_uid}"
    (stored,) = parse_multipart(*_headers_and_body(_get(url, AS_STORED)))
    source = pydicom.dcmread(study.series[0].instances[0].path)
    assert stored.dataset().file_meta.TransferSyntaxUID == source.file_meta.TransferSyntaxUID
    assert stored.dataset().PixelData == source.PixelData
    (converted,) = parse_multipart(*_headers_and_body(_get(url)))
    dataset = converted.dataset()
    assert dataset.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert dataset.pixel_array.shape == source.pixel_array.shape


def _headers_and_body(response: httpx.Response) -> tuple[str, bytes]:
    assert response.status_code == 200, response.text
    return response.headers["content-type"], response.content


def test_unknown_study_is_404(gateway: RunningGateway) -> None:
    response = _get(f"{gateway.dicomweb('orthanc')}/studies/1.2.3.4.5.6.7.8.9")
    assert response.status_code == 404
    assert "1.2.3.4.5.6.7.8.9" in response.json()["message"]


def test_malformed_uid_is_400(gateway: RunningGateway) -> None:
    response = _get(f"{gateway.dicomweb()}/studies/1.2.03.x")
    assert response.status_code == 400
    assert "StudyInstanceUID" in response.json()["message"]


@pytest.mark.parametrize("accept", [
    "application/pdf",
    'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50',
    'multipart/related; type="image/png"',
])
def test_unacceptable_media_is_406(gateway: RunningGateway, corpus: Corpus, accept: str) -> None:
    study = corpus.study("ct_small")
    response = _get(f"{gateway.dicomweb()}/studies/{study.study_uid}", accept)
    assert response.status_code == 406
    assert "transfer-syntax=*" in response.json()["message"]


@pytest.mark.parametrize("node", ["dcmqrscp", "orthanc"])
def test_dicomweb_client_searches_and_retrieves(gateway: RunningGateway, corpus: Corpus,
                                                node: str) -> None:
    client = DICOMwebClient(url=gateway.dicomweb(node))
    study = corpus.study("big_ct")
    studies = client.search_for_studies(search_filters={"PatientID": study.patient_id})
    assert [s["0020000D"]["Value"][0] for s in studies] == [study.study_uid]
    instances = client.retrieve_study(study.study_uid)
    assert len(instances) == 100
    by_uid = {i.sop_instance_uid: i.path for s in study.series for i in s.instances}
    for instance in instances[:5]:
        assert instance.PixelData == pydicom.dcmread(by_uid[instance.SOPInstanceUID]).PixelData
