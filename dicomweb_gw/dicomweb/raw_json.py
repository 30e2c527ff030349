"""DICOM JSON straight from an element's bytes, for the value representations that need
no pydicom object.

Cold series metadata is built from each instance's file as it lands. Through pydicom,
each element becomes a DataElement, its value is converted, then turned into JSON:
about 6 ms of a 256-element CT header's 9 ms, under the GIL the retrieve also needs
(a cold 100-instance series waited ~1 s for its metadata after its last instance).
For plain value representations (binary numbers, numbers as text, text) the JSON
is made here from the undecoded element, as pydicom would make it: the same
stripping and splitting (pydicom's ``values.convert_*``), the same character set
(the dataset's, decoded as ``charset.decode_bytes`` does when no escape sequence is
present) and the same numbers (``jsonrep.convert_to_python_number``). ``None``
means "ask pydicom": PN, AT, SQ, binary and UN values, big endian, a value with an
ISO 2022 escape, one that does not decode, a number that does not parse or is not
finite. ``tests/test_dicomweb_raw_json.py`` compares the result with pydicom's on
every file pydicom ships and on values built for each rule.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable, Sequence
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement

__all__ = ["PLAIN_VRS", "plain_vr", "raw_json"]

#: Binary numbers: their struct format (little endian).
_NUMBERS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "UV": "Q", "SV": "q",
            "FL": "f", "FD": "d"}
#: Text in the default repertoire, split at backslashes after trailing spaces and
#: NULs go (``values.multi_string``; UI's trailing NUL too).
_DEFAULT_MULTI = frozenset({"AS", "CS", "DA", "DT", "TM", "UI"})
#: Text in the dataset's character set, split, each value's trailing spaces and NULs
#: removed (``values.convert_text``).
_CHARSET_MULTI = frozenset({"SH", "LO", "UC"})
#: Text in the dataset's character set, one value (``values.convert_single_string``).
_CHARSET_SINGLE = frozenset({"ST", "LT", "UT"})
_DECIMAL_STRINGS = frozenset({"DS", "IS"})
#: Every value representation ``raw_json`` may encode: never bulk data, never a sequence.
PLAIN_VRS = frozenset({*_NUMBERS, *_DEFAULT_MULTI, *_CHARSET_MULTI, *_CHARSET_SINGLE,
                       *_DECIMAL_STRINGS, "AE", "UR"})

_DEFAULT_ENCODING = "iso8859"  # pydicom's default_encoding: Latin-1
_ESC = 0x1B
_INTEGER = re.compile(r"\s*[+-]?\d+\s*\Z")
_DECIMAL = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*\Z")

Encodings = Callable[[], Sequence[str]]


def plain_vr(raw: RawDataElement) -> str | None:
    """The element's VR if it is one ``raw_json`` handles; from the dictionary when the
    data set is Implicit VR (an ambiguous or unknown one is not)."""
    vr = raw.VR
    if vr is None:
        try:
            vr = dictionary_VR(raw.tag)
        except KeyError:
            return None
    return vr if vr in PLAIN_VRS else None


def raw_json(raw: RawDataElement, encodings: Encodings) -> dict[str, Any] | None:
    """The DICOM JSON of ``raw`` as pydicom would give it, or None to leave it to pydicom.

    ``encodings``: the Python encodings of the data set's Specific Character Set,
    asked only for text that depends on it.
    """
    vr = plain_vr(raw)
    value = raw.value
    if vr is None or value is None or not raw.is_little_endian:
        return None
    values: list[Any] | None
    if vr in _NUMBERS:
        values = _numbers(value, _NUMBERS[vr])
    elif vr in _DECIMAL_STRINGS:
        values = _decimals(value, vr)
    else:
        values = _text(value, vr, encodings)
    if values is None:
        return None
    if not values or values == [""]:
        return {"vr": vr}
    if len(values) > 1:
        values = [None if item == "" else item for item in values]
    return {"vr": vr, "Value": values}


def _numbers(value: bytes, code: str) -> list[Any] | None:
    size = struct.calcsize(code)
    if len(value) % size:
        return None
    numbers = list(struct.unpack(f"<{len(value) // size}{code}", value))
    if code in "fd" and not all(math.isfinite(number) for number in numbers):
        return None  # JSON has no NaN or infinity: pydicom's way, whatever it is
    return numbers


def _decimals(value: bytes, vr: str) -> list[Any] | None:
    """IS as int, DS as float (``jsonrep``); an empty value among others stays ""."""
    text = value.decode(_DEFAULT_ENCODING)
    if vr == "DS":
        text = text.strip()  # convert_DS_string strips both ends before splitting
    items = text.rstrip(" \x00").split("\\")
    pattern, number = (_INTEGER, int) if vr == "IS" else (_DECIMAL, float)
    converted: list[Any] = []
    for item in items:
        if item == "":
            converted.append("")
        elif pattern.match(item):
            converted.append(number(item))
        else:
            return None  # pydicom's IS/DS classes decide (or refuse) the rest
    return converted


def _text(value: bytes, vr: str, encodings: Encodings) -> list[Any] | None:
    if vr in _DEFAULT_MULTI:
        return value.decode(_DEFAULT_ENCODING).rstrip(" \x00").split("\\")
    if vr == "AE":
        return [item.strip() for item in value.decode(_DEFAULT_ENCODING).split("\\")]
    if vr == "UR":
        return [value.decode(_DEFAULT_ENCODING).rstrip()]
    if _ESC in value:
        return None  # ISO 2022 escapes: pydicom switches character sets along the value
    names = encodings()
    if not names:
        return None
    try:
        text = value.decode(names[0])
    except (LookupError, UnicodeError):
        return None  # pydicom warns and replaces, or falls back: let it
    if vr in _CHARSET_SINGLE:
        return [text.rstrip("\x00 ")]
    return [item.rstrip("\x00 ") for item in text.split("\\")]
