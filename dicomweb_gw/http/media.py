"""Videos and documents over HTTP: which form the client accepts, and the response.

The body is the stream or document itself (``dicomweb.media``), labelled with
its own media type, single part or as the one part of a multipart body. A
single-part body answers ``Range`` with 206: a ``<video>`` element seeks with
ranges, and PDF viewers load large documents in ranges.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from enum import Enum

import anyio
from starlette.responses import Response, StreamingResponse

from dicomweb_gw.dicomweb.media import MediaBody, iter_media, read_media
from dicomweb_gw.errors import NotAcceptable
from dicomweb_gw.http.error_responses import error_response
from dicomweb_gw.http.multipart import MultipartWriter
from dicomweb_gw.http.negotiation import MediaRange, parse_accept, parse_media_type
from dicomweb_gw.http.ranges import RangeNotSatisfiable, parse_range

__all__ = ["MediaForm", "media_response", "negotiate_media"]

_OCTET = "application/octet-stream"
#: Names clients use for the same thing: PS3.18's bulk data table says video/mpeg2,
#: its rendered table and browsers video/mpeg; CDA is XML either way.
_ALIASES = {"video/mpeg": "video/mpeg2", "application/xml": "text/xml"}
#: Bodies up to this size are read in one go; larger ones are streamed.
_STREAM_ABOVE = 4 << 20


class MediaForm(Enum):
    SINGLE = "single"
    MULTIPART = "multipart"


def negotiate_media(accept: str | None, media: MediaBody, *,
                    rendered: bool) -> MediaForm | None:
    """How to send ``media`` to a client that accepts ``accept``.

    Bulk data and frames (``rendered`` False): multipart by default (PS3.18
    8.7.3.5), single part when the client's preferred range is a bare media
    type. ``application/octet-stream`` is accepted for the value's bytes, which
    is what OHIF asks a video or PDF's bulk data with, and the body keeps its own
    media type. None of the accepted forms: 406.

    Rendered: single part always; the media type itself, its ``type/*`` or
    ``*/*``. None when nothing matches, so that the caller answers as for any
    other instance (an image type for a PDF: 406, no pixel data).
    """
    ranges = parse_accept(accept) if accept and accept.strip() else []
    if not ranges:
        return MediaForm.SINGLE if rendered else MediaForm.MULTIPART
    own = media.rendered_type if rendered else media.media_type
    for media_range in ranges:
        form = _form(media_range, own.lower(), rendered, media.transfer_syntax_uid)
        if form is not None:
            return form
    if rendered:
        return None
    raise NotAcceptable(
        f"the {media.describe()} can be sent as {media.media_type} or "
        f'multipart/related; type="{media.media_type}", not as any of \'{accept}\'')


def _form(media_range: MediaRange, own: str, rendered: bool,
          video_syntax: str | None) -> MediaForm | None:
    essence = _ALIASES.get(media_range.essence, media_range.essence)
    own = _ALIASES.get(own, own)
    inner = parse_media_type(media_range.params.get("type", _OCTET))
    syntax = media_range.params.get("transfer-syntax") or (
        inner.params.get("transfer-syntax") if inner is not None else None)
    if video_syntax is not None and syntax not in (None, "*", video_syntax):
        return None  # another syntax asked for by name (uncompressed, say): not this stream
    if _matches(essence, own) or (not rendered and essence == _OCTET):
        return MediaForm.SINGLE
    if essence == "*/*":
        return MediaForm.SINGLE if rendered else MediaForm.MULTIPART
    if rendered or essence not in ("multipart/related", "multipart/*") or inner is None:
        return None
    inner_essence = _ALIASES.get(inner.essence, inner.essence)
    if _matches(inner_essence, own) or inner_essence in (_OCTET, "*/*"):
        return MediaForm.MULTIPART
    return None


def _matches(essence: str, own: str) -> bool:
    """``video/mp4`` matches ``video/mp4`` and ``video/*`` (``*/*`` is decided by the caller)."""
    kind, _, subtype = essence.partition("/")
    return essence == own or (subtype == "*" and kind != "*" and own.startswith(f"{kind}/"))


async def media_response(media: MediaBody, form: MediaForm, *, rendered: bool,
                         range_header: str | None, location: str) -> Response:
    """The body: single part (whole, or the one range asked for: 206) or one multipart part.

    ``location`` is the part's Content-Location (the resource's absolute URL).
    """
    media_type = media.rendered_type if rendered else media.media_type
    size = media.size
    if form is MediaForm.MULTIPART:
        label = media_type
        if media.transfer_syntax_uid is not None:
            label += f"; transfer-syntax={media.transfer_syntax_uid}"
        writer = MultipartWriter(media_type)
        data = await anyio.to_thread.run_sync(read_media, media)
        body = b"".join(writer.part(label, (data,), location=location)) + writer.close()
        return Response(body, headers={"Content-Type": writer.content_type})
    headers = {"Accept-Ranges": "bytes"}
    try:
        byte_range = parse_range(range_header, size)
    except RangeNotSatisfiable as exc:  # RFC 9110 15.5.17: say how long the body is
        return error_response(416, exc.message, {"Content-Range": f"bytes */{size}"})
    if byte_range is not None:
        first, last = byte_range
        data = await anyio.to_thread.run_sync(read_media, media, first, last + 1)
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        return Response(data, status_code=206, media_type=media_type, headers=headers)
    if size <= _STREAM_ABOVE:
        data = await anyio.to_thread.run_sync(read_media, media)
        return Response(data, media_type=media_type, headers=headers)
    headers["Content-Length"] = str(size)
    return StreamingResponse(_chunks(media), media_type=media_type, headers=headers)


async def _chunks(media: MediaBody) -> AsyncIterator[bytes]:
    iterator = iter_media(media)
    while True:
        chunk = await anyio.to_thread.run_sync(next, iterator, None)
        if chunk is None:
            return
        yield chunk
