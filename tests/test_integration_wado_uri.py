"""WADO-URI (PS3.18 9) through the gateway: the links a RIS puts in a report or an e-mail."""

from __future__ import annotations

import io
from urllib.parse import urlencode

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

from corpus import Corpus, InstanceInfo, StudyInfo
from gateway_fixtures import RunningGateway
from multipart_helpers import stow_dataset

pytestmark = pytest.mark.pacs

# What a RIS template looks like: the gateway's address and three UIDs filled in.
RIS_TEMPLATE = ("{base}/wado?requestType=WADO&studyUID={study}&seriesUID={series}"
                "&objectUID={object}")


def _link(gateway: RunningGateway, study: StudyInfo, instance: InstanceInfo,
          node: str | None = None, **params: str | int) -> str:
    series = next(s for s in study.series if instance in s.instances)
    base = gateway.url if node is None else f"{gateway.url}/pacs/{node}"
    link = RIS_TEMPLATE.format(base=base, study=study.study_uid, series=series.series_uid,
                               object=instance.sop_instance_uid)
    return f"{link}&{urlencode(params)}" if params else link


def _rs_url(gateway: RunningGateway, study: StudyInfo, instance: InstanceInfo,
            node: str | None = None) -> str:
    series = next(s for s in study.series if instance in s.instances)
    return (f"{gateway.dicomweb(node)}/studies/{study.study_uid}/series/{series.series_uid}"
            f"/instances/{instance.sop_instance_uid}")


def _get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=60)


def _image(response: httpx.Response, media_type: str) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    return Image.open(io.BytesIO(response.content))


def _dicom(response: httpx.Response) -> Dataset:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom"
    assert response.headers["content-disposition"].startswith("attachment;")
    return pydicom.dcmread(io.BytesIO(response.content))


def _ct(corpus: Corpus) -> tuple[StudyInfo, InstanceInfo]:
    study = corpus.study("ct_small")
    return study, study.series[-1].instances[0]


# -- the two things a RIS link must do ---------------------------------------------


@pytest.mark.parametrize("node", [None, "orthanc"])
def test_link_opens_a_jpeg_in_the_browser(gateway: RunningGateway, corpus: Corpus,
                                          node: str | None) -> None:
    study, instance = _ct(corpus)
    # A browser's own Accept header must not get in the way.
    response = httpx.get(_link(gateway, study, instance, node), timeout=60,
                         headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    image = _image(response, "image/jpeg")
    assert image.format == "JPEG"
    assert image.size == (128, 128)  # CT_small's own size
    assert np.asarray(image).std() > 5
    # One rendering pipeline: the same bytes as WADO-RS rendered.
    rendered = _get(_rs_url(gateway, study, instance, node) + "/rendered")
    assert response.content == rendered.content


@pytest.mark.parametrize("node", [None, "orthanc"])
def test_link_downloads_the_dicom_file(gateway: RunningGateway, corpus: Corpus,
                                       node: str | None) -> None:
    study, instance = _ct(corpus)
    response = _get(_link(gateway, study, instance, node, contentType="application/dicom"))
    ds = _dicom(response)
    assert f'filename="{instance.sop_instance_uid}.dcm"' in response.headers["content-disposition"]
    original = pydicom.dcmread(instance.path)
    assert ds.SOPInstanceUID == instance.sop_instance_uid
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.PixelData == original.PixelData
    assert ds.PatientName == original.PatientName


def test_implicit_vr_instance_comes_as_explicit_by_default(gateway: RunningGateway,
                                                           corpus: Corpus) -> None:
    study = corpus.study("mr_implicit")
    instance = study.instances[0]
    ds = _dicom(_get(_link(gateway, study, instance, contentType="application/dicom")))
    assert instance.transfer_syntax_uid != ExplicitVRLittleEndian
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.PixelData == pydicom.dcmread(instance.path).PixelData


def test_transfer_syntax_parameter_transcodes(gateway: RunningGateway, corpus: Corpus) -> None:
    study, instance = _ct(corpus)
    ds = _dicom(_get(_link(gateway, study, instance, "orthanc", contentType="application/dicom",
                           transferSyntax=RLELossless)))
    assert ds.file_meta.TransferSyntaxUID == RLELossless
    assert np.array_equal(ds.pixel_array, pydicom.dcmread(instance.path).pixel_array)


# -- rendering parameters ------------------------------------------------------------


def test_png_and_gif(gateway: RunningGateway, corpus: Corpus) -> None:
    study, instance = _ct(corpus)
    assert _image(_get(_link(gateway, study, instance, contentType="image/png")),
                  "image/png").format == "PNG"
    assert _image(_get(_link(gateway, study, instance, contentType="image/gif")),
                  "image/gif").format == "GIF"


def test_rows_and_columns_fit_keeping_the_aspect(gateway: RunningGateway,
                                                 corpus: Corpus) -> None:
    study = corpus.study("big_ct")
    instance = study.instances[0]
    assert _image(_get(_link(gateway, study, instance, rows=256)),
                  "image/jpeg").size == (256, 256)
    assert _image(_get(_link(gateway, study, instance, rows=300, columns=100)),
                  "image/jpeg").size == (100, 100)


def test_region_is_a_crop_of_the_whole(gateway: RunningGateway, corpus: Corpus) -> None:
    study, instance = _ct(corpus)
    whole = np.asarray(_image(_get(_link(gateway, study, instance, contentType="image/png")),
                              "image/png"))
    region = np.asarray(_image(_get(_link(gateway, study, instance, contentType="image/png",
                                          region="0.25,0.5,0.75,1")), "image/png"))
    assert region.shape == (64, 64)
    assert np.array_equal(region, whole[64:128, 32:96])


def test_window_and_quality_match_wado_rs(gateway: RunningGateway, corpus: Corpus) -> None:
    study, instance = _ct(corpus)
    uri = _get(_link(gateway, study, instance, contentType="image/png", windowCenter=40,
                     windowWidth=400))
    rs = httpx.get(_rs_url(gateway, study, instance) + "/rendered?window=40,400",
                   headers={"Accept": "image/png"}, timeout=60)
    assert uri.status_code == rs.status_code == 200
    assert uri.content == rs.content
    small = _get(_link(gateway, study, instance, imageQuality=5))
    large = _get(_link(gateway, study, instance, imageQuality=95))
    assert len(small.content) < len(large.content)


def test_multiframe(gateway: RunningGateway, corpus: Corpus) -> None:
    study = corpus.study("mr_multiframe")
    instance = study.instances[0]
    # No contentType: a multi-frame image is not a single-frame image, so application/dicom.
    ds = _dicom(_get(_link(gateway, study, instance)))
    assert int(ds.NumberOfFrames) == 10
    third = _get(_link(gateway, study, instance, frameNumber=3, contentType="image/png"))
    rs = httpx.get(_rs_url(gateway, study, instance) + "/frames/3/rendered",
                   headers={"Accept": "image/png"}, timeout=60)
    assert third.status_code == 200
    assert third.content == rs.content
    assert _image(_get(_link(gateway, study, instance, frameNumber=4)), "image/jpeg")
    missing = _get(_link(gateway, study, instance, frameNumber=11))
    assert missing.status_code == 404
    assert "10 frames" in missing.json()["message"]


# -- anonymize=yes ----------------------------------------------------------------------


def test_anonymized_file_lacks_the_identity_but_keeps_the_pixels(gateway: RunningGateway,
                                                                 corpus: Corpus) -> None:
    study = corpus.study("ct_small")
    first, second = study.series[-1].instances[:2]
    responses = [_get(_link(gateway, study, inst, contentType="application/dicom",
                            anonymize="yes")) for inst in (first, second)]
    one, two = (_dicom(response) for response in responses)
    original = pydicom.dcmread(first.path)
    assert not one.get("PatientName")
    assert one.get("PatientID") != original.PatientID
    assert not one.get("AccessionNumber")
    assert "StudyDescription" not in one
    assert one.PatientIdentityRemoved == "YES"
    assert one.StudyInstanceUID != study.study_uid
    assert one.SOPInstanceUID != first.sop_instance_uid
    assert first.sop_instance_uid not in responses[0].headers["content-disposition"]
    assert one.PixelData == original.PixelData
    # Consistent within the set: two instances of one study stay one (new) study.
    assert one.StudyInstanceUID == two.StudyInstanceUID
    assert one.SOPInstanceUID != two.SOPInstanceUID


# -- links that name only the object ------------------------------------------------


def _object_link(gateway: RunningGateway, node: str | None, **params: str) -> str:
    base = gateway.url if node is None else f"{gateway.url}/pacs/{node}"
    return f"{base}/wado?" + urlencode({"requestType": "WADO", **params})


@pytest.mark.parametrize("node", [None, "orthanc"])  # None: dcmqrscp, the default node
def test_object_uid_alone_is_found(gateway: RunningGateway, corpus: Corpus,
                                   node: str | None) -> None:
    # RIS links in the wild leave out studyUID and seriesUID: one C-FIND finds them.
    study = corpus.study("mr_implicit")
    instance = study.series[0].instances[1]
    link = _object_link(gateway, node, objectUID=instance.sop_instance_uid)
    dicom = _dicom(_get(link + "&contentType=application%2Fdicom"))
    assert dicom.SOPInstanceUID == instance.sop_instance_uid
    assert dicom.StudyInstanceUID == study.study_uid
    image = _image(_get(link), "image/jpeg")  # the default for a single-frame image
    assert image.size == (64, 64)  # MR_small's own size


@pytest.mark.parametrize("node", [None, "orthanc"])
def test_object_uid_with_study_uid_only(gateway: RunningGateway, corpus: Corpus,
                                        node: str | None) -> None:
    study, instance = _ct(corpus)
    # A template whose series placeholder was left empty.
    link = _object_link(gateway, node, studyUID=study.study_uid, seriesUID="",
                        objectUID=instance.sop_instance_uid, contentType="application/dicom")
    assert _dicom(_get(link)).SOPInstanceUID == instance.sop_instance_uid


@pytest.mark.parametrize("node", [None, "orthanc"])
def test_object_uid_alone_that_is_not_there_is_404(gateway: RunningGateway, corpus: Corpus,
                                                   node: str | None) -> None:
    unknown = generate_uid()
    response = _get(_object_link(gateway, node, objectUID=unknown))
    assert response.status_code == 404, response.text
    assert response.json()["message"].startswith(f"instance {unknown} not found on PACS")
    # Under a study it is not in: not found either, naming the study the link gave.
    study = corpus.study("mr_implicit")
    _, elsewhere = _ct(corpus)
    response = _get(_object_link(gateway, node, studyUID=study.study_uid,
                                 objectUID=elsewhere.sop_instance_uid))
    assert response.status_code == 404, response.text
    assert f"in study {study.study_uid} not found" in response.json()["message"]


# -- objects that are not single images ---------------------------------------------


def _fresh(name: str) -> Dataset:
    ds = pydicom.dcmread(get_testdata_file(name, download=False))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds


def _query(ds: Dataset, **params: str) -> str:
    return urlencode({"requestType": "WADO", "studyUID": ds.StudyInstanceUID,
                      "seriesUID": ds.SeriesInstanceUID, "objectUID": ds.SOPInstanceUID,
                      **params})


def test_structured_report(gateway: RunningGateway) -> None:
    sr = _fresh("test-SR.dcm")
    stow_dataset(gateway.dicomweb('orthanc'), sr)
    url = f"{gateway.url}/pacs/orthanc/wado?"
    as_jpeg = _get(url + _query(sr, contentType="image/jpeg"))
    assert as_jpeg.status_code == 406
    assert "no pixel data" in as_jpeg.json()["message"]
    assert _dicom(_get(url + _query(sr))).SOPClassUID == sr.SOPClassUID  # the default
    fallback = _dicom(_get(url + _query(sr, contentType="image/jpeg, application/dicom")))
    assert fallback.SOPInstanceUID == sr.SOPInstanceUID


def test_burned_in_annotation_is_not_sent_anonymized(gateway: RunningGateway) -> None:
    ct = _fresh("CT_small.dcm")
    ct.BurnedInAnnotation = "YES"
    stow_dataset(gateway.dicomweb('orthanc'), ct)
    url = f"{gateway.url}/pacs/orthanc/wado?"
    for content_type in ("application/dicom", "image/jpeg"):
        refused = _get(url + _query(ct, contentType=content_type, anonymize="yes"))
        assert refused.status_code == 406, refused.text
        assert "Burned In Annotation" in refused.json()["message"]
    assert _get(url + _query(ct)).status_code == 200


# -- bad requests ---------------------------------------------------------------------


@pytest.mark.parametrize(("params", "status", "words"), [
    ({"requestType": None}, 400, "requestType is required"),
    ({"requestType": "WADO-RS"}, 400, "requestType 'WADO-RS'"),
    ({"objectUID": None}, 400, "objectUID is required"),
    ({"seriesUID": "1.2.abc"}, 400, "seriesUID '1.2.abc'"),
    ({"objectUID": "1.2.3.4.5.6.7.8.9"}, 404, "not found"),
    ({"contentType": "video/mpeg"}, 406, "video/mpeg"),
    ({"contentType": "application/dicom", "rows": "10"}, 400, "rows"),
    ({"frameNumber": "0"}, 400, "frameNumber"),
    ({"rows": "big"}, 400, "rows"),
    ({"region": "0.5,0,0.2,1"}, 400, "region"),
    ({"windowCenter": "40"}, 400, "windowWidth"),
    ({"imageQuality": "101"}, 400, "imageQuality"),
    ({"anonymize": "no"}, 400, "anonymize"),
    ({"presentationUID": "1.2.3"}, 400, "presentation"),
])
def test_bad_requests(gateway: RunningGateway, corpus: Corpus, params: dict[str, str | None],
                      status: int, words: str) -> None:
    study, instance = _ct(corpus)
    series = study.series[-1]
    query: dict[str, str | None] = {"requestType": "WADO", "studyUID": study.study_uid,
                                    "seriesUID": series.series_uid,
                                    "objectUID": instance.sop_instance_uid, **params}
    url = f"{gateway.url}/wado?" + urlencode({k: v for k, v in query.items() if v is not None})
    response = _get(url)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status
    assert words in body["message"]
