"""HTJ2K frames, byte ranges and ``accept=`` through the real gateway and PACS,
asked the way cornerstone3D's progressive loading asks.

cornerstone3D's byte-range retrieve puts the media type in the URL
(``?accept=image/jhc``, dropping its Accept header), asks ``Range: bytes=0-N``
for a first low-resolution decode, reads the total from ``Content-Range``, then
asks for the rest. Every HTJ2K frame is decoded with two real decoders
(imagecodecs' OpenJPH and pylibjpeg-openjpeg) and compared with the native
frame the gateway sends for the same instance.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import imagecodecs
import numpy as np
import openjpeg
import pydicom
import pytest
from PIL import Image
from pydicom import uid
from pydicom.encaps import generate_frames

from corpus import Corpus, InstanceInfo, StudyInfo
from dicomweb_gw.codecs.part10 import instance_from_file, part10_chunks
from dicomweb_gw.codecs.transcode import transcode_instance
from dicomweb_gw.demo import DemoPacs
from dicomweb_gw.settings import PacsNode
from gateway_fixtures import RunningGateway, make_settings, running_gateway
from multipart_helpers import parse_multipart
from pacs_fixtures import GATEWAY_AE_TITLE, free_port
from testdata import pydicom_file

pytestmark = pytest.mark.pacs
OCTET = "application/octet-stream"
NATIVE = 'multipart/related; type="application/octet-stream"'


def _url(gateway: RunningGateway, node: str, study: StudyInfo, instance: InstanceInfo,
         tail: str = "") -> str:
    series = next(s for s in study.series if instance in s.instances)
    return (f"{gateway.dicomweb(node)}/studies/{study.study_uid}/series/{series.series_uid}"
            f"/instances/{instance.sop_instance_uid}{tail}")


def _native(url: str, instance: InstanceInfo) -> np.ndarray[Any, Any]:
    """The frame as the gateway sends it uncompressed, shaped as the file says."""
    response = httpx.get(url, headers={"Accept": NATIVE}, timeout=120)
    assert response.status_code == 200, response.text
    (part,) = parse_multipart(response.headers["content-type"], response.content)
    header = pydicom.dcmread(instance.path, stop_before_pixels=True)
    kind = "i" if int(header.get("PixelRepresentation", 0)) else "u"
    dtype = np.dtype(f"<{kind}{int(header.BitsAllocated) // 8}")
    shape = (int(header.Rows), int(header.Columns))
    if int(header.SamplesPerPixel) > 1:
        shape = (*shape, int(header.SamplesPerPixel))
    return np.frombuffer(part.body, dtype).reshape(shape)


def _decoded_both_ways(codestream: bytes) -> list[np.ndarray[Any, Any]]:
    return [imagecodecs.htj2k_decode(codestream, planar=False), openjpeg.decode(codestream)]


@pytest.mark.parametrize(("label", "node"), [("big_ct", "dcmqrscp"),
                                             ("mr_multiframe", "dcmqrscp"),
                                             ("jpeg_colour", "orthanc")])
def test_htj2k_frame_decodes_back_exactly(gateway: RunningGateway, corpus: Corpus, label: str,
                                          node: str) -> None:
    study = corpus.study(label)
    instance = study.instances[0]
    url = _url(gateway, node, study, instance, "/frames/1")
    response = httpx.get(f"{url}?accept=image/jhc", timeout=120)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == (
        f"image/jphc; transfer-syntax={uid.HTJ2KLossless}")
    assert response.headers["accept-ranges"] == "bytes"
    reference = _native(url, instance)
    for decoded in _decoded_both_ways(response.content):
        assert decoded.dtype == reference.dtype  # signed CT stays signed
        assert np.array_equal(decoded, reference)


@pytest.mark.parametrize("syntax", [uid.HTJ2KLossless, uid.HTJ2KLosslessRPCL])
def test_htj2k_multipart_frames_as_dicomweb_client_asks(gateway: RunningGateway,
                                                        corpus: Corpus, syntax: str) -> None:
    study = corpus.study("mr_multiframe")
    instance = study.instances[0]
    response = httpx.get(
        _url(gateway, "dcmqrscp", study, instance, "/frames/2,5"),
        headers={"Accept": f'multipart/related; type="image/jhc"; transfer-syntax={syntax}'},
        timeout=120)
    assert response.status_code == 200, response.text
    parts = parse_multipart(response.headers["content-type"], response.content)
    assert [p.headers["content-type"] for p in parts] == [
        f"image/jphc; transfer-syntax={syntax}"] * 2
    reference = pydicom.dcmread(instance.path).pixel_array
    for part, number in zip(parts, (2, 5), strict=True):
        for decoded in _decoded_both_ways(part.body):
            assert np.array_equal(decoded, reference[number - 1])


def test_htj2k_instance_retrieve_decodes_exactly(gateway: RunningGateway,
                                                 corpus: Corpus) -> None:
    study = corpus.study("ct_small")
    instance = study.instances[0]
    response = httpx.get(
        _url(gateway, "dcmqrscp", study, instance),
        headers={"Accept": 'multipart/related; type="application/dicom"; '
                           f"transfer-syntax={uid.HTJ2KLossless}"}, timeout=120)
    assert response.status_code == 200, response.text
    (part,) = parse_multipart(response.headers["content-type"], response.content)
    received = pydicom.dcmread(io.BytesIO(part.body))
    assert received.file_meta.TransferSyntaxUID == uid.HTJ2KLossless
    assert np.array_equal(received.pixel_array, pydicom.dcmread(instance.path).pixel_array)


def test_byte_ranges_of_an_htj2k_frame(gateway: RunningGateway, corpus: Corpus) -> None:
    """A prefix, then the rest, as cornerstone3D asks: the same bytes as the whole."""
    study = corpus.study("big_ct")
    instance = study.instances[1]
    url = _url(gateway, "dcmqrscp", study, instance, "/frames/1?accept=image/jhc")
    first = httpx.get(url, headers={"Range": "bytes=0-4095"}, timeout=120)
    assert first.status_code == 206, first.text
    total = int(first.headers["content-range"].split("/")[1])
    assert first.headers["content-range"] == f"bytes 0-4095/{total}"
    assert first.headers["content-type"].startswith("image/jphc")
    assert len(first.content) == 4096 < total
    rest = httpx.get(url, headers={"Range": "bytes=4096-"}, timeout=120)
    assert rest.status_code == 206, rest.text
    assert rest.headers["content-range"] == f"bytes 4096-{total - 1}/{total}"
    whole = httpx.get(url, timeout=120)
    assert whole.status_code == 200
    assert whole.headers["accept-ranges"] == "bytes"
    assert first.content + rest.content == whole.content
    again = httpx.get(url, headers={"Range": "bytes=0-4095"}, timeout=120)
    assert again.content == first.content  # a stable encoding
    # The prefix alone decodes, to the frame's size (what the viewer shows first).
    assert imagecodecs.htj2k_decode(first.content, resilient=True).shape == (512, 512)


def test_range_outside_the_frame_is_416(gateway: RunningGateway, corpus: Corpus) -> None:
    study = corpus.study("big_ct")
    instance = study.instances[2]
    url = _url(gateway, "dcmqrscp", study, instance, "/frames/1?accept=image/jhc")
    whole = httpx.get(url, timeout=120)
    size = len(whole.content)
    response = httpx.get(url, headers={"Range": f"bytes={size}-"}, timeout=120)
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"


def test_byte_range_of_a_native_single_part_frame(gateway: RunningGateway,
                                                  corpus: Corpus) -> None:
    study = corpus.study("mr_multiframe")
    instance = study.instances[0]
    url = _url(gateway, "dcmqrscp", study, instance, "/frames/3")
    response = httpx.get(url, headers={"Accept": OCTET, "Range": "bytes=10-19"}, timeout=120)
    assert response.status_code == 206, response.text
    reference = pydicom.dcmread(instance.path).pixel_array[2]
    assert response.content == reference.astype(reference.dtype.newbyteorder("<")).tobytes()[
        10:20]


def test_multipart_frames_ignore_range(gateway: RunningGateway, corpus: Corpus) -> None:
    """Ranges apply to a bare frame; a multipart body is sent whole (RFC 9110 14.2)."""
    study = corpus.study("mr_multiframe")
    instance = study.instances[0]
    response = httpx.get(_url(gateway, "dcmqrscp", study, instance, "/frames/3"),
                         headers={"Accept": NATIVE, "Range": "bytes=0-9"}, timeout=120)
    assert response.status_code == 200
    assert "content-range" not in response.headers


def test_accept_parameter_overrides_the_header_on_rendered_frames(
        gateway: RunningGateway, corpus: Corpus) -> None:
    study = corpus.study("mr_multiframe")
    instance = study.instances[0]
    url = _url(gateway, "dcmqrscp", study, instance, "/frames/10/rendered?accept=image/jpeg")
    response = httpx.get(url, headers={"Accept": OCTET}, timeout=120)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(response.content)).format == "JPEG"


def test_accept_parameter_overrides_the_header_on_frames(gateway: RunningGateway,
                                                         corpus: Corpus) -> None:
    study = corpus.study("mr_multiframe")
    instance = study.instances[0]
    response = httpx.get(_url(gateway, "dcmqrscp", study, instance, "/frames/1?accept=image/jhc"),
                         headers={"Accept": NATIVE}, timeout=120)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("image/jphc")


@pytest.mark.parametrize(("tail", "status"), [
    ("/frames/1?accept=text/html", 406),
    ("/frames/1/rendered?accept=text/html", 406),
    ("/frames/1?accept=%22", 400),
    ("/frames/1/rendered?accept=%22", 400),
])
def test_bad_accept_parameter(gateway: RunningGateway, corpus: Corpus, tail: str,
                              status: int) -> None:
    study = corpus.study("mr_multiframe")
    instance = study.instances[0]
    response = httpx.get(_url(gateway, "dcmqrscp", study, instance, tail),
                         headers={"Accept": OCTET}, timeout=120)
    assert response.status_code == status, response.text


def test_a_frame_stored_as_htj2k_rpcl_is_sent_as_stored(tmp_path: Path) -> None:
    """A real .202 instance (made by the gateway's encoder) on a PACS that keeps it
    as it is: its frame goes out untouched, ranges included. (Orthanc 1.10 cannot
    send HTJ2K at all, and dcmqrscp stores only uncompressed syntaxes.)"""
    source = instance_from_file(pydicom_file("CT_small.dcm"))
    encoded = transcode_instance(source, uid.HTJ2KLosslessRPCL)
    path = tmp_path / "ct_rpcl.dcm"
    path.write_bytes(b"".join(part10_chunks(encoded)))
    stored = pydicom.dcmread(path)
    frame = next(generate_frames(stored.PixelData, number_of_frames=1))
    store_port = free_port()
    pacs = DemoPacs(tmp_path / "pacs", ae_title="HTJ2KPACS",
                    move_destinations={GATEWAY_AE_TITLE: ("127.0.0.1", store_port)})
    pacs.add_files([path])
    pacs.start()
    node = PacsNode(name="htj2k", host="127.0.0.1", port=pacs.port, ae_title="HTJ2KPACS",
                    retrieve="c-get", timeout=15)
    try:
        with running_gateway(make_settings((node,), store_port=store_port,
                                           tmp=tmp_path)) as gateway:
            url = (f"{gateway.dicomweb(None)}/studies/{stored.StudyInstanceUID}/series/"
                   f"{stored.SeriesInstanceUID}/instances/{stored.SOPInstanceUID}/frames/1"
                   "?accept=image/jhc")
            response = httpx.get(url, timeout=120)
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == (
                f"image/jphc; transfer-syntax={uid.HTJ2KLosslessRPCL}")
            assert response.content == frame
            prefix = httpx.get(url, headers={"Range": "bytes=0-99"}, timeout=120)
            assert prefix.status_code == 206
            assert prefix.content == frame[:100]
    finally:
        pacs.stop()


def test_lossy_htj2k_when_named(gateway: RunningGateway, corpus: Corpus) -> None:
    """.203 only when the client names it: a close frame, an instance marked lossy."""
    study = corpus.study("big_ct")
    instance = study.instances[3]
    url = _url(gateway, "dcmqrscp", study, instance)
    lossy = f"image/jphc; transfer-syntax={uid.HTJ2K}"
    frame = httpx.get(f"{url}/frames/1", headers={"Accept": lossy}, timeout=120)
    assert frame.status_code == 200, frame.text
    assert frame.headers["content-type"] == f"image/jphc; transfer-syntax={uid.HTJ2K}"
    reference = _native(f"{url}/frames/1", instance)
    decoded = openjpeg.decode(frame.content)
    assert decoded.dtype == reference.dtype
    assert 0 < np.abs(decoded.astype(int) - reference).max() <= 16
    whole = httpx.get(url, headers={"Accept": 'multipart/related; type="application/dicom"; '
                                              f"transfer-syntax={uid.HTJ2K}"}, timeout=120)
    assert whole.status_code == 200, whole.text
    (part,) = parse_multipart(whole.headers["content-type"], whole.content)
    received = pydicom.dcmread(io.BytesIO(part.body))
    assert received.file_meta.TransferSyntaxUID == uid.HTJ2K
    assert received.LossyImageCompression == "01"
    assert received.LossyImageCompressionMethod == "ISO_15444_15"
