"""Writing multipart/related bodies (RFC 2387) part by part.

One form everywhere (PS3.18 8.7.3.5.1, 8.7.9): the multipart Content-Type
names the parts' bare media type in ``type`` and never a transfer syntax,
since parts may differ (PS3.18 8.7.8.2 note 1: the syntax is selected per
part); each part's own Content-Type carries its ``transfer-syntax``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import quote

__all__ = ["MultipartWriter"]


class MultipartWriter:
    def __init__(self, part_type: str) -> None:
        self.boundary = secrets.token_hex(16)
        # The grammar's dcm-mp-mt-name is a media type without parameters.
        self._part_type = part_type.split(";", 1)[0].strip()

    @property
    def content_type(self) -> str:
        return f'multipart/related; type="{self._part_type}"; boundary={self.boundary}'

    def part(self, content_type: str, chunks: tuple[bytes, ...], *,
             location: str | None = None) -> Iterator[bytes]:
        """One part: delimiter, headers, body, and the CRLF that ends it.

        ``location``: the URL of the resource the part is, its Content-Location
        (PS3.18 8.6.1.2).
        """
        length = sum(len(chunk) for chunk in chunks)
        located = "" if location is None else f"Content-Location: {_ascii(location)}\r\n"
        yield (
            f"--{self.boundary}\r\nContent-Type: {content_type}\r\n{located}"
            f"Content-Length: {length}\r\n\r\n"
        ).encode("ascii")
        yield from chunks
        yield b"\r\n"

    def close(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode("ascii")


def _ascii(url: str) -> str:
    """Header values are ASCII: a forwarded host or prefix may not be, so percent-encode
    what is not (and any control character) rather than fail mid-stream."""
    return quote(url, safe="!#$%&'()*+,/:;=?@[]~")
