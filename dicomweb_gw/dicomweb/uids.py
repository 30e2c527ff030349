"""UID syntax (PS3.5 9.1): digits and dots, no leading zeros, at most 64 characters."""

from __future__ import annotations

import re

from dicomweb_gw.errors import BadRequest

__all__ = ["is_valid_uid", "require_uid"]

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")


def is_valid_uid(value: str) -> bool:
    return len(value) <= 64 and _UID.match(value) is not None


def require_uid(value: str, what: str) -> str:
    """Return ``value`` if it is a well-formed UID, else raise 400 naming ``what``."""
    if not is_valid_uid(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise BadRequest(f"{what} '{shown}' is not a valid DICOM UID")
    return value
