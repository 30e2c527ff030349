"""What STOW-RS consumes: one uploaded part, spooled, whatever parsed the request body.

Defined here, by its consumer (``dicomweb/stow.py``), so that the HTTP layer's
multipart reader depends on ``dicomweb/`` and not the other way round.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO

__all__ = ["UploadedPart"]


@dataclass(frozen=True, slots=True)
class UploadedPart:
    """One part of an upload: its headers (lower-case names) and its bytes, rewound.

    The consumer owns ``file`` and must close it.
    """

    headers: Mapping[str, str]
    file: IO[bytes]
    size: int

    @property
    def content_type(self) -> str | None:
        """The part's own Content-Type header, as sent; None when it has none."""
        return self.headers.get("content-type")
