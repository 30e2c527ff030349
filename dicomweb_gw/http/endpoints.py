"""Thin endpoints: read the request, call a service, shape the response."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dicomweb_gw.dicomweb import dicomxml
from dicomweb_gw.dicomweb.dicomjson import dumps
from dicomweb_gw.dicomweb.media import MediaBody, bulk_media, instance_media
from dicomweb_gw.dicomweb.metadata import tag_path_from_uri
from dicomweb_gw.dicomweb.pixels import PixelService
from dicomweb_gw.dicomweb.prefetch import Prefetcher
from dicomweb_gw.dicomweb.qido import QidoService
from dicomweb_gw.dicomweb.query import parse_query
from dicomweb_gw.dicomweb.rendered import THUMBNAIL_VIEWPORT, RenderService
from dicomweb_gw.dicomweb.stow import StowService
from dicomweb_gw.dicomweb.uids import require_uid
from dicomweb_gw.dicomweb.wado import Part, WadoService, instance_path
from dicomweb_gw.dicomweb.wado_metadata import MetadataService, absolute_bulk_uris
from dicomweb_gw.errors import GatewayError, NotAcceptable, NotFound
from dicomweb_gw.http.baseurl import base_url
from dicomweb_gw.http.frame_list import parse_frame_list
from dicomweb_gw.http.http_caching import (
    HttpCaching,
    http_cached,
    http_cached_stream,
    revalidated,
)
from dicomweb_gw.http.logfilter import StreamAborted
from dicomweb_gw.http.media import media_response, negotiate_media
from dicomweb_gw.http.multipart import MultipartWriter
from dicomweb_gw.http.multipart_reader import check_stow_content_type, read_parts
from dicomweb_gw.http.negotiation import (
    MetadataFormat,
    negotiate_instances,
    negotiate_metadata,
    negotiate_pixels,
    negotiate_search,
)
from dicomweb_gw.http.ranges import parse_range, ranged_response
from dicomweb_gw.http.render_params import parse_render_params
from dicomweb_gw.model import QueryLevel, RetrieveKeys
from dicomweb_gw.pacs.protocol import PacsClient

__all__ = ["DicomWebApi"]

log = logging.getLogger(__name__)

_STUDY = 0x0020000D
_SERIES = 0x0020000E
_PATH_UIDS = (("study", "StudyInstanceUID", _STUDY), ("series", "SeriesInstanceUID", _SERIES))
_PLAIN_HOST = re.compile(r"[A-Za-z0-9.-]+")


@dataclass(frozen=True)
class Services:
    qido: QidoService
    wado: WadoService
    metadata: MetadataService
    pixels: PixelService
    render: RenderService
    stow: StowService
    #: Largest STOW-RS request body accepted (413 beyond).
    upload_max_bytes: int
    #: Studies retrieved ahead of a viewer (None: never).
    prefetch: Prefetcher | None = None
    #: ETags, Cache-Control and 304s (None: no caching headers at all).
    http_caching: HttpCaching | None = None


class DicomWebApi:
    """The DICOMweb endpoints for one PACS node, mounted under ``prefix``."""

    def __init__(self, pacs: PacsClient, *, prefix: str, services: Services) -> None:
        self.pacs = pacs
        self.prefix = prefix
        self._qido = services.qido
        self._wado = services.wado
        self._metadata = services.metadata
        self._pixels = services.pixels
        self._render = services.render
        self._stow = services.stow
        self._upload_max_bytes = services.upload_max_bytes
        self._prefetch = services.prefetch
        self.http_caching = services.http_caching

    # -- QIDO-RS ------------------------------------------------------------
    @revalidated
    async def search_studies(self, request: Request) -> Response:
        return await self._search(request, QueryLevel.STUDY)

    @revalidated
    async def search_series(self, request: Request) -> Response:
        return await self._search(request, QueryLevel.SERIES)

    @revalidated
    async def search_instances(self, request: Request) -> Response:
        return await self._search(request, QueryLevel.IMAGE)

    async def _search(self, request: Request, level: QueryLevel) -> Response:
        wanted = negotiate_search(_accept(request))
        pinned = {}
        for param, keyword, tag in _PATH_UIDS:
            if param in request.path_params:
                pinned[tag] = require_uid(request.path_params[param], keyword)
        query = parse_query(level, request.query_params.multi_items(), pinned)
        no_cache = "no-cache" in request.headers.get("cache-control", "").lower()
        result = await self._qido.search(self.pacs, query,
                                         base_url=base_url(request, self.prefix), fresh=no_cache)
        if level is QueryLevel.SERIES and _STUDY in pinned and result.items and (
                self._prefetch is not None):
            # A study's series list is what a viewer asks first when it opens the study.
            self._prefetch.opened(self.pacs, pinned[_STUDY])
        headers = _warning_header(result.warnings, agent=_warn_agent(request))
        if wanted is not MetadataFormat.JSON:
            return await _xml_response(lambda: result.items, wanted, headers)
        return Response(dumps(result.items), media_type="application/dicom+json",
                        headers=headers)

    # -- WADO-RS ------------------------------------------------------------
    @http_cached_stream
    async def retrieve(self, request: Request) -> Response:
        keys = self._keys(request)
        selection = negotiate_instances(_accept(request))
        parts = self._wado.retrieve(self.pacs, keys, selection)
        # Wait for the first instance before answering: until then a PACS error
        # or an empty result can still become a proper status code.
        try:
            first = await anext(parts)
        except StopAsyncIteration:
            raise NotFound(f"{keys.describe()} not found on PACS '{self.pacs.name}'") from None
        except BaseException:
            await parts.aclose()
            raise
        writer = MultipartWriter("application/dicom")
        base = base_url(request, self.prefix)
        return StreamingResponse(_stream(writer, first, parts, keys, base),
                                 media_type=None,
                                 headers={"Content-Type": writer.content_type})

    @http_cached
    async def metadata(self, request: Request) -> Response:
        keys = self._keys(request)
        wanted = negotiate_metadata(_accept(request), single=keys.instance_uid is not None)
        body = await self._metadata.metadata(self.pacs, keys)
        body = absolute_bulk_uris(body, base_url(request, self.prefix))
        if wanted is not MetadataFormat.JSON:
            # Converted from the JSON just built, so both carry the same BulkDataURIs.
            return await _xml_response(lambda: orjson.loads(body), wanted, {})
        return Response(body, media_type="application/dicom+json")

    @http_cached
    async def frames(self, request: Request) -> Response:
        keys = self._keys(request)
        numbers = parse_frame_list(request.path_params["frames"])
        try:
            wanted = negotiate_pixels(_accept(request))
            parts = await self._pixels.frames(self.pacs, keys, numbers, wanted)
        except NotAcceptable as refused:
            # Frames of a video are not separable: the stream itself (see dicomweb.media).
            # Looked for only now, so image frames pay nothing for it.
            return await self._video_frames(request, keys, numbers, refused)
        if not wanted.multipart and len(parts) == 1:
            # One frame as a bare body: cornerstone3D's progressive loading asks
            # for a prefix of it (Range), decodes a low resolution, then the rest.
            # Converted frames are cached, and encoded the same way every time.
            part = parts[0]
            return ranged_response(b"".join(part.chunks), part.content_type,
                                   request.headers.get("range"))
        return _parts_response(parts, wanted.multipart, base_url(request, self.prefix))

    async def _video_frames(self, request: Request, keys: RetrieveKeys, numbers: list[int],
                            refused: NotAcceptable) -> Response:
        media = await instance_media(self._pixels, self.pacs, keys)
        if media is None or not media.is_video:
            raise refused
        beyond = [n for n in numbers if n > media.number_of_frames]
        if beyond:
            raise NotFound(f"frame {beyond[0]} is past the {media.number_of_frames} frames "
                           f"of the video {keys.instance_uid}")
        return await self._media_answer(request, keys, media,
                                        f"frames/{request.path_params['frames']}")

    async def _media_answer(self, request: Request, keys: RetrieveKeys, media: MediaBody,
                            resource: str) -> Response:
        """A video or document as itself, at ``resource`` (its URL below the instance)."""
        form = negotiate_media(_accept(request), media, rendered=False)
        assert form is not None  # negotiate_media raises for bulk data and frames
        assert keys.series_uid is not None
        assert keys.instance_uid is not None
        location = (f"{base_url(request, self.prefix)}/"
                    f"{instance_path(keys.study_uid, keys.series_uid, keys.instance_uid)}"
                    f"/{resource}")
        return await media_response(media, form, rendered=False,
                                    range_header=request.headers.get("range"),
                                    location=location)

    @http_cached
    async def rendered(self, request: Request) -> Response:
        keys = self._keys(request)
        if keys.instance_uid is not None:
            # A video or document renders as itself (PS3.18 8.7.4; see dicomweb.media).
            media = await instance_media(self._pixels, self.pacs, keys)
            form = None if media is None else negotiate_media(_accept(request), media,
                                                                rendered=True)
            if media is not None and form is not None:
                return await media_response(media, form, rendered=True,
                                            range_header=request.headers.get("range"),
                                            location=str(request.url))
        params = parse_render_params(request.query_params, request.headers.get("accept"))
        image = await self._render.rendered(self.pacs, keys, _first_frame(request), params)
        return Response(image, media_type=params.media_type)

    @http_cached
    async def thumbnail(self, request: Request) -> Response:
        keys = self._keys(request)
        params = parse_render_params(request.query_params, request.headers.get("accept"),
                                     default_viewport=THUMBNAIL_VIEWPORT)
        image = await self._render.thumbnail(self.pacs, keys, _first_frame(request), params)
        return Response(image, media_type=params.media_type)

    def _keys(self, request: Request) -> RetrieveKeys:
        """The UIDs in the path; a request for a study keeps its prefetch from going idle."""
        keys = _retrieve_keys(request)
        if self._prefetch is not None:
            self._prefetch.seen(self.pacs.name, keys.study_uid)
        return keys

    # -- STOW-RS ------------------------------------------------------------
    async def store(self, request: Request) -> Response:
        boundary = check_stow_content_type(request.headers.get("content-type"))
        study = request.path_params.get("study")
        if study is not None:
            require_uid(study, "StudyInstanceUID")
        parts = read_parts(request.stream(), boundary, max_bytes=self._upload_max_bytes)
        result = await self._stow.store(self.pacs, parts, study_uid=study,
                                        base_url=base_url(request, self.prefix))
        return Response(dumps(result.body), status_code=result.status_code,
                        media_type="application/dicom+json",
                        headers=_warning_header(result.warnings))

    @http_cached
    async def bulkdata(self, request: Request) -> Response:
        keys = self._keys(request)
        tag_path = tag_path_from_uri(request.path_params["tags"])
        media = await bulk_media(self._pixels, self.pacs, keys, tag_path)
        if media is not None:  # a video or a document: with its own media type
            return await self._media_answer(request, keys, media,
                                            f"bulkdata/{request.path_params['tags']}")
        wanted = negotiate_pixels(_accept(request))
        bulk = await self._pixels.bulkdata(self.pacs, keys, tag_path, wanted)
        if isinstance(bulk, list):  # compressed pixel data: its frames
            return _parts_response(bulk, wanted.multipart, base_url(request, self.prefix))
        size = bulk.location.length
        byte_range = parse_range(request.headers.get("range"), size)
        if byte_range is not None:
            start, end = byte_range
            data = await self._pixels.read(bulk, start, end + 1)
            return Response(data, status_code=206, media_type=bulk.content_type,
                            headers={"Content-Range": f"bytes {start}-{end}/{size}",
                                     "Accept-Ranges": "bytes"})
        data = await self._pixels.read(bulk)
        if not wanted.multipart:
            return Response(data, media_type=bulk.content_type,
                            headers={"Accept-Ranges": "bytes"})
        writer = MultipartWriter(bulk.content_type)
        assert keys.series_uid is not None
        assert keys.instance_uid is not None
        bulk_data_uri = (f"{base_url(request, self.prefix)}/"
                         f"{instance_path(keys.study_uid, keys.series_uid, keys.instance_uid)}"
                         f"/bulkdata/{request.path_params['tags']}")
        body = b"".join(writer.part(bulk.content_type, (data,), location=bulk_data_uri))
        body += writer.close()
        return Response(body, headers={"Content-Type": writer.content_type})


def _warning_header(warnings: list[str], agent: str = "-") -> dict[str, str]:
    """PS3.18 8.1.2.2: ``Warning: 299 <agent> "<text>"``, one per warning, comma-joined."""
    if not warnings:
        return {}
    # Header values must be Latin-1: anything else (a UID never is, a message may be) becomes "?".
    quoted = (text.encode("ascii", "replace").decode().replace("\\", "\\\\").replace('"', '\\"')
              for text in warnings)
    return {"Warning": ", ".join(f'299 {agent} "{text}"' for text in quoted)}


def _warn_agent(request: Request) -> str:
    """PS3.18 8.3.4 writes QIDO's Warning as ``299 {SERVICE}: "..."``: the host the client
    called and a colon (an empty port, still a valid RFC 9110 warn-agent); "-" for a
    host that is not a plain name or IPv4 address."""
    host = request.url.hostname or ""
    return f"{host}:" if _PLAIN_HOST.fullmatch(host) else "-"


async def _xml_response(datasets: Callable[[], list[dict[str, Any]]], wanted: MetadataFormat,
                        headers: dict[str, str]) -> Response:
    """DICOM XML: one document per data set, as multipart parts (or one bare document).

    No data set is 204 (PS3.18 10.6.3.1): a multipart body needs at least one part.
    """
    # Loading a study's JSON and writing its documents is CPU work: off the event loop.
    documents = await anyio.to_thread.run_sync(_native_xml_documents, datasets)
    if not documents:
        return Response(status_code=204, headers=headers)
    if wanted is MetadataFormat.XML:
        return Response(documents[0], media_type=dicomxml.MEDIA_TYPE, headers=headers)
    writer = MultipartWriter(dicomxml.MEDIA_TYPE)
    body = b"".join(chunk for document in documents
                    for chunk in writer.part(dicomxml.MEDIA_TYPE, (document,)))
    return Response(body + writer.close(),
                    headers={**headers, "Content-Type": writer.content_type})


def _native_xml_documents(datasets: Callable[[], list[dict[str, Any]]]) -> list[bytes]:
    return [dicomxml.to_native_xml(dataset) for dataset in datasets()]


def _first_frame(request: Request) -> int | None:
    """Rendered and thumbnail take one frame: the first of the list in the path."""
    frames = request.path_params.get("frames")
    return parse_frame_list(frames)[0] if frames is not None else None


def _parts_response(parts: list[Part], multipart: bool, base: str) -> Response:
    """Frames as one multipart body, or a bare single part when the client asked for that."""
    if not multipart and len(parts) == 1:
        return Response(parts[0].chunks[0], media_type=parts[0].content_type)
    writer = MultipartWriter(parts[0].content_type)
    body = b"".join(chunk for part in parts
                    for chunk in writer.part(part.content_type, part.chunks,
                                             location=_location(base, part)))
    return Response(body + writer.close(), headers={"Content-Type": writer.content_type})


def _location(base: str, part: Part) -> str | None:
    """The absolute URL of the resource a part is (its Content-Location)."""
    return None if part.location is None else f"{base}/{part.location}"


async def _stream(
    writer: MultipartWriter, first: Part, rest: AsyncGenerator[Part, None], keys: RetrieveKeys,
    base: str,
) -> AsyncIterator[bytes]:
    async with aclosing(rest):
        for chunk in writer.part(first.content_type, first.chunks,
                                 location=_location(base, first)):
            yield chunk
        try:
            async for part in rest:
                for chunk in writer.part(part.content_type, part.chunks,
                                         location=_location(base, part)):
                    yield chunk
        except GatewayError as exc:
            log.warning("retrieve of %s broke off mid-stream: %s", keys.describe(), exc.message)
            raise StreamAborted(exc.message) from None
    yield writer.close()


def _accept(request: Request) -> str | None:
    """The ``accept`` query parameter overrides the header (PS3.18 8.3.3.1)."""
    return request.query_params.get("accept") or request.headers.get("accept")


def _retrieve_keys(request: Request) -> RetrieveKeys:
    params = request.path_params
    study = require_uid(params["study"], "StudyInstanceUID")
    series = params.get("series")
    instance = params.get("instance")
    return RetrieveKeys(
        study_uid=study,
        series_uid=require_uid(series, "SeriesInstanceUID") if series is not None else None,
        instance_uid=require_uid(instance, "SOPInstanceUID") if instance is not None else None,
    )
