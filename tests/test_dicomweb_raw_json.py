"""raw_json: DICOM JSON from undecoded elements must be what pydicom's path gives.

The oracle is the gateway's own pydicom path (``to_dicom_json`` with ``raw_json``
answering "ask pydicom" for everything, as before it existed), on every
file pydicom ships, and on values built to hit each rule of
pydicom's ``values.convert_*``: padding, empty values among others, numbers as
text, character sets, and what must be left to pydicom.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from io import BytesIO
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_files
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from dicomweb_gw.dicomweb import dicomjson
from dicomweb_gw.dicomweb.dicomjson import to_dicom_json
from dicomweb_gw.dicomweb.raw_json import raw_json

_FILES = sorted(set(map(Path, get_testdata_files("*"))))


def _read(source: Path | bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmread(BytesIO(source) if isinstance(source, bytes) else source,
                       stop_before_pixels=True, force=True)


def _pydicoms(dataset: Dataset) -> bytes:
    """``to_dicom_json`` as it was before ``raw_json``: every element through pydicom."""
    with mock.patch.object(dicomjson, "raw_json", return_value=None), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return orjson.dumps(to_dicom_json(dataset))


def _both(read: Callable[[], Dataset]) -> tuple[bytes, bytes]:
    """(raw_json's answer, pydicom's) as JSON bytes (NaN compares as null), each on a
    data set ``read`` afresh, its elements undecoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = orjson.dumps(to_dicom_json(read()))
    return fast, _pydicoms(read())


def _readable(path: Path) -> bool:
    try:
        return len(_read(path)) > 0
    except Exception:
        return False


@pytest.mark.parametrize("path", [p for p in _FILES if _readable(p)], ids=lambda p: p.name)
def test_every_sample_file_gives_pydicoms_json(path: Path) -> None:
    fast, slow = _both(lambda: _read(path))
    assert fast == slow


def _encoded(elements: dict[str, Any], *, implicit: bool = False,
             charset: str | None = None) -> bytes:
    ds = Dataset()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    buffer = BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    "numbers": ({"Rows": 512, "TagAngleSecondAxis": -3, "ReferencePixelX0": -70000,
                 "SimpleFrameList": [1, 2, 3], "RecommendedDisplayFrameRateInFloat": 0.1,
                 "AcquisitionDuration": 12.5,
                 "PixelSpacing": [0.5, 0.25], "SliceThickness": "1.25",
                 "SeriesNumber": "7", "ImagePositionPatient": ["-1e2", ".5", "3."]}, None),
    "empty among others": ({"ImageType": ["ORIGINAL", "", "AXIAL"],
                            "WindowCenter": ["40", "", "300"], "OtherPatientIDs": ["", "B"],
                            "PatientAge": "", "InstanceNumber": ""}, None),
    "text padding": ({"StudyDescription": " Chest  ", "Modality": "CT ",
                      "StationAETitle": "  AE1 ", "RetrieveURL": "http://pacs/x  ",
                      "StudyComments": "line one\\ with a backslash  "}, None),
    "latin-1": ({"InstitutionName": "Hôpital Sainte-Anne", "StudyDescription": "Crâne"},
                "ISO_IR 100"),
    "utf-8": ({"InstitutionName": "Больница №1", "StudyDescription": "頭部"}, "ISO_IR 192"),
    "default repertoire, bytes over 127": ({"InstitutionName": "Klinik Müller"}, None),
}


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
@pytest.mark.parametrize("case", list(CASES))
def test_values_give_pydicoms_json(case: str, implicit: bool) -> None:
    elements, charset = CASES[case]
    encoded = _encoded(elements, implicit=implicit, charset=charset)
    fast, slow = _both(lambda: _read(encoded))
    assert fast == slow


def _raw_dataset(tag: int, vr: str, value: bytes, *, implicit: bool,
                 charset: str | None) -> Dataset:
    """A data set as a reader leaves it: its elements undecoded, ``value`` as it came."""
    ds = Dataset()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    ds[tag] = RawDataElement(tag, None if implicit else vr, len(value), value, 0, implicit,
                             True)
    return ds


@pytest.mark.parametrize(("raw", "vr", "tag"), [
    (b"A\\B\\\x00", "CS", 0x00080008), (b"1.2.3\x00", "UI", 0x00081150),
    (b"1.2\\3.4 ", "UI", 0x00081150), (b"\x00\x00", "LO", 0x00080080),
    (b"  ", "SH", 0x00081010), (b" 12\\ 3 ", "IS", 0x00081160),
    (b"1.0", "IS", 0x00200011), (b" 1.5\\\\2 ", "DS", 0x00200032),
    (b"abc ", "DS", 0x00180050), (b"NaN ", "DS", 0x00101030), (b"+.5e1", "DS", 0x00180050),
    (b"\x1b$B\x1b(B", "LO", 0x00080080), (b"\x00\x00\xc0\x7f", "FL", 0x00089459),
    (b"\x01\x02\x03", "US", 0x00280010), (b"\xff\xfe", "UT", 0x0040A160),
    (b"  AE1 \\AE2", "AE", 0x00080055), (b"http://x  ", "UR", 0x00081190),
    (b"Hospital\xe9", "LO", 0x00080080),
])
def test_byte_level_cases_give_pydicoms_json(raw: bytes, vr: str, tag: int) -> None:
    for implicit in (False, True):
        for charset in (None, "ISO_IR 100", "ISO_IR 192", "ISO_IR 999"):  # 999: unknown
            fast, slow = _both(partial(_raw_dataset, tag, vr, raw, implicit=implicit,
                                       charset=charset))
            assert fast == slow, (raw, vr, implicit, charset)


def test_what_needs_pydicom_is_left_to_it() -> None:
    def raw(vr: str | None, value: bytes, tag: int = 0x00081030) -> RawDataElement:
        return RawDataElement(tag, vr, len(value), value, 0, vr is None, True)

    def latin1() -> list[str]:
        return ["iso8859"]

    assert raw_json(raw("PN", b"Doe^John"), latin1) is None
    assert raw_json(raw("SQ", b""), latin1) is None
    assert raw_json(raw("OB", b"\x00\x01"), latin1) is None
    assert raw_json(raw("LO", b"\x1b$B"), latin1) is None  # ISO 2022: switches sets
    assert raw_json(raw("FD", b"\x00" * 7), latin1) is None  # not a whole number of values
    assert raw_json(RawDataElement(0x00081030, "LO", 4, b"ABCD", 0, False, False),
                    latin1) is None  # big endian
    assert raw_json(raw(None, b"ABCD", tag=0x00091010), latin1) is None  # private, implicit
    # The character set is asked for only when the text depends on it.
    assert raw_json(raw("CS", b"CT"), lambda: pytest.fail("asked")) == {
        "vr": "CS", "Value": ["CT"]}
