"""WADO-RS frames through the gateway: frame N is frame N, native and compressed, as stored."""

from __future__ import annotations

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from corpus import Corpus, InstanceInfo, StudyInfo
from gateway_fixtures import RunningGateway
from multipart_helpers import parse_multipart

pytestmark = pytest.mark.pacs
AS_STORED = "multipart/related; type=application/octet-stream; transfer-syntax=*"  # OHIF, unquoted
NATIVE = 'multipart/related; type="application/octet-stream"'


def _frames_url(gateway: RunningGateway, node: str, study: StudyInfo, instance: InstanceInfo,
                frames: str) -> str:
    series = next(s for s in study.series if instance in s.instances)
    return (f"{gateway.dicomweb(node)}/studies/{study.study_uid}/series/{series.series_uid}"
            f"/instances/{instance.sop_instance_uid}/frames/{frames}")


def _reference_frames(corpus: Corpus) -> np.ndarray:
    native = corpus.study("mr_multiframe").instances[0]
    return pydicom.dcmread(native.path).pixel_array


@pytest.mark.parametrize("node", ["dcmqrscp", "orthanc"])
def test_native_frame_n_is_frame_n(gateway: RunningGateway, corpus: Corpus, node: str) -> None:
    study = corpus.study("mr_multiframe")
    instance = study.instances[0]
    reference = _reference_frames(corpus)
    response = httpx.get(_frames_url(gateway, node, study, instance, "3,1,10"),
                         headers={"Accept": AS_STORED}, timeout=60)
    assert response.status_code == 200, response.text
    parts = parse_multipart(response.headers["content-type"], response.content)
    assert [p.headers["content-type"] for p in parts] == [
        f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"] * 3
    for part, number in zip(parts, (3, 1, 10), strict=True):
        frame = np.frombuffer(part.body, dtype=reference.dtype).reshape(reference.shape[1:])
        assert np.array_equal(frame, reference[number - 1])


@pytest.mark.parametrize("index", [0, 1, 2])
def test_compressed_frames_as_stored_and_decoded(gateway: RunningGateway, corpus: Corpus,
                                                 index: int) -> None:
    study = corpus.study("mr_multiframe_compressed")
    instance = study.series[0].instances[index]  # RLE, JPEG-LS, JPEG 2000 lossless
    reference = _reference_frames(corpus)
    url = _frames_url(gateway, "orthanc", study, instance, "4")
    stored = httpx.get(url, headers={"Accept": AS_STORED}, timeout=60)
    assert stored.status_code == 200, stored.text
    (part,) = parse_multipart(stored.headers["content-type"], stored.content)
    expected_type = {"1.2.840.10008.1.2.5": "image/dicom-rle",
                     "1.2.840.10008.1.2.4.80": "image/jls",
                     "1.2.840.10008.1.2.4.90": "image/jp2"}[instance.transfer_syntax_uid]
    assert part.headers["content-type"] == (
        f"{expected_type}; transfer-syntax={instance.transfer_syntax_uid}")
    source = pydicom.dcmread(instance.path)
    from pydicom.encaps import generate_frames
    stored_frames = list(generate_frames(source.PixelData, number_of_frames=10))
    assert part.body == stored_frames[3]
    decoded = httpx.get(url, headers={"Accept": NATIVE}, timeout=60)
    assert decoded.status_code == 200, decoded.text
    (native,) = parse_multipart(decoded.headers["content-type"], decoded.content)
    frame = np.frombuffer(native.body, dtype=reference.dtype).reshape(reference.shape[1:])
    assert np.array_equal(frame, reference[3])
    assert not np.array_equal(frame, reference[4])


def test_jpeg_frame_as_image_jpeg(gateway: RunningGateway, corpus: Corpus) -> None:
    study = corpus.study("us_multiframe_jpeg")
    instance = study.instances[0]
    response = httpx.get(_frames_url(gateway, "orthanc", study, instance, "60"),
                         headers={"Accept": "multipart/related; type=\"image/jpeg\""}, timeout=60)
    assert response.status_code == 200, response.text
    (part,) = parse_multipart(response.headers["content-type"], response.content)
    assert part.headers["content-type"].startswith("image/jpeg")
    assert part.body[:2] == b"\xff\xd8"
    from pydicom.encaps import generate_frames
    source = pydicom.dcmread(instance.path)
    assert part.body.rstrip(b"\x00") == list(generate_frames(
        source.PixelData, number_of_frames=instance.number_of_frames))[59].rstrip(b"\x00")


def test_frame_out_of_range_is_404(gateway: RunningGateway, corpus: Corpus) -> None:
    study = corpus.study("mr_multiframe")
    response = httpx.get(_frames_url(gateway, "dcmqrscp", study, study.instances[0], "11"),
                         headers={"Accept": AS_STORED}, timeout=60)
    assert response.status_code == 404
    assert "11" in response.json()["message"]


@pytest.mark.parametrize("frames", ["0", "a", "1,,2", "-1"])
def test_bad_frame_list_is_400(gateway: RunningGateway, corpus: Corpus, frames: str) -> None:
    study = corpus.study("mr_multiframe")
    response = httpx.get(_frames_url(gateway, "dcmqrscp", study, study.instances[0], frames),
                         headers={"Accept": AS_STORED}, timeout=60)
    assert response.status_code == 400


def test_frame_in_a_format_not_stored_is_406(gateway: RunningGateway, corpus: Corpus) -> None:
    study = corpus.study("mr_multiframe")
    response = httpx.get(_frames_url(gateway, "dcmqrscp", study, study.instances[0], "1"),
                         headers={"Accept": 'multipart/related; type="image/jpeg"'}, timeout=60)
    assert response.status_code == 406
