"""HTTP Range (RFC 9110 14.2) for bulk data and single frames: one byte range, or none."""

from __future__ import annotations

import re

from starlette.responses import Response

from dicomweb_gw.errors import GatewayError
from dicomweb_gw.http.error_responses import error_response

__all__ = ["RangeNotSatisfiable", "parse_range", "ranged_response"]

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


def ranged_response(body: bytes, media_type: str, range_header: str | None) -> Response:
    """A single-part body, whole (200) or the one range asked for (206).

    ``Accept-Ranges`` tells a client it may ask for prefixes next time (what
    cornerstone3D's progressive loading does with HTJ2K frames); a range
    outside the body is 416 with ``Content-Range: bytes */size`` (RFC 9110 15.5.17).
    """
    size = len(body)
    try:
        byte_range = parse_range(range_header, size)
    except RangeNotSatisfiable as exc:
        return error_response(416, exc.message, {"Content-Range": f"bytes */{size}"})
    if byte_range is None:
        return Response(body, media_type=media_type, headers={"Accept-Ranges": "bytes"})
    first, last = byte_range
    return Response(body[first:last + 1], status_code=206, media_type=media_type,
                    headers={"Content-Range": f"bytes {first}-{last}/{size}",
                             "Accept-Ranges": "bytes"})
