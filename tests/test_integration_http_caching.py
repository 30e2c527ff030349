"""HTTP caching and compression (#18 parts 2 and 3) through the gateway, against real PACS."""

from __future__ import annotations

import json
import re
import zlib
from contextlib import ExitStack
from pathlib import Path

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from corpus import Corpus, InstanceInfo, StudyInfo
from gateway_fixtures import RunningGateway, make_settings, node_for, running_gateway
from multipart_helpers import stow_dataset
from pacs_fixtures import free_port, running_dcmqrscp

pytestmark = pytest.mark.pacs
DICOM_JSON = "application/dicom+json"
OCTET = "application/octet-stream"


def _instance_url(base: str, study: StudyInfo, instance: InstanceInfo,
                  study_uid: str | None = None) -> str:
    series = next(s for s in study.series if instance in s.instances)
    return (f"{base}/studies/{study_uid or study.study_uid}/series/{series.series_uid}"
            f"/instances/{instance.sop_instance_uid}")


@pytest.mark.parametrize("node", ["dcmqrscp", "orthanc"])
def test_etag_is_stable_and_revalidates(gateway: RunningGateway, corpus: Corpus,
                                        node: str) -> None:
    study = corpus.study("ct_small")
    url = _instance_url(gateway.dicomweb(node), study, study.instances[1])
    with httpx.Client(timeout=60) as client:
        for suffix, accept in (("/metadata", DICOM_JSON), ("/frames/1", OCTET),
                               ("/rendered", "image/jpeg")):
            first = client.get(url + suffix, headers={"Accept": accept})
            second = client.get(url + suffix, headers={"Accept": accept})
            assert first.status_code == 200, first.text
            assert first.headers["etag"] == second.headers["etag"]
            assert first.headers["cache-control"] == "private, max-age=86400"
            again = client.get(url + suffix, headers={"Accept": accept,
                                                      "If-None-Match": first.headers["etag"]})
            assert again.status_code == 304
            assert again.content == b""


def test_no_304_for_an_instance_under_the_wrong_study(gateway: RunningGateway,
                                                      corpus: Corpus) -> None:
    study, other = corpus.study("ct_small"), corpus.study("mr_implicit")
    instance = study.instances[0]
    base = gateway.dicomweb("orthanc")
    with httpx.Client(timeout=60) as client:
        good = client.get(_instance_url(base, study, instance) + "/metadata",
                          headers={"Accept": DICOM_JSON})
        assert good.status_code == 200
        wrong = _instance_url(base, study, instance, study_uid=other.study_uid) + "/metadata"
        for condition in ("*", good.headers["etag"]):
            answer = client.get(wrong, headers={"Accept": DICOM_JSON,
                                                "If-None-Match": condition})
            assert answer.status_code == 404, answer.text
            assert "etag" not in answer.headers


def _new_instance(study_uid: str, series_uid: str, number: int) -> Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientName, ds.PatientID = "Etag^Stow", f"ETAG-{study_uid[-8:]}"
    ds.InstanceNumber = number
    return ds


def test_study_metadata_etag_changes_after_a_stow(gateway: RunningGateway) -> None:
    base = gateway.dicomweb("orthanc")
    study_uid, series_uid = generate_uid(), generate_uid()
    stow_dataset(base, _new_instance(study_uid, series_uid, 1))
    url = f"{base}/studies/{study_uid}/metadata"
    with httpx.Client(timeout=60) as client:
        client.get(url, headers={"Accept": DICOM_JSON})  # cold: retrieved, recorded complete
        warm = client.get(url, headers={"Accept": DICOM_JSON})
        assert warm.status_code == 200
        assert "no-cache" in warm.headers["cache-control"]
        etag = warm.headers["etag"]
        assert client.get(url, headers={"Accept": DICOM_JSON,
                                        "If-None-Match": etag}).status_code == 304
        stow_dataset(base, _new_instance(study_uid, series_uid, 2))
        after = client.get(url, headers={"Accept": DICOM_JSON, "If-None-Match": etag})
        assert after.status_code == 200
        assert len(after.json()) == 2
        assert client.get(url, headers={"Accept": DICOM_JSON}).headers["etag"] != etag


def test_304_without_the_pacs(corpus: Corpus, tmp_path: Path) -> None:
    """The PACS stopped, a cached instance and a complete study still revalidate."""
    study, never_asked = corpus.study("ct_small"), corpus.study("mr_implicit")
    store_port = free_port()
    with ExitStack() as pacs_running:  # closed by hand below: the PACS stops, the gateway not
        pacs = pacs_running.enter_context(running_dcmqrscp(
            tmp_path / "pacs", [*study.instances, *never_asked.instances], store_port))
        settings = make_settings((node_for(pacs, "alone", "c-move"),), store_port=store_port,
                                 tmp=tmp_path)
        with running_gateway(settings) as gateway, httpx.Client(timeout=60) as client:
            base = gateway.dicomweb()
            instance_url = _instance_url(base, study, study.instances[0]) + "/frames/1"
            study_url = f"{base}/studies/{study.study_uid}/metadata"
            frame = client.get(instance_url, headers={"Accept": OCTET})
            client.get(study_url, headers={"Accept": DICOM_JSON})
            listing = client.get(study_url, headers={"Accept": DICOM_JSON})
            assert frame.status_code == 200
            assert listing.status_code == 200
            pacs_running.close()
            for url, accept, etag in ((instance_url, OCTET, frame.headers["etag"]),
                                      (study_url, DICOM_JSON, listing.headers["etag"])):
                answer = client.get(url, headers={"Accept": accept, "If-None-Match": etag})
                assert answer.status_code == 304, answer.text
            # The PACS is really gone: what is not cached cannot be answered.
            other = _instance_url(base, never_asked, never_asked.instances[0]) + "/frames/1"
            down = client.get(other, headers={"Accept": OCTET})
            assert down.status_code in (502, 503, 504), down.text


def test_dicomweb_client_reads_compressed_metadata(gateway: RunningGateway,
                                                   corpus: Corpus) -> None:
    """dicomweb-client (requests) offers gzip (and br): it gets the same JSON, decoded."""
    study = corpus.study("big_ct")
    base = gateway.dicomweb("orthanc")
    url = f"{base}/studies/{study.study_uid}/metadata"
    plain = httpx.get(url, headers={"Accept": DICOM_JSON, "Accept-Encoding": "identity"},
                      timeout=120)
    assert plain.status_code == 200
    with httpx.Client(timeout=120) as client, client.stream(
            "GET", url, headers={"Accept": DICOM_JSON, "Accept-Encoding": "gzip"}) as packed:
        assert packed.headers["content-encoding"] == "gzip"
        raw = b"".join(packed.iter_raw())
    assert zlib.decompress(raw, 31) == plain.content
    assert len(raw) * 5 < len(plain.content)
    client = DICOMwebClient(url=base)
    codings: list[str | None] = []
    client._session.hooks["response"].append(  # what came over the wire, before decoding
        lambda response, *args, **kwargs: codings.append(
            response.headers.get("content-encoding")))
    # dicomweb-client sends Host without the port, so its BulkDataURIs lack it too.
    assert _without_port(client.retrieve_study_metadata(study.study_uid)) == \
        _without_port(plain.json())
    # urllib3 offers gzip, deflate, and br and zstd when it can decode them.
    assert len(codings) == 1
    assert codings[0] in ("zstd", "br", "gzip")


def _without_port(metadata: list[dict[str, object]]) -> str:
    return re.sub(r"//127\.0\.0\.1:[0-9]+/", "//127.0.0.1/", json.dumps(metadata))


def test_pixel_data_is_not_compressed(gateway: RunningGateway, corpus: Corpus) -> None:
    study = corpus.study("ct_small")
    url = _instance_url(gateway.dicomweb("orthanc"), study, study.instances[0])
    for suffix, accept in (("/frames/1", OCTET), ("/rendered", "image/jpeg"),
                           ("", 'multipart/related; type="application/dicom"')):
        response = httpx.get(url + suffix, timeout=60,
                             headers={"Accept": accept, "Accept-Encoding": "gzip, br, zstd"})
        assert response.status_code == 200
        assert "content-encoding" not in response.headers
