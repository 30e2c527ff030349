"""Unit tests for dicomweb_gw.dicomweb.qido against a fake, strictly hierarchical PACS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any, cast

import pytest
from pydicom.dataset import Dataset

from dicomweb_gw.dicomweb.qido import QidoService
from dicomweb_gw.dicomweb.query import parse_query
from dicomweb_gw.model import QueryLevel
from dicomweb_gw.pacs.protocol import PacsClient

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

    def __init__(self, *, relational: bool = False) -> None:
        self.relational = relational
        self.finds: list[QueryLevel] = []

    async def find(self, level: QueryLevel, identifier: Dataset) -> AsyncGenerator[Dataset, None]:
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
