"""Matching on the gateway side (PS3.4 C.2.2.2) for what the PACS ignored.

A PACS may silently ignore a matching key (dcmqrscp does for keys it does not
index) or match more loosely than asked. Every result whose value came back
is checked again here; a result whose value did not come back cannot be
checked and is kept, never invented.
"""

from __future__ import annotations

import fnmatch
import re
from functools import lru_cache

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

__all__ = ["Verdict", "check"]

_SINGLE_DT = re.compile(r"\d{4,14}(\.\d{1,6})?([+-]\d{4})?")


class Verdict:
    MATCH = "match"
    NO_MATCH = "no-match"
    UNKNOWN = "unknown"  # the PACS did not return the attribute


def check(dataset: Dataset, tag: int, wanted: str) -> str:
    """Does ``dataset`` satisfy the matching key ``tag`` = ``wanted``?"""
    if wanted == "" or wanted == "*":
        return Verdict.MATCH
    element = dataset.get(tag)
    if element is None:
        return Verdict.UNKNOWN
    values = _values(element)
    if not values:
        # Present but empty never matches a non-universal key (Orthanc lets
        # open date ranges match empty dates).
        return Verdict.NO_MATCH
    vr = _vr(tag, element)
    if vr == "UI":
        allowed = set(wanted.split("\\"))
        return _verdict(any(value in allowed for value in values))
    # Several values (ModalitiesInStudy=CT\\MR) match a result that has any of them, as
    # PACS that accept them do; PS3.4 defines this for UIDs only, so no PACS is stricter.
    return _verdict(any(_matches(vr, values, part) for part in wanted.split("\\") if part)
                    or wanted.strip("\\") == "")


def _matches(vr: str, values: list[str], wanted: str) -> bool:
    """Any of ``values`` (of VR ``vr``, not UI) against one matching value."""
    if wanted == "*":
        return True
    if vr in ("DA", "TM", "DT"):
        return any(_in_range(vr, value, wanted) for value in values)
    if vr == "PN":
        # PN matching is case-insensitive in practice (and PS3.4 allows it);
        # being looser than the PACS never drops a result it matched.
        pattern = _pattern(wanted, ignore_case=True)
        return any(pattern.match(value) for value in values)
    if vr in ("IS", "DS", "US", "UL", "UV", "SS", "SL", "SV", "FL", "FD"):
        return any(_same_number(value, wanted) for value in values)
    pattern = _pattern(wanted, ignore_case=False)
    return any(pattern.match(value) for value in values)


def _verdict(matched: bool) -> str:
    return Verdict.MATCH if matched else Verdict.NO_MATCH


def _vr(tag: int, element: DataElement) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return str(element.VR)


def _values(element: DataElement) -> list[str]:
    value = element.value
    if value is None or value == "" or value == b"":
        return []
    if isinstance(value, bytes):
        # A private element whose VR the PACS did not know comes back as UN: its
        # bytes are the text, padded with a space or NUL, values split by backslashes.
        text = _decode(value)
        return [part.strip(" \x00") for part in text.split("\\") if part.strip(" \x00")]
    items = list(value) if element.VM > 1 else [value]
    return [str(item).strip() for item in items if str(item).strip()]


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # never fails: at worst, a value that does not match


@lru_cache(maxsize=256)
def _pattern(wanted: str, *, ignore_case: bool) -> re.Pattern[str]:
    # fnmatch's '[' classes are not DICOM wildcards: escape them first.
    escaped = wanted.replace("[", "[[]")
    return re.compile(fnmatch.translate(escaped), re.IGNORECASE if ignore_case else 0)


def _same_number(value: str, wanted: str) -> bool:
    try:
        return float(value) == float(wanted)
    except ValueError:
        return value == wanted


def _in_range(vr: str, value: str, wanted: str) -> bool:
    start, sep, end = _split_range(vr, wanted)
    key = _comparable(vr, value)
    if not sep:
        return key == _comparable(vr, start)
    low = _comparable(vr, start) if start else None
    high = _comparable(vr, end, upper=True) if end else None
    return (low is None or key >= low) and (high is None or key <= high)


def _split_range(vr: str, wanted: str) -> tuple[str, str, str]:
    if vr == "DT":
        if _SINGLE_DT.fullmatch(wanted):
            return wanted, "", ""  # a "-0500" offset is not a range separator
        for index, char in enumerate(wanted):
            start, end = wanted[:index], wanted[index + 1 :]
            if char == "-" and all(not p or _SINGLE_DT.fullmatch(p) for p in (start, end)):
                return start, "-", end
        return wanted, "", ""
    start, sep, end = wanted.partition("-")
    return start, sep, end


def _comparable(vr: str, text: str, *, upper: bool = False) -> str:
    """Pad a (partial) value so that plain string comparison orders it correctly.

    A range end such as ``1230`` means "up to 12:30:59.999999", so the upper
    bound pads with nines and the lower bound with zeros.
    """
    fill = "9" if upper else "0"
    text = text.replace(":", "")
    if vr == "DA":
        return text.replace("-", "").ljust(8, fill)
    if vr == "DT":
        text = re.sub(r"[+-]\d{4}$", "", text)  # offsets are ignored, as most PACS do
    main, _, fraction = text.partition(".")
    width = 6 if vr == "TM" else 14
    return main.ljust(width, fill) + "." + fraction.ljust(6, fill)
