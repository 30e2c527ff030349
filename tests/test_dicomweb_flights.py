"""Single flight: join, cover, leave, cancel, and joining while a flight winds down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing

import pytest

from dicomweb_gw.dicomweb.flights import FlightTable, Landed, Producer
from dicomweb_gw.errors import PacsUnavailable
from dicomweb_gw.model import RetrieveKeys

STUDY = "1.2.3"
SERIES_A, SERIES_B = "1.2.3.1", "1.2.3.2"
PACS = "pacs"


class ScriptedPacs:
    """A producer that lands instances when told to, and winds down slowly when cancelled.

    The slow wind-down stands for the C-CANCEL round trip (and, with Redis,
    the lease release): the window in which a dying flight used to be joinable.
    """

    def __init__(self, instances: list[tuple[str, str]], *, unwind: float = 0.0) -> None:
        self.instances = instances  # (series, sop)
        self.unwind = unwind
        self.release = asyncio.Event()
        self.started: list[RetrieveKeys] = []
        self.cancelled = 0

    async def produce(self, keys: RetrieveKeys) -> AsyncGenerator[Landed, None]:
        self.started.append(keys)
        try:
            for series, sop in self.instances:
                if keys.series_uid in (None, series) and keys.instance_uid in (None, sop):
                    await self.release.wait()
                    yield Landed(STUDY, series, sop, handle=sop)
        except asyncio.CancelledError:
            self.cancelled += 1
            await asyncio.shield(asyncio.sleep(self.unwind))
            raise


async def _take(flights: FlightTable, keys: RetrieveKeys, producer: Producer) -> list[str]:
    async with aclosing(flights.join(PACS, keys, producer)) as landed:
        return [item.sop_instance_uid async for item in landed]


def _run(coroutine: object) -> object:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def test_two_requests_for_the_same_keys_share_one_retrieve() -> None:
    async def scenario() -> None:
        pacs = ScriptedPacs([(SERIES_A, "1"), (SERIES_A, "2")])
        flights = FlightTable()
        first = asyncio.create_task(_take(flights, RetrieveKeys(STUDY), pacs.produce))
        second = asyncio.create_task(_take(flights, RetrieveKeys(STUDY), pacs.produce))
        await asyncio.sleep(0)
        pacs.release.set()
        assert await first == await second == ["1", "2"]
        assert flights.started == 1
        assert len(pacs.started) == 1

    _run(scenario())


def test_a_series_request_is_covered_by_its_study_in_flight() -> None:
    async def scenario() -> None:
        pacs = ScriptedPacs([(SERIES_A, "1"), (SERIES_B, "2"), (SERIES_B, "3")])
        flights = FlightTable()
        study = asyncio.create_task(_take(flights, RetrieveKeys(STUDY), pacs.produce))
        await asyncio.sleep(0)
        series = asyncio.create_task(_take(flights, RetrieveKeys(STUDY, SERIES_B), pacs.produce))
        instance = asyncio.create_task(
            _take(flights, RetrieveKeys(STUDY, SERIES_B, "3"), pacs.produce))
        await asyncio.sleep(0)
        pacs.release.set()
        assert await study == ["1", "2", "3"]
        assert await series == ["2", "3"]
        assert await instance == ["3"]
        assert pacs.started == [RetrieveKeys(STUDY)]

    _run(scenario())


def test_a_study_is_not_covered_by_one_of_its_series_in_flight() -> None:
    async def scenario() -> None:
        pacs = ScriptedPacs([(SERIES_A, "1"), (SERIES_B, "2")])
        flights = FlightTable()
        series = asyncio.create_task(_take(flights, RetrieveKeys(STUDY, SERIES_B), pacs.produce))
        await asyncio.sleep(0)
        study = asyncio.create_task(_take(flights, RetrieveKeys(STUDY), pacs.produce))
        await asyncio.sleep(0)
        pacs.release.set()
        assert await series == ["2"]
        assert await study == ["1", "2"]
        assert flights.started == 2

    _run(scenario())


def test_one_waiter_leaving_does_not_cancel_the_others_flight() -> None:
    async def scenario() -> None:
        pacs = ScriptedPacs([(SERIES_A, "1"), (SERIES_A, "2")])
        flights = FlightTable()
        staying = asyncio.create_task(_take(flights, RetrieveKeys(STUDY), pacs.produce))
        leaving = asyncio.create_task(_take(flights, RetrieveKeys(STUDY), pacs.produce))
        await asyncio.sleep(0.01)
        leaving.cancel()
        await asyncio.sleep(0.01)
        pacs.release.set()
        assert await staying == ["1", "2"]
        assert pacs.cancelled == 0

    _run(scenario())


def test_the_last_waiter_leaving_cancels_the_retrieve() -> None:
    async def scenario() -> None:
        pacs = ScriptedPacs([(SERIES_A, "1")])
        flights = FlightTable()
        only = asyncio.create_task(_take(flights, RetrieveKeys(STUDY), pacs.produce))
        await asyncio.sleep(0.01)
        only.cancel()
        with pytest.raises(asyncio.CancelledError):
            await only
        await asyncio.sleep(0.01)
        assert pacs.cancelled == 1
        assert flights.in_flight(PACS) == []

    _run(scenario())


def test_a_request_arriving_while_a_flight_winds_down_gets_a_live_one() -> None:
    """The viewer drops a series and asks for it again at once (issue #15.1)."""

    async def scenario() -> None:
        pacs = ScriptedPacs([(SERIES_A, "1"), (SERIES_A, "2")], unwind=0.2)
        flights = FlightTable()
        dropped = asyncio.create_task(_take(flights, RetrieveKeys(STUDY), pacs.produce))
        await asyncio.sleep(0.01)
        dropped.cancel()
        await asyncio.sleep(0.01)  # the old flight is still unwinding its C-CANCEL
        assert pacs.cancelled == 1
        again = asyncio.create_task(_take(flights, RetrieveKeys(STUDY), pacs.produce))
        await asyncio.sleep(0.01)
        pacs.release.set()
        assert await again == ["1", "2"]
        assert flights.started == 2
        await asyncio.sleep(0.3)  # the old flight finishes unwinding...
        assert flights.in_flight(PACS) == []  # ...and takes nothing live with it

    _run(scenario())


def test_a_flight_cancelled_from_outside_fails_its_waiters_with_a_gateway_error() -> None:
    """CancelledError never reaches a request that was not itself cancelled."""

    async def scenario() -> None:
        pacs = ScriptedPacs([(SERIES_A, "1")])
        flights = FlightTable()
        waiter = asyncio.create_task(_take(flights, RetrieveKeys(STUDY), pacs.produce))
        await asyncio.sleep(0.01)
        (flight,) = flights.in_flight(PACS)
        assert flight.task is not None
        flight.task.cancel()  # e.g. the event loop shutting down its tasks
        with pytest.raises(PacsUnavailable, match="cancelled"):
            await waiter

    _run(scenario())


def test_a_failed_retrieve_fails_every_waiter_and_leaves_the_table() -> None:
    async def failing(keys: RetrieveKeys) -> AsyncGenerator[Landed, None]:
        await asyncio.sleep(0.01)
        raise PacsUnavailable(PACS, "down")
        yield  # pragma: no cover

    async def scenario() -> None:
        flights = FlightTable()
        first = asyncio.create_task(_take(flights, RetrieveKeys(STUDY), failing))
        second = asyncio.create_task(_take(flights, RetrieveKeys(STUDY), failing))
        for task in (first, second):
            with pytest.raises(PacsUnavailable):
                await task
        assert flights.in_flight(PACS) == []
        assert flights.started == 1

    _run(scenario())


def test_instances_outside_the_requested_keys_are_not_handed_out() -> None:
    """A PACS matches on the lowest key: what it sends must still be checked."""

    async def stray(keys: RetrieveKeys) -> AsyncGenerator[Landed, None]:
        yield Landed("9.9.9", SERIES_A, "1", handle=None)  # another study's instance
        yield Landed(STUDY, SERIES_A, "1", handle=None)

    async def scenario() -> None:
        flights = FlightTable()
        assert await _take(flights, RetrieveKeys(STUDY, SERIES_A, "1"), stray) == ["1"]
        assert await _take(flights, RetrieveKeys("9.9.8", SERIES_A, "1"), stray) == []

    _run(scenario())
