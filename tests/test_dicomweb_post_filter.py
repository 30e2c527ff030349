"""Unit tests for dicomweb_gw.dicomweb.post_filter: matches a PACS should not have returned."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
from pydicom.dataset import Dataset

from dicomweb_gw.dicomweb.matching import Verdict
from dicomweb_gw.dicomweb.post_filter import PostFilter, verdict

MODALITIES_IN_STUDY = 0x00080061
STUDY_DESCRIPTION = 0x00081030
STUDY_DATE = 0x00080020
STUDY_UID = 0x0020000D
PATIENT_NAME = 0x00100010
STUDY_RELATED_SERIES = 0x00201206


def _study(**values: object) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(("values", "tag", "wanted", "expected"), [
    ({"ModalitiesInStudy": ["CT", "SR"]}, MODALITIES_IN_STUDY, "CT", Verdict.MATCH),
    ({"ModalitiesInStudy": ["MR"]}, MODALITIES_IN_STUDY, "CT", Verdict.NO_MATCH),
    # Several values: any of them (what a PACS that accepts CT\MR does).
    ({"ModalitiesInStudy": ["MR"]}, MODALITIES_IN_STUDY, "CT\\MR", Verdict.MATCH),
    ({"ModalitiesInStudy": ["US"]}, MODALITIES_IN_STUDY, "CT\\MR", Verdict.NO_MATCH),
    ({"StudyDescription": "Chest CT"}, STUDY_DESCRIPTION, "Chest*", Verdict.MATCH),
    ({"StudyDescription": "Head CT"}, STUDY_DESCRIPTION, "Chest*", Verdict.NO_MATCH),
    ({"StudyDescription": "Head CT"}, STUDY_DESCRIPTION, "*CT", Verdict.MATCH),
    ({"StudyDate": "20200105"}, STUDY_DATE, "20200101-20200110", Verdict.MATCH),
    ({"StudyDate": "20200111"}, STUDY_DATE, "20200101-20200110", Verdict.NO_MATCH),
    ({"StudyDate": "20200111"}, STUDY_DATE, "20200111-", Verdict.MATCH),
    ({"StudyInstanceUID": "1.2.3"}, STUDY_UID, "1.2.4\\1.2.3", Verdict.MATCH),
    ({"StudyInstanceUID": "1.2.5"}, STUDY_UID, "1.2.4\\1.2.3", Verdict.NO_MATCH),
    # PN: literal (no fuzzy matching), case-insensitive, wildcards.
    ({"PatientName": "Doe^John"}, PATIENT_NAME, "doe*", Verdict.MATCH),
    ({"PatientName": "Dough^John"}, PATIENT_NAME, "Doe*", Verdict.NO_MATCH),
    # What the PACS did not return cannot be checked: kept.
    ({"PatientID": "x"}, STUDY_DESCRIPTION, "Chest*", Verdict.UNKNOWN),
    ({"PatientID": "x"}, MODALITIES_IN_STUDY, "CT", Verdict.UNKNOWN),
])
def test_verdict(values: dict[str, object], tag: int, wanted: str, expected: str) -> None:
    assert verdict(_study(**values), tag, wanted) == expected


def test_an_empty_derivable_attribute_is_unknown_and_removed_for_deriving() -> None:
    ds = _study(ModalitiesInStudy=None, NumberOfStudyRelatedSeries=None)
    assert verdict(ds, MODALITIES_IN_STUDY, "CT") == Verdict.UNKNOWN
    assert verdict(ds, STUDY_RELATED_SERIES, "2") == Verdict.UNKNOWN
    assert "ModalitiesInStudy" not in ds
    assert "NumberOfStudyRelatedSeries" not in ds


def test_an_empty_ordinary_attribute_still_fails_a_key() -> None:
    assert verdict(_study(StudyDescription=""), STUDY_DESCRIPTION, "Chest*") == \
        Verdict.NO_MATCH


def test_failed_keys_names_each_key_a_match_fails() -> None:
    ds = _study(ModalitiesInStudy=["MR"], StudyDescription="Head", PatientName="Doe^J")
    match = {MODALITIES_IN_STUDY: "CT", STUDY_DESCRIPTION: "Head", PATIENT_NAME: "X*"}
    assert PostFilter.failed_keys(ds, match) == [MODALITIES_IN_STUDY, PATIENT_NAME]


def test_dropped_matches_are_a_warning_once_per_node(caplog: pytest.LogCaptureFixture) -> None:
    post_filter = PostFilter()
    caplog.set_level(logging.DEBUG, logger="dicomweb_gw.dicomweb.post_filter")
    post_filter.report("synapse", 0, 4, Counter())
    assert not caplog.records
    post_filter.report("synapse", 2, 4, Counter({MODALITIES_IN_STUDY: 2}))
    post_filter.report("synapse", 1, 4, Counter({STUDY_DESCRIPTION: 1}))
    post_filter.report("other", 1, 1, Counter({STUDY_DESCRIPTION: 1}))
    levels = [(record.levelname, record.getMessage()) for record in caplog.records]
    assert [level for level, _ in levels] == ["WARNING", "DEBUG", "WARNING"]
    first = levels[0][1]
    assert "'synapse'" in first
    assert "2 of 4" in first
    assert "ModalitiesInStudy (2)" in first
    assert "post_filter" in first
