"""Reading a STOW-RS request body (multipart/related, RFC 2046 5.1 / RFC 2387) as it streams in.

The body is never held whole: each part's bytes go to a ``SpooledTemporaryFile``
(memory up to ``SPOOL_MEMORY_BYTES``, disk beyond), and the parser keeps at most
one chunk plus a delimiter's length in its buffer. Part headers are kept, unlike
dicomweb-client's parser, because a part's own Content-Type is what tells a
client what it sent.

The grammar, in short: an optional preamble, then ``--boundary`` lines each
followed by optional transport padding (spaces, tabs) and CRLF, part headers,
an empty line and the part body; every delimiter after the first is
``CRLF--boundary``, so the CRLF before it belongs to the delimiter, not to the
body. The close delimiter ``--boundary--`` ends the parts; anything after it is
epilogue and ignored.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import IO

from dicomweb_gw.dicomweb.uploads import UploadedPart
from dicomweb_gw.errors import BadRequest, GatewayError

__all__ = [
    "MAX_PARTS",
    "SPOOL_MEMORY_BYTES",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "UploadedPart",
    "check_stow_content_type",
    "read_parts",
]

#: Part bodies up to this size stay in memory; larger ones spill to a temp file.
SPOOL_MEMORY_BYTES = 1024 * 1024
#: More parts than this in one request is refused (413): each one costs a temp
#: file and a C-STORE, and a client with more should split its upload.
MAX_PARTS = 10_000
#: The header block of one part; real clients send two or three short lines.
MAX_HEADER_BYTES = 16 * 1024
#: Transport padding allowed between a boundary and its CRLF (RFC 2046 allows
#: any amount, but a line this long is garbage, not padding).
MAX_PADDING_BYTES = 1024
#: RFC 2046: a boundary is 1 to 70 characters.
MAX_BOUNDARY_LENGTH = 70

_CRLF = b"\r\n"
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rf"\s*({_TOKEN}/{_TOKEN})\s*")
_PARAM = re.compile(rf'\s*;\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^;"]*)')
_BOUNDARY_CHARS = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]*[0-9A-Za-z'()+_,\-./:=?]")
_STOW_PART_TYPE = "application/dicom"


class UnsupportedMediaType(GatewayError):
    status_code = 415


class PayloadTooLarge(GatewayError):
    status_code = 413


def check_stow_content_type(content_type: str | None) -> str:
    """The boundary of a STOW-RS body, or 415/400.

    ``multipart/related`` with ``type=application/dicom``, quoted or not; no
    ``type`` at all is taken to mean application/dicom (PS3.18 allows only DICOM
    or DICOM JSON + bulk data there, and we take only the former).
    """
    if not content_type or not content_type.strip():
        raise UnsupportedMediaType(
            'STOW-RS needs Content-Type: multipart/related; type="application/dicom"; '
            "boundary=...")
    media_type, params = parse_media_type(content_type)
    if media_type != "multipart/related":
        raise UnsupportedMediaType(
            f"Content-Type {media_type or content_type!r} is not supported for STOW-RS: send "
            'multipart/related; type="application/dicom"')
    part_type = params.get("type", _STOW_PART_TYPE).split(";")[0].strip().lower()
    if part_type != _STOW_PART_TYPE:
        raise UnsupportedMediaType(
            f"multipart/related type={part_type!r} is not supported: only DICOM instances "
            f'(type="{_STOW_PART_TYPE}") can be stored')
    boundary = params.get("boundary", "")
    if not boundary:
        raise BadRequest("multipart/related Content-Type without a boundary parameter")
    if len(boundary) > MAX_BOUNDARY_LENGTH or not _BOUNDARY_CHARS.fullmatch(boundary):
        raise BadRequest(f"invalid multipart boundary {boundary!r} (RFC 2046: 1 to 70 "
                         "characters, no trailing space)")
    return boundary


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """``type/subtype`` (lower case) and its parameters (names lower case, values unquoted).

    An unparsable value gives an empty media type, which no caller accepts.
    """
    match = _MEDIA_TYPE.match(value)
    if match is None:
        return "", {}
    params: dict[str, str] = {}
    position = match.end()
    while position < len(value):
        param = _PARAM.match(value, position)
        if param is None:
            break  # trailing garbage or a bare ";": keep what was understood
        raw = param.group(2).strip()
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[param.group(1).lower()] = raw
        position = param.end()
    return match.group(1).lower(), params


async def read_parts(
    body: AsyncIterator[bytes], boundary: str, *, max_bytes: int, max_parts: int = MAX_PARTS
) -> AsyncIterator[UploadedPart]:
    """Each part of a multipart body as soon as it is complete.

    Raises ``PayloadTooLarge`` as soon as more than ``max_bytes`` have arrived
    (without reading further) or the body has more than ``max_parts`` parts, and
    ``BadRequest`` for a malformed or truncated body (no close delimiter).
    """
    parser = _PartsParser(boundary, max_bytes=max_bytes, max_parts=max_parts)
    try:
        async for chunk in body:
            parser.feed(chunk)
            while (part := parser.next_part()) is not None:
                yield part
        parser.end()
    finally:
        parser.close()


class _PartsParser:
    """The multipart grammar as a state machine, fed one chunk at a time.

    The state is the method that reads the front of the buffer: preamble, after a
    delimiter, headers, body, epilogue. Each takes what it can and returns True
    once it has moved the parser to another state, or False when it needs more
    bytes; the body state also leaves the part it completed in ``_completed``.
    """

    def __init__(self, boundary: str, *, max_bytes: int, max_parts: int) -> None:
        self._boundary = boundary
        self._max_bytes = max_bytes
        self._max_parts = max_parts
        # Every delimiter is CRLF--boundary; starting the buffer with a CRLF lets
        # the first one, at the very start of the body, be found like the others.
        # If the body has a preamble, this CRLF just becomes part of it.
        self._delimiter = _CRLF + b"--" + boundary.encode("ascii")
        # A delimiter may straddle two chunks: while looking for one, a state keeps
        # back the last bytes, which may be its start.
        self._kept_back = len(self._delimiter) - 1
        self._buffer = bytearray(_CRLF)
        self._received = 0
        self._parts = 0
        self._part_headers: dict[str, str] = {}
        self._spool: IO[bytes] | None = None  # the body of the part being read
        self._size = 0
        self._completed: UploadedPart | None = None
        self._state: Callable[[], bool] = self._in_preamble

    # -- driving -------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        """Add the next chunk of the body, or 413 once the body passes its size limit."""
        self._received += len(chunk)
        if self._received > self._max_bytes:
            raise PayloadTooLarge(
                f"request body larger than the limit of {self._max_bytes} bytes")
        self._buffer += chunk

    def next_part(self) -> UploadedPart | None:
        """The next part the bytes fed so far complete; None when more bytes are needed."""
        while self._state():
            if self._completed is not None:
                part, self._completed = self._completed, None
                return part
        return None

    def end(self) -> None:
        """The body has ended: fine after the close delimiter, a truncated upload before."""
        if self._state != self._in_epilogue:
            raise BadRequest("multipart body ended before its close delimiter "
                             f"(--{self._boundary}--): truncated upload?")

    def close(self) -> None:
        """Close the part being read, if any; a part handed over is its consumer's to close."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    # -- states --------------------------------------------------------------

    def _in_preamble(self) -> bool:
        """Before the first delimiter: ignored, but for what may be a delimiter's start."""
        found = self._buffer.find(self._delimiter)
        if found < 0:
            del self._buffer[: max(0, len(self._buffer) - self._kept_back)]
            return False
        del self._buffer[: found + len(self._delimiter)]
        self._state = self._after_delimiter
        return True

    def _after_delimiter(self) -> bool:
        """``--`` closes the body; otherwise transport padding and a CRLF start a part."""
        if self._buffer.startswith(b"--"):
            self._state = self._in_epilogue
            return True
        line_end = self._buffer.find(_CRLF)
        if line_end < 0:
            if len(self._buffer) > MAX_PADDING_BYTES:
                raise BadRequest("malformed multipart body: no CRLF after a boundary")
            return False
        if self._buffer[:line_end].strip(b" \t"):
            raise BadRequest("malformed multipart body: unexpected characters "
                             "after a boundary delimiter")
        del self._buffer[: line_end + len(_CRLF)]
        self._state = self._in_headers
        return True

    def _in_headers(self) -> bool:
        """A part's header block, up to its empty line; then the part counts against the limit."""
        block = _header_block(self._buffer)
        if block is None:
            return False
        self._part_headers = _parse_headers(block)
        self._parts += 1
        if self._parts > self._max_parts:
            raise PayloadTooLarge(f"more than {self._max_parts} parts in one request: "
                                  "split the upload")
        # Handed to the consumer, who closes it (or closed by `close` if never handed over).
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
        self._size = 0
        self._state = self._in_body
        return True

    def _in_body(self) -> bool:
        """A part's bytes, spooled as they come, up to the delimiter after them."""
        found = self._buffer.find(self._delimiter)
        if found < 0:
            self._spool_front(len(self._buffer) - self._kept_back)
            return False
        self._spool_front(found)
        del self._buffer[: len(self._delimiter)]
        assert self._spool is not None
        self._spool.seek(0)
        self._completed = UploadedPart(self._part_headers, self._spool, self._size)
        self._spool = None
        self._state = self._after_delimiter
        return True

    def _in_epilogue(self) -> bool:
        """After the close delimiter: ignored, but read to the end so the size limit holds."""
        self._buffer.clear()
        return False

    # -- helpers -------------------------------------------------------------

    def _spool_front(self, count: int) -> None:
        """Move the first ``count`` bytes of the buffer (if any) to the part's body."""
        if count <= 0:
            return
        assert self._spool is not None
        self._spool.write(self._buffer[:count])
        self._size += count
        del self._buffer[:count]


def _header_block(buffer: bytearray) -> bytes | None:
    """Take the header block (without its final empty line) off ``buffer``; None if incomplete."""
    if buffer.startswith(_CRLF):  # no headers at all: allowed, the type is then the default
        del buffer[:2]
        return b""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEADER_BYTES:
            raise BadRequest(f"part headers longer than {MAX_HEADER_BYTES} bytes")
        return None
    if end > MAX_HEADER_BYTES:
        raise BadRequest(f"part headers longer than {MAX_HEADER_BYTES} bytes")
    block = bytes(buffer[:end])
    del buffer[: end + 4]
    return block


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    if not block:
        return headers
    name = ""
    for line in block.decode("latin-1").split("\r\n"):
        if line[:1] in (" ", "\t") and name:  # obsolete line folding (RFC 5322 2.2.3)
            headers[name] = f"{headers[name]} {line.strip()}".strip()
            continue
        raw_name, colon, value = line.partition(":")
        name = raw_name.strip().lower()
        if not colon or not re.fullmatch(_TOKEN, name):
            raise BadRequest(f"malformed part header line {line[:80]!r}")
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers
