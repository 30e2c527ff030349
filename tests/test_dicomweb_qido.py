"""Unit tests for dicomweb_gw.dicomweb.qido against a fake, strictly hierarchical PACS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any, cast

import pytest
from pydicom.dataset import Dataset

from dicomweb_gw.dicomweb.qido import QidoResult, QidoService
from dicomweb_gw.dicomweb.query import parse_query
from dicomweb_gw.model import FindReport, QueryLevel
from dicomweb_gw.pacs.protocol import PacsClient
from dicomweb_gw.settings import PacsNode
from qido_fakes import FakePacs, instance

STUDY_UID, SERIES_UID, SOP_UID = "1.2.3", "1.2.3.4", "1.2.3.4.5"
PATIENT_NAME, STUDY_DATE, MODALITY = "00100010", "00080020", "00080060"
#: What the fake PACS holds, per level; the UIDs above each level are its unique keys.
_HELD = {
    QueryLevel.STUDY: {"StudyInstanceUID": STUDY_UID, "PatientName": "Doe^J",
                       "StudyDate": "20240101"},
    QueryLevel.SERIES: {"SeriesInstanceUID": SERIES_UID, "Modality": "CT"},
    QueryLevel.IMAGE: {"SOPInstanceUID": SOP_UID, "InstanceNumber": "1"},
}
_ORDER = [QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.IMAGE]


class HierarchicalPacs:
    """Answers only the keys of the query level (and the UIDs above it), as a strictly
    hierarchical SCP may (PS3.4 C.4.1.2.1), unless ``relational``."""

    name = "fake"
    node = PacsNode("fake", "127.0.0.1", 104, "FAKE")

    def __init__(self, *, relational: bool = False) -> None:
        self.relational = relational
        self.finds: list[QueryLevel] = []

    async def find(self, level: QueryLevel, identifier: Dataset, *,
                   report: FindReport | None = None) -> AsyncGenerator[Dataset, None]:
        self.finds.append(level)
        answer = Dataset()
        for upper in _ORDER[: _ORDER.index(level) + 1]:
            for keyword, value in _HELD[upper].items():
                returned = upper is level or self.relational or keyword.endswith("InstanceUID")
                if keyword in identifier and returned:
                    setattr(answer, keyword, value)
        yield answer


def _search(pacs: HierarchicalPacs, level: QueryLevel, params: list[tuple[str, str]],
            pinned: dict[int, str] | None = None) -> dict[str, Any]:
    query = parse_query(level, params, pinned or {})
    result = asyncio.run(QidoService(max_results=10).search(
        cast(PacsClient, pacs), query, base_url="http://gw"))
    (item,) = result.items
    return item


@pytest.mark.parametrize(("level", "params"), [
    (QueryLevel.SERIES, [("StudyInstanceUID", STUDY_UID)]),  # All Series
    (QueryLevel.IMAGE, [("StudyInstanceUID", STUDY_UID), ("SeriesInstanceUID", SERIES_UID)]),
])
def test_required_parent_attributes_are_fetched_when_the_pacs_leaves_them_out(
    level: QueryLevel, params: list[tuple[str, str]]
) -> None:
    pacs = HierarchicalPacs()
    item = _search(pacs, level, params)
    assert item[PATIENT_NAME]["Value"] == [{"Alphabetic": "Doe^J"}]
    assert item[STUDY_DATE]["Value"] == ["20240101"]
    if level is QueryLevel.IMAGE:
        assert item[MODALITY]["Value"] == ["CT"]
    assert pacs.finds.count(QueryLevel.STUDY) == 1


def test_study_scoped_series_ask_nothing_more_of_a_hierarchical_pacs() -> None:
    pacs = HierarchicalPacs()
    item = _search(pacs, QueryLevel.SERIES, [], pinned={0x0020000D: STUDY_UID})
    assert item[MODALITY]["Value"] == ["CT"]
    assert PATIENT_NAME not in item  # not required here, and never invented
    assert pacs.finds == [QueryLevel.SERIES]


def test_study_scoped_instances_fetch_only_the_series_attributes() -> None:
    pacs = HierarchicalPacs()
    item = _search(pacs, QueryLevel.IMAGE, [("SeriesInstanceUID", SERIES_UID)],
                   pinned={0x0020000D: STUDY_UID})
    assert item[MODALITY]["Value"] == ["CT"]
    assert PATIENT_NAME not in item
    assert pacs.finds == [QueryLevel.IMAGE, QueryLevel.SERIES]


def test_a_relational_pacs_is_not_asked_again() -> None:
    pacs = HierarchicalPacs(relational=True)
    item = _search(pacs, QueryLevel.IMAGE, [("SeriesInstanceUID", SERIES_UID),
                                            ("StudyInstanceUID", STUDY_UID)])
    assert item[PATIENT_NAME]["Value"] == [{"Alphabetic": "Doe^J"}]
    assert item[MODALITY]["Value"] == ["CT"]
    assert pacs.finds == [QueryLevel.IMAGE]


# -- PACS quirks (issue #17): match limit, max_matches, hierarchical only, ignored keys ------

MODALITIES = "00080061"
#: PS3.18 8.3.4's words (limit and offset).
MORE_RESULTS = ("The number of results exceeded the maximum supported by the server. "
                "Additional results can be requested.")
STUDY_UID_TAG = "0020000D"
SERIES_UID_TAG = "0020000E"


def _records() -> list[dict[str, str]]:
    """Four studies: CT Chest, MR Head, CT Chest, MR Head (2 series of 1 instance each)."""
    records = []
    for study in range(4):
        modality, description = (("CT", "Chest"), ("MR", "Head"))[study % 2]
        for series in (1, 2):
            records.append(instance(study, series, 1, date=f"2020010{study + 1}",
                                    modality=modality, description=description,
                                    ModalitiesInStudy=modality))
    return records


def _result(pacs: FakePacs, level: QueryLevel, params: list[tuple[str, str]],
            pinned: dict[int, str] | None = None) -> QidoResult:
    query = parse_query(level, params, pinned or {})
    return asyncio.run(QidoService(max_results=100).search(
        cast(PacsClient, pacs), query, base_url="http://gw"))


def _values(result: QidoResult, tag: str) -> list[str]:
    return sorted(item[tag]["Value"][0] for item in result.items)


@pytest.mark.parametrize("refuse", [True, False])
def test_a_match_limit_gives_the_matches_and_a_warning(refuse: bool) -> None:
    # Truncated (no refusal) is only recognised with the node's max_matches; a SERIES
    # search is not split by date.
    pacs = FakePacs(_records(), limit=3, refuse=refuse,
                    node_settings=None if refuse else {"max_matches": 3})
    result = _result(pacs, QueryLevel.SERIES, [])
    assert len(result.items) == 3
    assert result.report.limit_reached
    assert MORE_RESULTS in result.warnings
    assert any("'fake'" in text and "match limit" in text for text in result.warnings)


def test_a_refused_study_search_suggests_max_matches() -> None:
    result = _result(FakePacs(_records(), limit=2), QueryLevel.STUDY, [])
    assert len(result.items) == 2
    assert any("max_matches" in text for text in result.warnings)


def test_max_matches_splits_a_study_search_and_gets_every_study() -> None:
    pacs = FakePacs(_records(), limit=2, node_settings={"max_matches": 2})
    result = _result(pacs, QueryLevel.STUDY, [])
    assert _values(result, STUDY_UID_TAG) == ["1.2.0", "1.2.1", "1.2.2", "1.2.3"]
    assert result.warnings == []
    assert not result.report.limit_reached


def test_max_matches_keeps_offset_and_limit() -> None:
    pacs = FakePacs(_records(), limit=2, node_settings={"max_matches": 2})
    everything = _result(pacs, QueryLevel.STUDY, [])
    order = [item[STUDY_UID_TAG]["Value"][0] for item in everything.items]
    page = _result(pacs, QueryLevel.STUDY, [("offset", "1"), ("limit", "2")])
    assert [item[STUDY_UID_TAG]["Value"][0] for item in page.items] == order[1:3]
    assert page.warnings == [MORE_RESULTS]


@pytest.mark.parametrize(("level", "params", "pinned", "expected"), [
    (QueryLevel.SERIES, [("Modality", "CT")], {}, ["1.2.0.1", "1.2.0.2", "1.2.2.1", "1.2.2.2"]),
    (QueryLevel.IMAGE, [], {}, None),
    (QueryLevel.IMAGE, [], {0x0020000D: "1.2.1"}, None),
])
def test_a_hierarchical_only_pacs_is_walked(
    level: QueryLevel, params: list[tuple[str, str]], pinned: dict[int, str],
    expected: list[str] | None,
) -> None:
    pacs = FakePacs(_records(), hierarchical=True)
    result = _result(pacs, level, params, pinned)
    assert result.report.walked
    if expected is not None:
        assert _values(result, SERIES_UID_TAG) == expected
    else:
        study = pinned.get(0x0020000D)
        assert len(result.items) == (2 if study else 8)
    assert all(item[SERIES_UID_TAG]["Value"] for item in result.items)
    if not pinned:  # All Series and All Instances carry the study attributes
        assert all(item[PATIENT_NAME]["Value"] for item in result.items)


def test_relational_false_walks_without_asking() -> None:
    pacs = FakePacs(_records(), node_settings={"relational": False})
    result = _result(pacs, QueryLevel.SERIES, [("Modality", "MR")])
    assert len(result.items) == 4
    assert pacs.levels_asked()[0] is QueryLevel.STUDY


@pytest.mark.parametrize(("post_filter", "expected"), [
    (True, ["1.2.0", "1.2.2"]), (False, ["1.2.0", "1.2.1", "1.2.2", "1.2.3"]),
])
def test_keys_the_pacs_ignores_are_checked_unless_post_filter_is_off(
    post_filter: bool, expected: list[str],
) -> None:
    pacs = FakePacs(_records(), ignored=("ModalitiesInStudy", "StudyDescription"),
                    node_settings={"post_filter": post_filter})
    result = _result(pacs, QueryLevel.STUDY,
                     [("ModalitiesInStudy", "CT"), ("StudyDescription", "Ch*")])
    assert _values(result, STUDY_UID_TAG) == expected


def test_an_empty_modalities_in_study_is_derived_not_a_mismatch() -> None:
    # A PACS that does not support the key: ignores it and returns it empty.
    records = [{**record, "ModalitiesInStudy": ""} for record in _records()]
    pacs = FakePacs(records, ignored=("ModalitiesInStudy",))
    result = _result(pacs, QueryLevel.STUDY, [("ModalitiesInStudy", "MR")])
    assert _values(result, STUDY_UID_TAG) == ["1.2.1", "1.2.3"]
