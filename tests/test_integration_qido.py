"""QIDO-RS through the gateway against real dcmqrscp and Orthanc."""

from __future__ import annotations

import httpx
import pytest

from corpus import Corpus
from gateway_fixtures import RunningGateway

pytestmark = pytest.mark.pacs
NODES = ["dcmqrscp", "orthanc"]
JSON = {"Accept": "application/dicom+json"}


def _values(item: dict, tag: str) -> list:
    return item.get(tag, {}).get("Value", [])


def _search(gateway: RunningGateway, node: str, path: str, **params: str) -> httpx.Response:
    return httpx.get(f"{gateway.dicomweb(node)}{path}", params=params, headers=JSON, timeout=30)


@pytest.mark.parametrize("node", NODES)
def test_studies_lists_the_corpus(gateway: RunningGateway, corpus: Corpus, node: str) -> None:
    response = _search(gateway, node, "/studies")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/dicom+json")
    found = {_values(item, "0020000D")[0] for item in response.json()}
    expected = {s.study_uid for s in (corpus.uncompressed_studies if node == "dcmqrscp"
                                      else corpus.studies)}
    assert expected <= found


@pytest.mark.parametrize("node", NODES)
def test_patient_name_wildcard_is_filtered(gateway: RunningGateway, corpus: Corpus,
                                           node: str) -> None:
    study = corpus.study("ct_small")
    response = _search(gateway, node, "/studies", PatientName="*estrad*")
    assert response.status_code == 200
    uids = [_values(item, "0020000D")[0] for item in response.json()]
    assert uids == [study.study_uid]
    item = response.json()[0]
    assert item["00100010"]["vr"] == "PN"
    assert item["00100010"]["Value"][0]["Alphabetic"] == study.patient_name
    assert _values(item, "00081190") == [f"{gateway.dicomweb(node)}/studies/{study.study_uid}"]


@pytest.mark.parametrize("node", NODES)
def test_date_range_and_uid_list(gateway: RunningGateway, corpus: Corpus, node: str) -> None:
    ct, mr = corpus.study("ct_small"), corpus.study("mr_implicit")
    response = _search(gateway, node, "/studies",
                       StudyInstanceUID=f"{ct.study_uid},{mr.study_uid}")
    assert {_values(i, "0020000D")[0] for i in response.json()} == {ct.study_uid, mr.study_uid}
    date = ct.study_date
    response = _search(gateway, node, "/studies", StudyDate=f"{date}-{date}")
    assert response.status_code == 200
    assert {_values(i, "00080020")[0] for i in response.json()} == {date}


@pytest.mark.parametrize("node", NODES)
def test_modalities_in_study_is_matched_even_when_the_pacs_ignores_it(
    gateway: RunningGateway, corpus: Corpus, node: str
) -> None:
    # dcmqrscp ignores ModalitiesInStudy as a matching key and does not return it:
    # the gateway derives it with a SERIES-level C-FIND and filters.
    response = _search(gateway, node, "/studies", ModalitiesInStudy="MR")
    assert response.status_code == 200
    uids = {_values(i, "0020000D")[0] for i in response.json()}
    mr_studies = {s.study_uid for s in corpus.studies
                  if any(se.modality == "MR" for se in s.series)
                  and (node != "dcmqrscp" or s.uncompressed)}
    assert uids == mr_studies
    assert all("MR" in _values(i, "00080061") for i in response.json())


@pytest.mark.parametrize("node", NODES)
def test_counts_are_derived_when_asked(gateway: RunningGateway, corpus: Corpus,
                                       node: str) -> None:
    study = corpus.study("ct_small")
    response = _search(gateway, node, "/studies", StudyInstanceUID=study.study_uid,
                       includefield="00201206,00201208")
    (item,) = response.json()
    assert _values(item, "00201206") == [len(study.series)]
    assert _values(item, "00201208") == [sum(len(s.instances) for s in study.series)]


@pytest.mark.parametrize("node", NODES)
def test_series_and_instances_of_a_study(gateway: RunningGateway, corpus: Corpus,
                                         node: str) -> None:
    study = corpus.study("ct_small")
    series = _search(gateway, node, f"/studies/{study.study_uid}/series").json()
    assert {_values(i, "0020000E")[0] for i in series} == {s.series_uid for s in study.series}
    one = study.series[-1]
    instances = _search(gateway, node,
                        f"/studies/{study.study_uid}/series/{one.series_uid}/instances").json()
    assert {_values(i, "00080018")[0] for i in instances} == {
        i.sop_instance_uid for i in one.instances}
    # /studies/{study}/instances: dcmqrscp needs the series UID, the gateway walks the series.
    everything = _search(gateway, node, f"/studies/{study.study_uid}/instances").json()
    assert {_values(i, "00080018")[0] for i in everything} == {
        i.sop_instance_uid for s in study.series for i in s.instances}


@pytest.mark.parametrize("node", NODES)
def test_limit_and_offset_page_stably(gateway: RunningGateway, node: str) -> None:
    full = [_values(i, "0020000D")[0] for i in _search(gateway, node, "/studies").json()]
    assert len(full) >= 4
    first = _search(gateway, node, "/studies", limit="2", offset="0")
    second = _search(gateway, node, "/studies", limit="2", offset="2")
    page = [_values(i, "0020000D")[0] for i in first.json() + second.json()]
    assert page == full[:4]
    assert "Warning" in first.headers  # more results exist beyond the page


@pytest.mark.parametrize("node", NODES)
def test_charset_is_decoded_to_utf8(gateway: RunningGateway, corpus: Corpus, node: str) -> None:
    study = corpus.study("charset")
    response = _search(gateway, node, "/studies", StudyInstanceUID=study.study_uid)
    (item,) = response.json()
    assert item["00100010"]["Value"][0]["Alphabetic"] == "Müller^Hans"


def test_empty_result_is_200_with_empty_array(gateway: RunningGateway) -> None:
    response = _search(gateway, "orthanc", "/studies", PatientID="no-such-patient")
    assert response.status_code == 200
    assert response.json() == []


def test_fuzzy_matching_gets_a_warning(gateway: RunningGateway) -> None:
    response = _search(gateway, "orthanc", "/studies", fuzzymatching="true", limit="1")
    assert response.status_code == 200
    assert "299" in response.headers["warning"]
    assert "fuzzy" in response.headers["warning"]


@pytest.mark.parametrize(("params", "fragment"), [
    ({"StudyDate": "20231341"}, "StudyDate"),
    ({"StudyInstanceUID": "1.2.abc"}, "not a valid DICOM UID"),
    ({"NoSuchKeyword": "x"}, "NoSuchKeyword"),
    ({"limit": "-1"}, "limit"),
    ({"includefield": "Bogus"}, "Bogus"),
    ({"fuzzymatching": "maybe"}, "fuzzymatching"),
])
def test_bad_queries_are_400(gateway: RunningGateway, params: dict[str, str],
                             fragment: str) -> None:
    response = _search(gateway, "orthanc", "/studies", **params)
    assert response.status_code == 400
    assert fragment in response.json()["message"]


def test_unacceptable_accept_is_406(gateway: RunningGateway) -> None:
    response = httpx.get(f"{gateway.dicomweb()}/studies", headers={"Accept": "image/png"})
    assert response.status_code == 406
