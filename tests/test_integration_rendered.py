"""Rendered images and thumbnails through the gateway, as OHIF asks for them."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image

from corpus import Corpus
from dicomweb_gw.codecs.frames import FrameReader
from dicomweb_gw.codecs.render import RenderParams, Viewport, render_frame
from gateway_fixtures import RunningGateway

pytestmark = pytest.mark.pacs


def _image(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    return Image.open(io.BytesIO(response.content))


def test_ohif_series_thumbnail(gateway: RunningGateway, corpus: Corpus) -> None:
    study = corpus.study("big_ct")
    url = (f"{gateway.dicomweb('orthanc')}/studies/{study.study_uid}/series/"
           f"{study.series[0].series_uid}/thumbnail?viewport=256,256")
    response = httpx.get(url, headers={"Accept": "image/jpeg"}, timeout=120)
    image = _image(response)
    assert response.headers["content-type"] == "image/jpeg"
    assert image.format == "JPEG"
    assert max(image.size) == 256


@pytest.mark.parametrize("node", ["dcmqrscp", "orthanc"])
def test_rendered_instance_with_accept_parameter(gateway: RunningGateway, corpus: Corpus,
                                                 node: str) -> None:
    study = corpus.study("ct_small")
    series = study.series[-1]
    instance = series.instances[0]
    url = (f"{gateway.dicomweb(node)}/studies/{study.study_uid}/series/{series.series_uid}"
           f"/instances/{instance.sop_instance_uid}/rendered?accept=image/jpeg")
    image = _image(httpx.get(url, timeout=60))
    assert image.size == (128, 128)  # CT_small's own size: no viewport, no scaling
    assert np.asarray(image).std() > 5  # an image, not a flat black or grey square


def test_rendered_frames_of_a_multiframe_differ(gateway: RunningGateway, corpus: Corpus) -> None:
    study = corpus.study("mr_multiframe")
    series = study.series[0]
    base = (f"{gateway.dicomweb('dcmqrscp')}/studies/{study.study_uid}/series/"
            f"{series.series_uid}/instances/{series.instances[0].sop_instance_uid}")
    third = np.asarray(_image(httpx.get(f"{base}/frames/3/rendered",
                                        headers={"Accept": "image/png"}, timeout=60)))
    fourth = np.asarray(_image(httpx.get(f"{base}/frames/4/rendered",
                                         headers={"Accept": "image/png"}, timeout=60)))
    assert third.shape == fourth.shape
    assert not np.array_equal(third, fourth)


def test_colour_jpeg_renders_in_colour(gateway: RunningGateway, corpus: Corpus) -> None:
    study = corpus.study("jpeg_colour")
    series = study.series[0]
    url = (f"{gateway.dicomweb('orthanc')}/studies/{study.study_uid}/series/"
           f"{series.series_uid}/instances/{series.instances[0].sop_instance_uid}/rendered")
    image = _image(httpx.get(url, headers={"Accept": "image/png"}, timeout=60)).convert("RGB")
    pixels = np.asarray(image).astype(int)
    assert np.abs(pixels[..., 0] - pixels[..., 2]).max() > 30  # not grey


@pytest.mark.parametrize(("query", "accept", "status"), [
    ("viewport=0,10", "image/jpeg", 400),
    ("viewport=abc", "image/jpeg", 400),
    ("quality=101", "image/jpeg", 400),
    ("", "image/tiff", 406),
])
def test_bad_rendered_requests(gateway: RunningGateway, corpus: Corpus, query: str,
                               accept: str, status: int) -> None:
    study = corpus.study("ct_small")
    series = study.series[-1]
    url = (f"{gateway.dicomweb('orthanc')}/studies/{study.study_uid}/series/"
           f"{series.series_uid}/instances/{series.instances[0].sop_instance_uid}/rendered")
    response = httpx.get(f"{url}?{query}", headers={"Accept": accept}, timeout=60)
    assert response.status_code == status
    assert response.json()["message"]


def test_monochrome1_through_the_pacs_renders_as_locally(gateway: RunningGateway,
                                                         corpus: Corpus) -> None:
    # The codec tests prove MONOCHROME1 is inverted; this proves the trip through the
    # PACS and the cache keeps what that needs (photometric, window, pixel values).
    study = corpus.study("cr_monochrome1")
    series = study.series[0]
    instance = series.instances[0]
    url = (f"{gateway.dicomweb('dcmqrscp')}/studies/{study.study_uid}/series/"
           f"{series.series_uid}/instances/{instance.sop_instance_uid}/rendered?viewport=256,256")
    through_pacs = np.asarray(_image(httpx.get(url, headers={"Accept": "image/png"},
                                               timeout=60)))
    header = pydicom.dcmread(instance.path, stop_before_pixels=True)
    assert header.PhotometricInterpretation == "MONOCHROME1"
    local = render_frame(FrameReader(instance.path), 1, header,
                         RenderParams(media_type="image/png", viewport=Viewport(256, 256)))
    assert np.array_equal(through_pacs, np.asarray(Image.open(io.BytesIO(local))))
