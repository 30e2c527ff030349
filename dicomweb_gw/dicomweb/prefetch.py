"""Predictive prefetch: a viewer opening a cold study gets the whole study in one retrieve.

A viewer opening a study asks for its series (QIDO ``/studies/{S}/series``), then
for each series' metadata, one request per series; OHIF asks for them all at once
and waits for every one before it shows the first image. Series by series, that is
one C-GET or C-MOVE per series, each waiting for an association. Instead, the first
of those requests for a study the cache does not hold complete starts one retrieve
of the whole study in the background: a study-level flight (``flights.py``) that
every later request inside the study joins (``RetrieveKeys.covers``), held by the
prefetch while no request waits on it. An IMAGE-level C-FIND run beside it lists the
study's instances (the flight's manifest), so each series request ends as soon as
its own instances have landed, not when the whole study has. A prefetch that
completes records the study complete, as any retrieve does (``source.py``).

Per node (``PacsNode``):

- ``prefetch = false`` turns it off;
- at most ``prefetch_studies`` at once, and never more than ``max_associations - 1``,
  so that an association is left for everything else; beyond that, series requests
  retrieve their series as they would without prefetch;
- a prefetch with no request for its study for ``prefetch_idle`` seconds is dropped
  (its retrieve C-CANCELled); one that a request waits on is kept.

Interactive requests go first: a request that has to wait on the PACS for another
study drops every prefetch no request waits on, so their associations go to it. A
prefetch is a guess; the request is not.

With several replicas a prefetch belongs to its replica: its idle time counts that
replica's requests only, and its retrieve is coordinated like any other
(``cluster/shared_flights.py``), so another replica's prefetch of the same study
follows the first one's retrieve instead of starting a second.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field

import anyio
from pydicom.dataset import Dataset

from dicomweb_gw.cache.protocol import InstanceStore
from dicomweb_gw.dicomweb.flights import Flight, FlightTable, Producer
from dicomweb_gw.dicomweb.search_finds import SearchFinds
from dicomweb_gw.dicomweb.walk import LevelWalk
from dicomweb_gw.errors import PacsError
from dicomweb_gw.model import QueryLevel, RetrieveKeys
from dicomweb_gw.pacs.protocol import PacsClient

__all__ = ["OUTCOMES", "Prefetcher"]

log = logging.getLogger(__name__)

#: What becomes of prefetches (the metric's label values).
OUTCOMES = ("started", "completed", "failed", "idle", "preempted", "skipped")


@dataclass(eq=False)
class _Prefetch:
    pacs: str
    study_uid: str
    flight: Flight
    idle: float
    #: When a request for the study last came or left (event loop time).
    last_seen: float
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    ended: bool = False

    @property
    def waited_on(self) -> bool:
        """Does a request wait on its retrieve? (The prefetch's own hold is one waiter.)"""
        return self.flight.waiters > 1


class Prefetcher:
    """The study prefetches of one ``InstanceSource`` (one node's flights and cache)."""

    def __init__(self, flights: FlightTable, producer: Callable[[PacsClient], Producer],
                 store: Callable[[], InstanceStore], *, ttl: float,
                 on_outcome: Callable[[str, str], None] | None = None) -> None:
        self._flights = flights
        self._producer = producer
        self._store = store
        self._ttl = ttl
        self._on_outcome = on_outcome
        self._running: dict[tuple[str, str], _Prefetch] = {}
        #: One decision per study at a time: OHIF's series requests come all at once.
        self._deciding: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        #: Remembers which nodes refuse IMAGE-level C-FINDs without a series UID.
        self._walk = LevelWalk()
        #: Prefetches by outcome (see ``OUTCOMES``), for tests; the metric counts the same.
        self.outcomes: Counter[str] = Counter()

    def running(self, pacs: str) -> list[str]:
        """The studies being prefetched from ``pacs``."""
        return [study for name, study in self._running if name == pacs]

    def opened(self, pacs: PacsClient, study_uid: str) -> None:
        """A client listed the study's series: a viewer is probably opening it.

        Does not wait: the QIDO answer is not held up by the decision.
        """
        if not pacs.node.prefetch:
            return
        task = asyncio.get_running_loop().create_task(self.start(pacs, study_uid))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def start(self, pacs: PacsClient, study_uid: str, *, cold: bool = False) -> None:
        """Prefetch the study, unless the node's setting, its limit, the cache or a
        retrieve already under way says not to. Returns once that is decided, with the
        study's flight in the table if it started, so the caller can join it.

        ``cold``: the caller has just found the study not complete in the cache.
        """
        if not pacs.node.prefetch:
            return
        key = (pacs.name, study_uid)
        self.seen(pacs.name, study_uid)
        if key in self._running:
            return
        deciding = self._deciding.get(key)
        if deciding is None:
            deciding = asyncio.ensure_future(self._decide(pacs, study_uid, cold))
            self._deciding[key] = deciding
            deciding.add_done_callback(lambda done: self._decided(key, done))
        # Shielded: a request that leaves must not cancel what the others wait for.
        await asyncio.shield(deciding)

    def seen(self, pacs: str, study_uid: str) -> None:
        """A request for the study came (or ended): its prefetch is not idle."""
        prefetch = self._running.get((pacs, study_uid))
        if prefetch is not None:
            prefetch.last_seen = asyncio.get_running_loop().time()

    def waiting(self, pacs: str, keys: RetrieveKeys) -> None:
        """A request is about to wait on the PACS for ``keys``: it goes first.

        The dicomweb layer cannot see the node's associations, so it frees the
        ones it can: prefetches of other studies that no request waits on are
        dropped (their retrieves C-CANCELled) rather than left to hold
        associations the request may need.
        """
        self.seen(pacs, keys.study_uid)
        for prefetch in list(self._running.values()):
            if (prefetch.pacs == pacs and prefetch.study_uid != keys.study_uid
                    and not prefetch.waited_on):
                log.info("dropping the prefetch of study %s from PACS '%s': a request for "
                         "another study is waiting on the PACS", prefetch.study_uid, pacs)
                self._end(prefetch, "preempted")

    # -- deciding and starting -------------------------------------------------------
    async def _decide(self, pacs: PacsClient, study_uid: str, cold: bool) -> None:
        try:
            if not cold and await self._complete(study_uid):
                return
        except Exception as exc:  # a cache that cannot answer: no guessing either
            log.warning("no prefetch of study %s from PACS '%s': the cache could not say "
                        "whether it holds it (%s)", study_uid, pacs.name, exc)
            return
        node = pacs.node
        if (pacs.name, study_uid) in self._running:
            return
        if any(flight.keys.study_uid == study_uid for flight in self._flights.in_flight(pacs.name)):
            return  # part of it is being retrieved already: no second copy of that part
        limit = min(node.prefetch_studies, node.max_associations - 1)
        if len(self.running(pacs.name)) >= limit:
            log.debug("no prefetch of study %s from PACS '%s': %d running (prefetch_studies, "
                      "at most max_associations - 1)", study_uid, pacs.name, limit)
            self._count(pacs.name, "skipped")
            return
        flight = self._flights.hold(pacs.name, RetrieveKeys(study_uid), self._producer(pacs))
        flight.prefetch = True  # shown on the status page
        loop = asyncio.get_running_loop()
        prefetch = _Prefetch(pacs.name, study_uid, flight, node.prefetch_idle, loop.time())
        self._running[(pacs.name, study_uid)] = prefetch
        self._count(pacs.name, "started")
        log.info("prefetching study %s from PACS '%s'", study_uid, pacs.name)
        prefetch.tasks = [loop.create_task(self._list(pacs, prefetch)),
                          loop.create_task(self._watch(prefetch))]

    def _decided(self, key: tuple[str, str], done: asyncio.Future[None]) -> None:
        if self._deciding.get(key) is done:
            del self._deciding[key]

    async def _complete(self, study_uid: str) -> bool:
        found = await anyio.to_thread.run_sync(self._store().complete, study_uid, None, self._ttl)
        return found is not None

    # -- running ---------------------------------------------------------------------
    async def _list(self, pacs: PacsClient, prefetch: _Prefetch) -> None:
        """The flight's manifest: the study's instances, series by series, from an
        IMAGE-level C-FIND (walked series by series on a PACS that wants the series UID).

        Anything doubtful (a C-FIND failing, a match limit reached, a match without
        its UIDs) means no manifest: the series requests then end with the retrieve.
        """
        relational = pacs.node.relational
        try:
            listed = await self._listing(pacs, prefetch.study_uid, relational)
            if listed == {} and relational is not True:
                # A hierarchical PACS may answer a study-wide IMAGE query with nothing
                # rather than refuse it: ask series by series.
                listed = await self._listing(pacs, prefetch.study_uid, False)
        except PacsError as exc:
            log.info("could not list study %s on PACS '%s' (%s): its series requests wait for "
                     "the whole study", prefetch.study_uid, pacs.name, exc.message)
            return
        if listed:
            prefetch.flight.expect(listed)

    async def _listing(self, pacs: PacsClient, study_uid: str,
                       relational: bool | None) -> dict[str, frozenset[str]] | None:
        """Series -> SOP Instance UIDs of the study; None when the answer cannot be trusted."""
        query = Dataset()
        query.StudyInstanceUID = study_uid
        query.SeriesInstanceUID = ""
        query.SOPInstanceUID = ""
        finds = SearchFinds(pacs, max_matches=pacs.node.max_matches)

        def studies(identifier: Dataset) -> AsyncGenerator[Dataset, None]:
            return finds.run(QueryLevel.STUDY, identifier)

        listed: dict[str, set[str]] = {}
        found = self._walk.find(finds, QueryLevel.IMAGE, query, relational=relational,
                                studies=studies)
        async with aclosing(found) as matches:
            async for match in matches:
                series, sop = _uid(match, "SeriesInstanceUID"), _uid(match, "SOPInstanceUID")
                if not series or not sop or _uid(match, "StudyInstanceUID") not in ("", study_uid):
                    log.info("PACS '%s' listed study %s with a match lacking its UIDs: its "
                             "series requests wait for the whole study", pacs.name, study_uid)
                    return None
                listed.setdefault(series, set()).add(sop)
        if finds.report.limit_reached:
            return None  # a partial list would end a series request short
        return {series: frozenset(sops) for series, sops in listed.items()}

    async def _watch(self, prefetch: _Prefetch) -> None:
        """Ends the prefetch: with its retrieve, or once no request for the study has come
        for ``idle`` seconds and none waits on it."""
        flight = prefetch.flight
        assert flight.task is not None
        loop = asyncio.get_running_loop()
        try:
            while not flight.done:
                now = loop.time()
                if prefetch.waited_on:
                    prefetch.last_seen = now
                left = prefetch.last_seen + prefetch.idle - now
                if left <= 0:
                    log.info("dropping the prefetch of study %s from PACS '%s': no request for "
                             "it in %g s (prefetch_idle)", prefetch.study_uid, prefetch.pacs,
                             prefetch.idle)
                    self._end(prefetch, "idle")
                    return
                await asyncio.wait({flight.task}, timeout=left)
        except asyncio.CancelledError:
            self._end(prefetch, None)  # the gateway is stopping: nothing to count
            raise
        if flight.error is not None:
            log.info("the prefetch of study %s from PACS '%s' failed: %s", prefetch.study_uid,
                     prefetch.pacs, getattr(flight.error, "message", None) or repr(flight.error))
        self._end(prefetch, "completed" if flight.error is None else "failed")

    def _end(self, prefetch: _Prefetch, outcome: str | None) -> None:
        """Let go of the study's flight: if no request waits on it, its retrieve stops."""
        if prefetch.ended:
            return
        prefetch.ended = True
        key = (prefetch.pacs, prefetch.study_uid)
        if self._running.get(key) is prefetch:
            del self._running[key]
        current = asyncio.current_task()
        for task in prefetch.tasks:
            if task is not current:
                task.cancel()
        self._flights.leave(prefetch.flight)
        if outcome is not None:
            self._count(prefetch.pacs, outcome)

    def _count(self, pacs: str, outcome: str) -> None:
        self.outcomes[outcome] += 1
        if self._on_outcome is not None:
            self._on_outcome(pacs, outcome)


def _uid(dataset: Dataset, keyword: str) -> str:
    value = dataset.get(keyword)
    return "" if value is None else str(value).strip()
