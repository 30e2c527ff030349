"""Unit tests for dicomweb_gw.dicomweb.walk: level-by-level C-FINDs for a hierarchical PACS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import cast

import pytest
from pydicom.dataset import Dataset

from dicomweb_gw.dicomweb.search_finds import SearchFinds
from dicomweb_gw.dicomweb.walk import LevelWalk
from dicomweb_gw.errors import PacsFailure
from dicomweb_gw.model import QueryLevel
from dicomweb_gw.pacs.protocol import PacsClient
from qido_fakes import FakePacs, instance

STUDY, SERIES, IMAGE = QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.IMAGE
RECORDS = [
    instance(1, 1, 1, modality="CT"), instance(1, 1, 2, modality="CT"),
    instance(1, 2, 1, modality="MR"),
    instance(2, 1, 1, modality="CT", description="Head"),
]


def _identifier(level: QueryLevel, **keys: str) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = ""
    ds.PatientName = ""
    if level is not STUDY:
        ds.SeriesInstanceUID = ""
        ds.Modality = ""
    if level is IMAGE:
        ds.SOPInstanceUID = ""
        ds.InstanceNumber = ""
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def _find(walk: LevelWalk, pacs: FakePacs, level: QueryLevel, identifier: Dataset, *,
          relational: bool | None = None) -> tuple[list[Dataset], SearchFinds]:
    finds = SearchFinds(cast(PacsClient, pacs))

    def studies(ds: Dataset) -> AsyncGenerator[Dataset, None]:
        return finds.run(STUDY, ds)

    async def run() -> list[Dataset]:
        return [ds async for ds in walk.find(finds, level, identifier, relational=relational,
                                             studies=studies)]

    return asyncio.run(run()), finds


def _uids(found: list[Dataset], keyword: str) -> list[str]:
    return sorted(str(ds.get(keyword)) for ds in found)


def test_all_series_are_walked_study_by_study_with_the_parents_attributes() -> None:
    pacs = FakePacs(RECORDS, hierarchical=True)
    found, finds = _find(LevelWalk(), pacs, SERIES, _identifier(SERIES, Modality="CT"))
    assert _uids(found, "SeriesInstanceUID") == ["1.2.1.1", "1.2.2.1"]
    assert {str(ds.PatientName) for ds in found} == {"Doe^1", "Doe^2"}  # from the studies
    assert finds.report.walked
    assert pacs.levels_asked() == [SERIES, STUDY, SERIES, SERIES]


def test_child_queries_pin_the_parent_and_leave_the_parents_keys_out() -> None:
    pacs = FakePacs(RECORDS, hierarchical=True)
    _find(LevelWalk(), pacs, SERIES, _identifier(SERIES, PatientName="Doe^1", Modality="CT"))
    (level, study_query), (_, child) = pacs.finds[1:]
    assert level is STUDY
    assert str(study_query.PatientName) == "Doe^1"
    assert "Modality" not in study_query  # a series key: not asked of the studies
    assert str(child.StudyInstanceUID) == "1.2.1"
    assert "PatientName" not in child  # the study matched it already
    assert str(child.Modality) == "CT"


def test_all_instances_are_walked_down_two_levels() -> None:
    pacs = FakePacs(RECORDS, hierarchical=True)
    found, finds = _find(LevelWalk(), pacs, IMAGE, _identifier(IMAGE))
    assert _uids(found, "SOPInstanceUID") == ["1.2.1.1.1", "1.2.1.1.2", "1.2.1.2.1",
                                              "1.2.2.1.1"]
    assert {str(ds.Modality) for ds in found} == {"CT", "MR"}  # from the series
    assert all(ds.PatientName for ds in found)  # from the studies
    assert finds.report.walked


def test_study_scoped_instances_are_walked_series_by_series() -> None:
    pacs = FakePacs(RECORDS, hierarchical=True)
    found, _ = _find(LevelWalk(), pacs, IMAGE, _identifier(IMAGE, StudyInstanceUID="1.2.1"))
    assert _uids(found, "SOPInstanceUID") == ["1.2.1.1.1", "1.2.1.1.2", "1.2.1.2.1"]
    assert STUDY not in pacs.levels_asked()  # the study is pinned already
    assert pacs.levels_asked() == [IMAGE, SERIES, IMAGE, IMAGE]


def test_a_uid_list_for_a_parent_is_walked_too() -> None:
    pacs = FakePacs(RECORDS, hierarchical=True)
    found, _ = _find(LevelWalk(), pacs, SERIES,
                     _identifier(SERIES, StudyInstanceUID="1.2.1\\1.2.2"))
    assert _uids(found, "SeriesInstanceUID") == ["1.2.1.1", "1.2.1.2", "1.2.2.1"]


def test_auto_asks_once_per_node_and_level_then_walks_without_asking() -> None:
    walk = LevelWalk()
    pacs = FakePacs(RECORDS, hierarchical=True)
    _find(walk, pacs, SERIES, _identifier(SERIES))
    pacs.finds.clear()
    _find(walk, pacs, SERIES, _identifier(SERIES))
    assert pacs.levels_asked()[0] is STUDY  # no relational try this time


def test_relational_false_walks_without_asking_first() -> None:
    pacs = FakePacs(RECORDS)  # would answer a relational query, but is not asked one
    found, finds = _find(LevelWalk(), pacs, SERIES, _identifier(SERIES), relational=False)
    assert pacs.levels_asked()[0] is STUDY
    assert len(found) == 3
    assert finds.report.walked


def test_relational_true_never_walks() -> None:
    pacs = FakePacs(RECORDS, hierarchical=True)
    with pytest.raises(PacsFailure):
        _find(LevelWalk(), pacs, SERIES, _identifier(SERIES), relational=True)
    assert pacs.levels_asked() == [SERIES]


def test_a_relational_pacs_is_asked_directly_and_not_walked() -> None:
    pacs = FakePacs(RECORDS)
    found, finds = _find(LevelWalk(), pacs, IMAGE, _identifier(IMAGE))
    assert len(found) == 4
    assert pacs.levels_asked() == [IMAGE]
    assert not finds.report.walked


def test_a_refusal_with_every_parent_uid_given_is_an_error() -> None:
    class Refusing(FakePacs):
        async def find(self, level: QueryLevel, identifier: Dataset, **_: object,
                       ) -> AsyncGenerator[Dataset, None]:
            raise PacsFailure(self.name, "C-FIND failed (0xC000)")
            yield identifier  # a generator

    pacs = Refusing(RECORDS)
    with pytest.raises(PacsFailure):
        _find(LevelWalk(), pacs, SERIES, _identifier(SERIES, StudyInstanceUID="1.2.1"))
