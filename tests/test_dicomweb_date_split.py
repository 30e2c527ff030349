"""Unit tests for dicomweb_gw.dicomweb.date_split: broad study searches split by StudyDate."""

from __future__ import annotations

import asyncio
import datetime
from typing import cast

import pytest
from pydicom.dataset import Dataset

from dicomweb_gw.dicomweb.date_split import (
    DateRange,
    parse_range,
    pieces,
    split_by_study_date,
)
from dicomweb_gw.dicomweb.search_finds import SearchFinds
from dicomweb_gw.model import QueryLevel
from dicomweb_gw.pacs.protocol import PacsClient
from qido_fakes import FakePacs, instance

TODAY = datetime.date(2024, 6, 30)
D = datetime.date


def _studies(dates: list[str]) -> list[dict[str, str]]:
    return [instance(number, 1, 1, date=date) for number, date in enumerate(dates)]


def _identifier(study_date: str = "", **keys: str) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = ""
    ds.StudyDate = study_date
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def _split(pacs: FakePacs, identifier: Dataset, max_matches: int,
           budget: int = 64) -> tuple[list[str], SearchFinds]:
    finds = SearchFinds(cast(PacsClient, pacs))

    async def run() -> list[str]:
        return [str(ds.StudyInstanceUID) async for ds in split_by_study_date(
            finds, identifier, max_matches, budget=budget, today=TODAY)]

    return asyncio.run(run()), finds


# -- ranges --------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("", DateRange(None, None)),
    ("*", DateRange(None, None)),
    ("20200101-20201231", DateRange(D(2020, 1, 1), D(2020, 12, 31))),
    ("20200101-", DateRange(D(2020, 1, 1), None)),
    ("-20200101", DateRange(None, D(2020, 1, 1))),
    ("20200101", None),  # a single date: nothing to split
    ("20201231-20200101", None),
    ("2020-01-01", None),
])
def test_parse_range(value: str, expected: DateRange | None) -> None:
    assert parse_range(value) == expected


def test_halves_are_contiguous_and_a_day_or_open_range_is_not_split() -> None:
    older, newer = DateRange(D(2020, 1, 1), D(2020, 1, 4)).halves() or ()
    assert (older.text, newer.text) == ("20200101-20200102", "20200103-20200104")
    assert DateRange(D(2020, 1, 1), D(2020, 1, 1)).halves() is None
    assert DateRange(None, D(2020, 1, 1)).halves() is None
    assert DateRange(D(2020, 1, 1), None).halves() is None


def test_open_ends_become_ranges_of_their_own_newest_first() -> None:
    assert [p.text for p in pieces(DateRange(None, None), TODAY)] == [
        "20240701-", "19000101-20240630", "-18991231"]
    assert [p.text for p in pieces(DateRange(D(2020, 1, 1), None), TODAY)] == [
        "20240701-", "20200101-20240630"]
    assert [p.text for p in pieces(DateRange(D(2020, 1, 1), D(2020, 2, 1)), TODAY)] == [
        "20200101-20200201"]
    # A range wholly in the future, or wholly before 1900, still covers all of itself.
    assert [p.text for p in pieces(DateRange(D(2030, 1, 1), None), TODAY)] == [
        "20300102-", "20300101-20300101"]
    assert [p.text for p in pieces(DateRange(None, D(1850, 1, 1)), TODAY)] == [
        "18500101-18500101", "-18491231"]


# -- splitting -------------------------------------------------------------------------------


@pytest.mark.parametrize("refuse", [True, False])
def test_a_broad_search_gets_every_study_in_pieces_under_the_limit(refuse: bool) -> None:
    dates = ["19890412", "20000101", "20100505", "20200101", "20200102", "20200103",
             "20200104", "20231231", "20240630", "20991231"]
    pacs = FakePacs(_studies(dates), limit=3, refuse=refuse)
    found, finds = _split(pacs, _identifier(), 3)
    assert sorted(found) == sorted(f"1.2.{n}" for n in range(len(dates)))
    assert len(found) == len(set(found))
    assert not finds.report.limit_reached
    assert len(pacs.finds) <= 64
    # Newest first: the future and today before the 1980s.
    assert found.index("1.2.9") < found.index("1.2.8") < found.index("1.2.0")


def test_a_narrow_search_takes_one_c_find_and_keeps_undated_studies() -> None:
    pacs = FakePacs(_studies(["20200101", ""]), limit=3)
    found, finds = _split(pacs, _identifier(), 3)
    assert sorted(found) == ["1.2.0", "1.2.1"]
    assert len(pacs.finds) == 1
    assert not finds.report.limit_reached


def test_the_clients_range_bounds_the_pieces() -> None:
    pacs = FakePacs(_studies(["20200101", "20200102", "20200103", "20200104", "20210101"]),
                    limit=2)
    found, finds = _split(pacs, _identifier("20200101-20201231"), 2)
    assert sorted(found) == ["1.2.0", "1.2.1", "1.2.2", "1.2.3"]
    for level, asked in pacs.finds:
        assert level is QueryLevel.STUDY
        low, _, high = str(asked.StudyDate).partition("-")
        assert low >= "20200101"
        assert high <= "20201231"
    assert not finds.report.limit_reached


def test_studies_of_one_day_beyond_the_limit_are_reported() -> None:
    pacs = FakePacs(_studies(["20200101"] * 5 + ["20230101"]), limit=3)
    found, finds = _split(pacs, _identifier(), 3)
    assert "1.2.5" in found
    assert len([uid for uid in found if uid != "1.2.5"]) == 3
    assert finds.report.limit_reached


def test_a_single_date_is_not_split_and_a_limit_there_is_reported() -> None:
    pacs = FakePacs(_studies(["20200101"] * 5), limit=3)
    found, finds = _split(pacs, _identifier("20200101"), 3)
    assert len(found) == 3
    assert len(pacs.finds) == 1
    assert finds.report.limit_reached


def test_exactly_max_matches_without_a_refusal_counts_as_the_limit() -> None:
    # A PACS that just stops (truncated) at max_matches says nothing: the count tells.
    pacs = FakePacs(_studies(["20200101"] * 5), limit=3, refuse=False)
    found, finds = _split(pacs, _identifier("20200101"), 3)
    assert len(found) == 3
    assert finds.report.limit_reached


def test_the_budget_bounds_the_c_finds_and_what_is_left_is_reported() -> None:
    dates = [f"2020{month:02d}01" for month in range(1, 13)]
    pacs = FakePacs(_studies(dates), limit=2)
    found, finds = _split(pacs, _identifier(), 2, budget=8)
    assert len(pacs.finds) <= 8
    assert finds.report.limit_reached
    assert found  # what was received is returned
    assert len(found) == len(set(found))


def test_a_setting_below_the_pacs_limit_still_splits_without_reading_everything() -> None:
    pacs = FakePacs(_studies([f"2020{month:02d}01" for month in range(1, 13)]))
    found, finds = _split(pacs, _identifier(), 4)
    assert sorted(found) == sorted(f"1.2.{n}" for n in range(12))
    assert not finds.report.limit_reached
