"""Detecting C-FIND text the declared character set cannot decode (``pacs/charsets.py``).

The identifiers are read from bytes the way pynetdicom reads a C-FIND response
(``read_dataset``: raw elements, decoded on first access with the character set
the data set was read with), so the tests see what the gateway sees.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Iterator
from io import BytesIO

import pytest
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset

from dicomweb_gw.pacs.charsets import declared_charset, decodes_in, repair_charset

PATIENT_NAME = 0x00100010
STUDY_DESCRIPTION = 0x00081030
PATIENT_ID = 0x00100020
CHARSET = 0x00080005
ROWS = 0x00280010
PROCEDURE_CODES = 0x00081032
CODE_MEANING = 0x00080104

LATIN1_NAME = "Müller^Jürgen"
CHINESE_NAME = "王^小明"


@pytest.fixture(autouse=True)
def no_pydicom_warnings() -> Iterator[None]:
    """pydicom warns when it falls back to replacement characters: mojibake is an error here."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _padded(value: bytes) -> bytes:
    return value + b" " if len(value) % 2 else value


def _implicit(tag: int, value: bytes) -> bytes:
    value = _padded(value)
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


def _explicit(tag: int, vr: str, value: bytes) -> bytes:
    value = _padded(value)
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(value)) + value


def _received(*elements: tuple[int, bytes], charset: bytes | None = None) -> Dataset:
    """A C-FIND identifier as pynetdicom hands it over (Implicit VR Little Endian)."""
    if charset is not None:
        elements = ((CHARSET, charset), *elements)
    data = b"".join(_implicit(tag, value) for tag, value in sorted(elements))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's notes on odd (0008,0005) values
        return read_dataset(BytesIO(data), True, True)


def test_ascii_text_is_left_alone() -> None:
    identifier = _received((PATIENT_NAME, b"Doe^John"), (PATIENT_ID, b"123"))
    assert repair_charset(identifier, "ISO_IR 100") is None
    assert CHARSET not in identifier
    assert identifier.PatientName == "Doe^John"


@pytest.mark.parametrize("charset", [None, b"ISO_IR 6", b"ISO 2022 IR 6", b"ISO_IR 192",
                                     b"ISO_IR 999", b"\\"])
def test_latin1_bytes_without_a_usable_charset_get_the_fallback(charset: bytes | None) -> None:
    """None, ASCII, UTF-8 (the bytes are invalid there), an unknown term, empty values."""
    identifier = _received((PATIENT_NAME, LATIN1_NAME.encode("latin_1")),
                           (STUDY_DESCRIPTION, "Hüfte".encode("latin_1")), charset=charset)
    repair = repair_charset(identifier, "ISO_IR 100")
    assert repair is not None
    assert repair.declared == (charset or b"").decode().strip("\\")
    assert repair.fallback_fits
    assert identifier.PatientName == LATIN1_NAME
    assert identifier.StudyDescription == "Hüfte"
    assert identifier.SpecificCharacterSet == "ISO_IR 100"


@pytest.mark.parametrize(("charset", "text", "codec"), [
    (b"ISO_IR 100", LATIN1_NAME, "latin_1"),
    (b"ISO IR 100", LATIN1_NAME, "latin_1"),  # misspelt, but pydicom understands it
    (b"ISO_IR 192", LATIN1_NAME, "utf_8"),
    (b"ISO_IR 192", CHINESE_NAME, "utf_8"),
    (b"GBK", CHINESE_NAME, "gbk"),
    (b"GB18030", CHINESE_NAME, "gb18030"),
])
def test_text_valid_in_its_declared_charset_is_left_alone(
    charset: bytes, text: str, codec: str,
) -> None:
    identifier = _received((PATIENT_NAME, text.encode(codec)), charset=charset)
    assert repair_charset(identifier, "GB18030" if codec == "latin_1" else "ISO_IR 100") is None
    assert identifier.PatientName == text


def test_gbk_bytes_without_a_charset_are_read_with_a_gb18030_fallback() -> None:
    identifier = _received((PATIENT_NAME, CHINESE_NAME.encode("gbk")))
    repair = repair_charset(identifier, "GB18030")
    assert repair is not None
    assert repair.declared == ""
    assert identifier.PatientName == CHINESE_NAME


def test_a_fallback_that_does_not_fit_either_is_said() -> None:
    identifier = _received((PATIENT_NAME, LATIN1_NAME.encode("latin_1")))
    repair = repair_charset(identifier, "ISO_IR 192")
    assert repair is not None
    assert not repair.fallback_fits


def test_binary_values_are_not_text() -> None:
    """A US value of 255 is the byte 0xFF: not a character set matter."""
    identifier = _received((ROWS, struct.pack("<H", 255)), (PATIENT_NAME, b"Doe"))
    assert repair_charset(identifier, "GB18030") is None
    assert identifier.Rows == 255


def test_explicit_vr_text_is_checked_too() -> None:
    data = _explicit(PATIENT_NAME, "PN", LATIN1_NAME.encode("latin_1"))
    identifier = read_dataset(BytesIO(data), False, True)
    assert repair_charset(identifier, "ISO_IR 100") is not None
    assert identifier.PatientName == LATIN1_NAME


def test_sequence_items_are_decoded_with_the_fallback() -> None:
    """The fallback is set before anything is read, so a sequence read later follows it."""
    item_data = _implicit(CODE_MEANING, "Röntgen".encode("latin_1"))
    item = struct.pack("<HHI", 0xFFFE, 0xE000, len(item_data)) + item_data
    identifier = _received((PATIENT_NAME, LATIN1_NAME.encode("latin_1")),
                           (PROCEDURE_CODES, item), charset=b"ISO_IR 192")
    assert repair_charset(identifier, "ISO_IR 100") is not None
    assert identifier.ProcedureCodeSequence[0].CodeMeaning == "Röntgen"


def test_declared_charset_reads_the_raw_terms() -> None:
    identifier = _received((PATIENT_NAME, b"X"), charset=b"\\ISO 2022 IR 87")
    assert declared_charset(identifier) == ("", "ISO 2022 IR 87")
    assert declared_charset(_received((PATIENT_NAME, b"X"))) == ()


def test_a_python_codec_name_pydicom_reads_is_left_alone() -> None:
    """"UTF-8" is no DICOM term, but pydicom reads it as the codec: no fallback (mojibake)."""
    identifier = _received((PATIENT_NAME, LATIN1_NAME.encode()), charset=b"UTF-8")
    assert repair_charset(identifier, "ISO_IR 100") is None
    assert identifier.PatientName == LATIN1_NAME


JIS_NAME = b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B"
JIS_DECLARED = ("", "ISO 2022 IR 87")


@pytest.mark.parametrize(("value", "terms", "decodes"), [
    (LATIN1_NAME.encode("latin_1"), ("ISO_IR 100",), True),
    (LATIN1_NAME.encode("latin_1"), (), False),  # the default repertoire is ASCII
    (LATIN1_NAME.encode("latin_1"), ("ISO_IR 6",), False),
    (LATIN1_NAME.encode("latin_1"), ("ISO IR 100",), True),  # misspelt: pydicom corrects it
    (LATIN1_NAME.encode("latin_1"), ("ISO_IR 999",), False),  # unknown: pydicom would guess
    (LATIN1_NAME.encode(), ("UTF-8",), True),  # a Python codec name: pydicom reads it so
    (LATIN1_NAME.encode("latin_1"), ("ISO_IR 192",), False),
    (JIS_NAME, JIS_DECLARED, True),
    (JIS_NAME, ("", "ISO_2022-IR 87"), True),  # misspelt, with code extensions
    (JIS_NAME, (), False),  # escape sequences without code extensions declared
    (b"\x1b$)C\xc8\xab", JIS_DECLARED, False),  # escape to Korean, not declared
    (b"\x1b$B\xff\xfe\x1b(B", JIS_DECLARED, False),  # not JIS X 0208 after the escape
    (b"M\xfcller=" + JIS_NAME[13:], JIS_DECLARED, False),  # Latin-1 where ASCII belongs
    (b"\x1b-A" + LATIN1_NAME.encode("latin_1"), ("ISO 2022 IR 100",), True),
], ids=["latin1", "latin1-none", "latin1-ascii", "misspelt", "unknown", "python-codec",
        "latin1-as-utf8", "jis", "jis-misspelt", "jis-none", "undeclared-escape",
        "bad-jis", "latin1-head", "2022-latin1"])
def test_decodes_in_is_strict(value: bytes, terms: tuple[str, ...], decodes: bool) -> None:
    assert decodes_in(value, terms) is decodes
