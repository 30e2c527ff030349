"""QIDO-RS result attributes through the gateway against real dcmqrscp and Orthanc (#14).

Which parent attributes a result carries follows the resource in the URL (PS3.18
Tables 10.6.3-3/4/5), not the query keys; private elements come with their creator.
"""

from __future__ import annotations

import httpx
import pytest

from corpus import Corpus, StudyInfo
from gateway_fixtures import RunningGateway

pytestmark = pytest.mark.pacs
NODES = ["dcmqrscp", "orthanc"]
JSON = {"Accept": "application/dicom+json"}

STUDY_DATE, ACCESSION, MODALITY = "00080020", "00080050", "00080060"
PATIENT_NAME, PATIENT_ID = "00100010", "00100020"
STUDY_UID, SERIES_UID, SOP_UID, SERIES_NUMBER = "0020000D", "0020000E", "00080018", "00200011"
#: (0009,0010) GEMS_IDEN_01 reserves block 10 of group 0009 in pydicom's CT_small.dcm,
#: (0009,1001) is a LO in that block: "GE_GENESIS_FF".
GE_CREATOR, GE_ELEMENT = "00090010", "00091001"


def _search(gateway: RunningGateway, node: str, path: str, **params: str) -> list[dict]:
    response = httpx.get(f"{gateway.dicomweb(node)}{path}", params=params, headers=JSON,
                         timeout=30)
    assert response.status_code == 200, response.text
    items: list[dict] = response.json()
    return items


def _value(item: dict, tag: str) -> object:
    values = item.get(tag, {}).get("Value", [])
    assert values, f"{tag} missing from {sorted(item)}"
    value = values[0]
    return value["Alphabetic"] if isinstance(value, dict) else value


def _assert_study_attributes(items: list[dict], study: StudyInfo) -> None:
    assert items
    for item in items:
        assert _value(item, STUDY_UID) == study.study_uid
        assert _value(item, STUDY_DATE) == study.study_date
        assert _value(item, ACCESSION) == study.accession
        assert _value(item, PATIENT_NAME) == study.patient_name
        assert _value(item, PATIENT_ID) == study.patient_id


def _assert_series_attributes(items: list[dict], study: StudyInfo) -> None:
    assert items
    for item in items:
        series = study.series_by_uid(str(_value(item, SERIES_UID)))
        assert _value(item, MODALITY) == series.modality
        assert _value(item, SERIES_NUMBER) == series.series_number


# -- the parent attributes follow the resource in the URL --------------------------------


@pytest.mark.parametrize("node", NODES)
def test_all_series_with_a_study_uid_key_carries_the_study_attributes(
    gateway: RunningGateway, corpus: Corpus, node: str
) -> None:
    study = corpus.study("ct_small")
    items = _search(gateway, node, "/series", StudyInstanceUID=study.study_uid)
    assert {_value(i, SERIES_UID) for i in items} == {s.series_uid for s in study.series}
    _assert_study_attributes(items, study)
    _assert_series_attributes(items, study)


@pytest.mark.parametrize("node", NODES)
def test_all_instances_with_uid_keys_carries_the_study_and_series_attributes(
    gateway: RunningGateway, corpus: Corpus, node: str
) -> None:
    study = corpus.study("ct_small")
    series = study.series[-1]
    items = _search(gateway, node, "/instances", StudyInstanceUID=study.study_uid,
                    SeriesInstanceUID=series.series_uid)
    assert {_value(i, SOP_UID) for i in items} == {i.sop_instance_uid for i in series.instances}
    _assert_study_attributes(items, study)
    _assert_series_attributes(items, study)


@pytest.mark.parametrize("node", NODES)
def test_all_instances_with_a_series_uid_key_only(
    gateway: RunningGateway, corpus: Corpus, node: str
) -> None:
    study = corpus.study("mr_implicit")
    series = study.series[0]
    items = _search(gateway, node, "/instances", SeriesInstanceUID=series.series_uid)
    assert {_value(i, SOP_UID) for i in items} == {i.sop_instance_uid for i in series.instances}
    _assert_study_attributes(items, study)
    _assert_series_attributes(items, study)


@pytest.mark.parametrize("node", NODES)
def test_study_scoped_series_also_carry_the_study_attributes_the_pacs_supplies(
    gateway: RunningGateway, corpus: Corpus, node: str
) -> None:
    study = corpus.study("ct_small")
    items = _search(gateway, node, f"/studies/{study.study_uid}/series")
    _assert_study_attributes(items, study)
    _assert_series_attributes(items, study)


@pytest.mark.parametrize("node", NODES)
def test_series_scoped_instances_also_carry_the_parent_attributes_the_pacs_supplies(
    gateway: RunningGateway, corpus: Corpus, node: str
) -> None:
    study = corpus.study("ct_small")
    series = study.series[-1]
    items = _search(gateway, node,
                    f"/studies/{study.study_uid}/series/{series.series_uid}/instances")
    assert {_value(i, SOP_UID) for i in items} == {i.sop_instance_uid for i in series.instances}
    # What OHIF reads from an instance result: PatientName, Modality, the study and series.
    _assert_study_attributes(items, study)
    _assert_series_attributes(items, study)


@pytest.mark.parametrize("node", NODES)
def test_study_scoped_instances_carry_the_series_attributes(
    gateway: RunningGateway, corpus: Corpus, node: str
) -> None:
    study = corpus.study("ct_small")
    items = _search(gateway, node, f"/studies/{study.study_uid}/instances")
    assert len(items) == len(study.instances)
    _assert_series_attributes(items, study)
    _assert_study_attributes(items, study)


# -- private attributes ---------------------------------------------------------------


def test_includefield_of_a_private_element_returns_its_creator(
    gateway: RunningGateway, corpus: Corpus
) -> None:
    study = corpus.study("ct_small")
    series = study.series[-1]
    items = _search(gateway, "orthanc",
                    f"/studies/{study.study_uid}/series/{series.series_uid}/instances",
                    includefield=GE_ELEMENT)
    assert len(items) == len(series.instances)
    for item in items:
        assert item[GE_CREATOR] == {"vr": "LO", "Value": ["GEMS_IDEN_01"]}
        # With its creator, Orthanc knows the element: a LO, not opaque UN bytes.
        assert item[GE_ELEMENT] == {"vr": "LO", "Value": ["GE_GENESIS_FF"]}


def test_matching_on_a_private_element(gateway: RunningGateway, corpus: Corpus) -> None:
    study = corpus.study("ct_small")
    series = study.series[-1]
    path = f"/studies/{study.study_uid}/series/{series.series_uid}/instances"
    found = _search(gateway, "orthanc", path, **{GE_ELEMENT: "GE_GENESIS_FF"})
    assert {_value(i, SOP_UID) for i in found} == {i.sop_instance_uid for i in series.instances}
    assert all(_value(i, GE_CREATOR) == "GEMS_IDEN_01" for i in found)
    # Orthanc ignores the private matching key: the gateway's own matching drops these.
    assert _search(gateway, "orthanc", path, **{GE_ELEMENT: "GE_OTHER"}) == []


@pytest.mark.parametrize("level_path", ["/studies", "/series", "/instances"])
def test_matching_on_a_private_creator(gateway: RunningGateway, corpus: Corpus,
                                       level_path: str) -> None:
    study = corpus.study("ct_small")
    found = _search(gateway, "orthanc", level_path, PatientID=study.patient_id,
                    **{GE_CREATOR: "GEMS_IDEN_01"})
    assert len(found) == {"/studies": 1, "/series": len(study.series),
                          "/instances": len(study.instances)}[level_path]
    assert {_value(i, STUDY_UID) for i in found} == {study.study_uid}
    assert all(_value(i, GE_CREATOR) == "GEMS_IDEN_01" for i in found)
    assert _search(gateway, "orthanc", level_path, PatientID=study.patient_id,
                   **{GE_CREATOR: "ACME 1.1"}) == []


def test_dcmqrscp_neither_matches_nor_returns_private_attributes(
    gateway: RunningGateway, corpus: Corpus
) -> None:
    # dcmqrscp only knows the attributes of its index: it ignores private keys. A result
    # without the attribute cannot be checked, so it is kept, and nothing is invented.
    study = corpus.study("ct_small")
    series = study.series[-1]
    items = _search(gateway, "dcmqrscp",
                    f"/studies/{study.study_uid}/series/{series.series_uid}/instances",
                    includefield=GE_ELEMENT, **{GE_CREATOR: "GEMS_IDEN_01"})
    assert {_value(i, SOP_UID) for i in items} == {i.sop_instance_uid for i in series.instances}
    assert all(GE_CREATOR not in i and GE_ELEMENT not in i for i in items)
