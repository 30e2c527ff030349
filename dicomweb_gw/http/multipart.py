"""Writing multipart/related bodies (RFC 2387) part by part."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

__all__ = ["MultipartWriter"]


class MultipartWriter:
    def __init__(self, part_type: str) -> None:
        self.boundary = secrets.token_hex(16)
        self._part_type = part_type

    @property
    def content_type(self) -> str:
        return f'multipart/related; type="{self._part_type}"; boundary={self.boundary}'

    def part(self, content_type: str, chunks: tuple[bytes, ...]) -> Iterator[bytes]:
        """One part: delimiter, headers, body, and the CRLF that ends it."""
        length = sum(len(chunk) for chunk in chunks)
        yield (
            f"--{self.boundary}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode("ascii")
        yield from chunks
        yield b"\r\n"

    def close(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode("ascii")
