"""``dicomweb-gw prefetch``: warm the cache with whole studies before anyone opens them.

Two ways, because a running gateway owns its cache folder (one process at a
time, by lock):

* ``--url``: ask the running gateway for each study over WADO-RS and count
  what streams back. The gateway caches as it serves, so this warms exactly
  the cache the viewers use, and works from any machine that can reach it.
* no URL: open the node's cache here and retrieve from the PACS through the
  gateway's own ``InstanceSource`` -- for a gateway that is stopped, or to
  fill a cache volume before the first start.

Studies are fetched one after the other: prefetching is background work and
must not take every association the PACS grants.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import httpx
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from dicomweb_gw.admin.tables import (
    element_text,
    error,
    logs_above,
    node_address,
    resolve_node,
    stderr_console,
    stdout_console,
)
from dicomweb_gw.cache.protocol import CachedInstance
from dicomweb_gw.dicomweb.qido import QidoService
from dicomweb_gw.dicomweb.query import parse_query
from dicomweb_gw.dicomweb.source import InstanceSource, MemoryInstance
from dicomweb_gw.dicomweb.uids import require_uid
from dicomweb_gw.errors import BadRequest, GatewayError, NotFound, PacsUnavailable
from dicomweb_gw.http.multipart_reader import parse_media_type
from dicomweb_gw.http.routes import mount_point
from dicomweb_gw.model import QueryLevel, RetrieveKeys
from dicomweb_gw.pacs.dimse import DimsePacsClient
from dicomweb_gw.settings import SettingsError, load_settings

__all__ = ["PartCounter", "PrefetchRequest", "StudyOutcome", "run_prefetch"]

URL_ENV = "DICOMWEB_GW_URL"
TOKEN_ENV = "DICOMWEB_GW_TOKEN"
#: As stored: the gateway sends the cached files without transcoding anything.
ACCEPT_AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
#: A C-MOVE can be quiet for a long time between instances (the PACS fetching from
#: tape, a big series): only the connection gets a short timeout.
HTTP_TIMEOUT = httpx.Timeout(30.0, read=600.0)
_STUDY_UID = 0x0020000D
_STUDY_RELATED_INSTANCES = "00201208"


@dataclass(frozen=True)
class PrefetchRequest:
    studies: Sequence[str]
    node: str | None = None
    url: str | None = None
    token: str | None = None
    #: The TOML config file, for the in-process mode (the URL mode needs no settings).
    config: Path | None = None


@dataclass
class StudyOutcome:
    study_uid: str
    instances: int = 0
    bytes: int = 0
    seconds: float = 0.0
    #: NumberOfStudyRelatedInstances according to the PACS, when it said.
    expected: int | None = None
    from_cache: bool = False
    error: str | None = None
    #: Set when the next studies would fail the same way (no gateway, no credentials):
    #: why they are not tried.
    stop: str | None = None

    def summary(self) -> str:
        if self.error is not None:
            return f"{self.study_uid}: {self.error}"
        rate = self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0
        noun = "instance" if self.instances == 1 else "instances"
        line = (f"{self.study_uid}: {self.instances} {noun}, {self.bytes / 1e6:.1f} MB "
                f"in {self.seconds:.1f} s ({rate:.1f} MB/s)")
        if self.from_cache:
            line += ", already cached"
        if self.expected is not None and self.expected != self.instances:
            line += f" (the PACS listed {self.expected})"
        return line


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


class _Retrieval(Protocol):
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


def run_prefetch(request: PrefetchRequest) -> int:
    try:
        studies = [require_uid(uid, "StudyInstanceUID") for uid in request.studies]
    except BadRequest as exc:
        error(exc.message)
        return 2
    if request.url:
        root = request.url.rstrip("/") + mount_point(request.node)
        return _report(asyncio.run(_prefetch(_HttpRetrieval(root, request.token), studies)))
    return _prefetch_here(request, studies)


def _prefetch_here(request: PrefetchRequest, studies: list[str]) -> int:
    from dicomweb_gw.app import Gateway  # the whole app, only for the in-process mode
    from dicomweb_gw.cache.disk import CacheInUse

    settings = load_settings(config_file=request.config)
    node = resolve_node(settings, request.node)
    if node is None:
        return 2
    # Only this node: no storage SCP for a C-GET node, no lock on the other caches.
    # Its cache keeps the share of the budget the gateway gives it.
    alone = replace(settings, nodes=(node,), default_pacs=node.name,
                    cache_max_bytes=settings.cache_max_bytes // max(1, len(settings.nodes)))
    gateway = Gateway(alone)
    hint = (f"prefetch through it: dicomweb-gw prefetch --url http://HOST:PORT"
            f"{'' if node.name == settings.default_pacs else f' --node {node.name}'} "
            "STUDY_UID...")
    try:
        try:
            gateway.start()
        except CacheInUse:
            error(f"the cache of '{node.name}' ({settings.cache_dir / node.name}) is in use by "
                  f"a running gateway; {hint}")
            return 1
        except SettingsError as exc:  # the storage SCP port: most likely that gateway again
            error(f"{exc}; if a gateway is running, {hint}")
            return 1
        retrieval = _LocalRetrieval(gateway.clients[node.name],
                                    InstanceSource(lambda: gateway.store(node.name),
                                                   ttl=settings.cache_ttl))
        outcomes = asyncio.run(_prefetch(retrieval, studies))
    finally:
        asyncio.run(gateway.stop())
    return _report(outcomes, where=f"PACS '{node.name}' ({node_address(node)})")


async def _prefetch(retrieval: _Retrieval, studies: list[str]) -> list[StudyOutcome]:
    console = stderr_console()
    progress = Progress(
        TextColumn("{task.description}", markup=False), BarColumn(bar_width=30),
        _InstancesColumn(), _MegabytesColumn(), _RateColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )
    outcomes: list[StudyOutcome] = []
    try:
        with progress, logs_above(console):
            for index, study_uid in enumerate(studies):
                outcome = await _one(retrieval, study_uid, progress)
                outcomes.append(outcome)
                if outcome.stop is not None:
                    outcomes.extend(StudyOutcome(skipped, error=f"not tried: {outcome.stop}")
                                    for skipped in studies[index + 1 :])
                    break
    finally:
        await retrieval.aclose()
    return outcomes


async def _one(retrieval: _Retrieval, study_uid: str, progress: Progress) -> StudyOutcome:
    outcome = StudyOutcome(study_uid)
    task = progress.add_task(_short(study_uid), total=None, bytes=0, expected=None)
    started = time.monotonic()
    try:
        outcome.expected = await retrieval.expected(study_uid)
        progress.update(task, total=outcome.expected, expected=outcome.expected)
        async with aclosing(retrieval.stream(study_uid)) as steps:
            async for instances, size in steps:
                outcome.instances += instances
                outcome.bytes += size
                progress.update(task, completed=outcome.instances, bytes=outcome.bytes)
        outcome.from_cache = retrieval.cache_hit()
    except NotFound as exc:
        outcome.error = exc.message if "not found" in exc.message else f"not found: {exc.message}"
    except StopAll as exc:
        outcome.error, outcome.stop = str(exc), exc.skipped
    except PacsUnavailable as exc:  # down, or refusing us: so it will be for the next study
        outcome.error, outcome.stop = f"failed: {exc.message}", "the PACS is not available"
    except (PrefetchFailed, GatewayError) as exc:
        reason = exc.message if isinstance(exc, GatewayError) else str(exc)
        after = f" after {outcome.instances} instance(s)" if outcome.instances else ""
        outcome.error = f"failed{after}: {reason}"
    outcome.seconds = time.monotonic() - started
    _finish(progress, task, outcome)
    return outcome


def _finish(progress: Progress, task: TaskID, outcome: StudyOutcome) -> None:
    if outcome.error is None:
        progress.update(task, total=outcome.instances, completed=outcome.instances,
                        expected=outcome.instances)
    else:  # a total, so the bar shows how little came rather than pulsing on
        progress.update(task, description=f"{_short(outcome.study_uid)} (failed)",
                        total=outcome.expected or max(outcome.instances, 1))
    progress.stop_task(task)


def _short(study_uid: str) -> str:
    """The end of a UID tells studies apart; their common root only takes room."""
    return study_uid if len(study_uid) <= 28 else "…" + study_uid[-27:]


def _report(outcomes: list[StudyOutcome], where: str | None = None) -> int:
    out = stdout_console()
    for outcome in outcomes:
        out.print(outcome.summary(), style="red" if outcome.error else None, markup=False)
    failed = sum(1 for outcome in outcomes if outcome.error is not None)
    source = f" from {where}" if where else ""
    out.print(f"prefetched {len(outcomes) - failed} of {len(outcomes)} "
              f"stud{'y' if len(outcomes) == 1 else 'ies'}{source}"
              f"{f'; {failed} failed' if failed else ''}", markup=False)
    return 1 if failed else 0


# -- in-process: the node's cache opened here ------------------------------------------------


class _LocalRetrieval:
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


def _size(handle: object) -> int:
    if isinstance(handle, CachedInstance):
        return handle.size
    assert isinstance(handle, MemoryInstance)  # the cache was full: served from memory
    return len(handle.instance.dataset)


def _count(item: dict[str, Any]) -> int | None:
    text = element_text(item, _STUDY_RELATED_INSTANCES)
    return int(text) if text.isdigit() else None


# -- through a running gateway ----------------------------------------------------------------


class _HttpRetrieval:
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


# -- progress columns: instances, MB and MB/s of each study -----------------------------------


class _InstancesColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        # The bar's total may be a stand-in (a failed study); "of N" only when N is known.
        expected = task.fields.get("expected")
        total = f"/{expected}" if expected is not None else ""
        return Text(f"{int(task.completed)}{total} instances")


class _MegabytesColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.fields.get('bytes', 0) / 1e6:8.1f} MB")


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        rate = task.fields.get("bytes", 0) / 1e6 / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:7.1f} MB/s")
