"""Parsing a QIDO-RS query string into matching keys and return keys (PS3.18 8.3.4)."""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from dicomweb_gw.dicomweb.attributes import LEVEL_OF_UID, is_private_creator
from dicomweb_gw.dicomweb.uids import require_uid
from dicomweb_gw.errors import BadRequest
from dicomweb_gw.model import QueryLevel

__all__ = ["QidoQuery", "parse_query", "resolve_attribute"]

_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
#: Parameters of the transaction itself; matched case-insensitively because
#: clients disagree on ``includefield`` vs ``includeField``.
_RESERVED = {"limit", "offset", "includefield", "fuzzymatching"}
#: Parameters that are legal but do not affect the search itself.
_IGNORED = {"accept", "charset"}
#: VRs limited to the default character repertoire (PS3.5 6.2); the others may use
#: the Specific Character Set (ISO_IR 192 in our C-FIND requests).
_ASCII_ONLY = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "UR"})
#: Binary integer VRs and the values they hold.
INTEGER_RANGES = {"US": (0, 2**16 - 1), "SS": (-(2**15), 2**15 - 1), "UL": (0, 2**32 - 1),
                  "SL": (-(2**31), 2**31 - 1), "UV": (0, 2**64 - 1), "SV": (-(2**63), 2**63 - 1)}
FLOAT_VRS = frozenset({"FL", "FD"})
#: Byte streams: nothing a query string can match.
_BYTES = frozenset({"OB", "OD", "OF", "OL", "OV", "OW"})
_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_DATETIME = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?$")


@dataclass(frozen=True)
class QidoQuery:
    level: QueryLevel
    #: Matching keys: tag -> value as DICOM expects it (UID lists joined by backslash).
    match: dict[int, str] = field(default_factory=dict)
    include_all: bool = False
    include: tuple[int, ...] = ()
    limit: int | None = None
    offset: int = 0
    fuzzy: bool = False
    #: Levels whose UID the URL path fixes (``/studies/{study}/series``: the study); they,
    #: not the query keys, decide which parent attributes a result must carry.
    scope: frozenset[QueryLevel] = frozenset()


def resolve_attribute(name: str) -> int:
    """``PatientName`` or ``00100010`` -> tag; 400 for anything else."""
    if "." in name:
        raise BadRequest(f"query key '{name}': matching on sequence items is not supported")
    if _TAG.match(name):
        tag = int(name, 16)
        try:
            dictionary_VR(tag)
        except KeyError:
            if tag >> 16 & 1:  # odd group: a private attribute, legal but unknown to us
                return tag
            raise BadRequest(f"query key '{name}' is not a DICOM attribute") from None
        return tag
    keyword_tag = tag_for_keyword(name)
    if keyword_tag is None:
        raise BadRequest(f"query key '{name}' is not a DICOM attribute keyword or tag")
    return int(keyword_tag)


def parse_query(
    level: QueryLevel, params: Iterable[tuple[str, str]], pinned: dict[int, str]
) -> QidoQuery:
    """Validate ``params``; ``pinned`` are the UIDs fixed by the URL path."""
    match: dict[int, str] = dict(pinned)
    include: list[int] = []
    include_all = False
    limit: int | None = None
    offset = 0
    fuzzy = False
    for name, value in params:
        lowered = name.lower()
        if lowered in _IGNORED:
            continue
        if lowered == "limit":
            limit = _count("limit", value)
        elif lowered == "offset":
            offset = _count("offset", value)
        elif lowered == "fuzzymatching":
            fuzzy = _boolean("fuzzymatching", value)
        elif lowered == "includefield":
            for item in filter(None, (part.strip() for part in value.split(","))):
                if item.lower() == "all":
                    include_all = True
                else:
                    include.append(resolve_attribute(item))
        else:
            tag = resolve_attribute(name)
            if tag in pinned and value != pinned[tag]:
                raise BadRequest(f"query key '{name}' contradicts the UID in the URL path")
            if tag in match and tag not in pinned:
                raise BadRequest(f"query key '{name}' is given more than once")
            match[tag] = _matching_value(tag, name, value)
    return QidoQuery(level=level, match=match, include_all=include_all,
                     include=tuple(dict.fromkeys(include)), limit=limit, offset=offset,
                     fuzzy=fuzzy, scope=frozenset(LEVEL_OF_UID[tag] for tag in pinned))


def _count(name: str, value: str) -> int:
    if not (value.isascii() and value.isdigit()):
        raise BadRequest(f"'{name}' must be a non-negative whole number, not '{value}'")
    return int(value)


def _boolean(name: str, value: str) -> bool:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BadRequest(f"'{name}' must be 'true' or 'false', not '{value}'")


def vr_of(tag: int) -> str:
    """The VR a query uses for ``tag``: LO for a Private Creator (PS3.5 7.8.1: a PACS
    using Explicit VR matches it only as LO), UN for other unknown (private) tags, and
    the first of an ambiguous one ("US or SS" -> US), which an identifier cannot be
    encoded with."""
    if is_private_creator(tag):
        return "LO"
    try:
        return str(dictionary_VR(tag)).split(" or ")[0]
    except KeyError:
        return "UN"


def _matching_value(tag: int, name: str, value: str) -> str:
    """Check a matching value against its VR and convert it to DICOM's form."""
    if value == "":
        return ""  # universal matching: just asks for the attribute to be returned
    vr = vr_of(tag)
    label = keyword_for_tag(tag) or name
    if vr == "UI":
        uids = [part.strip() for part in re.split(r"[,\\]", value)]
        return "\\".join(require_uid(uid, label) for uid in uids)
    if vr in ("DA", "TM", "DT"):
        _check_range(label, vr, value)
        return value
    if vr == "SQ":
        raise BadRequest(f"query key '{name}': matching on a sequence is not supported")
    if vr in _BYTES:
        raise BadRequest(f"query key '{name}': matching on binary data (VR {vr}) is not "
                         "supported")
    if vr in INTEGER_RANGES:
        low, high = INTEGER_RANGES[vr]
        if not re.fullmatch(r"[+-]?\d{1,20}", value) or not low <= int(value) <= high:
            raise BadRequest(f"{label} '{value}' is not a whole number from {low} to {high} "
                             f"(VR {vr})")
        return str(int(value))
    if vr in FLOAT_VRS:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise BadRequest(f"{label} '{value}' is not a number (VR {vr})")
        return value
    if vr in _ASCII_ONLY and not value.isascii():
        # These VRs use the default repertoire only: such a value cannot be sent
        # to the PACS (and could never match), whatever the character set.
        raise BadRequest(f"{label} '{value}' must be ASCII (VR {vr})")
    if any(ord(ch) < 0x20 for ch in value):
        raise BadRequest(f"query key '{name}': control characters are not allowed")
    return value


def _check_range(label: str, vr: str, value: str) -> None:
    if _valid_single(vr, value):
        return
    # A range "A-B", "A-" or "-B". DT values may end in a "-0500" offset, so try
    # every hyphen as the separator rather than just splitting on it.
    for index, char in enumerate(value):
        if char != "-":
            continue
        start, end = value[:index], value[index + 1 :]
        if (start or end) and all(not p or _valid_single(vr, p) for p in (start, end)):
            if vr == "DA" and start and end and start > end:
                raise BadRequest(f"{label} range '{value}' ends before it starts")
            return
    raise BadRequest(f"{label} '{value}' is not a valid {vr} value or range")


def _valid_single(vr: str, text: str) -> bool:
    if vr == "DA":
        if not _DATE.match(text):
            return False
        try:
            datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
        except ValueError:
            return False
        return True
    if vr == "TM":
        if not _TIME.match(text):
            return False
        hh = int(text[:2])
        mm = int(text[2:4]) if len(text) >= 4 else 0
        ss = int(text[4:6]) if len(text) >= 6 else 0
        return hh < 24 and mm < 60 and ss < 61
    if _DATETIME.match(text) is None:
        return False
    digits = re.sub(r"(\.\d+)?([+-]\d{4})?$", "", text)
    # Check the calendar too: pad the missing components with their minimum.
    padded = digits + "0101000000"[len(digits) - 4 :] if len(digits) < 14 else digits
    try:
        datetime.datetime(int(padded[:4]), int(padded[4:6]), int(padded[6:8]),
                          int(padded[8:10]), int(padded[10:12]), min(int(padded[12:14]), 59))
    except ValueError:
        return False
    return True
