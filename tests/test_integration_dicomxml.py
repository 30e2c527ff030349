"""DICOM XML (PS3.19 A.1) for WADO-RS metadata and QIDO-RS, against real dcmqrscp and Orthanc.

Every XML answer is read back with ElementTree into the DICOM JSON model and
must equal the JSON answer to the same request: same attributes, same values,
same BulkDataURIs (which must also resolve).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from corpus import Corpus, StudyInfo
from dicomxml_helpers import canonical_json, check_schema, from_native_xml
from gateway_fixtures import RunningGateway
from multipart_helpers import parse_multipart

pytestmark = pytest.mark.pacs
NODES = ["dcmqrscp", "orthanc"]
JSON = {"Accept": "application/dicom+json"}
XML_PARTS = {"Accept": 'multipart/related; type="application/dicom+xml"'}
XML_SINGLE = {"Accept": "application/dicom+xml"}


def _json(url: str, **params: str) -> list[dict[str, Any]]:
    response = httpx.get(url, params=params, headers=JSON, timeout=60)
    assert response.status_code == 200, response.text
    items = response.json()
    assert isinstance(items, list)
    return items


def _xml_parts(url: str, **params: str) -> list[dict[str, Any]]:
    """The multipart DICOM XML answer, each part checked and read back into DICOM JSON."""
    response = httpx.get(url, params=params, headers=XML_PARTS, timeout=60)
    assert response.status_code == 200, response.text
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/related")
    assert 'type="application/dicom+xml"' in content_type
    parts = parse_multipart(content_type, response.content)
    datasets = []
    for part in parts:
        assert part.headers["content-type"] == "application/dicom+xml"
        check_schema(part.body)
        datasets.append(from_native_xml(part.body))
    return datasets


def _assert_same(xml: list[dict[str, Any]], json: list[dict[str, Any]]) -> None:
    """Equal data sets; in the same order is not asked, as two requests may list the series
    of a study (or the PACS its matches) in another order."""
    expected = sorted((canonical_json(item) for item in json), key=_uids)
    assert len(xml) == len(expected)
    for got, want in zip(sorted(xml, key=_uids), expected, strict=True):
        differing = sorted(key for key in got.keys() | want.keys() if got.get(key) != want.get(key))
        assert not differing, {key: (got.get(key), want.get(key)) for key in differing}


def _uids(dataset: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(dataset.get(tag, {}).get("Value", [""])[0])
                 for tag in ("0020000D", "0020000E", "00080018"))


def _bulk_uris(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["BulkDataURI"]] if "BulkDataURI" in node else []
        return own + [uri for value in node.values() for uri in _bulk_uris(value)]
    if isinstance(node, list):
        return [uri for value in node for uri in _bulk_uris(value)]
    return []


def _stored(corpus: Corpus, node: str) -> list[StudyInfo]:
    return corpus.uncompressed_studies if node == "dcmqrscp" else corpus.studies


# -- WADO-RS metadata -----------------------------------------------------------------


@pytest.mark.parametrize("node", NODES)
def test_study_metadata_xml_equals_json(gateway: RunningGateway, corpus: Corpus,
                                        node: str) -> None:
    """ct_small: two series, private GEMS elements, pixel data as BulkData."""
    study = corpus.study("ct_small")
    url = f"{gateway.dicomweb(node)}/studies/{study.study_uid}/metadata"
    json, xml = _json(url), _xml_parts(url)
    assert len(xml) == len(study.instances) == 4
    _assert_same(xml, json)
    assert any(":" in key for key in xml[0]), "CT_small's private elements should be there"
    uris = sorted(_bulk_uris(xml))
    assert uris == sorted(_bulk_uris(json))
    assert len(uris) >= 4
    assert all(uri.startswith(f"{gateway.dicomweb(node)}/studies/{study.study_uid}/")
               for uri in uris)
    pixel = xml[0]["7FE00010"]["BulkDataURI"]
    response = httpx.get(pixel, headers={"Accept": "application/octet-stream"}, timeout=60)
    assert response.status_code == 200, response.text
    assert len(response.content) == 128 * 128 * 2  # CT_small: 128x128, 16 bits


@pytest.mark.parametrize("node", NODES)
def test_series_metadata_xml_equals_json_with_a_latin1_study(gateway: RunningGateway,
                                                             corpus: Corpus, node: str) -> None:
    study = corpus.study("charset")
    series = study.series[0]
    url = f"{gateway.dicomweb(node)}/studies/{study.study_uid}/series/{series.series_uid}/metadata"
    json, xml = _json(url), _xml_parts(url)
    _assert_same(xml, json)
    assert xml[0]["00100010"]["Value"] == [{"Alphabetic": "Müller^Hans"}]
    assert xml[0]["00080090"]["Value"] == [{"Alphabetic": "Weiß^Jürgen"}]


@pytest.mark.parametrize("node", NODES)
def test_instance_metadata_as_parts_and_as_one_document(gateway: RunningGateway,
                                                        corpus: Corpus, node: str) -> None:
    study = corpus.study("mr_implicit")
    series = study.series[0]
    instance = series.instances[1]
    url = (f"{gateway.dicomweb(node)}/studies/{study.study_uid}/series/{series.series_uid}"
           f"/instances/{instance.sop_instance_uid}/metadata")
    json = _json(url)
    _assert_same(_xml_parts(url), json)
    # PS3.18 10.4.4: a single part media type is allowed for a single-item resource.
    response = httpx.get(url, headers=XML_SINGLE, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom+xml"
    check_schema(response.content)
    assert [from_native_xml(response.content)] == [canonical_json(item) for item in json]


@pytest.mark.parametrize("resource", ["", "/series/{series}"])
def test_bare_dicom_xml_for_several_instances_is_406(gateway: RunningGateway, corpus: Corpus,
                                                     resource: str) -> None:
    """PS3.18 10.4.4: single part types are ignored for study and series resources."""
    study = corpus.study("ct_small")
    path = resource.format(series=study.series[1].series_uid)
    response = httpx.get(f"{gateway.dicomweb()}/studies/{study.study_uid}{path}/metadata",
                         headers=XML_SINGLE, timeout=60)
    assert response.status_code == 406
    assert 'multipart/related; type="application/dicom+xml"' in response.json()["message"]


def test_accept_query_parameter_asks_for_xml(gateway: RunningGateway, corpus: Corpus) -> None:
    study = corpus.study("mr_implicit")
    url = f"{gateway.dicomweb()}/studies/{study.study_uid}/metadata"
    response = httpx.get(url, params={"accept": 'multipart/related; type="application/dicom+xml"'},
                         headers=JSON, timeout=60)
    assert response.status_code == 200
    assert 'type="application/dicom+xml"' in response.headers["content-type"]


# -- QIDO-RS -----------------------------------------------------------------------------


@pytest.mark.parametrize("node", NODES)
def test_study_search_xml_equals_json(gateway: RunningGateway, corpus: Corpus,
                                      node: str) -> None:
    base = gateway.dicomweb(node)
    _assert_same(_xml_parts(f"{base}/studies"), _json(f"{base}/studies"))
    study = corpus.study("charset")
    params = {"PatientID": study.patient_id, "includefield": "all"}
    xml = _xml_parts(f"{base}/studies", **params)
    _assert_same(xml, _json(f"{base}/studies", **params))
    assert [item["0020000D"]["Value"] for item in xml] == [[study.study_uid]]
    assert xml[0]["00081190"]["Value"] == [f"{base}/studies/{study.study_uid}"]


@pytest.mark.parametrize("node", NODES)
def test_series_and_instance_search_xml_equals_json(gateway: RunningGateway, corpus: Corpus,
                                                    node: str) -> None:
    base = gateway.dicomweb(node)
    study = corpus.study("ct_small")
    series = study.series[1]
    scoped = {
        f"{base}/studies/{study.study_uid}/series": {},
        f"{base}/studies/{study.study_uid}/instances": {},
        f"{base}/studies/{study.study_uid}/series/{series.series_uid}/instances": {},
        f"{base}/series": {"StudyInstanceUID": study.study_uid},
        f"{base}/instances": {"SeriesInstanceUID": series.series_uid},
    }
    for url, params in scoped.items():
        json = _json(url, **params)
        assert json, url
        _assert_same(_xml_parts(url, **params), json)


@pytest.mark.parametrize("node", NODES)
def test_search_with_no_match_as_xml_is_204(gateway: RunningGateway, node: str) -> None:
    """PS3.18 10.6.3.1; a multipart body cannot have zero parts (RFC 2046 5.1.1)."""
    response = httpx.get(f"{gateway.dicomweb(node)}/studies", params={"PatientID": "NO-SUCH-ID"},
                         headers=XML_PARTS, timeout=60)
    assert response.status_code == 204
    assert response.content == b""


def test_bare_dicom_xml_for_a_search_is_406(gateway: RunningGateway) -> None:
    response = httpx.get(f"{gateway.dicomweb()}/studies", headers=XML_SINGLE, timeout=60)
    assert response.status_code == 406


def test_capabilities_list_dicom_xml(gateway: RunningGateway) -> None:
    response = httpx.get(f"{gateway.dicomweb()}/capabilities",
                         headers={"Accept": "application/json"}, timeout=10)
    assert response.status_code == 200, response.text
    dicomweb = response.json()["services"][0]
    by_path = {r["path"]: r["methods"] for r in dicomweb["resources"]}
    xml = 'multipart/related; type="application/dicom+xml"'
    for path in ("/studies", "/series", "/instances", "/studies/{study}/metadata",
                 "/studies/{study}/series/{series}/metadata"):
        get = next(m for m in by_path[path] if m["method"] == "GET")
        assert get["mediaTypes"] == ["application/dicom+json", xml], path
