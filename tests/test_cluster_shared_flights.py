"""Cluster-wide single flight against a real Redis: two "replicas" in one process.

The producers stand in for PACS retrieves (they count how often they run);
the shared store is a dict. The multi-process test with a real PACS is
tests/test_cluster.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing

import pytest

from cluster_fixtures import RedisServer
from dicomweb_gw.cluster.link import RedisLink
from dicomweb_gw.cluster.shared_flights import ClusterFlights
from dicomweb_gw.dicomweb.flights import FlightTable, Landed, flying
from dicomweb_gw.errors import PacsTimeout
from dicomweb_gw.model import RetrieveKeys, RetrieveReport

STUDY = "1.2.3"
KEYS = RetrieveKeys(STUDY)
ITEMS = [Landed(STUDY, f"1.2.3.{1 + i % 2}", f"1.2.3.9.{i}", handle=None) for i in range(8)]


class FakePacs:
    """Yields ITEMS with a pause; the shared store is what it has yielded."""

    def __init__(self, shared: dict[str, Landed], *, pause: float = 0.05,
                 fail_after: int | None = None) -> None:
        self.shared = shared
        self.pause = pause
        self.fail_after = fail_after
        self.runs = 0

    async def produce(self, keys: RetrieveKeys) -> AsyncGenerator[Landed, None]:
        self.runs += 1
        for index, item in enumerate(ITEMS):
            if self.fail_after is not None and index == self.fail_after:
                raise PacsTimeout("pacs", "the PACS stopped answering")
            if keys.series_uid not in (None, item.series_uid):
                continue
            await asyncio.sleep(self.pause)
            self.shared[item.sop_instance_uid] = item
            yield item

    async def fetch(self, study: str, series: str, sop: str) -> Landed | None:
        return self.shared.get(sop)


async def _collect(flights: ClusterFlights, pacs: FakePacs, keys: RetrieveKeys = KEYS,
                   *, stop_after: int | None = None) -> list[str]:
    got: list[str] = []
    instances = flights.producer("pacs", pacs.produce, pacs.fetch)(keys)
    try:
        async for item in instances:
            got.append(item.sop_instance_uid)
            if stop_after is not None and len(got) >= stop_after:
                break
    finally:
        await instances.aclose()
    return got


def _replicas(server: RedisServer, count: int = 2,
              lease: float = 1.0) -> list[tuple[RedisLink, ClusterFlights]]:
    links = [RedisLink(server.url) for _ in range(count)]
    return [(link, ClusterFlights(link, lease_seconds=lease)) for link in links]


async def _close(replicas: list[tuple[RedisLink, ClusterFlights]]) -> None:
    for link, _ in replicas:
        await link.aclose()


def test_one_replica_retrieves_the_other_follows(redis_server: RedisServer) -> None:
    shared: dict[str, Landed] = {}
    pacs_a, pacs_b = FakePacs(shared), FakePacs(shared)

    async def run() -> tuple[list[str], list[str]]:
        replicas = _replicas(redis_server)
        first = asyncio.ensure_future(_collect(replicas[0][1], pacs_a))
        await asyncio.sleep(0.02)
        second = await _collect(replicas[1][1], pacs_b)
        result = (await first, second)
        assert replicas[0][1].roles.owned == 1
        assert replicas[1][1].roles.followed == 1
        await _close(replicas)
        return result

    first, second = asyncio.run(run())
    everything = [item.sop_instance_uid for item in ITEMS]
    assert first == second == everything
    assert pacs_a.runs + pacs_b.runs == 1


def test_a_series_request_follows_the_study_retrieve(redis_server: RedisServer) -> None:
    shared: dict[str, Landed] = {}
    pacs_a, pacs_b = FakePacs(shared), FakePacs(shared)
    series = RetrieveKeys(STUDY, "1.2.3.2")

    async def run() -> list[str]:
        replicas = _replicas(redis_server)
        study = asyncio.ensure_future(_collect(replicas[0][1], pacs_a))
        await asyncio.sleep(0.02)
        got = await _collect(replicas[1][1], pacs_b, series)
        await study
        await _close(replicas)
        return got

    got = asyncio.run(run())
    assert got == [item.sop_instance_uid for item in ITEMS if item.series_uid == "1.2.3.2"]
    assert pacs_b.runs == 0


def test_a_follower_takes_over_when_the_owner_gives_up(redis_server: RedisServer) -> None:
    shared: dict[str, Landed] = {}
    pacs_a, pacs_b = FakePacs(shared), FakePacs(shared)

    async def run() -> tuple[list[str], list[str]]:
        replicas = _replicas(redis_server)
        # The owner's only client leaves after 3 instances: the retrieve is abandoned.
        first = asyncio.ensure_future(_collect(replicas[0][1], pacs_a, stop_after=3))
        await asyncio.sleep(0.02)
        second = await _collect(replicas[1][1], pacs_b)
        result = (await first, second)
        assert replicas[1][1].roles.took_over == 1
        await _close(replicas)
        return result

    first, second = asyncio.run(run())
    assert len(first) == 3
    assert second == [item.sop_instance_uid for item in ITEMS]  # each once, none missing
    assert pacs_a.runs == pacs_b.runs == 1


def test_the_owners_failure_reaches_the_followers_as_the_same_error(
    redis_server: RedisServer,
) -> None:
    shared: dict[str, Landed] = {}
    pacs_a, pacs_b = FakePacs(shared, fail_after=4), FakePacs(shared)

    async def run() -> None:
        replicas = _replicas(redis_server)
        first = asyncio.ensure_future(_collect(replicas[0][1], pacs_a))
        await asyncio.sleep(0.02)
        with pytest.raises(PacsTimeout, match="stopped answering"):
            await _collect(replicas[1][1], pacs_b)
        with pytest.raises(PacsTimeout):
            await first
        await _close(replicas)

    asyncio.run(run())
    assert pacs_b.runs == 0


def test_without_redis_each_replica_retrieves_alone(redis_server: RedisServer) -> None:
    shared: dict[str, Landed] = {}
    pacs_a, pacs_b = FakePacs(shared, pause=0), FakePacs(shared, pause=0)
    redis_server.stop()

    async def run() -> tuple[list[str], list[str]]:
        replicas = _replicas(redis_server)
        result = await asyncio.gather(_collect(replicas[0][1], pacs_a),
                                      _collect(replicas[1][1], pacs_b))
        assert not replicas[0][0].healthy
        assert replicas[0][1].roles.alone == 1
        await _close(replicas)
        return result[0], result[1]

    first, second = asyncio.run(run())
    assert first == second == [item.sop_instance_uid for item in ITEMS]
    assert pacs_a.runs == pacs_b.runs == 1


def test_a_follower_shows_what_the_owner_expects(redis_server: RedisServer) -> None:
    """The status page of the replica that follows says how many instances are
    expected, as the owner's does; not for a follower asking for less than the owner
    retrieves (the owner's count is the study's, not its series')."""
    shared: dict[str, Landed] = {}
    owner_pacs, follower_pacs = FakePacs(shared, pause=0.1), FakePacs(shared)

    owning: list[asyncio.Event] = []  # made in the test's event loop

    async def owner_produce(keys: RetrieveKeys) -> AsyncGenerator[Landed, None]:
        flight = flying()  # as InstanceSource's producer shows its PACS's counts
        assert flight is not None
        flight.progress = RetrieveReport(expected=len(ITEMS))
        async with aclosing(owner_pacs.produce(keys)) as items:
            async for item in items:
                yield item
                owning[0].set()

    async def drain(table: FlightTable, flights: ClusterFlights, keys: RetrieveKeys,
                    produce: Callable[[RetrieveKeys], AsyncGenerator[Landed, None]]) -> None:
        coordinated = flights.producer("pacs", produce, follower_pacs.fetch)
        async with aclosing(table.join("pacs", keys, coordinated)) as landed:
            async for _ in landed:
                pass

    async def run() -> tuple[list[int | None], list[int | None]]:
        replicas = _replicas(redis_server, 3)
        tables = [FlightTable() for _ in replicas]
        owning.append(asyncio.Event())
        owner = asyncio.ensure_future(drain(tables[0], replicas[0][1], KEYS, owner_produce))
        await owning[0].wait()  # it holds the lease: the others follow
        study = asyncio.ensure_future(drain(tables[1], replicas[1][1], KEYS,
                                            follower_pacs.produce))
        series = asyncio.ensure_future(drain(tables[2], replicas[2][1],
                                             RetrieveKeys(STUDY, "1.2.3.2"),
                                             follower_pacs.produce))
        seen_study: list[int | None] = []
        seen_series: list[int | None] = []
        while not owner.done():
            seen_study.extend(f.expected for f in tables[1].live())
            seen_series.extend(f.expected for f in tables[2].live())
            await asyncio.sleep(0.02)
        await asyncio.gather(owner, study, series)
        assert replicas[1][1].roles.followed == replicas[2][1].roles.followed == 1
        await _close(replicas)
        return seen_study, seen_series

    seen_study, seen_series = asyncio.run(run())
    assert len(ITEMS) in seen_study
    assert set(seen_study) <= {None, len(ITEMS)}
    assert seen_series
    assert set(seen_series) == {None}
    assert follower_pacs.runs == 0
