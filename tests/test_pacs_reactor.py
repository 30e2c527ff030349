"""pynetdicom's DUL reactor waits for events instead of polling (``pacs/reactor.py``).

Polling took the GIL thousands of times a second per association: with the
associations of a split retrieve it doubled the gateway's CPU time for a
study. The test counts the reactor's sleeps while an association idles (none:
it waits in ``select``), and checks that messages still flow both ways, that
another thread's request wakes it, and that release and abort still end it.
"""

from __future__ import annotations

import select
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom import dul as pynetdicom_dul
from pynetdicom import evt
from pynetdicom.association import Association

from dicomweb_gw.pacs import reactor
from dicomweb_gw.pacs.associations import Associations  # importing it installs the reactor
from dicomweb_gw.pacs.contexts import find_contexts
from dicomweb_gw.settings import PacsNode
from pacs_fixtures import GATEWAY_AE_TITLE
from quirky_pacs import QuirkyPacs, quirky_pacs
from testdata import pydicom_file

pytestmark = pytest.mark.timeout(60)

#: How long an association is left idle while its reactor's sleeps are counted.
IDLE_SECONDS = 0.3


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[QuirkyPacs]:
    with quirky_pacs(tmp_path, [pydicom_file("CT_small.dcm")]) as running:
        yield running


@pytest.fixture
def counted_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every ``time.sleep`` pynetdicom's DUL module makes (its polling)."""
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    counting = types.SimpleNamespace(**{name: getattr(time, name) for name in dir(time)
                                        if not name.startswith("_")})
    counting.sleep = sleep
    monkeypatch.setattr(pynetdicom_dul, "time", counting)
    return sleeps


def _associations(pacs: QuirkyPacs) -> Associations:
    node = PacsNode("q", "127.0.0.1", pacs.port, pacs.ae_title, timeout=10)
    return Associations(node, ae_title=GATEWAY_AE_TITLE)


def test_the_reactor_is_installed() -> None:
    assert reactor.installed()
    assert pynetdicom_dul.DULServiceProvider.run_reactor is reactor._run_reactor


def test_an_idle_association_does_not_poll_and_still_answers(
        pacs: QuirkyPacs, counted_sleeps: list[float]) -> None:
    associations = _associations(pacs)
    assoc = associations.associate(find_contexts())
    try:
        counted_sleeps.clear()
        time.sleep(IDLE_SECONDS)
        # pynetdicom's reactor sleeps 1 ms (0.1 ms on transfer associations) whenever
        # it finds nothing to do: hundreds of times here. This one waits in select().
        assert counted_sleeps == []
        # Woken by the request another thread queues, and by the answer on the socket.
        status = assoc.send_c_echo(msg_id=1)
        assert status.Status == 0x0000
    finally:
        associations.close(assoc)
    assert assoc.is_released


def test_an_abort_from_another_thread_ends_the_association(pacs: QuirkyPacs) -> None:
    associations = _associations(pacs)
    assoc = associations.associate(find_contexts())
    try:
        threading.Thread(target=assoc.abort).start()
        deadline = time.monotonic() + 10  # a bound on a hang, not a timing
        while not assoc.is_aborted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert assoc.is_aborted
        assoc.dul.join(timeout=10)
        assert not assoc.dul.is_alive()
    finally:
        associations.close(assoc)


def test_a_put_wakes_a_waiting_select_once_drained_again() -> None:
    waker = reactor._Waker()
    try:
        queued = reactor.WakingQueue(waker)
        assert select.select([waker], [], [], 0)[0] == []
        queued.put("Evt1")
        queued.put("Evt2")  # one byte for both: the reactor reads every queue once woken
        assert select.select([waker], [], [], 5)[0] == [waker]
        waker.drain()
        assert select.select([waker], [], [], 0)[0] == []
        queued.put("Evt3")
        assert select.select([waker], [], [], 5)[0] == [waker]
        assert [queued.get_nowait() for _ in range(3)] == ["Evt1", "Evt2", "Evt3"]
    finally:
        waker.close()


def test_the_wake_socket_is_closed_with_the_association(pacs: QuirkyPacs) -> None:
    associations = _associations(pacs)
    assoc: Association = associations.associate(find_contexts())
    waker = assoc.dul._gw_waker
    associations.close(assoc)
    assoc.dul.join(timeout=10)
    assert not assoc.dul.is_alive()
    assert waker._closed


def test_no_association_formats_its_pdus_for_a_log_nobody_reads(pacs: QuirkyPacs) -> None:
    """pynetdicom's "standard" handlers log every PDU and DIMSE message (a sixth of the
    receive path's CPU); the gateway keeps pynetdicom's log at CRITICAL."""
    associations = _associations(pacs)
    assoc = associations.associate(find_contexts())
    try:
        bound = [handler for event in (evt.EVT_PDU_RECV, evt.EVT_PDU_SENT, evt.EVT_DIMSE_RECV,
                                       evt.EVT_DIMSE_SENT)
                 for handler, _ in assoc.get_handlers(event)]
        assert not [h for h in bound if getattr(h, "__module__", "") == "pynetdicom._handlers"]
    finally:
        associations.close(assoc)
