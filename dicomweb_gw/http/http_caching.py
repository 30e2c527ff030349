"""HTTP caching of DICOMweb answers: ETags, Cache-Control and 304 Not Modified.

An instance never changes under its SOP Instance UID, so what the gateway sends
for one (retrieve, metadata, frames, rendered, thumbnail, bulk data; a WADO-URI
object named by its three UIDs) is a
function of the request alone: the path (UIDs, frame list, tag path), the query
(rendering parameters, ``accept``), the Accept header, the base URL the answer
writes into BulkDataURIs and Content-Locations, and the gateway's own way of
producing bytes (``REPRESENTATION_VERSION``). Its ETag is a hash of those, so a
revalidation is answered without reading the instance, and without the PACS.

A study or series changes when instances arrive (a modality still sending, a
STOW), so its answers are ``no-cache`` (always revalidated). Its metadata and
rendered answers are built as usual (from the cache alone while it holds the
study complete, else from the PACS, as for any request) and their ETag hashes
the answer itself: a match then sends a 304 instead of the body. A streamed
retrieve cannot be hashed before it is sent: its ETag hashes the instance list
of the cache's completeness record, and a 304 needs that record (asking the
cache for the list costs what the retrieve itself asks, so it is not done for
metadata, which a warm cache answers from one file).

A 304 is only given where the same request without ``If-None-Match`` would get
a 200: the instance must be in the cache filed under the study and series the
URL names (``RetrieveKeys.covers``, the one check), else the normal path runs
and answers (or refuses) as it always does. So a 304 tells a client nothing a
200 would not.

Answers are ``private``: they carry patient data, and with authentication on
they are for the credential that asked (``Vary: Authorization``); a shared
cache must never hand them to another user. ``no-store`` turns all of it off.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dicomweb_gw.cache.protocol import CachedInstance, InstanceStore
from dicomweb_gw.dicomweb.uids import is_valid_uid
from dicomweb_gw.http.baseurl import base_url
from dicomweb_gw.model import RetrieveKeys
from dicomweb_gw.settings.model import HttpCache

__all__ = ["CODINGS", "REPRESENTATION_VERSION", "HttpCaching", "etag_with_coding",
           "http_cached", "http_cached_stream", "http_cached_wado_uri", "matches",
           "representation_tag", "revalidated"]

#: Bump whenever the bytes the gateway produces for the same request change (a new
#: encoder, a metadata fix, a new multipart layout): every ETag changes with it,
#: so no browser keeps an answer the gateway would no longer give.
REPRESENTATION_VERSION = "1"

#: Content codings the compression middleware may apply, each with its ETag suffix
#: (RFC 9110 8.8.3.3: a strong ETag differs for a different content coding).
CODINGS = ("gzip", "br", "zstd")

_ENTITY_TAG = re.compile(r'(W/)?"([^"]*)"')
_CODING_SUFFIX = re.compile(f"-(?:{'|'.join(CODINGS)})$")
#: Statuses an ETag and Cache-Control apply to: the representation, or a range of it.
_CACHEABLE = (200, 206)
#: Answers that must be revalidated every time: patient data, not for shared caches.
_REVALIDATE = "private, no-cache"
_BOUNDARY = re.compile(r'boundary="?([^";\s]+)"?', re.IGNORECASE)
#: Bodies bigger than this are hashed in a worker thread.
_HASH_IN_THREAD = 256 * 1024


def etag_with_coding(etag: str, coding: str) -> str:
    """``"abc"`` sent with ``coding`` is ``"abc-gzip"`` (``W/`` kept)."""
    if not etag.endswith('"'):
        return etag
    return f'{etag[:-1]}-{coding}"'


def matches(header: str, opaque: str) -> str | None:
    """The entity tag of If-None-Match ``header`` that matches ``opaque`` (as the client
    sent it, for the 304 to carry), ``*`` for a wildcard, or None (RFC 9110 13.1.2).

    Weak comparison, so ``W/`` does not matter; nor does a content-coding suffix, as
    the same representation compressed has not changed either. A malformed field
    matches nothing.
    """
    if header.strip() == "*":
        return "*"
    for match in _ENTITY_TAG.finditer(header):
        if _CODING_SUFFIX.sub("", match.group(2)) == opaque:
            return match.group(0)
    return None


@dataclass(frozen=True)
class HttpCaching:
    """The caching policy of one node's endpoints, and the cache to revalidate against."""

    store: Callable[[], InstanceStore]
    mode: HttpCache = "private"
    max_age: int = 86400
    #: Seconds a completeness record counts (the gateway's ``cache_ttl``).
    ttl: float = 300.0
    #: Request fields that carry the credential (``Vary``): they change who may see it.
    credential_headers: tuple[str, ...] = ("Authorization",)

    @property
    def enabled(self) -> bool:
        return self.mode != "no-store"

    def vary(self, *extra: str) -> str:
        return ", ".join(("Accept", *self.credential_headers, *extra))

    def instance_cache_control(self) -> str:
        return f"private, max-age={self.max_age}" if self.enabled else "no-store"

    def revalidate_cache_control(self) -> str:
        return _REVALIDATE if self.enabled else "no-store"

    async def listing(self, keys: RetrieveKeys) -> list[CachedInstance] | None:
        """The instances of a study or series if the cache knows them all, else None."""
        return await anyio.to_thread.run_sync(self.store().complete, keys.study_uid,
                                              keys.series_uid, self.ttl)

    async def cached_under(self, keys: RetrieveKeys) -> bool:
        """Is the instance in the cache, filed under the study and series ``keys`` name?"""
        assert keys.instance_uid is not None
        store = self.store()
        sop_uid, study_uid, series_uid = keys.instance_uid, keys.study_uid, keys.series_uid

        def get() -> CachedInstance | None:
            return store.get(sop_uid, study_uid=study_uid, series_uid=series_uid)

        hit = await anyio.to_thread.run_sync(get)
        return hit is not None and keys.covers(hit.study_uid, hit.series_uid,
                                               hit.sop_instance_uid)


def representation_tag(request: Request, base: str, *, listing: Iterable[str] = (),
                       body: bytes = b"") -> str:
    """The opaque part of the ETag: a hash of everything the answer's bytes depend on
    (for a study or series, also its instance list or the answer itself)."""
    digest = hashlib.blake2b(digest_size=16)
    accept = request.headers.get("accept", "")
    for field in (REPRESENTATION_VERSION, request.url.path, base, accept):
        digest.update(field.encode("utf-8", "surrogateescape") + b"\0")
    for name, value in sorted(request.query_params.multi_items()):
        digest.update(f"{name}={value}".encode("utf-8", "surrogateescape") + b"\0")
    for item in listing:
        digest.update(item.encode() + b"\0")
    digest.update(body)
    return digest.hexdigest()


def _listing(instances: Sequence[CachedInstance]) -> list[str]:
    return sorted(f"{i.series_uid}/{i.sop_instance_uid}" for i in instances)


def _comparable_body(response: Response) -> bytes | None:
    """The body of a whole (not streamed) answer, its multipart boundary (new on every
    answer) taken out; None for a streamed one."""
    if isinstance(response, StreamingResponse):
        return None
    body = bytes(response.body)
    boundary = _BOUNDARY.search(response.headers.get("content-type", ""))
    return body.replace(boundary.group(1).encode(), b"") if boundary else body


def _keys(study: str | None, series: str | None, instance: str | None) -> RetrieveKeys | None:
    """The keys the UIDs given name, or None if there is no study or one is malformed
    (the handler then says why)."""
    if study is None or not all(is_valid_uid(uid) for uid in (study, series, instance)
                                if uid is not None):
        return None
    return RetrieveKeys(study, series, instance)


def _path_keys(request: Request) -> RetrieveKeys | None:
    """The UIDs of the path (``_keys``)."""
    params = request.path_params
    return _keys(params.get("study"), params.get("series"), params.get("instance"))


def _wado_uri_keys(request: Request) -> RetrieveKeys | None:
    """The object a WADO-URI link names, if it names all three UIDs (``_keys``).

    One that leaves out its study or series is found by a C-FIND first, so a 304
    could not be given without the PACS: it gets no caching headers.
    """
    query = request.query_params
    series, instance = query.get("seriesUID"), query.get("objectUID")
    if series is None or instance is None:
        return None
    return _keys(query.get("studyUID"), series, instance)


class CachingEndpoints(Protocol):
    """What ``http_cached`` needs of the endpoints object it decorates."""

    @property
    def http_caching(self) -> HttpCaching | None: ...

    @property
    def prefix(self) -> str: ...


E = TypeVar("E", bound=CachingEndpoints)
Handler = Callable[[E, Request], Awaitable[Response]]


def http_cached(handler: Handler[E]) -> Handler[E]:
    """A WADO-RS handler with ETag, Cache-Control and 304 Not Modified.

    An instance's answer: a matching ``If-None-Match`` for an instance cached under
    the path's study and series is answered 304 at once, without the handler. A
    study's or series' (metadata, rendered): the handler answers as usual (from the
    cache alone when it holds the study complete, else from the PACS as it must),
    and a matching ``If-None-Match`` turns its 200 into a 304; its ETag hashes the
    answer itself. A 200 or 206 gets the headers; errors (raised, so answered by
    the exception handlers) get none.
    """
    return _cached(handler, streamed=False)


def http_cached_stream(handler: Handler[E]) -> Handler[E]:
    """``http_cached`` for a streamed answer (a study or series retrieve): its ETag
    hashes the instance list of the cache's completeness record, and a 304 needs one."""
    return _cached(handler, streamed=True)


def http_cached_wado_uri(handler: Handler[E]) -> Handler[E]:
    """``http_cached`` for WADO-URI, whose link names one object in its query: cached
    as that instance's WADO-RS answers are. Not an anonymized one (``no-store``): its
    new UIDs come from a key each process makes, so another replica, or the same one
    restarted, answers the same link with other bytes."""
    cached = _cached(handler, streamed=False, keys_of=_wado_uri_keys)

    @functools.wraps(handler)
    async def object_cached(api: E, request: Request) -> Response:
        if "anonymize" in request.query_params and api.http_caching is not None:
            return _no_store(await handler(api, request))
        return await cached(api, request)

    return object_cached


def _cached(handler: Handler[E], *, streamed: bool,
            keys_of: Callable[[Request], RetrieveKeys | None] = _path_keys) -> Handler[E]:
    @functools.wraps(handler)
    async def cached(api: E, request: Request) -> Response:
        caching = api.http_caching
        keys = keys_of(request)
        if caching is None or keys is None:
            return await handler(api, request)
        if not caching.enabled:
            return _no_store(await handler(api, request))
        base = base_url(request, api.prefix)
        condition = request.headers.get("if-none-match")
        if keys.instance_uid is not None:
            return await _instance(caching, handler, api, request, keys, base, condition)
        if streamed:
            return await _streamed(caching, handler, api, request, keys, base, condition)
        response = await handler(api, request)
        body = _comparable_body(response)
        if response.status_code not in _CACHEABLE or body is None:
            return response
        if len(body) > _HASH_IN_THREAD:  # a study's metadata: hashed off the event loop
            tag = await anyio.to_thread.run_sync(
                functools.partial(representation_tag, request, base, body=body))
        else:
            tag = representation_tag(request, base, body=body)
        control = caching.revalidate_cache_control()
        if condition is not None and (matched := matches(condition, tag)) is not None:
            return _not_modified(caching, matched, tag, control)
        _set_headers(response, caching, control, tag)
        return response

    return cached


async def _instance(caching: HttpCaching, handler: Handler[E], api: E, request: Request,
                    keys: RetrieveKeys, base: str, condition: str | None) -> Response:
    tag = representation_tag(request, base)
    control = caching.instance_cache_control()
    if condition is not None:
        matched = matches(condition, tag)
        if matched is not None and await caching.cached_under(keys):
            return _not_modified(caching, matched, tag, control)
    response = await handler(api, request)
    if response.status_code in _CACHEABLE:
        _set_headers(response, caching, control, tag)
    return response


async def _streamed(caching: HttpCaching, handler: Handler[E], api: E, request: Request,
                    keys: RetrieveKeys, base: str, condition: str | None) -> Response:
    control = caching.revalidate_cache_control()
    listed = await caching.listing(keys) if condition is not None else None
    if condition is not None and listed is not None:
        tag = representation_tag(request, base, listing=_listing(listed))
        if (matched := matches(condition, tag)) is not None:
            return _not_modified(caching, matched, tag, control)
    response = await handler(api, request)
    if response.status_code not in _CACHEABLE:
        return response
    if listed is None:  # a cold retrieve is still running: it has no list yet, so no ETag
        listed = await caching.listing(keys)
    known = None if listed is None else representation_tag(request, base,
                                                            listing=_listing(listed))
    _set_headers(response, caching, control, known)
    return response


def _not_modified(caching: HttpCaching, matched: str, tag: str, control: str) -> Response:
    """304 with the entity tag the client holds (its coding suffix included)."""
    etag = f'"{tag}"' if matched == "*" else matched
    extra = ("Accept-Encoding",) if _CODING_SUFFIX.search(etag.rstrip('"')) else ()
    return Response(status_code=304, headers={"ETag": etag, "Cache-Control": control,
                                              "Vary": caching.vary(*extra)})


def _set_headers(response: Response, caching: HttpCaching, control: str,
                 tag: str | None) -> None:
    content_type = response.headers.get("content-type", "")
    if tag is not None:
        # A multipart body's boundary is new on every answer: the same parts, not the
        # same bytes, so its validator is weak (RFC 9110 8.8.1).
        weak = "W/" if content_type.startswith("multipart/") else ""
        response.headers["ETag"] = f'{weak}"{tag}"'
    response.headers["Cache-Control"] = control
    response.headers["Vary"] = caching.vary()


def _no_store(response: Response) -> Response:
    if response.status_code in _CACHEABLE:
        response.headers["Cache-Control"] = "no-store"
    return response


def revalidated(handler: Handler[E]) -> Handler[E]:
    """A QIDO handler whose answers are always revalidated (``no-cache``), never kept
    stale: a search's matches change as studies arrive."""

    @functools.wraps(handler)
    async def fresh(api: E, request: Request) -> Response:
        response = await handler(api, request)
        caching = api.http_caching
        if caching is not None and response.status_code in _CACHEABLE:
            response.headers["Cache-Control"] = caching.revalidate_cache_control()
            response.headers["Vary"] = caching.vary()
        return response

    return fresh
