"""C-MOVE routing between replicas against a real Redis: two "replicas" in one process.

The owner's ``MoveRouting`` reads its Redis inbox and hands instances to its
moves; the receiver's forwards what the PACS sent it. Both share one disk store
(the shared store). What must hold: nothing in the inbox stops the routing, a
slow move holds up no other, and a router that cannot work says so in /readyz.
The multi-process test with a real PACS is in tests/test_cluster.py.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from cluster_fixtures import RedisServer
from corpus import Corpus
from dicomweb_gw.cache.disk import DiskInstanceStore
from dicomweb_gw.cluster import moves
from dicomweb_gw.cluster.link import RedisLink
from dicomweb_gw.cluster.moves import MoveRouting
from dicomweb_gw.codecs.part10 import instance_from_file
from dicomweb_gw.errors import PacsFailure
from dicomweb_gw.model import RetrievedInstance, RetrieveKeys
from dicomweb_gw.pacs.bridge import Channel
from dicomweb_gw.pacs.sink import STORE_SUCCESS, InstanceSink
from dicomweb_gw.pacs.storescp import MoveReceiver
from gateway_fixtures import make_settings, node_for, running_gateway
from pacs_fixtures import RunningPacs, free_port

NODE = "pacs"
WAIT_SECONDS = 15.0


def _eventually(condition: Callable[[], bool], timeout: float = WAIT_SECONDS) -> bool:
    """Whether ``condition`` came true within ``timeout`` (a bound, never a measurement)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _wait_reading(url: str) -> None:
    """Until a client blocks in XREAD: the owner's router is listening."""
    client = redis.Redis.from_url(url)
    try:
        assert _eventually(lambda: any(c.get("cmd") == "xread" for c in client.client_list()))
    finally:
        client.close()


class Deliveries:
    """The owner's side of ``deliver``: records (Message ID, SOP Instance UID)."""

    def __init__(self, hold: int | None = None) -> None:
        self.got: list[tuple[int, str]] = []
        self.hold = hold  # the Message ID whose client does not read (until released)
        self.holding = threading.Event()
        self.release = threading.Event()

    def __call__(self, msg_id: int, instance: RetrievedInstance) -> int:
        if msg_id == self.hold:
            self.holding.set()
            self.release.wait(WAIT_SECONDS * 2)
        self.got.append((msg_id, instance.sop_instance_uid))
        return STORE_SUCCESS

    def of(self, msg_id: int) -> list[str]:
        return [sop for got_id, sop in self.got if got_id == msg_id]


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[DiskInstanceStore]:
    store = DiskInstanceStore(tmp_path / "shared", 10**9)
    yield store
    store.close()


@pytest.fixture
def instances(corpus: Corpus) -> list[RetrievedInstance]:
    return [instance_from_file(i.path) for i in corpus.study("ct_small").instances]


@contextmanager
def replicas(url: str, store: DiskInstanceStore, **options: Any
             ) -> Iterator[tuple[MoveRouting, MoveRouting]]:
    """(owner, receiver): the owner started by the caller, stopped here."""
    owner_link, receiver_link = RedisLink(url), RedisLink(url)
    owner = MoveRouting(owner_link, lambda node: store, **options)
    receiver = MoveRouting(receiver_link, lambda node: store)
    try:
        yield owner, receiver
    finally:
        owner.stop()
        for link in (owner_link, receiver_link):
            link.sync.close()


def _announce(owner: MoveRouting, fields: dict[str, Any], url: str) -> None:
    """An entry in the owner's inbox, written by hand (whatever a buggy replica might write)."""
    client = redis.Redis.from_url(url)
    try:
        client.xadd(moves._inbox(owner._link.replica_id), fields)  # type: ignore[arg-type]
    finally:
        client.close()


def _fields(msg_id: object, instance: RetrievedInstance, store: DiskInstanceStore
            ) -> dict[str, Any]:
    cached = store.put(instance)
    return {"msg_id": str(msg_id), "node": NODE, "study": cached.study_uid,
            "series": cached.series_uid, "sop": cached.sop_instance_uid}


def _unreadable_file(msg_id: int, instance: RetrievedInstance, store: DiskInstanceStore
                     ) -> dict[str, Any]:
    """An entry for a cached file pydicom cannot read (same size: the store still has it)."""
    fields = _fields(msg_id, instance, store)
    cached = store.get(instance.sop_instance_uid)
    assert cached is not None
    cached.path.write_bytes(b"\0" * cached.path.stat().st_size)
    return fields


MALFORMED: dict[str, Callable[[int, RetrievedInstance, DiskInstanceStore], dict[str, Any]]] = {
    "missing fields": lambda msg_id, instance, store: {"msg_id": str(msg_id)},
    "msg_id not a number": lambda msg_id, instance, store: {
        **_fields(msg_id, instance, store), "msg_id": "forty-two"},
    "not UTF-8": lambda msg_id, instance, store: {
        **_fields(msg_id, instance, store), "node": b"\xff\xfe"},
    "file pydicom cannot read": _unreadable_file,
}


@pytest.mark.parametrize("malformed", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_entry_is_logged_and_the_next_one_still_delivered(
    redis_server: RedisServer, shared: DiskInstanceStore, instances: list[RetrievedInstance],
    malformed: Callable[[int, RetrievedInstance, DiskInstanceStore], dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad, good = instances[0], instances[1]
    delivered = Deliveries()
    with caplog.at_level(logging.INFO, logger="dicomweb_gw.cluster.moves"), \
            replicas(redis_server.url, shared) as (owner, receiver):
        owner.start(delivered)
        _wait_reading(redis_server.url)
        msg_id = owner.register(NODE)
        assert msg_id is not None
        _announce(owner, malformed(msg_id, bad, shared), redis_server.url)
        assert receiver.forward(msg_id, good) == STORE_SUCCESS

        assert _eventually(lambda: delivered.of(msg_id) == [good.sop_instance_uid]), \
            "the router stopped at the malformed entry"
        assert owner.healthy
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors, "the malformed entry was skipped without a word"


def test_a_slow_move_does_not_hold_up_another(
    redis_server: RedisServer, shared: DiskInstanceStore, instances: list[RetrievedInstance],
) -> None:
    delivered = Deliveries()
    with replicas(redis_server.url, shared) as (owner, receiver):
        owner.start(delivered)
        _wait_reading(redis_server.url)
        slow, fast = owner.register(NODE), owner.register(NODE)
        assert slow is not None
        assert fast is not None
        delivered.hold = slow
        assert receiver.forward(slow, instances[0]) == STORE_SUCCESS
        assert delivered.holding.wait(WAIT_SECONDS)
        assert receiver.forward(fast, instances[1]) == STORE_SUCCESS

        assert _eventually(lambda: delivered.of(fast) == [instances[1].sop_instance_uid]), \
            "one move's slow client held up another's"
        delivered.release.set()
        assert _eventually(lambda: delivered.of(slow) == [instances[0].sop_instance_uid])


def test_a_move_too_far_behind_is_ended_with_an_error_and_the_others_go_on(
    redis_server: RedisServer, shared: DiskInstanceStore, instances: list[RetrievedInstance],
    caplog: pytest.LogCaptureFixture,
) -> None:
    delivered = Deliveries()
    abandoned: list[tuple[int, Exception]] = []
    with caplog.at_level(logging.ERROR, logger="dicomweb_gw.cluster.moves"), \
            replicas(redis_server.url, shared, move_queue=2) as (owner, receiver):
        owner.start(delivered, lambda msg_id, error: abandoned.append((msg_id, error)))
        _wait_reading(redis_server.url)
        slow, other = owner.register(NODE), owner.register(NODE)
        assert slow is not None
        assert other is not None
        delivered.hold = slow
        assert receiver.forward(slow, instances[0]) == STORE_SUCCESS
        assert delivered.holding.wait(WAIT_SECONDS)
        for instance in instances[1:]:  # two wait in its queue, the third is one too many
            assert receiver.forward(slow, instance) == STORE_SUCCESS
        assert receiver.forward(other, instances[0]) == STORE_SUCCESS
        assert _eventually(lambda: delivered.of(other) == [instances[0].sop_instance_uid])
        assert _eventually(lambda: owner.dropped == 1)

        delivered.release.set()
        assert _eventually(lambda: len(abandoned) == 1)
        assert owner.healthy
    (msg_id, error), = abandoned
    assert msg_id == slow
    assert "reads too slowly" in str(error)
    assert delivered.of(slow) == [instances[0].sop_instance_uid]  # the rest was dropped
    assert any("reads too slowly" in r.getMessage() for r in caplog.records)


def test_the_client_of_a_dropped_move_gets_what_came_and_then_the_error(
    redis_server: RedisServer, shared: DiskInstanceStore, instances: list[RetrievedInstance],
) -> None:
    """The whole path: router, MoveReceiver, and the channel the HTTP response reads."""
    study_uid = shared.put(instances[0]).study_uid

    async def client_reading_late(owner: MoveRouting, receiver: MoveRouting
                                  ) -> tuple[list[str], BaseException | None]:
        channel: Channel[RetrievedInstance] = Channel(asyncio.get_running_loop(), maxsize=1)
        storage_scp = MoveReceiver("GATEWAY")
        storage_scp.routing = owner
        owner.start(storage_scp.deliver, storage_scp.abandon)
        await asyncio.to_thread(_wait_reading, redis_server.url)
        got: list[str] = []
        with storage_scp.expect(RetrieveKeys(study_uid), InstanceSink(channel),
                                node=NODE) as msg_id:
            # One in the channel, one being put, one queued: the fourth is one too many.
            for instance in instances:
                await asyncio.to_thread(receiver.forward, msg_id, instance)
            assert await asyncio.to_thread(_eventually, lambda: owner.dropped == 1)
            try:
                async for instance in channel:
                    got.append(instance.sop_instance_uid)
            except PacsFailure as exc:
                return got, exc
        return got, None

    with replicas(redis_server.url, shared, move_queue=1) as (owner, receiver):
        got, error = asyncio.run(client_reading_late(owner, receiver))
    # What reached the channel before the drop, in order (how much depends on how the
    # router's reads were batched), then the error: never a silently short response.
    assert got == [i.sop_instance_uid for i in instances[:len(got)]]
    assert len(got) < len(instances)
    assert isinstance(error, PacsFailure)
    assert error.message.startswith(f"PACS '{NODE}': C-MOVE ")
    assert "its client reads too slowly" in error.message


def test_the_router_survives_a_redis_restart_and_says_so_once(
    redis_server: RedisServer, shared: DiskInstanceStore, instances: list[RetrievedInstance],
    caplog: pytest.LogCaptureFixture,
) -> None:
    delivered = Deliveries()
    with caplog.at_level(logging.WARNING, logger="dicomweb_gw.cluster"), \
            replicas(redis_server.url, shared) as (owner, receiver):
        owner.start(delivered)
        _wait_reading(redis_server.url)
        redis_server.stop()
        assert _eventually(lambda: not owner._link.healthy)
        time.sleep(2)  # several reconnection attempts while Redis is gone
        redis_server.start()
        assert _eventually(lambda: owner._link.healthy)
        msg_id = owner.register(NODE)
        assert msg_id is not None
        assert receiver.forward(msg_id, instances[0]) == STORE_SUCCESS
        assert _eventually(lambda: delivered.of(msg_id) == [instances[0].sop_instance_uid])
    outages = [r for r in caplog.records if "failed" in r.getMessage()
               and r.name == "dicomweb_gw.cluster.link"]
    assert len(outages) == 1


def _raise(kind: type[BaseException]) -> Callable[..., Any]:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise kind("broken by the test")

    return broken


@pytest.mark.pacs
@pytest.mark.parametrize("kind", [SystemExit, RuntimeError],
                         ids=["router killed", "router failing"])
def test_readyz_reports_a_router_that_cannot_route(
    dcmqrscp_pacs: RunningPacs, redis_server: RedisServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, kind: type[BaseException],
) -> None:
    node = node_for(dcmqrscp_pacs, "dcmqrscp", "c-move")
    settings = replace(make_settings((node,), store_port=free_port(), tmp=tmp_path),
                       redis_url=redis_server.url, shared_store=f"file://{tmp_path / 'shared'}")
    with running_gateway(settings) as gateway:
        ready = httpx.get(f"{gateway.url}/readyz", timeout=30)
        assert ready.status_code == 200, ready.text
        link = gateway.app.state.gateway.link
        monkeypatch.setattr(link.sync, "xread", _raise(kind))

        def reported() -> bool:
            return httpx.get(f"{gateway.url}/readyz", timeout=30).status_code == 503

        assert _eventually(reported), "/readyz still says ready"
        body = httpx.get(f"{gateway.url}/readyz", timeout=30).json()
    assert body["status"] == "unavailable"
    assert body["pacs"] == {"dcmqrscp": "ok"}
    assert "move routing" in body["move_routing"]
