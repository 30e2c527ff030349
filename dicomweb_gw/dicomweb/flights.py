"""Single flight: one PACS retrieve per study/series/instance, shared by every waiter.

The first request for uncached keys starts a *flight*: a task that runs the
C-GET/C-MOVE and writes each instance into the cache as it lands. Requests
for the same keys, or for keys inside them (a series of a study in flight),
join it and stream what has landed so far, then the rest as it arrives.
When the last waiter leaves, the flight is cancelled, which C-CANCELs the
retrieve: nobody is left to want it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field

from dicomweb_gw.model import RetrieveKeys

__all__ = ["Flight", "FlightTable", "Landed", "Producer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Landed:
    """One instance as it landed: where it is, and which series it belongs to."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    handle: object  # CachedInstance, or an in-memory instance when the cache could not take it


Producer = Callable[[RetrieveKeys], AsyncGenerator[Landed, None]]


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

    def covers(self, keys: RetrieveKeys) -> bool:
        """Will this flight bring every instance ``keys`` asks for?"""
        mine = self.keys
        return (mine.study_uid == keys.study_uid
                and mine.series_uid in (None, keys.series_uid)
                and mine.instance_uid in (None, keys.instance_uid))

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class FlightTable:
    def __init__(self) -> None:
        self._flights: dict[tuple[str, RetrieveKeys], Flight] = {}
        self.started = 0  # flights started: what reached the PACS (for tests and metrics)

    def in_flight(self, pacs: str) -> list[Flight]:
        return [f for (name, _), f in self._flights.items() if name == pacs]

    async def join(
        self, pacs: str, keys: RetrieveKeys, producer: Producer,
        on_complete: Callable[[Flight], Awaitable[None]] | None = None,
    ) -> AsyncGenerator[Landed, None]:
        """Instances under ``keys``: from a covering flight, or a new one."""
        flight = next((f for f in self.in_flight(pacs) if f.covers(keys) and not f.done), None)
        if flight is None:
            flight = Flight(pacs=pacs, keys=keys)
            self._flights[(pacs, keys)] = flight
            self.started += 1
            flight.task = asyncio.create_task(self._fly(flight, producer, on_complete))
        flight.waiters += 1
        try:
            position = 0
            while True:
                while position < len(flight.landed):
                    item = flight.landed[position]
                    position += 1
                    if _wanted(item, keys):
                        yield item
                if flight.done:
                    if flight.error is not None:
                        raise flight.error
                    return
                await flight.changed.wait()
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.done and flight.task is not None:
                flight.task.cancel()  # nobody wants the rest: the retrieve gets C-CANCELled

    async def _fly(
        self, flight: Flight, producer: Producer,
        on_complete: Callable[[Flight], Awaitable[None]] | None,
    ) -> None:
        try:
            async with aclosing(producer(flight.keys)) as instances:
                async for item in instances:
                    flight.landed.append(item)
                    flight._notify()
            if on_complete is not None:
                await on_complete(flight)
        except asyncio.CancelledError:
            flight.error = asyncio.CancelledError()
        except Exception as exc:
            flight.error = exc
        finally:
            flight.done = True
            self._flights.pop((flight.pacs, flight.keys), None)
            flight._notify()


def _wanted(item: Landed, keys: RetrieveKeys) -> bool:
    if keys.series_uid is not None and item.series_uid != keys.series_uid:
        return False
    return keys.instance_uid is None or item.sop_instance_uid == keys.instance_uid
