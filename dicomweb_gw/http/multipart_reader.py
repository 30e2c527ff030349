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

import enum
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO

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


@dataclass
class UploadedPart:
    """One part of the body: headers (lower-case names) and its bytes, rewound.

    The consumer owns ``file`` and must close it.
    """

    headers: dict[str, str]
    file: IO[bytes]
    size: int

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")


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


class _State(enum.Enum):
    PREAMBLE = enum.auto()
    DELIMITER_LINE = enum.auto()  # after a delimiter: "--" (close) or padding + CRLF
    HEADERS = enum.auto()
    BODY = enum.auto()
    EPILOGUE = enum.auto()


async def read_parts(
    body: AsyncIterator[bytes], boundary: str, *, max_bytes: int, max_parts: int = MAX_PARTS
) -> AsyncIterator[UploadedPart]:
    """Each part of a multipart body as soon as it is complete.

    Raises ``PayloadTooLarge`` as soon as more than ``max_bytes`` have arrived
    (without reading further) or the body has more than ``max_parts`` parts, and
    ``BadRequest`` for a malformed or truncated body (no close delimiter).
    """
    delimiter = b"--" + boundary.encode("ascii")
    # Every delimiter is CRLF--boundary; starting the buffer with a CRLF lets
    # the first one, at the very start of the body, be found like the others.
    # If the body has a preamble, this CRLF just becomes part of it.
    buffer = bytearray(_CRLF)
    delimiter = _CRLF + delimiter
    keep = len(delimiter) - 1  # a delimiter may straddle two chunks
    state = _State.PREAMBLE
    headers: dict[str, str] = {}
    spool: IO[bytes] | None = None
    size = parts = received = 0
    chunks = aiter(body)
    ended = False
    try:
        while True:
            if state is _State.PREAMBLE:
                found = buffer.find(delimiter)
                if found >= 0:
                    del buffer[: found + len(delimiter)]
                    state = _State.DELIMITER_LINE
                    continue
                del buffer[: max(0, len(buffer) - keep)]
            elif state is _State.DELIMITER_LINE:
                if buffer.startswith(b"--"):
                    state = _State.EPILOGUE
                    continue
                line_end = buffer.find(_CRLF)
                if line_end >= 0:
                    if buffer[:line_end].strip(b" \t"):
                        raise BadRequest("malformed multipart body: unexpected characters "
                                         "after a boundary delimiter")
                    del buffer[: line_end + 2]
                    state = _State.HEADERS
                    continue
                if len(buffer) > MAX_PADDING_BYTES:
                    raise BadRequest("malformed multipart body: no CRLF after a boundary")
            elif state is _State.HEADERS:
                block = _header_block(buffer)
                if block is not None:
                    headers = _parse_headers(block)
                    parts += 1
                    if parts > max_parts:
                        raise PayloadTooLarge(f"more than {max_parts} parts in one request: "
                                              "split the upload")
                    # Handed to the consumer, who closes it (or closed in `finally` here).
                    spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115
                        max_size=SPOOL_MEMORY_BYTES)
                    size = 0
                    state = _State.BODY
                    continue
            elif state is _State.BODY:
                assert spool is not None
                found = buffer.find(delimiter)
                if found >= 0:
                    spool.write(buffer[:found])
                    size += found
                    del buffer[: found + len(delimiter)]
                    spool.seek(0)
                    part, spool = UploadedPart(headers, spool, size), None
                    state = _State.DELIMITER_LINE
                    yield part
                    continue
                if len(buffer) > keep:
                    safe = len(buffer) - keep
                    spool.write(buffer[:safe])
                    size += safe
                    del buffer[:safe]
            else:  # EPILOGUE: ignored, but read to the end so the size limit still holds
                buffer.clear()

            if ended:
                if state is _State.EPILOGUE:
                    return
                raise BadRequest("multipart body ended before its close delimiter "
                                 f"(--{boundary}--): truncated upload?")
            chunk = await anext(chunks, None)
            if chunk is None:
                ended = True
                continue
            received += len(chunk)
            if received > max_bytes:
                raise PayloadTooLarge(f"request body larger than the limit of {max_bytes} bytes")
            buffer += chunk
    finally:
        if spool is not None:
            spool.close()


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
