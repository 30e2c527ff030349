"""Single flight: one PACS retrieve per study/series/instance, shared by every waiter.

The first request for uncached keys starts a *flight*: a task that runs the
C-GET/C-MOVE and writes each instance into the cache as it lands. Requests
for the same keys, or for keys inside them (a series of a study in flight),
join it and stream what has landed so far, then the rest as it arrives.
When the last waiter leaves, the flight is cancelled, which C-CANCELs the
retrieve: nobody is left to want it. A cancelled flight leaves the table at
once, before its task has unwound, so a request arriving meanwhile (a viewer
asking again for what it just dropped) starts a live flight instead of
joining a dying one.

A flight can also be *held* by something that is not a request (``hold``,
``leave``): a prefetch keeps its study's retrieve running while no request
waits on it. And a flight that knows what it will bring (its ``manifest``, an
IMAGE-level listing) ends each waiter as soon as everything under the waiter's
series or instance has landed, not when the whole retrieve has.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from dicomweb_gw.errors import PacsUnavailable
from dicomweb_gw.model import (
    CachedInstance,
    InstanceHandle,
    MemoryInstance,
    RetrieveKeys,
    RetrieveReport,
)

__all__ = ["Fetch", "Flight", "FlightCoordinator", "FlightTable", "Landed", "Producer", "flying"]

log = logging.getLogger(__name__)

#: The flight whose task this is. A producer runs inside it and shows its progress
#: there (``Flight.progress``), without every producer (the cluster's wrapper, the
#: tests' stand-ins) taking the flight as a parameter.
_flying: ContextVar[Flight | None] = ContextVar("dicomweb_gw_flying", default=None)


def flying() -> Flight | None:
    """The flight the calling producer runs for; None outside a flight's task."""
    return _flying.get()


@dataclass(frozen=True, slots=True)
class Landed:
    """One instance as it landed: where it is, and which series it belongs to."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    handle: InstanceHandle


#: A retrieve: the instances under the keys, each as it lands.
Producer = Callable[[RetrieveKeys], AsyncGenerator[Landed, None]]
#: An instance another replica retrieved, from the shared store: (study, series, sop)
#: -> Landed, or None when the store does not have it.
Fetch = Callable[[str, str, str], Awaitable[Landed | None]]


class FlightCoordinator(Protocol):
    """Makes one retrieve of a producer serve several gateway replicas.

    Implemented above this layer (cluster/shared_flights.py, over Redis): the flight
    table only needs to wrap its producer in it.
    """

    def producer(self, pacs: str, produce: Producer, fetch: Fetch) -> Producer:
        """``produce`` wrapped so it runs once cluster-wide; the other replicas
        ``fetch`` what it announces."""
        ...


@dataclass
class Flight:
    pacs: str
    keys: RetrieveKeys
    landed: list[Landed] = field(default_factory=list)
    done: bool = False
    error: BaseException | None = None
    waiters: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    #: Its last waiter left and its task was cancelled: no longer joinable.
    abandoned: bool = False
    #: What the retrieve will bring, when known: series UID -> SOP Instance UIDs.
    manifest: dict[str, frozenset[str]] | None = None
    #: Names it on the status page and in ``FlightTable.cancel``.
    id: str = ""
    #: Started (wall clock, and monotonic for its age and rate).
    started_at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.monotonic)
    #: Bytes of what has landed.
    bytes: int = 0
    #: Held by a prefetch (not only by requests).
    prefetch: bool = False
    #: Why an administrator cancelled it: what every waiter is told.
    cancelled_by: BaseException | None = None
    #: What its PACS retrieve has said so far, when its producer shows it.
    progress: RetrieveReport | None = None

    @property
    def joinable(self) -> bool:
        return not (self.done or self.abandoned)

    @property
    def expected(self) -> int | None:
        """Instances the retrieve will bring, when its manifest or the PACS says."""
        if self.manifest is not None:
            return sum(len(uids) for uids in self.manifest.values())
        return None if self.progress is None else self.progress.expected

    def covers(self, keys: RetrieveKeys) -> bool:
        """Will this flight bring every instance ``keys`` asks for?"""
        return self.keys.covers_keys(keys)

    def expect(self, manifest: dict[str, frozenset[str]]) -> None:
        """Learn what the retrieve will bring; waiters that have it all already end now."""
        self.manifest = manifest
        self._notify()

    def brought_all(self, keys: RetrieveKeys, delivered: set[str]) -> bool:
        """Has a waiter for ``keys`` been given everything this flight will bring it?

        Only a flight with a manifest can tell before it ends. A series the
        manifest does not list, or a study, waits for the end as before.
        """
        if self.manifest is None:
            return False
        if keys.instance_uid is not None:
            return keys.instance_uid in delivered
        listed = self.manifest.get(keys.series_uid or "")
        if not listed:
            return False
        return listed <= delivered

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


_IDS = itertools.count(1)


class FlightTable:
    def __init__(self) -> None:
        self._flights: dict[tuple[str, RetrieveKeys], Flight] = {}
        self.started = 0  # flights started: what reached the PACS (for tests and metrics)

    def live(self) -> list[Flight]:
        """Every live flight, oldest first (the status page)."""
        return sorted((f for f in self._flights.values() if f.joinable),
                      key=lambda f: f.started)

    def cancel(self, flight_id: str, *, who: str = "an administrator") -> Flight | None:
        """Cancel the live flight ``flight_id`` (None: no such flight): the PACS gets
        C-CANCEL as when the last waiter leaves, and every waiter ends with an error
        saying an administrator cancelled it."""
        flight = next((f for f in self.live() if f.id == flight_id), None)
        if flight is None or flight.task is None:
            return None
        flight.cancelled_by = PacsUnavailable(
            flight.pacs, f"the retrieve of {flight.keys.describe()} was cancelled by "
                         f"{who} (status page)")
        flight.abandoned = True
        self._forget(flight)
        flight.task.cancel()
        return flight

    def in_flight(self, pacs: str) -> list[Flight]:
        """The live (joinable) flights to ``pacs``."""
        return [f for (name, _), f in self._flights.items() if name == pacs and f.joinable]

    async def join(
        self, pacs: str, keys: RetrieveKeys, producer: Producer
    ) -> AsyncGenerator[Landed, None]:
        """Instances under ``keys``: from a covering flight, or a new one."""
        flight = self.hold(pacs, keys, producer)
        try:
            position = 0
            delivered: set[str] = set()
            while True:
                while position < len(flight.landed):
                    item = flight.landed[position]
                    position += 1
                    if keys.covers(item.study_uid, item.series_uid, item.sop_instance_uid):
                        delivered.add(item.sop_instance_uid)
                        yield item
                if flight.brought_all(keys, delivered):
                    return
                if flight.done:
                    if isinstance(flight.error, asyncio.CancelledError):
                        # Cancelled by something other than its waiters leaving (we
                        # are still here): never hand a CancelledError to a request
                        # that was not itself cancelled.
                        raise PacsUnavailable(pacs, f"the retrieve of {keys.describe()} was "
                                                    "cancelled (gateway shutting down?)")
                    if flight.error is not None:
                        raise flight.error
                    return
                await flight.changed.wait()
        finally:
            self.leave(flight)

    def hold(self, pacs: str, keys: RetrieveKeys, producer: Producer) -> Flight:
        """The flight that covers ``keys`` (started now if none does), with one more waiter
        until ``leave``: a request streaming it, or a prefetch keeping it running."""
        flight = next((f for f in self.in_flight(pacs) if f.covers(keys)), None)
        if flight is None:
            flight = Flight(pacs=pacs, keys=keys, id=f"r-{next(_IDS)}")
            self._flights[(pacs, keys)] = flight
            self.started += 1
            flight.task = asyncio.create_task(self._fly(flight, producer))
        flight.waiters += 1
        return flight

    def leave(self, flight: Flight) -> None:
        """One waiter fewer; the last one out cancels the retrieve."""
        flight.waiters -= 1
        if flight.waiters == 0 and flight.joinable and flight.task is not None:
            # Nobody wants the rest: the retrieve gets C-CANCELled. Out of the
            # table now, not when the task has unwound, so nobody joins it.
            flight.abandoned = True
            self._forget(flight)
            flight.task.cancel()

    async def _fly(self, flight: Flight, producer: Producer) -> None:
        _flying.set(flight)  # this task's own context: seen by the producer only
        try:
            async with aclosing(producer(flight.keys)) as instances:
                async for item in instances:
                    flight.landed.append(item)
                    flight.bytes += _size(item.handle)
                    flight._notify()
        except asyncio.CancelledError:
            flight.error = flight.cancelled_by or asyncio.CancelledError()
        except Exception as exc:
            flight.error = exc
        finally:
            flight.done = True
            self._forget(flight)
            flight._notify()

    def _forget(self, flight: Flight) -> None:
        # Only this flight: a live one for the same keys may have replaced it.
        key = (flight.pacs, flight.keys)
        if self._flights.get(key) is flight:
            del self._flights[key]


def _size(handle: InstanceHandle) -> int:
    if isinstance(handle, CachedInstance):
        return handle.size
    if isinstance(handle, MemoryInstance):
        return len(handle.instance.dataset)
    return 0  # a test's stand-in
