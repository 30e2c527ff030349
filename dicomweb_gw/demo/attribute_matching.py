"""Attribute matching for the demo PACS: one C-FIND key against one stored element.

Follows PS3.4 C.2.2.2 closely enough to be a believable PACS: single value,
wildcard (``*``, ``?``), range (``A-B``, ``A-``, ``-B`` for DA, TM and DT), list
of values (``a\\b``, meant for UIDs, accepted for any VR) and universal (empty)
matching. PN matching ignores case, which PS3.4 allows and Orthanc does; every
other VR is matched literally.

Not supported: sequence matching, combined date-time matching, DT range bounds
with a negative UTC offset (the ``-`` reads as the range separator).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue

__all__ = ["element_matches", "strings"]

_NUMERIC_VRS: Final = frozenset({"DS", "FD", "FL", "IS", "SL", "SS", "SV", "UL", "US", "UV"})
_TEMPORAL_WIDTH: Final = {"DA": 8, "TM": 6, "DT": 14}


def strings(value: object) -> list[str]:
    """An element value as a list of strings, one per value."""
    if value is None:
        return []
    items = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    out = []
    for item in items:
        if item is None:
            continue
        text = item.decode("latin-1") if isinstance(item, bytes) else str(item)
        out.append(text.strip().rstrip("\x00"))
    return out


def element_matches(query: DataElement, stored: DataElement | None) -> bool:
    """Any query value (a list for UID list matching) against any stored value."""
    queries = [q for q in strings(query.value) if q]
    if not queries or all(set(q) == {"*"} for q in queries):
        return True  # universal matching: '*' alone is the same as empty
    values = strings(stored.value) if stored is not None else []
    return any(_match_value(q, s, query.VR) for q in queries for s in values or [""])


def _match_value(query: str, stored: str, vr: str) -> bool:
    """One query value against one stored value."""
    if vr in _TEMPORAL_WIDTH:
        return _match_temporal(query, stored, vr)
    if vr == "UI":
        return query == stored
    if vr in _NUMERIC_VRS:
        try:
            return float(query) == float(stored)
        except ValueError:
            return query == stored
    ignore_case = vr == "PN"
    if "*" in query or "?" in query:
        return _wildcard(query, ignore_case).fullmatch(stored) is not None
    return query.casefold() == stored.casefold() if ignore_case else query == stored


@lru_cache(maxsize=512)
def _wildcard(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile(regex, (re.IGNORECASE if ignore_case else 0) | re.DOTALL)


def _match_temporal(query: str, stored: str, vr: str) -> bool:
    if not stored:
        return False
    value = _normalise_temporal(stored, vr, upper=False)
    if "-" not in query:
        return _normalise_temporal(query, vr, upper=False) == value
    low, _, high = query.partition("-")
    if low and value < _normalise_temporal(low, vr, upper=False):
        return False
    return not (high and value > _normalise_temporal(high, vr, upper=True))


def _normalise_temporal(value: str, vr: str, *, upper: bool) -> str:
    """A DA/TM/DT value padded to full precision, so strings compare in time order.

    Lower bounds and stored values pad with zeros, upper bounds with nines, which
    makes ``-0800`` include 08:59:59 and ``-202403`` include the whole month.
    """
    value = value.strip().replace(":", "") if vr == "TM" else value.strip()
    if vr == "DA":
        value = value.replace(".", "")  # ACR-NEMA style YYYY.MM.DD
    if vr == "DT":
        value = re.sub(r"[+-]\d{4}$", "", value) if len(value) > 14 else value
    whole, _, fraction = value.partition(".")
    fill = "9" if upper else "0"
    whole = whole.ljust(_TEMPORAL_WIDTH[vr], fill)
    if vr == "DA":
        return whole
    return f"{whole}.{fraction.ljust(6, fill)}"
