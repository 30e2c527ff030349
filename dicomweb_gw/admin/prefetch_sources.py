"""Where ``prefetch`` gets a study from: a running gateway over WADO-RS, or the PACS
through this process's own cache (see ``prefetch`` for when each is used).

Both count instances and bytes as they stream, keeping nothing of them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, Protocol

import httpx

from dicomweb_gw.admin.tables import element_text
from dicomweb_gw.cache.protocol import CachedInstance
from dicomweb_gw.dicomweb.qido import QidoService
from dicomweb_gw.dicomweb.query import parse_query
from dicomweb_gw.dicomweb.source import InstanceSource
from dicomweb_gw.errors import NotFound
from dicomweb_gw.http.multipart_reader import parse_media_type
from dicomweb_gw.model import InstanceHandle, QueryLevel, RetrieveKeys
from dicomweb_gw.pacs.dimse import DimsePacsClient

__all__ = ["HttpRetrieval", "LocalRetrieval", "PartCounter", "PrefetchFailed", "Retrieval",
           "StopAll"]

TOKEN_ENV = "DICOMWEB_GW_TOKEN"  # named in the 401 hint; the CLI reads it
#: As stored: the gateway sends the cached files without transcoding anything.
ACCEPT_AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
#: A C-MOVE can be quiet for a long time between instances (the PACS fetching from
#: tape, a big series): only the connection gets a short timeout.
HTTP_TIMEOUT = httpx.Timeout(30.0, read=600.0)
_STUDY_UID = 0x0020000D
_STUDY_RELATED_INSTANCES = "00201208"


class PrefetchFailed(Exception):
    """One study could not be prefetched; the message is its summary."""


class StopAll(PrefetchFailed):
    """No point trying the next study either (no gateway there, no credentials)."""

    def __init__(self, message: str, *, skipped: str) -> None:
        super().__init__(message)
        self.skipped = skipped


class PartCounter:
    """Counts the parts of a multipart body as it streams past, keeping nothing of them.

    ``read_parts`` (the STOW-RS parser) spools every part to a file, which a
    prefetch has no use for; this only looks for the delimiters. Every
    delimiter is ``CRLF--boundary`` (the first may open the body, so the
    buffer starts with a CRLF), and the close delimiter adds ``--``: a body
    without it was cut off, which is how the gateway says a retrieve failed
    after streaming began.
    """

    def __init__(self, boundary: str) -> None:
        self._delimiter = b"\r\n--" + boundary.encode("ascii")
        self._buffer = bytearray(b"\r\n")
        self._delimiters = 0
        self.closed = False

    @property
    def parts(self) -> int:
        """Parts complete so far: each delimiter after the first ends one."""
        return max(0, self._delimiters - 1)

    def feed(self, chunk: bytes) -> int:
        """Take the next chunk; returns how many parts it completed."""
        if self.closed:
            return 0
        before = self.parts
        self._buffer += chunk
        while True:
            found = self._buffer.find(self._delimiter)
            if found < 0:
                # A delimiter (and the "--" after it) may straddle two chunks.
                del self._buffer[: max(0, len(self._buffer) - len(self._delimiter) - 1)]
                break
            end = found + len(self._delimiter)
            if len(self._buffer) < end + 2:
                del self._buffer[:found]  # is it the close delimiter? the next chunk says
                break
            self._delimiters += 1
            if self._buffer[end : end + 2] == b"--":
                self.closed = True
                self._buffer.clear()
                break
            del self._buffer[:end]
        return self.parts - before


class Retrieval(Protocol):
    async def expected(self, study_uid: str) -> int | None:
        """NumberOfStudyRelatedInstances if known; raises ``NotFound`` for an unknown study."""
        ...

    def stream(self, study_uid: str) -> AsyncGenerator[tuple[int, int], None]:
        """(instances completed, bytes) increments while the study comes in."""
        ...

    def cache_hit(self) -> bool:
        """Whether the last study came from the cache alone (only known in-process)."""
        ...

    async def aclose(self) -> None: ...


# -- in-process: the node's cache opened here ------------------------------------------------


class LocalRetrieval:
    def __init__(self, client: DimsePacsClient, source: InstanceSource) -> None:
        self._client = client
        self._source = source
        self._qido = QidoService(max_results=1)
        self._flights_before = 0

    async def expected(self, study_uid: str) -> int | None:
        query = parse_query(QueryLevel.STUDY,
                            [("includefield", "NumberOfStudyRelatedInstances")],
                            {_STUDY_UID: study_uid})
        result = await self._qido.search(self._client, query, base_url="")
        if not result.items:
            raise NotFound(f"not found on PACS '{self._client.name}'")
        return _count(result.items[0])

    async def stream(self, study_uid: str) -> AsyncGenerator[tuple[int, int], None]:
        self._flights_before = self._source.flights.started
        keys = RetrieveKeys(study_uid)
        async with aclosing(self._source.instances(self._client, keys)) as landed:
            async for item in landed:
                yield 1, _size(item.handle)

    def cache_hit(self) -> bool:
        return self._source.flights.started == self._flights_before

    async def aclose(self) -> None:
        await self._client.aclose()


def _size(handle: InstanceHandle) -> int:
    if isinstance(handle, CachedInstance):
        return handle.size
    # The cache was full: served from memory.
    return len(handle.instance.dataset)


def _count(item: dict[str, Any]) -> int | None:
    text = element_text(item, _STUDY_RELATED_INSTANCES)
    return int(text) if text.isdigit() else None


# -- through a running gateway ----------------------------------------------------------------


class HttpRetrieval:
    def __init__(self, root: str, token: str | None) -> None:
        self._root = root
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(base_url=root, headers=headers, timeout=HTTP_TIMEOUT)

    async def expected(self, study_uid: str) -> int | None:
        # A QIDO first: an unknown study is "not found" before any retrieve, and the
        # count turns the progress bar into a real bar.
        try:
            response = await self._client.get(
                "/studies", params={"StudyInstanceUID": study_uid,
                                    "includefield": _STUDY_RELATED_INSTANCES},
                headers={"Accept": "application/dicom+json"})
        except httpx.HTTPError as exc:
            raise StopAll(f"cannot reach the gateway at {self._root}: {_describe(exc)}",
                          skipped="the gateway did not answer") from None
        if response.status_code == 404:  # a search, so it is the root that does not exist
            raise StopAll(f"{self._root} is not a DICOMweb root of the gateway (HTTP 404: "
                          f"{_message(response)}): check --url and --node",
                          skipped="no such DICOMweb root")
        if response.status_code in (401, 403):
            failure = _failure(response)
            raise StopAll(str(failure), skipped="the gateway refused the credentials")
        if response.status_code != 200:
            raise _failure(response)
        items = response.json() if response.content else []
        if not items:
            raise NotFound(f"not found on the PACS behind {self._root}")
        return _count(items[0])

    async def stream(self, study_uid: str) -> AsyncGenerator[tuple[int, int], None]:
        try:
            async with self._client.stream("GET", f"/studies/{study_uid}",
                                           headers={"Accept": ACCEPT_AS_STORED}) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise _failure(response)
                media_type, params = parse_media_type(response.headers.get("content-type", ""))
                if media_type != "multipart/related" or not params.get("boundary"):
                    raise PrefetchFailed(f"the gateway answered {media_type or 'no Content-Type'}"
                                         ", not multipart/related")
                counter = PartCounter(params["boundary"])
                async for chunk in response.aiter_bytes():
                    yield counter.feed(chunk), len(chunk)
                if not counter.closed:
                    raise PrefetchFailed("the gateway cut the study off: the retrieve from the "
                                         "PACS failed midway (the gateway's log says why)")
        except httpx.HTTPError as exc:
            raise PrefetchFailed(f"transfer from {self._root} broke: {_describe(exc)}") from None

    def cache_hit(self) -> bool:
        return False  # the gateway does not say; its /metrics hit counter does

    async def aclose(self) -> None:
        await self._client.aclose()


def _message(response: httpx.Response) -> str:
    """The message of the gateway's JSON error body, or the start of whatever came."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])
    return response.text.strip()[:200]


def _failure(response: httpx.Response) -> Exception:
    """The gateway's one-line JSON error as an exception of the right kind."""
    message = _message(response)
    status = response.status_code
    if status == 404:
        return NotFound(message)
    if status == 401:
        return PrefetchFailed(f"the gateway wants credentials (HTTP 401): give --token or set "
                              f"{TOKEN_ENV}")
    if status == 403:
        return PrefetchFailed(f"the token lacks the read scope (HTTP 403): {message}")
    return PrefetchFailed(f"HTTP {status}: {message}")


def _describe(exc: httpx.HTTPError) -> str:
    return str(exc) or type(exc).__name__
