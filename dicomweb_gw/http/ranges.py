"""HTTP Range (RFC 9110 14.2) for bulk data: one byte range, or none."""

from __future__ import annotations

import re

from dicomweb_gw.errors import GatewayError

__all__ = ["RangeNotSatisfiable", "parse_range"]

_SINGLE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class RangeNotSatisfiable(GatewayError):
    status_code = 416


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte to send, or None to send everything.

    A header we do not understand (several ranges, other units) is ignored, as
    RFC 9110 allows: the whole value is sent with 200.
    """
    if not header:
        return None
    match = _SINGLE.match(header)
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first_text, last_text = match.groups()
    if first_text == "":  # "bytes=-N": the last N bytes
        suffix = int(last_text)
        if suffix == 0:
            raise RangeNotSatisfiable(f"range '{header}' selects no bytes of {size}")
        return max(0, size - suffix), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if first >= size or last < first:
        raise RangeNotSatisfiable(f"range '{header}' is outside the {size} bytes available")
    return first, min(last, size - 1)
