"""The association limit a PACS teaches the gateway (A-ASSOCIATE-RJ transient), and waiting
for room under it: ``limits.AssociationLimit``, ``workers.Slots``, ``Associations``."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import pytest

from dicomweb_gw.pacs import limits
from dicomweb_gw.pacs.associations import Associations
from dicomweb_gw.pacs.contexts import find_contexts
from dicomweb_gw.pacs.limits import AssociationLimit
from dicomweb_gw.pacs.workers import Slots
from dicomweb_gw.settings import PacsNode
from pacs_fixtures import GATEWAY_AE_TITLE
from quirky_pacs import Quirks, quirky_pacs, sample_studies

NODE = PacsNode("main", "127.0.0.1", 104, "PACS", max_associations=4)


def test_a_refusal_teaches_the_limit_once_and_it_lapses(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dicomweb_gw.pacs.limits")
    limit = AssociationLimit(NODE)
    limit.refused_beyond(0)  # others hold the PACS's associations: nothing learned
    assert (limit.value, limit.learned) == (4, None)
    limit.refused_beyond(2)
    limit.refused_beyond(2)
    assert (limit.value, limit.learned) == (2, 2)
    told = [r.getMessage() for r in caplog.records]
    assert len(told) == 1
    assert "max_associations = 2 in [pacs.main]" in told[0]
    monkeypatch.setattr(limits, "LEARNED_LIMIT_SECONDS", 0.0)
    assert (limit.value, limit.learned) == (4, None)


def test_slots_follow_a_shrinking_size() -> None:
    async def run() -> list[str]:
        size = [3]
        slots = Slots(lambda: size[0])
        events: list[str] = []
        await slots.acquire()
        await slots.acquire()
        size[0] = 2  # learned while two are held

        async def third() -> None:
            await slots.acquire()
            events.append("third in")

        task = asyncio.create_task(third())
        await asyncio.sleep(0.05)
        events.append("released")
        slots.release()
        await task
        return events

    assert asyncio.run(run()) == ["released", "third in"]


def test_a_cancelled_waiter_passes_its_turn_on() -> None:
    async def run() -> int:
        slots = Slots(lambda: 1)
        await slots.acquire()
        first = asyncio.create_task(slots.acquire())
        second = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0.01)
        slots.release()  # wakes the first...
        first.cancel()  # ...which leaves before it runs
        await asyncio.wait_for(second, 5)
        return slots.used

    assert asyncio.run(run()) == 1


def test_associations_wait_for_room_once_the_pacs_refused_one_more(tmp_path: Path) -> None:
    """The PACS takes one association per calling AE; the gateway believes four. The
    second opener is refused, learns the limit and waits for the first to close."""
    studies = sample_studies(tmp_path / "data", 1)
    with quirky_pacs(tmp_path, studies[0].paths,
                     quirks=Quirks(max_associations_per_ae=1)) as pacs:
        node = PacsNode("quirky", "127.0.0.1", pacs.port, pacs.ae_title, timeout=10.0,
                        max_associations=4)
        associations = Associations(node, ae_title=GATEWAY_AE_TITLE)
        first = associations.associate(find_contexts())
        opened: list[bool] = []

        def second() -> None:
            assoc = associations.associate(find_contexts())
            opened.append(assoc.is_established)
            associations.close(assoc)

        thread = threading.Thread(target=second)
        thread.start()
        while associations.limit.learned is None and thread.is_alive():
            threading.Event().wait(0.02)
        assert associations.limit.learned == 1
        assert opened == []  # waiting for room, not failed
        associations.close(first)
        thread.join(timeout=10)
        rejected = pacs.associations_rejected
    assert opened == [True]
    assert rejected >= 2
