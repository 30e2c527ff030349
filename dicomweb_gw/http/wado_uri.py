"""WADO-URI (PS3.18 chapter 9): one object named by its three UIDs in the query string.

    GET /wado?requestType=WADO&studyUID=...&seriesUID=...&objectUID=...
        [&contentType=application/dicom | image/jpeg | image/png | image/gif]
        [&transferSyntax=UID] [&anonymize=yes] [&frameNumber=N] [&rows=R] [&columns=C]
        [&region=x1,y1,x2,y2] [&windowCenter=C&windowWidth=W] [&imageQuality=Q]

studyUID and seriesUID, which PS3.18 requires, may be left out: RIS links in
the wild carry only objectUID. The gateway then finds the study and series
with one IMAGE-level C-FIND (see ``locate_instance``).

No second implementation: images come from RenderService (the WADO-RS
rendered pipeline), Part 10 files from WadoService.retrieve (its cache and
transcoding), sent as one body rather than a multipart.

Without contentType the object decides, with PS3.18's defaults (2013
edition 7.1, 7.2): image/jpeg for a single-frame image or one frame chosen
by frameNumber, application/dicom for a multi-frame image; application/dicom
too for SR (whose default would be text/html, which is not made here) and
other objects; image/jpeg also when another rendering parameter shows that
the client wants a picture. The Accept header is not consulted: browsers
send their own, and the parameter is the client's explicit choice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path

import anyio
from pydicom import dcmread
from pydicom import uid as uids
from pydicom.dataset import Dataset
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dicomweb_gw.codecs.render import RENDERED_TYPES, RenderParams, Viewport, Window
from dicomweb_gw.dicomweb.anonymize import BasicProfile, burned_in, refusal
from dicomweb_gw.dicomweb.pixels import evicted_as_503, on_disk
from dicomweb_gw.dicomweb.rendered import NoPixelData
from dicomweb_gw.dicomweb.selection import InstanceSelection
from dicomweb_gw.dicomweb.uids import require_uid
from dicomweb_gw.errors import BadRequest, NotAcceptable, NotFound, PacsFailure
from dicomweb_gw.http.endpoints import Services
from dicomweb_gw.http.http_caching import http_cached_wado_uri
from dicomweb_gw.http.negotiation import parse_accept
from dicomweb_gw.http.render_params import MAX_VIEWPORT
from dicomweb_gw.model import QueryLevel, RetrieveKeys
from dicomweb_gw.pacs.protocol import PacsClient

__all__ = ["MEDIA_TYPES", "QUERY_PARAMETERS", "ObjectUids", "WadoUri", "locate_instance",
           "parse_wado_uri", "wado_uri_path", "wado_uri_route"]

DICOM = "application/dicom"
MEDIA_TYPES = (DICOM, *RENDERED_TYPES)
RENDERING_PARAMETERS = ("frameNumber", "rows", "columns", "region", "windowCenter",
                        "windowWidth", "imageQuality")
#: Understood; ``charset`` and ``annotation`` are accepted and ignored (nothing is burned in).
QUERY_PARAMETERS = ("requestType", "studyUID", "seriesUID", "objectUID", "contentType",
                    "transferSyntax", "anonymize", *RENDERING_PARAMETERS, "charset",
                    "annotation")
_UNSUPPORTED = ("presentationUID", "presentationSeriesUID")
_DEFAULT = "*/*"  # in the content type list: "PS3.18's default for this object"
_HEADER_TAGS = ["SOPClassUID", "SOPInstanceUID", "Rows", "Columns", "NumberOfFrames",
                "BurnedInAnnotation"]
# One key for the process: an object anonymized through any node gets the same UIDs.
_PROFILE = BasicProfile()


def wado_uri_path(node_name: str | None) -> str:
    return "/wado" if node_name is None else f"/pacs/{node_name}/wado"


def wado_uri_route(node_name: str | None, pacs: PacsClient, services: Services) -> Route:
    path = wado_uri_path(node_name)
    return Route(path, WadoUri(pacs, services, prefix=path).wado_uri, methods=["GET"])


@dataclass(frozen=True)
class ObjectUids:
    """The object as the link names it: objectUID always, its study and series when given."""

    object_uid: str
    study_uid: str | None = None
    series_uid: str | None = None


@dataclass(frozen=True)
class WadoUriQuery:
    object_uids: ObjectUids
    content_types: tuple[str, ...]  # the client's order of preference
    explicit: bool  # contentType was given
    rendering: tuple[str, ...]  # the rendering parameters present
    frame: int | None = None
    rows: int | None = None
    columns: int | None = None
    region: tuple[float, float, float, float] | None = None
    window: Window | None = None
    quality: int = RenderParams.quality
    transfer_syntax: str | None = uids.ExplicitVRLittleEndian  # None: as stored
    anonymize: bool = False


@dataclass(frozen=True)
class _Header:
    sop_instance_uid: str
    sop_class_uid: str
    rows: int  # 0: not an image
    columns: int
    frames: int
    burned_in: bool

    @property
    def is_image(self) -> bool:
        return self.rows > 0  # as RenderService decides: Rows means pixel data to render


class WadoUri:
    """The WADO-URI endpoint of one PACS node."""

    def __init__(self, pacs: PacsClient, services: Services, prefix: str,
                 profile: BasicProfile = _PROFILE) -> None:
        self._pacs = pacs
        self._services = services
        self._profile = profile
        self.prefix = prefix  # the ETag hashes the base URL, as a WADO-RS one does
        self.http_caching = services.http_caching

    @http_cached_wado_uri
    async def wado_uri(self, request: Request) -> Response:
        query = parse_wado_uri(request.query_params)
        keys = await self._keys(query.object_uids)
        header: _Header | None = None
        for wanted in query.content_types:
            if wanted in RENDERED_TYPES or wanted == _DEFAULT:
                # Only now is the instance fetched: application/dicom needs no header.
                header = header or await self._header(keys)
            media_type = _producible(wanted, header, query)
            if media_type == DICOM:
                return await self._dicom(query, keys)
            if media_type is not None:
                assert header is not None
                return await self._image(query, keys, media_type, header)
        if header is not None and not header.is_image:
            kind = f" ({uids.UID(header.sop_class_uid).name})" if header.sop_class_uid else ""
            raise NoPixelData(f"instance {header.sop_instance_uid}{kind} has no pixel data, so "
                              f"it cannot be sent as an image; ask for contentType={DICOM}")
        raise NotAcceptable(f"cannot produce contentType '{', '.join(query.content_types)}'; "
                            f"available: {', '.join(MEDIA_TYPES)}")

    async def _keys(self, object_uids: ObjectUids) -> RetrieveKeys:
        """The object's three UIDs; those the link left out are asked of the PACS."""
        if object_uids.study_uid is not None and object_uids.series_uid is not None:
            return RetrieveKeys(object_uids.study_uid, object_uids.series_uid,
                                object_uids.object_uid)
        return await locate_instance(self._pacs, object_uids)

    async def _dicom(self, query: WadoUriQuery, keys: RetrieveKeys) -> Response:
        """The Part 10 file, through WADO-RS retrieve: one instance, one body."""
        selection = InstanceSelection(transfer_syntax=query.transfer_syntax)
        retrieve = self._services.wado.retrieve(self._pacs, keys, selection)
        async with aclosing(retrieve) as parts:
            async for part in parts:
                body = b"".join(part.chunks)
                break
            else:
                raise NotFound(f"{keys.describe()} not found on PACS '{self._pacs.name}'")
        name = str(keys.instance_uid)
        if query.anonymize:
            body = await anyio.to_thread.run_sync(self._profile.part10, body)
            name = self._profile.uid(name)  # the original UID would point back to the patient
        return Response(body, media_type=DICOM,
                        headers={"Content-Disposition": f'attachment; filename="{name}.dcm"'})

    async def _image(self, query: WadoUriQuery, keys: RetrieveKeys, media_type: str,
                     header: _Header) -> Response:
        if query.anonymize and header.burned_in:
            # A rendered image carries no attributes, but the pixels would show the identity.
            raise refusal(header.sop_instance_uid)
        params = RenderParams(media_type, _viewport(query, header), query.window, query.quality)
        image = await self._services.render.rendered(self._pacs, keys, query.frame, params)
        return Response(image, media_type=media_type)

    async def _header(self, keys: RetrieveKeys) -> _Header:
        """What decides the response; retrieves (and caches) the instance for what follows."""
        handle = await self._services.pixels.instance(self._pacs, keys)
        with evicted_as_503(), on_disk(handle) as path:
            return await anyio.to_thread.run_sync(_read_header, path)


async def locate_instance(pacs: PacsClient, object_uids: ObjectUids) -> RetrieveKeys:
    """The study and series of the instance ``object_uids`` names, from one IMAGE-level C-FIND.

    The parents go in as return keys, empty (or as matching keys, when the link
    gave one). Study Root's hierarchical search would want them as unique keys,
    but dcmqrscp and Orthanc both answer this query; a PACS that refuses it gets
    a 400 that says to put studyUID and seriesUID in the link, rather than a walk
    through every study it holds.
    """
    query = Dataset()
    query.StudyInstanceUID = object_uids.study_uid or ""
    query.SeriesInstanceUID = object_uids.series_uid or ""
    query.SOPInstanceUID = object_uids.object_uid
    try:
        async with aclosing(pacs.find(QueryLevel.IMAGE, query)) as found:
            async for match in found:
                keys = _matched_keys(match, object_uids)
                if keys is not None:
                    return keys
    except PacsFailure as exc:
        raise BadRequest(f"PACS '{pacs.name}' cannot look up objectUID "
                         f"{object_uids.object_uid} without its study and series ({exc.message});"
                         " give studyUID and seriesUID") from None
    raise NotFound(f"instance {object_uids.object_uid}"
                   f"{_given_parents(object_uids)} not found on PACS '{pacs.name}'")


def _matched_keys(match: Dataset, object_uids: ObjectUids) -> RetrieveKeys | None:
    """A C-FIND match as RetrieveKeys; None when it lacks a parent or is another object
    (a PACS that ignores a matching key answers with everything)."""
    study = str(match.get("StudyInstanceUID", "") or "")
    series = str(match.get("SeriesInstanceUID", "") or "")
    instance = str(match.get("SOPInstanceUID", "") or object_uids.object_uid)
    if not study or not series or instance != object_uids.object_uid:
        return None
    if object_uids.study_uid not in (None, study) or object_uids.series_uid not in (None, series):
        return None
    return RetrieveKeys(study, series, instance)


def _given_parents(object_uids: ObjectUids) -> str:
    given = [f"{name} {uid}" for name, uid in (("series", object_uids.series_uid),
                                                ("study", object_uids.study_uid)) if uid]
    return f" in {', '.join(given)}" if given else ""


def _producible(wanted: str, header: _Header | None, query: WadoUriQuery) -> str | None:
    """The media type to send for the client's choice ``wanted``; None if not producible."""
    if wanted == DICOM:
        if query.explicit and query.rendering and query.content_types[0] == DICOM:
            raise BadRequest(f"{', '.join(query.rendering)} apply to rendered images "
                             f"({', '.join(RENDERED_TYPES)}), not to {DICOM}")
        return DICOM
    if header is None:
        return None  # not a type the gateway makes
    if wanted == _DEFAULT:
        if header.is_image and (header.frames == 1 or query.rendering):
            return "image/jpeg"
        return None if query.rendering else DICOM
    return wanted if header.is_image else None


def _read_header(path: Path) -> _Header:
    header = dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    return _Header(str(header.get("SOPInstanceUID", "")), str(header.get("SOPClassUID", "")),
                   _count(header.get("Rows"), 0), _count(header.get("Columns"), 0),
                   max(_count(header.get("NumberOfFrames"), 1), 1),
                   burned_in(header.get("BurnedInAnnotation")))


def _count(value: object, default: int) -> int:
    try:
        return int(str(value)) if value not in (None, "") else default
    except ValueError:
        return default


def _viewport(query: WadoUriQuery, header: _Header) -> Viewport | None:
    """rows/columns: fit within them keeping the aspect ratio (one alone bounds one side);
    region: the normalised source rectangle, at its own size unless rows/columns say."""
    if query.rows is None and query.columns is None and query.region is None:
        return None
    sx = sy = 0
    sw: int | None = None
    sh: int | None = None
    if query.region is not None:
        x1, y1, x2, y2 = query.region
        # Outward to whole pixels: a non-empty region never rounds to nothing.
        sx, sy = math.floor(x1 * header.columns), math.floor(y1 * header.rows)
        sw = max(1, math.ceil(x2 * header.columns) - sx)
        sh = max(1, math.ceil(y2 * header.rows) - sy)
    if query.rows is None and query.columns is None:
        vw, vh = sw or header.columns, sh or header.rows
    else:
        vw, vh = query.columns or MAX_VIEWPORT, query.rows or MAX_VIEWPORT
    return Viewport(vw, vh, sx, sy, sw, sh)


# -- the query string ------------------------------------------------------------


def parse_wado_uri(query: Mapping[str, str]) -> WadoUriQuery:
    """The request, checked; BadRequest (400) naming the parameter that is wrong."""
    request_type = query.get("requestType")
    if request_type is None:
        raise BadRequest("requestType is required: WADO-URI requests carry requestType=WADO")
    if request_type != "WADO":
        raise BadRequest(f"requestType '{request_type}' is not supported; the only request "
                         "type is WADO")
    for name in _UNSUPPORTED:
        if name in query:
            raise BadRequest(f"{name}: presentation states are not applied by this gateway")
    object_uids = ObjectUids(require_uid(_required(query, "objectUID"), "objectUID"),
                             _optional_uid(query, "studyUID"), _optional_uid(query, "seriesUID"))
    content_type = query.get("contentType")
    syntax = query.get("transferSyntax")
    anonymize = query.get("anonymize")
    if anonymize is not None and anonymize.lower() != "yes":
        raise BadRequest(f"anonymize '{anonymize}' is not understood; the only value is yes")
    center, width = query.get("windowCenter"), query.get("windowWidth")
    if (center is None) != (width is None):
        raise BadRequest("windowCenter and windowWidth go together: give both or neither")
    return WadoUriQuery(
        object_uids=object_uids,
        content_types=_content_types(content_type) if content_type is not None else (_DEFAULT,),
        explicit=content_type is not None,
        rendering=tuple(name for name in RENDERING_PARAMETERS if name in query),
        frame=_whole(query, "frameNumber", 1, None),
        rows=_whole(query, "rows", 1, MAX_VIEWPORT),
        columns=_whole(query, "columns", 1, MAX_VIEWPORT),
        region=_region(query.get("region")),
        window=_window(center, width) if center is not None and width is not None else None,
        quality=_whole(query, "imageQuality", 1, 100) or RenderParams.quality,
        transfer_syntax=None if syntax == "*" else
        require_uid(syntax, "transferSyntax") if syntax is not None else
        uids.ExplicitVRLittleEndian,  # PS3.18: the default for application/dicom
        anonymize=anonymize is not None,
    )


def _required(query: Mapping[str, str], name: str) -> str:
    value = query.get(name)
    if not value:
        raise BadRequest(f"{name} is required: WADO-URI names the object by objectUID "
                         "(with studyUID and seriesUID, which may be left out)")
    return value


def _optional_uid(query: Mapping[str, str], name: str) -> str | None:
    """A parent's UID; absent or empty (a RIS template with nothing filled in) is None."""
    value = query.get(name)
    return require_uid(value, name) if value else None


def _content_types(text: str) -> tuple[str, ...]:
    """``contentType``: one media type or a list with q values, best first (PS3.18 9)."""
    try:
        ranges = parse_accept(text)
    except BadRequest:
        raise BadRequest(f"contentType '{text}' is not a media type list") from None
    if not ranges:
        raise BadRequest(f"contentType '{text}' names no media type")
    # image/jpg is no registered type, but clients and old WADO links send it for JPEG.
    aliases = {"*/*": _DEFAULT, "image/*": "image/jpeg", "image/jpg": "image/jpeg"}
    return tuple(aliases.get(r.essence, r.essence) for r in ranges)


def _whole(query: Mapping[str, str], name: str, low: int, high: int | None) -> int | None:
    text = query.get(name)
    if text is None:
        return None
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or not (
            low <= int(value) and (high is None or int(value) <= high)):
        bounds = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise BadRequest(f"{name} '{text}' must be a whole number {bounds}")
    return int(value)


def _region(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    try:
        x1, y1, x2, y2 = (float(part) for part in text.split(","))
    except ValueError:
        raise BadRequest(f"region '{text}' is not x1,y1,x2,y2") from None
    if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
        raise BadRequest(f"region '{text}': the corners are fractions of the image, "
                         "0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1")
    return x1, y1, x2, y2


def _window(center_text: str, width_text: str) -> Window:
    try:
        center, width = float(center_text), float(width_text)
    except ValueError:
        raise BadRequest(f"windowCenter '{center_text}' and windowWidth '{width_text}' must "
                         "be numbers") from None
    if not (math.isfinite(center) and math.isfinite(width)) or width < 1:
        # PS3.3 C.11.2.1.2: a linear window is at least 1 wide.
        raise BadRequest(f"windowWidth '{width_text}' must be a finite number of at least 1 "
                         f"(windowCenter '{center_text}')")
    return Window(center, width)
