"""Transfer-syntax negotiation and transcoding through the real gateway and PACS.

Every part is decoded the way a viewer would: from its own Content-Type
(media type and transfer-syntax), never from what the test asked for.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from pydicom import uid
from pydicom.encaps import encapsulate
from pydicom.pixels.decoders.base import get_decoder

from corpus import Corpus, InstanceInfo, StudyInfo
from dicomweb_gw.codecs.mediatypes import frame_media_type
from gateway_fixtures import RunningGateway
from multipart_helpers import ReceivedPart, parse_multipart

pytestmark = pytest.mark.pacs
MEDIA_OF = {uid.RLELossless: "image/dicom-rle", uid.JPEGLSLossless: "image/jls",
            uid.JPEG2000Lossless: "image/jp2"}


def _url(gateway: RunningGateway, node: str, study: StudyInfo, instance: InstanceInfo,
         frames: str | None = None) -> str:
    series = next(s for s in study.series if instance in s.instances)
    url = (f"{gateway.dicomweb(node)}/studies/{study.study_uid}/series/{series.series_uid}"
           f"/instances/{instance.sop_instance_uid}")
    return url if frames is None else f"{url}/frames/{frames}"


def _get(url: str, accept: str) -> httpx.Response:
    return httpx.get(url, headers={"Accept": accept}, timeout=60)


def _decode_part(part: ReceivedPart, source: pydicom.Dataset) -> np.ndarray[Any, Any]:
    """The part's pixels, decoded according to its own label."""
    content_type = part.headers["content-type"]
    media_type = content_type.split(";")[0].strip()
    match = re.search(r'transfer-syntax="?([0-9.]+)"?', content_type)
    assert match, f"part label {content_type!r} has no transfer-syntax"
    syntax = match.group(1)
    rows, columns = int(source.Rows), int(source.Columns)
    spp = int(source.SamplesPerPixel)
    if media_type == "application/octet-stream":
        assert syntax == uid.ExplicitVRLittleEndian
        kind = "i" if source.PixelRepresentation else "u"
        dtype = np.dtype(f"<{kind}{source.BitsAllocated // 8}")
        shape = (rows, columns, spp) if spp > 1 else (rows, columns)
        return np.frombuffer(part.body, dtype=dtype).reshape(shape)
    assert frame_media_type(syntax) == media_type, f"{content_type!r}: foreign syntax"
    photometric = source.PhotometricInterpretation
    array, _ = get_decoder(syntax).as_array(
        encapsulate([part.body]), rows=rows, columns=columns, samples_per_pixel=spp,
        bits_allocated=source.BitsAllocated, bits_stored=source.BitsStored,
        pixel_representation=source.PixelRepresentation,
        photometric_interpretation="RGB" if spp == 3 else photometric,
        number_of_frames=1, planar_configuration=0)
    return array


@pytest.fixture(scope="module")
def mr(corpus: Corpus) -> tuple[StudyInfo, InstanceInfo, pydicom.Dataset]:
    study = corpus.study("mr_multiframe")
    instance = study.instances[0]
    return study, instance, pydicom.dcmread(instance.path)


@pytest.mark.parametrize("node", ["orthanc", "dcmqrscp"])
@pytest.mark.parametrize("accept", [
    'multipart/related; type="image/jls"',
    f"multipart/related; type=image/jp2; transfer-syntax={uid.JPEG2000Lossless}",
    f'multipart/related; type="image/dicom-rle; transfer-syntax={uid.RLELossless}"',
    "multipart/related; type=image/x-dicom-rle",
])
def test_native_frames_encoded_on_request(gateway: RunningGateway, mr: Any, accept: str,
                                          node: str) -> None:
    study, instance, source = mr
    response = _get(_url(gateway, node, study, instance, "7,2"), accept)
    assert response.status_code == 200, response.text
    parts = parse_multipart(response.headers["content-type"], response.content)
    wanted = next(s for s, m in MEDIA_OF.items() if m in accept.replace("x-dicom", "dicom"))
    for part, number in zip(parts, (7, 2), strict=True):
        assert part.headers["content-type"] == f"{MEDIA_OF[wanted]}; transfer-syntax={wanted}"
        assert np.array_equal(_decode_part(part, source), source.pixel_array[number - 1])


@pytest.mark.parametrize("index", [0, 1, 2])  # stored as RLE, JPEG-LS, JPEG 2000
@pytest.mark.parametrize("target", [uid.RLELossless, uid.JPEGLSLossless, uid.JPEG2000Lossless])
def test_compressed_frames_reencoded(gateway: RunningGateway, corpus: Corpus, mr: Any,
                                     index: int, target: str) -> None:
    study = corpus.study("mr_multiframe_compressed")
    instance = study.series[0].instances[index]
    source = mr[2]
    accept = f'multipart/related; type="{MEDIA_OF[target]}"; transfer-syntax={target}'
    response = _get(_url(gateway, "orthanc", study, instance, "4"), accept)
    assert response.status_code == 200, response.text
    (part,) = parse_multipart(response.headers["content-type"], response.content)
    assert part.headers["content-type"] == f"{MEDIA_OF[target]}; transfer-syntax={target}"
    assert np.array_equal(_decode_part(part, source), source.pixel_array[3])


def test_lossy_colour_frames_to_jpeg_ls(gateway: RunningGateway, corpus: Corpus) -> None:
    """A JPEG baseline cine frame (YBR) decodes to RGB, encoded losslessly from there."""
    study = corpus.study("us_multiframe_jpeg")
    instance = study.instances[0]
    source = pydicom.dcmread(instance.path)
    response = _get(_url(gateway, "orthanc", study, instance, "60"), "image/jls")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == f"image/jls; transfer-syntax={uid.JPEGLSLossless}"
    part = ReceivedPart({"content-type": response.headers["content-type"]}, response.content)
    expected = pydicom.pixels.pixel_array(instance.path, index=59)
    assert np.array_equal(_decode_part(part, source), expected)


def test_instance_retrieved_as_jpeg_ls(gateway: RunningGateway, mr: Any) -> None:
    study, instance, source = mr
    accept = ('multipart/related; type="application/dicom"; '
              f"transfer-syntax={uid.JPEGLSLossless}")
    response = _get(_url(gateway, "dcmqrscp", study, instance), accept)
    assert response.status_code == 200, response.text
    (part,) = parse_multipart(response.headers["content-type"], response.content)
    assert part.headers["content-type"] == (
        f"application/dicom; transfer-syntax={uid.JPEGLSLossless}")
    received = part.dataset()
    assert received.file_meta.TransferSyntaxUID == uid.JPEGLSLossless
    assert received.SOPInstanceUID == instance.sop_instance_uid
    assert received["PixelData"].is_undefined_length
    assert np.array_equal(received.pixel_array, source.pixel_array)


def test_colour_instance_as_rle_has_a_consistent_pixel_module(gateway: RunningGateway,
                                                              corpus: Corpus) -> None:
    study = corpus.study("jpeg_colour")
    instance = study.instances[0]
    accept = f'multipart/related; type="application/dicom"; transfer-syntax={uid.RLELossless}'
    response = _get(_url(gateway, "orthanc", study, instance), accept)
    assert response.status_code == 200, response.text
    (part,) = parse_multipart(response.headers["content-type"], response.content)
    received = part.dataset()
    assert received.file_meta.TransferSyntaxUID == uid.RLELossless
    # A YBR_FULL JPEG decodes to YBR_FULL samples, as its metadata says (photometric.py).
    assert (received.PhotometricInterpretation, received.PlanarConfiguration) == ("YBR_FULL", 1)
    assert np.array_equal(received.pixel_array, pydicom.dcmread(instance.path).pixel_array)


def test_study_accept_with_q_values(gateway: RunningGateway, corpus: Corpus) -> None:
    """Preferences: MPEG-2 (never producible here) > JPEG 2000 > Explicit VR LE."""
    study = corpus.study("mr_multiframe_compressed")
    accept = (f'multipart/related; type="application/dicom"; transfer-syntax={uid.MPEG2MPML}, '
              f'multipart/related; type="application/dicom"; transfer-syntax='
              f"{uid.JPEG2000Lossless}; q=0.8, multipart/related; "
              'type="application/dicom"; q=0.1')
    response = _get(f"{gateway.dicomweb('orthanc')}/studies/{study.study_uid}", accept)
    assert response.status_code == 200, response.text
    parts = parse_multipart(response.headers["content-type"], response.content)
    assert len(parts) == len(study.instances)
    for part in parts:
        received = part.dataset()
        assert received.file_meta.TransferSyntaxUID == uid.JPEG2000Lossless
        assert part.headers["content-type"] == (
            f"application/dicom; transfer-syntax={uid.JPEG2000Lossless}")
        reference = pydicom.dcmread(corpus.instance(received.SOPInstanceUID).path)
        assert np.array_equal(received.pixel_array, reference.pixel_array)


def test_frames_accept_with_q_values(gateway: RunningGateway, mr: Any) -> None:
    study, instance, source = mr
    accept = ('multipart/related; type="image/jpeg", '  # not producible from native
              "multipart/related; type=image/jp2; q=0.4, "
              'multipart/related; type="image/dicom-rle"; q=0.6, '
              'multipart/related; type="application/octet-stream"; q=0.5')
    response = _get(_url(gateway, "orthanc", study, instance, "5"), accept)
    assert response.status_code == 200, response.text
    (part,) = parse_multipart(response.headers["content-type"], response.content)
    assert part.headers["content-type"] == f"image/dicom-rle; transfer-syntax={uid.RLELossless}"
    assert np.array_equal(_decode_part(part, source), source.pixel_array[4])


def test_unsupported_instance_syntax_is_406_listing_options(gateway: RunningGateway,
                                                            mr: Any) -> None:
    study, instance, _ = mr
    accept = f'multipart/related; type="application/dicom"; transfer-syntax={uid.MPEG2MPML}'
    response = _get(_url(gateway, "orthanc", study, instance), accept)
    assert response.status_code == 406
    message = response.json()["message"]
    for offer in ("transfer-syntax=*", uid.ExplicitVRLittleEndian, uid.JPEGLSLossless,
                  uid.JPEG2000Lossless, uid.RLELossless):
        assert offer in message


def test_unproducible_frame_type_is_406_listing_options(gateway: RunningGateway,
                                                        corpus: Corpus) -> None:
    study = corpus.study("mr_multiframe_compressed")
    instance = study.series[0].instances[2]  # JPEG 2000 lossless
    response = _get(_url(gateway, "orthanc", study, instance, "1"),
                    'multipart/related; type="image/jpeg"')
    assert response.status_code == 406
    message = response.json()["message"]
    assert f"image/jp2; transfer-syntax={uid.JPEG2000Lossless}" in message
    assert f"image/jls; transfer-syntax={uid.JPEGLSLossless}" in message
