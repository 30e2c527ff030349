"""Text a PACS sends in another character set than the one it declares, or with none.

Many PACS write names in Latin-1 or GBK without a Specific Character Set
(0008,0005), or under one that does not fit the bytes (Latin-1 bytes declared
``ISO_IR 192``). pydicom would then decode with replacement characters (or, with
none declared, as Latin-1 whatever the bytes are): mojibake in the JSON. Such
an identifier is decoded with the node's ``fallback_charset`` instead.

The check runs on the raw bytes, before any value is read: pydicom converts an
element (decoding its text with the data set's character set at that moment)
only when it is first accessed, so setting the character set to the fallback
first makes every value, nested sequences included, come out right. The usual answer
(all ASCII, or valid in its declared set) costs a look at each element's bytes.

The reading of (0008,0005), of the raw text values and the strict check
(``decodes_in``) serve the C-FIND repair here and ``dicomweb-gw doctor``'s
judgement of a PACS's character set (``probe_charset``) alike.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.charset import (
    CODES_TO_ENCODINGS,
    convert_encodings,
    default_encoding,
    handled_encodings,
    python_encoding,
)
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

__all__ = ["CharsetRepair", "beyond_ascii", "declared_charset", "decodes_in", "raw_texts",
           "repair_charset"]

_SPECIFIC_CHARACTER_SET = 0x00080005
#: The value representations whose text (0008,0005) governs (PS3.5 6.1.2.3).
_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
#: The default repertoire: ASCII. pydicom decodes it as Latin-1, which never fails,
#: so non-ASCII bytes under it would go unnoticed.
_ASCII_TERMS = frozenset({"", "ISO_IR 6", "ISO 2022 IR 6"})
_ESC = b"\x1b"
#: "ISO IR 100", "ISO-IR 100", "ISO_2022-IR 87": spellings pydicom corrects (with a warning).
_MISSPELT = re.compile(r"^ISO[^_]IR")
_MISSPELT_2022 = re.compile(r"^(?=ISO.2022.IR.)(?!ISO 2022 IR )")
#: Characters that end a run in a code extension's single-byte set (PS3.5 6.1.2.5.3).
_DELIMITERS = frozenset(ord(c) for c in "\\^=\r\n\t\f")


@dataclass(frozen=True, slots=True)
class CharsetRepair:
    """An identifier whose text did not fit its declared character set."""

    #: What the PACS declared, as sent ("" for nothing).
    declared: str
    #: What the identifier is decoded with now.
    fallback: str
    #: Whether the fallback decodes every non-ASCII value (else pydicom puts
    #: replacement characters where it cannot).
    fallback_fits: bool


def repair_charset(identifier: Dataset, fallback: str) -> CharsetRepair | None:
    """Set ``identifier``'s (0008,0005) to ``fallback`` if its text cannot be decoded
    with the character set it declares; None when it can (nothing changed).

    Call it before any value of ``identifier`` is read: elements read already
    keep the text they were decoded to, and are not checked.
    """
    foreign = [value for value in raw_texts(identifier) if beyond_ascii(value)]
    if not foreign:
        return None
    declared = declared_charset(identifier)
    if all(decodes_in(value, declared) for value in foreign):
        return None
    identifier.SpecificCharacterSet = fallback
    # pydicom decodes a raw element with the character set the data set was read
    # with (what the PACS declared) before the one it declares now: replace both.
    implicit, little = identifier.original_encoding
    identifier.set_original_encoding(implicit, little, convert_encodings(fallback))
    fits = all(decodes_in(value, (fallback,)) for value in foreign)
    return CharsetRepair("\\".join(declared), fallback, fits)


def declared_charset(dataset: Dataset) -> tuple[str, ...]:
    """The terms of (0008,0005) as sent, without reading any other element (() if absent)."""
    element = dataset.get_item(_SPECIFIC_CHARACTER_SET)
    if element is None or element.value is None:
        return ()
    value = element.value
    if isinstance(value, bytes):
        text = value.decode("ascii", errors="replace")
    elif isinstance(value, str):
        text = value
    else:  # already converted to several values
        text = "\\".join(str(term) for term in value)
    terms = tuple(term.strip(" \x00") for term in text.split("\\"))
    return terms if any(terms) else ()


def raw_texts(dataset: Dataset) -> list[bytes]:
    """The raw bytes of each (non-empty) text value (0008,0005) governs, as the PACS sent them."""
    found: list[bytes] = []
    # values(), unlike iterating the data set, hands out the raw elements unconverted.
    for element in dataset.values():
        # An element pydicom already converted has lost its bytes: its text is decided,
        # and re-encoding it would judge pydicom's reading, not the PACS's bytes.
        if isinstance(element, RawDataElement) and element.value and _vr(element) in _TEXT_VRS:
            found.append(bytes(element.value))
    return found


def beyond_ascii(value: bytes) -> bool:
    """Whether the character set decides how ``value`` reads: bytes beyond ASCII, or
    ISO 2022 escape sequences (7-bit, but switching to other sets)."""
    return not value.isascii() or _ESC in value


def decodes_in(value: bytes, terms: Sequence[str]) -> bool:
    """Whether ``value`` is valid text in the character set (0008,0005) ``terms`` declare.

    Strictly, and as pydicom would read it: a term pydicom does not know (and would
    replace with its default) decodes nothing; the default repertoire (no term,
    ISO_IR 6) is ASCII, as PS3.5 6.1.2.2 says, where pydicom reads Latin-1, which
    never fails; ISO 2022 escape sequences must switch to sets declared.
    """
    declared: list[str] = []
    for term in terms or ("",):
        codec = _codec(term)
        if codec is None:
            return False
        declared.append(codec)
    try:
        if _ESC in value:
            return _decodes_extended(value, declared)
        value.decode(declared[0])
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def _vr(element: RawDataElement) -> str | None:
    if element.VR is not None:  # explicit VR
        return str(element.VR)
    try:
        return dictionary_VR(element.tag)
    except KeyError:  # private or unknown: not judged
        return None


def _codec(term: str) -> str | None:
    """The Python codec pydicom reads ``term`` with ("ascii" for the default
    repertoire); None where pydicom would fall back to its default."""
    if _MISSPELT.match(term):
        term = "ISO_IR" + term[6:]
    elif _MISSPELT_2022.match(term):
        term = "ISO 2022 IR " + term[12:]
    elif term not in python_encoding:
        # Not a DICOM term: pydicom takes it for a Python codec's name ("UTF-8").
        try:
            codecs.lookup(term)
        except LookupError:
            return None
        return term
    return "ascii" if term in _ASCII_TERMS else python_encoding.get(term)


def _decodes_extended(value: bytes, declared: list[str]) -> bool:
    """ISO 2022 code extensions (PS3.5 6.1.2.5), read the way pydicom's ``decode_bytes``
    reads them but failing where it would warn and substitute. (Its warnings are not
    turned into errors here: the warning filters are global, and C-FIND runs in threads.)
    Raises UnicodeDecodeError or LookupError for bytes invalid in their set."""
    head, *runs = value.split(_ESC)
    head.decode(declared[0])
    for run in runs:
        fragment = _ESC + run
        size = 4 if fragment.startswith((b"\x1b$(", b"\x1b$)")) else 3
        codec = CODES_TO_ENCODINGS.get(fragment[:size])
        if codec == default_encoding:  # ESC ( B: back to ASCII
            codec = "ascii"
        elif codec is None or codec not in declared:
            return False  # a set not declared, or no escape sequence at all
        if codec in handled_encodings:  # Python's codec reads the escape sequences itself
            fragment.decode(codec)
            continue
        text = fragment[size:]
        # A delimiter returns to the first declared set (PS3.5 6.1.2.5.3).
        end = next((i for i, byte in enumerate(text) if byte in _DELIMITERS), len(text))
        text[:end].decode(codec)
        text[end:].decode(declared[0])
    return True
