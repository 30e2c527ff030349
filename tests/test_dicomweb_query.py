"""Unit tests for dicomweb_gw.dicomweb.query: QIDO-RS query strings -> matching/return keys."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom.dataset import Dataset

from dicomweb_gw.dicomweb.attributes import (
    is_private_creator,
    private_creator,
    required_attributes,
)
from dicomweb_gw.dicomweb.query import QidoQuery, parse_query, resolve_attribute, vr_of
from dicomweb_gw.errors import BadRequest
from dicomweb_gw.model import QueryLevel

PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
STUDY_DATE = 0x00080020
STUDY_TIME = 0x00080030
ACQUISITION_DATETIME = 0x0008002A
STUDY_UID = 0x0020000D
SERIES_UID = 0x0020000E
MODALITIES_IN_STUDY = 0x00080061
STUDY_DESCRIPTION = 0x00081030


def parse(*params: tuple[str, str], pinned: dict[int, str] | None = None,
          level: QueryLevel = QueryLevel.STUDY) -> QidoQuery:
    return parse_query(level, list(params), pinned or {})


def match_of(name: str, value: str) -> str:
    query = parse((name, value))
    assert len(query.match) == 1
    return next(iter(query.match.values()))


def test_empty_query() -> None:
    query = parse()
    assert query.level is QueryLevel.STUDY
    assert query.match == {}
    assert query.include == ()
    assert query.include_all is False
    assert query.limit is None
    assert query.offset == 0
    assert query.fuzzy is False


def test_level_is_kept() -> None:
    assert parse(level=QueryLevel.IMAGE).level is QueryLevel.IMAGE


def test_ohif_study_list_query() -> None:
    query = parse(
        ("limit", "101"), ("offset", "0"), ("fuzzymatching", "false"),
        ("includefield", "00081030,00080060,00080090,00100030"),
        ("PatientName", "*doe*"), ("00100020", "PID-1"), ("StudyDate", "20230101-20231231"),
        ("ModalitiesInStudy", "CT"),
    )
    assert query.limit == 101
    assert query.offset == 0
    assert query.fuzzy is False
    assert query.include == (0x00081030, 0x00080060, 0x00080090, 0x00100030)
    assert query.match == {
        PATIENT_NAME: "*doe*",
        PATIENT_ID: "PID-1",
        STUDY_DATE: "20230101-20231231",
        MODALITIES_IN_STUDY: "CT",
    }


# -- attribute names ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "tag"),
    [
        ("PatientName", PATIENT_NAME),
        ("00100010", PATIENT_NAME),
        ("0020000d", STUDY_UID),
        ("0020000D", STUDY_UID),
        ("StudyInstanceUID", STUDY_UID),
    ],
)
def test_keyword_and_tag_keys(name: str, tag: int) -> None:
    assert resolve_attribute(name) == tag
    assert tag in parse((name, "")).match


def test_private_tag_is_accepted() -> None:
    assert resolve_attribute("00091010") == 0x00091010


@pytest.mark.parametrize(
    "name", ["PatientNam", "patientname", "NotAKeyword", "0008FFFF", "0010001", "001000100",
             "GGGG0010"])
def test_unknown_attributes_are_bad_requests(name: str) -> None:
    with pytest.raises(BadRequest, match=name):
        parse((name, "x"))


@pytest.mark.parametrize(
    "name",
    ["ReferencedStudySequence.ReferencedSOPInstanceUID", "00081110.00081155",
     "PatientName.Foo"],
)
def test_dotted_keys_are_bad_requests(name: str) -> None:
    with pytest.raises(BadRequest, match="sequence"):
        parse((name, "1.2.3"))


def test_matching_on_a_sequence_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="sequence"):
        parse(("ReferencedStudySequence", "x"))


def test_empty_value_is_universal_matching() -> None:
    # universal matching is allowed for any attribute, even a date or a UID or a sequence
    query = parse(("StudyDate", ""), ("StudyInstanceUID", ""), ("ReferencedStudySequence", ""))
    assert query.match == {STUDY_DATE: "", STUDY_UID: "", 0x00081110: ""}


def test_control_characters_are_rejected() -> None:
    with pytest.raises(BadRequest, match="PatientID"):
        parse(("PatientID", "abc\x00def"))


def test_same_key_twice_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="more than once"):
        parse(("PatientID", "a"), ("00100020", "b"))


def test_reserved_parameters_are_case_insensitive_and_not_attributes() -> None:
    query = parse(("includeField", "PatientName"), ("LIMIT", "5"), ("Offset", "2"),
                  ("FuzzyMatching", "TRUE"), ("accept", "application/dicom+json"),
                  ("charset", "utf-8"))
    assert query.include == (PATIENT_NAME,)
    assert (query.limit, query.offset, query.fuzzy) == (5, 2, True)
    assert query.match == {}


# -- includefield -------------------------------------------------------------


def test_includefield_lists_across_parameters_keep_order_and_drop_duplicates() -> None:
    query = parse(("includefield", "00081030, PatientName"), ("includefield", "00100010"),
                  ("includefield", "StudyDescription,,"))
    assert query.include == (STUDY_DESCRIPTION, PATIENT_NAME)
    assert query.include_all is False


@pytest.mark.parametrize("value", ["all", "ALL", "00081030,all"])
def test_includefield_all(value: str) -> None:
    query = parse(("includefield", value))
    assert query.include_all is True


def test_includefield_unknown_attribute() -> None:
    with pytest.raises(BadRequest, match="NoSuchAttribute"):
        parse(("includefield", "PatientName,NoSuchAttribute"))


# -- limit / offset / fuzzymatching ------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("1", 1), ("101", 101)])
def test_limit_and_offset_values(value: str, expected: int) -> None:
    query = parse(("limit", value), ("offset", value))
    assert query.limit == expected
    assert query.offset == expected


@pytest.mark.parametrize("name", ["limit", "offset"])
@pytest.mark.parametrize("value", ["-1", "abc", "", "1.5", " 5", "1e3", "0x10"])
def test_invalid_limit_and_offset(name: str, value: str) -> None:
    with pytest.raises(BadRequest, match=name):
        parse((name, value))


def test_superscript_digit_limit_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="limit"):
        parse(("limit", "²"))


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False),
                                                 ("True", True), ("FALSE", False)])
def test_fuzzymatching(value: str, expected: bool) -> None:
    assert parse(("fuzzymatching", value)).fuzzy is expected


@pytest.mark.parametrize("value", ["yes", "1", "", "maybe"])
def test_invalid_fuzzymatching(value: str) -> None:
    with pytest.raises(BadRequest, match="fuzzymatching"):
        parse(("fuzzymatching", value))


# -- UIDs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.2.3", "1.2.3"),
        ("1.2.3,1.2.4", "1.2.3\\1.2.4"),
        ("1.2.3\\1.2.4", "1.2.3\\1.2.4"),
        ("1.2.3, 1.2.4,1.2.5", "1.2.3\\1.2.4\\1.2.5"),
        ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2"),
        ("1.0.3", "1.0.3"),
    ],
)
def test_uid_lists_are_backslash_joined(value: str, expected: str) -> None:
    assert match_of("StudyInstanceUID", value) == expected
    assert match_of("0020000E", value) == expected


@pytest.mark.parametrize(
    "value",
    ["1.2.03", "1..2", "1.2.", ".1.2", "abc", "1.2.3,", "1.2.3,1.2.x", "1", "1.2.3 4",
     "1." + "2" * 70],
)
def test_invalid_uids(value: str) -> None:
    with pytest.raises(BadRequest, match="StudyInstanceUID"):
        parse(("StudyInstanceUID", value))


def test_pinned_uids_are_matching_keys() -> None:
    query = parse(pinned={STUDY_UID: "1.2.3"}, level=QueryLevel.SERIES)
    assert query.match == {STUDY_UID: "1.2.3"}


def test_query_key_repeating_the_pinned_uid_is_fine() -> None:
    query = parse(("StudyInstanceUID", "1.2.3"), ("Modality", "CT"),
                  pinned={STUDY_UID: "1.2.3"}, level=QueryLevel.SERIES)
    assert query.match == {STUDY_UID: "1.2.3", 0x00080060: "CT"}


@pytest.mark.parametrize(("name", "value"),
                         [("StudyInstanceUID", "1.2.4"), ("0020000D", "1.2.4"),
                          ("StudyInstanceUID", "1.2.3,1.2.4"), ("StudyInstanceUID", "")])
def test_query_key_contradicting_pinned_uid(name: str, value: str) -> None:
    with pytest.raises(BadRequest, match="contradicts"):
        parse((name, value), pinned={STUDY_UID: "1.2.3"}, level=QueryLevel.SERIES)


def test_pinned_dict_is_not_modified() -> None:
    pinned = {STUDY_UID: "1.2.3"}
    parse(("PatientID", "x"), pinned=pinned, level=QueryLevel.SERIES)
    assert pinned == {STUDY_UID: "1.2.3"}


# -- dates and times ----------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["20230101", "20240229", "20230101-20231231", "20230101-", "-20231231",
     "20230101-20230101"],
)
def test_valid_dates_and_date_ranges(value: str) -> None:
    assert match_of("StudyDate", value) == value


@pytest.mark.parametrize(
    "value",
    ["20231341", "20230230", "20230229", "2023-01-01", "2023010", "202301011", "-", "--",
     "20230101--20231231", "20230101-20231341", "x20230101", "20230101-2023"],
)
def test_invalid_dates(value: str) -> None:
    with pytest.raises(BadRequest, match="StudyDate"):
        parse(("StudyDate", value))


def test_reversed_date_range() -> None:
    with pytest.raises(BadRequest, match="StudyDate"):
        parse(("StudyDate", "20231231-20230101"))


@pytest.mark.parametrize(
    "value",
    ["12", "1230", "123045", "123045.5", "123045.123456", "0000-2359", "1230-", "-1230",
     "235960"],
)
def test_valid_times(value: str) -> None:
    assert match_of("StudyTime", value) == value


@pytest.mark.parametrize(
    "value",
    ["2400", "1260", "123061", "1", "123", "12:30", "123045.1234567", "12-25", "ab"],
)
def test_invalid_times(value: str) -> None:
    with pytest.raises(BadRequest, match="StudyTime"):
        parse(("StudyTime", value))


@pytest.mark.parametrize(
    "value",
    [
        "2023",
        "20230101",
        "20230101120000",
        "20230101120000.123456",
        "20230101120000-0500",
        "20230101120000+0100",
        "20230101-20231231",
        "20230101120000-0500-20230102120000-0500",
        "20230101120000-0500-",
        "-20231231235959+0000",
    ],
)
def test_valid_datetimes(value: str) -> None:
    assert match_of("AcquisitionDateTime", value) == value


@pytest.mark.parametrize("value", ["2023-01-01T12:00", "abc", "-", "20230101120000-05"])
def test_invalid_datetimes(value: str) -> None:
    with pytest.raises(BadRequest, match="AcquisitionDateTime"):
        parse(("AcquisitionDateTime", value))


@pytest.mark.parametrize("value", ["20231341", "2023010125", "20231341-20231231"])
def test_datetimes_with_impossible_calendar_values(value: str) -> None:
    with pytest.raises(BadRequest, match="AcquisitionDateTime"):
        parse(("AcquisitionDateTime", value))


def test_date_given_by_tag_names_the_keyword() -> None:
    with pytest.raises(BadRequest, match="StudyDate"):
        parse(("00080020", "20231341"))


# -- other values pass through ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [("PatientName", "Doe^J*"), ("PatientID", "A?C"), ("ModalitiesInStudy", "CT"),
     ("StudyDescription", "Chest, with contrast"), ("AccessionNumber", "ACC-1")],
)
def test_string_values_pass_through_unchanged(name: str, value: str) -> None:
    assert match_of(name, value) == value


@pytest.mark.parametrize(("key", "value"), [("Modality", "Ж"), ("AccessionNumber", "Ж"),
                                            ("StudyID", "Ж")])
def test_non_ascii_values_only_where_the_vr_allows_them(key: str, value: str) -> None:
    if key == "Modality":  # CS: default repertoire only
        with pytest.raises(BadRequest, match="Modality"):
            parse_query(QueryLevel.STUDY, [(key, value)], {})
    else:  # SH may use the Specific Character Set
        assert parse_query(QueryLevel.STUDY, [(key, value)], {}).match


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("Rows", "512", "512"),  # US
    ("Rows", "+0007", "7"),
    ("0020000E", "", ""),
    ("SliceThickness", "2.5", "2.5"),  # DS: text, passed as given
    ("300A0782", "65535", "65535"),  # US, schemathesis' pick
])
def test_numeric_values_are_checked_and_normalised(key: str, value: str, expected: str) -> None:
    query = parse_query(QueryLevel.IMAGE, [(key, value)], {})
    assert list(query.match.values()) == [expected]


@pytest.mark.parametrize(("key", "value"), [
    ("Rows", "abc"), ("Rows", "-1"), ("Rows", "70000"), ("Rows", "5*"),
    ("300A0782", "x"), ("00189087", "nan"), ("00189219", "1.5"),  # FD, SS
    ("PixelData", "00"),  # OB/OW
])
def test_values_a_binary_vr_cannot_hold_are_400(key: str, value: str) -> None:
    with pytest.raises(BadRequest):
        parse_query(QueryLevel.IMAGE, [(key, value)], {})


@pytest.mark.parametrize("params", [
    [("Rows", "512")], [("00189087", "1.5")], [("300A0782", "3")], [("00091001", "private")],
    [("includefield", "300A0782,00189087,Rows")],
    [("includefield", "SmallestImagePixelValue,PixelData")],  # "US or SS", "OB or OW"
    [("SmallestImagePixelValue", "0")],
])
def test_every_accepted_query_encodes_for_the_pacs(params: list[tuple[str, str]]) -> None:
    """A query parse_query accepts must become a C-FIND identifier pynetdicom can encode
    (schemathesis found a US key sent as text: 'Failed to encode the supplied Dataset')."""
    from pynetdicom.dsutils import encode

    from dicomweb_gw.dicomweb.qido import QidoService

    identifier = QidoService(max_results=10)._identifier(
        parse_query(QueryLevel.IMAGE, params, {}))
    assert encode(identifier, True, True) is not None


# -- private attributes (#14) --------------------------------------------------


def _identifier(level: QueryLevel, params: list[tuple[str, str]],
                pinned: dict[int, str] | None = None) -> Dataset:
    from dicomweb_gw.dicomweb.qido import QidoService

    return QidoService(max_results=10)._identifier(parse_query(level, params, pinned or {}))


def _explicit_vr_on_the_wire(identifier: Dataset) -> dict[int, tuple[str, object]]:
    """tag -> (VR, value) as a PACS using Explicit VR Little Endian reads them: raw, before
    pydicom would quietly turn a UN creator into LO."""
    from pydicom.filereader import data_element_generator
    from pynetdicom.dsutils import encode

    encoded = encode(identifier, False, True)
    assert encoded is not None
    raw = data_element_generator(BytesIO(encoded), False, True)
    return {int(element.tag): (str(element.VR), element.value) for element in raw}


@pytest.mark.parametrize("tag", [0x00090010, 0x001900FF, 0x7FE10010])
def test_private_creator_keys_are_lo(tag: int) -> None:
    assert vr_of(tag) == "LO"


@pytest.mark.parametrize("tag", [0x00091001, 0x00090001, 0x00100010])
def test_other_tags_are_not_private_creators(tag: int) -> None:
    assert not is_private_creator(tag)


def test_private_creator_matching_key_goes_to_the_pacs_as_lo() -> None:
    identifier = _identifier(QueryLevel.STUDY, [("00090010", "ACME 1.1")])
    assert _explicit_vr_on_the_wire(identifier)[0x00090010] == ("LO", b"ACME 1.1")


@pytest.mark.parametrize(("tag", "creator"), [
    (0x00091001, 0x00090010), (0x001910FF, 0x00190010), (0x0029FF01, 0x002900FF),
    (0x00090010, None), (0x00100010, None), (0x00090001, None), (0x0009000F, None),
])
def test_the_creator_of_a_private_element(tag: int, creator: int | None) -> None:
    assert private_creator(tag) == creator


@pytest.mark.parametrize("params", [[("includefield", "00091001")], [("00091001", "GE*")]])
def test_a_private_element_is_asked_for_with_its_creator(
    params: list[tuple[str, str]]
) -> None:
    sent = _explicit_vr_on_the_wire(_identifier(QueryLevel.IMAGE, params))
    assert sent[0x00090010] == ("LO", b"")  # universal matching: the PACS says which creator
    assert 0x00091001 in sent


def test_a_creator_the_client_matches_on_is_kept() -> None:
    identifier = _identifier(QueryLevel.IMAGE, [("00090010", "GEMS_IDEN_01"),
                                                ("includefield", "00091001,00091002")])
    assert identifier[0x00090010].value == "GEMS_IDEN_01"
    assert 0x00091002 in identifier


# -- the result attributes follow the resource in the URL (#14) -----------------


def test_the_scope_is_the_url_path_not_the_query_keys() -> None:
    by_key = parse(("StudyInstanceUID", "1.2.3"), level=QueryLevel.SERIES)
    by_path = parse(pinned={STUDY_UID: "1.2.3"}, level=QueryLevel.SERIES)
    assert by_key.match == by_path.match
    assert by_key.scope == frozenset()
    assert by_path.scope == {QueryLevel.STUDY}
    both = parse(pinned={STUDY_UID: "1.2.3", SERIES_UID: "1.2.4"}, level=QueryLevel.IMAGE)
    assert both.scope == {QueryLevel.STUDY, QueryLevel.SERIES}


@pytest.mark.parametrize(("level", "params", "pinned"), [
    (QueryLevel.SERIES, [("StudyInstanceUID", "1.2.3")], {}),  # All Series
    (QueryLevel.SERIES, [], {STUDY_UID: "1.2.3"}),  # Study's Series
    (QueryLevel.IMAGE, [("StudyInstanceUID", "1.2.3"), ("SeriesInstanceUID", "1.2.4")], {}),
    (QueryLevel.IMAGE, [], {STUDY_UID: "1.2.3", SERIES_UID: "1.2.4"}),
])
def test_the_pacs_is_asked_for_the_parent_attributes(
    level: QueryLevel, params: list[tuple[str, str]], pinned: dict[int, str]
) -> None:
    identifier = _identifier(level, params, pinned)
    for tag in (PATIENT_NAME, PATIENT_ID, STUDY_DATE, 0x00080050, STUDY_UID):
        assert tag in identifier
    if level is QueryLevel.IMAGE:
        assert {0x00080060, 0x00200011, SERIES_UID} <= set(identifier.keys())


def test_required_attributes_follow_the_scope() -> None:
    all_series = set(required_attributes(QueryLevel.SERIES, scope=frozenset()))
    study_series = set(required_attributes(QueryLevel.SERIES, scope=frozenset({QueryLevel.STUDY})))
    assert {PATIENT_NAME, STUDY_DATE, STUDY_UID, 0x00080060} <= all_series
    assert PATIENT_NAME not in study_series
    assert {STUDY_UID, SERIES_UID, 0x00080060} <= study_series
    study_instances = set(required_attributes(QueryLevel.IMAGE,
                                              scope=frozenset({QueryLevel.STUDY})))
    assert {0x00080060, 0x00200011, STUDY_UID, 0x00080018} <= study_instances
    assert STUDY_DATE not in study_instances
