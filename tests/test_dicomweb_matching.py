"""Unit tests for dicomweb_gw.dicomweb.matching: gateway-side re-matching of C-FIND results."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from dicomweb_gw.dicomweb.matching import Verdict, check

PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
STUDY_DATE = 0x00080020
STUDY_TIME = 0x00080030
ACQUISITION_DATETIME = 0x0008002A
MODALITIES_IN_STUDY = 0x00080061
STUDY_DESCRIPTION = 0x00081030
SERIES_UID = 0x0020000E
SERIES_NUMBER = 0x00200011
ROWS = 0x00280010
SLICE_THICKNESS = 0x00180050

MATCH, NO_MATCH, UNKNOWN = Verdict.MATCH, Verdict.NO_MATCH, Verdict.UNKNOWN


def dataset(**values: object) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


# -- universal matching, absent and empty values ------------------------------


@pytest.mark.parametrize("wanted", ["", "*"])
def test_universal_matching_always_matches(wanted: str) -> None:
    assert check(Dataset(), PATIENT_NAME, wanted) == MATCH
    assert check(dataset(PatientName=""), PATIENT_NAME, wanted) == MATCH
    assert check(dataset(PatientName="Doe^John"), PATIENT_NAME, wanted) == MATCH


@pytest.mark.parametrize(
    ("tag", "wanted"),
    [(PATIENT_NAME, "Doe*"), (STUDY_DATE, "20230101-"), (SERIES_UID, "1.2.3"),
     (SERIES_NUMBER, "1"), (MODALITIES_IN_STUDY, "CT")],
)
def test_absent_attribute_is_unknown(tag: int, wanted: str) -> None:
    assert check(dataset(PatientID="x"), tag, wanted) == UNKNOWN


@pytest.mark.parametrize(
    ("keyword", "tag", "wanted"),
    [
        ("PatientName", PATIENT_NAME, "Doe*"),
        ("PatientName", PATIENT_NAME, "?*"),
        ("PatientID", PATIENT_ID, "?*"),
        ("StudyDate", STUDY_DATE, "20230101-"),
        ("StudyDate", STUDY_DATE, "-20231231"),
        ("StudyTime", STUDY_TIME, "-2359"),
        ("SeriesInstanceUID", SERIES_UID, "1.2.3"),
        ("ModalitiesInStudy", MODALITIES_IN_STUDY, "CT"),
    ],
)
def test_present_but_empty_value_does_not_match(keyword: str, tag: int, wanted: str) -> None:
    assert check(dataset(**{keyword: ""}), tag, wanted) == NO_MATCH


def test_empty_number_does_not_match() -> None:
    assert check(dataset(SeriesNumber=None), SERIES_NUMBER, "1") == NO_MATCH


# -- wildcards and case -------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "verdict"),
    [
        ("Doe^John", MATCH),
        ("Doe*", MATCH),
        ("*John", MATCH),
        ("*oe^J*", MATCH),
        ("D?e^John", MATCH),
        ("D??^J???", MATCH),
        ("D?^John", NO_MATCH),
        ("Doe", NO_MATCH),
        ("John*", NO_MATCH),
        ("Doe^John?", NO_MATCH),
        ("Smith*", NO_MATCH),
    ],
)
def test_wildcards(wanted: str, verdict: str) -> None:
    assert check(dataset(PatientName="Doe^John"), PATIENT_NAME, wanted) == verdict


@pytest.mark.parametrize("wanted", ["doe^john", "DOE^JOHN", "doe*", "*JOHN", "d?E*"])
def test_person_name_is_case_insensitive(wanted: str) -> None:
    assert check(dataset(PatientName="Doe^John"), PATIENT_NAME, wanted) == MATCH


@pytest.mark.parametrize(
    ("tag", "keyword", "value", "wanted"),
    [
        (PATIENT_ID, "PatientID", "abc123", "ABC123"),
        (PATIENT_ID, "PatientID", "abc123", "ABC*"),
        (STUDY_DESCRIPTION, "StudyDescription", "Chest CT", "*ct"),
        (STUDY_DESCRIPTION, "StudyDescription", "Chest CT", "chest ct"),
        (MODALITIES_IN_STUDY, "ModalitiesInStudy", "CT", "ct"),
    ],
)
def test_other_vrs_are_case_sensitive(tag: int, keyword: str, value: str, wanted: str) -> None:
    assert check(dataset(**{keyword: value}), tag, wanted) == NO_MATCH
    assert check(dataset(**{keyword: value}), tag, value) == MATCH


def test_bracket_and_regex_characters_are_literal() -> None:
    ds = dataset(PatientID="A[1].+(x)")
    assert check(ds, PATIENT_ID, "A[1].+(x)") == MATCH
    assert check(ds, PATIENT_ID, "A[1]*") == MATCH
    assert check(dataset(PatientID="A1"), PATIENT_ID, "A[1]") == NO_MATCH
    assert check(dataset(PatientID="AB.x"), PATIENT_ID, "A..x") == NO_MATCH


def test_trailing_padding_is_ignored() -> None:
    assert check(dataset(PatientID="ABC "), PATIENT_ID, "ABC") == MATCH


# -- multi-valued attributes --------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "verdict"),
    [("CT", MATCH), ("MR", MATCH), ("US", NO_MATCH), ("M?", MATCH), ("C", NO_MATCH),
     ("*R", MATCH)],
)
def test_multi_valued_attribute_matches_any_value(wanted: str, verdict: str) -> None:
    ds = dataset(ModalitiesInStudy=["CT", "MR"])
    assert check(ds, MODALITIES_IN_STUDY, wanted) == verdict


# -- UIDs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "verdict"),
    [
        ("1.2.3", MATCH),
        ("1.2.4\\1.2.3", MATCH),
        ("1.2.4\\1.2.5", NO_MATCH),
        ("1.2", NO_MATCH),
        ("1.2.33", NO_MATCH),
        ("1.2.*", NO_MATCH),  # no wildcards in UID matching
    ],
)
def test_uid_list_matching(wanted: str, verdict: str) -> None:
    assert check(dataset(SeriesInstanceUID="1.2.3"), SERIES_UID, wanted) == verdict


# -- dates ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "verdict"),
    [
        ("20230615", MATCH),
        ("20230616", NO_MATCH),
        ("20230101-20231231", MATCH),
        ("20230615-20230615", MATCH),
        ("20230615-", MATCH),
        ("-20230615", MATCH),
        ("20230616-", NO_MATCH),
        ("-20230614", NO_MATCH),
        ("20220101-20221231", NO_MATCH),
        ("20230101-", MATCH),
        ("-20231231", MATCH),
    ],
)
def test_date_ranges(wanted: str, verdict: str) -> None:
    assert check(dataset(StudyDate="20230615"), STUDY_DATE, wanted) == verdict


# -- times --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "wanted", "verdict"),
    [
        ("123045", "-1230", MATCH),  # upper bound 1230 means up to 12:30:59.999999
        ("123059.999", "-1230", MATCH),
        ("123100", "-1230", NO_MATCH),
        ("123045", "1231-", NO_MATCH),
        ("123045", "1230-", MATCH),
        ("122959", "1230-", NO_MATCH),
        ("123045", "1200-1300", MATCH),
        ("130000", "1200-1300", MATCH),
        ("130100", "1200-1300", NO_MATCH),
        ("125959", "12-12", MATCH),  # hour only: the whole hour
        ("130000", "12-12", NO_MATCH),
        ("1230", "123000-123059", MATCH),  # a partial stored value
        ("123045.5", "123045-123045", MATCH),
        ("123045", "123045", MATCH),
        ("123045", "123046", NO_MATCH),
    ],
)
def test_time_ranges(value: str, wanted: str, verdict: str) -> None:
    assert check(dataset(StudyTime=value), STUDY_TIME, wanted) == verdict


# -- date-times ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "wanted", "verdict"),
    [
        ("20230615120000", "20230101-20231231", MATCH),
        ("20230615120000", "20230615-20230615", MATCH),  # the whole day
        ("20230616000000", "-20230615", NO_MATCH),
        ("20230615120000", "20230615120001-", NO_MATCH),
        ("20230615120000", "20230615120000", MATCH),
        ("20230615120000-0500", "20230615-20230615", MATCH),
        ("20230615120000", "20230615000000-0500-20230616000000-0500", MATCH),
        ("20230617120000", "20230615000000-0500-20230616000000-0500", NO_MATCH),
        ("20230615120000", "20230615000000+0100-", MATCH),
    ],
)
def test_datetime_ranges(value: str, wanted: str, verdict: str) -> None:
    ds = dataset(AcquisitionDateTime=value)
    assert check(ds, ACQUISITION_DATETIME, wanted) == verdict


def test_single_datetime_with_negative_offset_matches_itself() -> None:
    ds = dataset(AcquisitionDateTime="20230615120000-0500")
    assert check(ds, ACQUISITION_DATETIME, "20230615120000-0500") == MATCH


def test_single_datetime_with_positive_offset_matches_itself() -> None:
    ds = dataset(AcquisitionDateTime="20230615120000+0100")
    assert check(ds, ACQUISITION_DATETIME, "20230615120000+0100") == MATCH


# -- numbers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "verdict"), [("3", MATCH), ("03", MATCH), ("3.0", MATCH), ("4", NO_MATCH),
                            ("30", NO_MATCH)])
def test_integer_string(wanted: str, verdict: str) -> None:
    assert check(dataset(SeriesNumber="3"), SERIES_NUMBER, wanted) == verdict


@pytest.mark.parametrize(("wanted", "verdict"), [("1.5", MATCH), ("1.50", MATCH),
                                                 ("1.6", NO_MATCH)])
def test_decimal_string(wanted: str, verdict: str) -> None:
    assert check(dataset(SliceThickness="1.50"), SLICE_THICKNESS, wanted) == verdict


@pytest.mark.parametrize(("wanted", "verdict"), [("512", MATCH), ("256", NO_MATCH),
                                                 ("0512", MATCH)])
def test_binary_number(wanted: str, verdict: str) -> None:
    assert check(dataset(Rows=512), ROWS, wanted) == verdict


def test_multi_valued_number() -> None:
    ds = dataset(WindowCenter=["40", "400"])
    assert check(ds, 0x00281050, "400") == MATCH
    assert check(ds, 0x00281050, "41") == NO_MATCH


def test_non_numeric_wanted_value_for_a_number_is_literal() -> None:
    assert check(dataset(SeriesNumber="3"), SERIES_NUMBER, "three") == NO_MATCH


# -- private attributes (VR from the element) -----------------------------------


def test_private_attribute_uses_the_element_vr() -> None:
    ds = Dataset()
    ds.add_new(0x00091010, "LO", "Private Value")
    assert check(ds, 0x00091010, "Private*") == MATCH
    assert check(ds, 0x00091010, "private*") == NO_MATCH


@pytest.mark.parametrize(("raw", "wanted", "verdict"), [
    (b"GE_GENESIS_FF\x00", "GE_GENESIS_FF", MATCH),  # Orthanc's UN answer, NUL-padded
    (b"GE_GENESIS_FF\x00", "GE_*", MATCH),
    (b"GE_GENESIS_FF\x00", "GE_OTHER", NO_MATCH),
    (b"A\\B ", "B", MATCH),
    (b"", "x", NO_MATCH),
])
def test_a_private_element_returned_as_un_is_matched_on_its_text(
    raw: bytes, wanted: str, verdict: str
) -> None:
    ds = Dataset()
    ds.add_new(0x00091001, "UN", raw)
    assert check(ds, 0x00091001, wanted) == verdict
