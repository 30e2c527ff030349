"""Compression of DICOM JSON/XML and QIDO answers: zstd, brotli or gzip, streamed.

A 600-instance series' metadata is about 1 MB of JSON that compresses ten times
over; pixel data and bulk data (``image/*``, ``video/*``, octet-stream,
``application/dicom``) are left alone, being compressed already or not worth
the CPU. Only the types in ``_COMPRESSIBLE`` are touched, and only 200s.

Streamed: every body message is compressed and flushed as it comes, and a big
one is cut into slices compressed one after the other (in a worker thread, off
the event loop), so the first bytes leave before the whole answer is encoded
and nothing is held back. A compressed answer has no Content-Length (its length
is not known until the end) and its ETag gets the coding as a suffix (RFC 9110
8.8.3.3), which ``http_caching`` understands in If-None-Match.

Hand-written rather than ``starlette-compress`` (checked, version 2.0): that one
picks a coding by server preference whatever the client's q-values say, decides
by the bare media type only (so cannot tell ``multipart/related`` of XML from one
of DICOM instances), keeps its list of types in module-wide state, and leaves a
strong ETag unchanged on a compressed body.
"""

from __future__ import annotations

import re
import sys
import zlib
from collections.abc import Callable
from typing import Protocol

import anyio
import brotli  # type: ignore[import-untyped]
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dicomweb_gw.http.http_caching import etag_with_coding

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

__all__ = ["MINIMUM_SIZE", "Compression", "choose_coding", "is_compressible"]

#: Smaller answers go as they are: the headers would cost more than the saving.
MINIMUM_SIZE = 1024
#: A body message bigger than this is compressed in slices of it, in a worker thread.
_SLICE = 256 * 1024
#: Server preference when the client's q-values tie.
_PREFERENCE = ("zstd", "br", "gzip")
_COMPRESSIBLE = frozenset({"application/dicom+json", "application/json",
                           "application/dicom+xml"})
_MULTIPART_TYPE = re.compile(r';\s*type\s*=\s*"?([^";\s]+)"?', re.IGNORECASE)


class _Encoder(Protocol):
    def compress(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class _Gzip:
    def __init__(self) -> None:
        # wbits 31: the gzip container. Level 4: a 6 MB study metadata in ~60 ms rather than
        # level 6's ~75, for a few per cent more bytes.
        self._z = zlib.compressobj(4, zlib.DEFLATED, 31)

    def compress(self, data: bytes) -> bytes:
        return self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._z.flush(zlib.Z_FINISH)


class _Brotli:
    def __init__(self) -> None:
        # Quality 4: faster than gzip and far smaller (5 costs twice the time for 3% less;
        # 11 is far too slow to stream).
        self._b = brotli.Compressor(quality=4)

    def compress(self, data: bytes) -> bytes:
        return bytes(self._b.process(data) + self._b.flush())

    def finish(self) -> bytes:
        return bytes(self._b.finish())


class _Zstd:
    def __init__(self) -> None:
        self._z = zstd.ZstdCompressor(level=3)

    def compress(self, data: bytes) -> bytes:
        return self._z.compress(data, zstd.ZstdCompressor.FLUSH_BLOCK)

    def finish(self) -> bytes:
        return self._z.flush(zstd.ZstdCompressor.FLUSH_FRAME)


_ENCODERS: dict[str, Callable[[], _Encoder]] = {"gzip": _Gzip, "br": _Brotli, "zstd": _Zstd}


def choose_coding(accept_encoding: str) -> str | None:
    """The coding to use for ``accept_encoding`` (RFC 9110 12.5.3), or None (identity).

    The highest q-value wins; zstd, then brotli, then gzip on a tie; ``*`` stands
    for every coding not named; ``q=0`` refuses one.
    """
    named: dict[str, float] = {}
    for element in accept_encoding.split(","):
        coding, *params = (part.strip() for part in element.split(";"))
        if not coding:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        coding = coding.lower()
        named["gzip" if coding == "x-gzip" else coding] = q
    wildcard = named.get("*", 0.0)
    # max() on (q, -preference rank): the highest q, then the coding we prefer.
    best_q, negative_rank = max((named.get(coding, wildcard), -rank)
                                for rank, coding in enumerate(_PREFERENCE))
    return _PREFERENCE[-negative_rank] if best_q > 0 else None


def is_compressible(content_type: str) -> bool:
    """DICOM JSON, JSON, DICOM XML, or multipart/related of DICOM XML."""
    essence = content_type.split(";", 1)[0].strip().lower()
    if essence in _COMPRESSIBLE:
        return True
    if essence == "multipart/related":
        inner = _MULTIPART_TYPE.search(content_type)
        return inner is not None and inner.group(1).lower() == "application/dicom+xml"
    return False


class Compression:
    """Pure ASGI middleware: a compressible 200 is sent in the client's best coding."""

    def __init__(self, app: ASGIApp, minimum_size: int = MINIMUM_SIZE) -> None:
        self.app = app
        self.minimum_size = minimum_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = b",".join(value for name, value in scope["headers"]
                            if name == b"accept-encoding")
        coding = choose_coding(offered.decode("latin-1")) if offered else None
        await self.app(scope, receive, _Responder(send, coding, self.minimum_size).send)


class _Responder:
    """The send of one response: holds the start until the first body decides."""

    def __init__(self, send: Send, coding: str | None, minimum_size: int) -> None:
        self._send = send
        self._coding = coding
        self._minimum_size = minimum_size
        self._start: Message | None = None
        self._encoder: _Encoder | None = None
        self._passing = False

    async def send(self, message: Message) -> None:
        if self._passing:
            await self._send(message)
        elif message["type"] == "http.response.start":
            await self._started(message)
        elif message["type"] != "http.response.body":
            await self._flush_start()
            self._passing = True
            await self._send(message)
        elif self._encoder is None:
            await self._first_body(message)
        else:
            await self._body(message)

    async def _started(self, message: Message) -> None:
        headers = MutableHeaders(raw=message["headers"])
        if (message["status"] != 200 or "content-encoding" in headers
                or "content-range" in headers
                or not is_compressible(headers.get("content-type", ""))):
            self._passing = True
            await self._send(message)
            return
        # Whether compressed or not, the answer depends on Accept-Encoding (RFC 9110 12.5.5).
        headers.add_vary_header("Accept-Encoding")
        if self._coding is None:
            self._passing = True
            await self._send(message)
            return
        self._start = message

    async def _first_body(self, message: Message) -> None:
        assert self._start is not None
        assert self._coding is not None
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        if not more and len(body) < self._minimum_size:
            self._passing = True
            await self._flush_start()
            await self._send(message)
            return
        self._encoder = _ENCODERS[self._coding]()
        headers = MutableHeaders(raw=self._start["headers"])
        headers["Content-Encoding"] = self._coding
        del headers["Content-Length"]
        if "etag" in headers:
            headers["ETag"] = etag_with_coding(headers["etag"], self._coding)
        await self._flush_start()
        await self._body(message)

    async def _body(self, message: Message) -> None:
        encoder = self._encoder
        assert encoder is not None
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        for offset in range(0, len(body), _SLICE):
            piece = body[offset:offset + _SLICE]
            if len(piece) >= _SLICE // 4:  # worth a thread hop: keeps the event loop free
                chunk = await anyio.to_thread.run_sync(encoder.compress, piece)
            else:
                chunk = encoder.compress(piece)
            if chunk:
                await self._send({"type": "http.response.body", "body": chunk,
                                  "more_body": True})
        if not more:
            self._passing = True
            await self._send({"type": "http.response.body", "body": encoder.finish(),
                              "more_body": False})

    async def _flush_start(self) -> None:
        if self._start is not None:
            start, self._start = self._start, None
            await self._send(start)
