"""The ``{frames}`` path segment of a frames or rendered URL (PS3.18 8.3.3.1.2)."""

from __future__ import annotations

from dicomweb_gw.errors import BadRequest

__all__ = ["parse_frame_list"]


def parse_frame_list(text: str) -> list[int]:
    """"1,3,5" -> [1, 3, 5]; duplicates and order kept. BadRequest when malformed."""
    parts = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not (p.isascii() and p.isdigit()) for p in parts):
        raise BadRequest(f"frame list '{text}' is not a comma-separated list of frame numbers")
    numbers = [int(part) for part in parts]
    if 0 in numbers:
        raise BadRequest("frame numbers start at 1")
    return numbers
