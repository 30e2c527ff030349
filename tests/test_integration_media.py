"""Video, encapsulated documents, SR, SEG and RTSTRUCT through the gateway (issue #18, part 4).

Against the real PACS: the video study is on Orthanc only (compressed transfer
syntaxes), the documents and the SEG study on both.
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pydicom
import pytest

import media_corpus
from corpus import Corpus, InstanceInfo, StudyInfo
from gateway_fixtures import RunningGateway
from multipart_helpers import parse_multipart

pytestmark = pytest.mark.pacs
NODES = ["dcmqrscp", "orthanc"]
OHIF_BULK = "multipart/related; type=application/octet-stream"  # what OHIF asks a video with
OHIF_PDF = ('multipart/related; type="application/pdf", '
            'multipart/related; type="application/octet-stream"')
NATIVE = 'multipart/related; type="application/octet-stream"'
VIDEO_TYPES = {"avc": "video/mp4", "hevc": "video/H265", "mpeg2": "video/mpeg2"}


def _instance_url(gateway: RunningGateway, node: str, study: StudyInfo,
                  instance: InstanceInfo) -> str:
    series = next(s for s in study.series if instance in s.instances)
    return (f"{gateway.dicomweb(node)}/studies/{study.study_uid}/series/{series.series_uid}"
            f"/instances/{instance.sop_instance_uid}")


def _video(corpus: Corpus, name: str) -> tuple[StudyInfo, InstanceInfo]:
    study = corpus.study("video")
    index = list(media_corpus.VIDEOS).index(name)
    return study, study.series[index].instances[0]


def _stream(name: str) -> bytes:
    """The video as the file holds it: the stream, padded to even length."""
    stream = media_corpus.video_stream(name)
    return stream + b"\0" * (len(stream) % 2)


def _get(url: str, accept: str | None = None, **headers: str) -> httpx.Response:
    if accept is not None:
        headers["Accept"] = accept
    return httpx.get(url, headers=headers, timeout=60)


# --------------------------------------------------------------------------- video


@pytest.mark.parametrize("name", list(media_corpus.VIDEOS))
def test_video_bulk_data_is_the_stream_with_ranges(gateway: RunningGateway, corpus: Corpus,
                                                   name: str) -> None:
    study, instance = _video(corpus, name)
    url = f"{_instance_url(gateway, 'orthanc', study, instance)}/bulkdata/7FE00010"
    media_type = VIDEO_TYPES[name]
    stream = _stream(name)

    whole = _get(url, media_type)
    assert whole.status_code == 200, whole.text
    assert whole.headers["content-type"] == media_type
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.content == stream

    part = _get(url, media_type, Range="bytes=100-1099")
    assert part.status_code == 206, part.text
    assert part.headers["content-range"] == f"bytes 100-1099/{len(stream)}"
    assert part.content == stream[100:1100]
    tail = _get(url, media_type, Range="bytes=-64")
    assert tail.status_code == 206
    assert tail.content == stream[-64:]
    beyond = _get(url, media_type, Range=f"bytes={len(stream)}-")
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(stream)}"


@pytest.mark.parametrize("name", list(media_corpus.VIDEOS))
def test_video_bulk_data_as_ohif_asks_for_it(gateway: RunningGateway, corpus: Corpus,
                                             name: str) -> None:
    study, instance = _video(corpus, name)
    url = f"{_instance_url(gateway, 'orthanc', study, instance)}/bulkdata/7FE00010"
    response = _get(url, OHIF_BULK)
    assert response.status_code == 200, response.text
    (part,) = parse_multipart(response.headers["content-type"], response.content)
    assert part.headers["content-type"] == (
        f"{VIDEO_TYPES[name]}; transfer-syntax={instance.transfer_syntax_uid}")
    assert part.headers["content-location"] == url
    assert part.body == _stream(name)


def test_video_metadata_points_at_the_stream(gateway: RunningGateway, corpus: Corpus) -> None:
    study, instance = _video(corpus, "avc")
    response = _get(f"{_instance_url(gateway, 'orthanc', study, instance)}/metadata")
    assert response.status_code == 200, response.text
    (dataset,) = response.json()
    # OHIF tells a video from an image by (0008,3002), since the File Meta is left out.
    assert dataset["00083002"] == {"vr": "UI", "Value": [instance.transfer_syntax_uid]}
    series_url = _instance_url(gateway, "orthanc", study, instance).rsplit("/instances/", 1)[0]
    series = _get(f"{series_url}/metadata")
    assert series.status_code == 200, series.text
    assert series.json()[0]["00083002"]["Value"] == [instance.transfer_syntax_uid]
    uri = dataset["7FE00010"]["BulkDataURI"]
    video = _get(uri, "video/mp4")
    assert video.status_code == 200
    assert video.content == _stream("avc")


def test_video_of_the_wrong_type_is_406(gateway: RunningGateway, corpus: Corpus) -> None:
    study, instance = _video(corpus, "mpeg2")
    url = f"{_instance_url(gateway, 'orthanc', study, instance)}/bulkdata/7FE00010"
    response = _get(url, "video/mp4")
    assert response.status_code == 406
    assert "video/mpeg2" in response.json()["message"]
    assert _get(url, "video/mpeg").status_code == 200  # the older name, browsers' name


def test_video_frames_are_the_video(gateway: RunningGateway, corpus: Corpus) -> None:
    study, instance = _video(corpus, "avc")
    base = _instance_url(gateway, "orthanc", study, instance)
    single = _get(f"{base}/frames/1", "video/mp4", Range="bytes=0-99")
    assert single.status_code == 206, single.text
    assert single.headers["content-type"] == "video/mp4"
    assert single.content == _stream("avc")[:100]
    multipart = _get(f"{base}/frames/1,2", NATIVE)
    assert multipart.status_code == 200, multipart.text
    (part,) = parse_multipart(multipart.headers["content-type"], multipart.content)
    assert part.headers["content-type"].startswith("video/mp4; transfer-syntax=")
    assert part.body == _stream("avc")
    past = _get(f"{base}/frames/31", "video/mp4")
    assert past.status_code == 404
    assert "30 frames" in past.json()["message"]


@pytest.mark.parametrize(("name", "rendered_type"),
                         [("avc", "video/mp4"), ("mpeg2", "video/mpeg"), ("hevc", "video/H265")])
def test_video_renders_as_itself(gateway: RunningGateway, corpus: Corpus, name: str,
                                 rendered_type: str) -> None:
    study, instance = _video(corpus, name)
    url = f"{_instance_url(gateway, 'orthanc', study, instance)}/rendered"
    response = _get(url, "*/*", Range="bytes=0-")  # what a <video> element sends
    assert response.status_code == 206, response.text
    assert response.headers["content-type"] == rendered_type
    assert response.content == _stream(name)
    asked = _get(f"{url}?accept={rendered_type}")
    assert asked.status_code == 200
    assert asked.headers["content-type"] == rendered_type
    # A video cannot be decoded into a still image here.
    assert _get(url, "image/jpeg").status_code == 406


# --------------------------------------------------------------------------- documents


def _document(corpus: Corpus, index: int) -> tuple[StudyInfo, InstanceInfo]:
    study = corpus.study("documents")
    return study, study.series[index].instances[0]


def _document_bytes(instance: InstanceInfo) -> bytes:
    ds = pydicom.dcmread(instance.path)
    return bytes(ds.EncapsulatedDocument)[:int(ds.EncapsulatedDocumentLength)]


@pytest.mark.parametrize("node", NODES)
def test_pdf_bulk_data_uri_and_media_type(gateway: RunningGateway, corpus: Corpus,
                                          node: str) -> None:
    study, instance = _document(corpus, 0)
    base = _instance_url(gateway, node, study, instance)
    metadata = _get(f"{base}/metadata")
    assert metadata.status_code == 200, metadata.text
    (dataset,) = metadata.json()
    # A small PDF too: a viewer fetches the document from its BulkDataURI.
    assert dataset["00420011"] == {"vr": "OB", "BulkDataURI": f"{base}/bulkdata/00420011"}
    assert dataset["00420012"]["Value"] == ["application/pdf"]

    pdf = media_corpus.pdf_bytes()
    single = _get(f"{base}/bulkdata/00420011", "application/pdf")
    assert single.status_code == 200, single.text
    assert single.headers["content-type"] == "application/pdf"
    assert single.content == pdf  # without the pad byte of the OB value
    ranged = _get(f"{base}/bulkdata/00420011", "application/pdf", Range="bytes=0-7")
    assert ranged.status_code == 206
    assert ranged.content == b"%PDF-1.4"

    ohif = _get(f"{base}/bulkdata/00420011", OHIF_PDF)
    assert ohif.status_code == 200, ohif.text
    (part,) = parse_multipart(ohif.headers["content-type"], ohif.content)
    assert part.headers["content-type"] == "application/pdf"
    assert part.body == pdf


@pytest.mark.parametrize("node", NODES)
def test_pdf_is_the_rendered_instance(gateway: RunningGateway, corpus: Corpus,
                                      node: str) -> None:
    study, instance = _document(corpus, 0)
    url = f"{_instance_url(gateway, node, study, instance)}/rendered"
    response = _get(url, "application/pdf")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.content == media_corpus.pdf_bytes()
    browser = _get(url, "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
    assert browser.status_code == 200
    assert browser.headers["content-type"] == "application/pdf"
    image = _get(url, "image/jpeg")
    assert image.status_code == 406
    assert "no pixel data" in image.json()["message"]


@pytest.mark.parametrize("node", NODES)
def test_cda_is_text_xml(gateway: RunningGateway, corpus: Corpus, node: str) -> None:
    study, instance = _document(corpus, 1)
    base = _instance_url(gateway, node, study, instance)
    expected = _document_bytes(instance)
    for url in (f"{base}/bulkdata/00420011", f"{base}/rendered"):
        response = _get(url, "text/xml")
        assert response.status_code == 200, (url, response.text)
        assert response.headers["content-type"].startswith("text/xml")
        assert response.content == expected
        assert media_corpus.CDA_TITLE.encode() in response.content


# --------------------------------------------------------------------------- SR


def _item(dataset: dict[str, Any], tag: str, index: int = 0) -> dict[str, Any]:
    item: dict[str, Any] = dataset[tag]["Value"][index]
    return item


@pytest.mark.parametrize("node", NODES)
def test_sr_metadata_keeps_its_nested_content(gateway: RunningGateway, corpus: Corpus,
                                              node: str) -> None:
    study, instance = _document(corpus, 2)
    base = _instance_url(gateway, node, study, instance)
    response = _get(f"{base}/metadata")
    assert response.status_code == 200, response.text
    (dataset,) = response.json()
    assert "7FE00010" not in dataset
    assert dataset["0040A040"]["Value"] == ["CONTAINER"]
    text = _item(dataset, "0040A730", 0)
    assert text["0040A160"]["Value"] == ["No focal lesion."]
    number = _item(dataset, "0040A730", 1)
    measured = _item(number, "0040A300")
    assert measured["0040A30A"]["Value"] == [12.5]
    assert _item(measured, "004008EA")["00080100"]["Value"] == ["mm"]
    nested = _item(number, "0040A730")  # a content item inside a content item
    assert _item(nested, "0040A168")["00080104"]["Value"] == ["Normal"]
    rendered = _get(f"{base}/rendered", "image/jpeg")
    assert rendered.status_code == 406


# --------------------------------------------------------------------------- SEG, RTSTRUCT


def _seg(corpus: Corpus) -> tuple[StudyInfo, InstanceInfo]:
    study = corpus.study("seg_ct")
    return study, study.series[1].instances[0]


@pytest.mark.parametrize("node", NODES)
def test_seg_frames_are_1_bit_masks_not_byte_aligned(gateway: RunningGateway, corpus: Corpus,
                                                    node: str) -> None:
    study, instance = _seg(corpus)
    size = media_corpus.SEG_SIZE
    masks = media_corpus.seg_frames(media_corpus.seg_masks(size, size, media_corpus.SEG_SLICES))
    assert len(masks) == instance.number_of_frames == 5
    assert size * size % 8 != 0  # frame 2 starts inside a byte of the stored value
    url = f"{_instance_url(gateway, node, study, instance)}/frames/1,2,3,4,5"
    response = _get(url, NATIVE)
    assert response.status_code == 200, response.text
    parts = parse_multipart(response.headers["content-type"], response.content)
    assert len(parts) == 5
    for number, (part, mask) in enumerate(zip(parts, masks, strict=True), start=1):
        assert len(part.body) == -(-size * size // 8), number  # each frame packed on its own
        bits = np.unpackbits(np.frombuffer(part.body, np.uint8), bitorder="little")
        assert np.array_equal(bits[:size * size].reshape(size, size), mask), number


@pytest.mark.parametrize("node", NODES)
def test_seg_metadata_bulk_data_and_instance(gateway: RunningGateway, corpus: Corpus,
                                             node: str) -> None:
    study, instance = _seg(corpus)
    base = _instance_url(gateway, node, study, instance)
    metadata = _get(f"{base}/metadata")
    assert metadata.status_code == 200, metadata.text
    (dataset,) = metadata.json()
    assert dataset["00620001"]["Value"] == ["BINARY"]
    assert [s["00620005"]["Value"][0] for s in dataset["00620002"]["Value"]] == ["Sphere", "Box"]
    frames = dataset["52009230"]["Value"]
    assert len(frames) == 5
    source = _item(_item(frames[0], "00089124"), "00082112")
    assert source["00081155"]["Value"] == [study.series[0].instances[0].sop_instance_uid]

    stored = bytes(pydicom.dcmread(instance.path).PixelData)
    bulk = _get(dataset["7FE00010"]["BulkDataURI"], "application/octet-stream")
    assert bulk.status_code == 200, bulk.text
    assert bulk.content == stored

    # OHIF's RTSTRUCT and SEG loaders fetch the whole instance as multipart application/dicom.
    whole = _get(base, 'multipart/related; type="application/dicom"')
    assert whole.status_code == 200, whole.text
    (part,) = parse_multipart(whole.headers["content-type"], whole.content)
    assert bytes(part.dataset().PixelData) == stored


@pytest.mark.parametrize("node", NODES)
def test_rtstruct_metadata(gateway: RunningGateway, corpus: Corpus, node: str) -> None:
    study = corpus.study("seg_ct")
    instance = study.series[2].instances[0]
    response = _get(f"{_instance_url(gateway, node, study, instance)}/metadata")
    assert response.status_code == 200, response.text
    (dataset,) = response.json()
    roi = _item(dataset, "30060039")  # ROI Contour Sequence
    contours = roi["30060040"]["Value"]
    assert len(contours) == media_corpus.SEG_SLICES
    assert all(len(c["30060050"]["Value"]) == 12 for c in contours)  # 4 points x 3
    image = _item(contours[0], "30060016")
    assert image["00081155"]["Value"] == [study.series[0].instances[0].sop_instance_uid]
