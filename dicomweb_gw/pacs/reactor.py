"""pynetdicom's DUL reactor, woken by events instead of polling.

Every association has a DUL thread that loops: send what the user queued, else
read a PDU if the socket has one, else sleep ``_run_loop_delay`` (1 ms; 0.1 ms
on the gateway's transfer associations, ``sockets.poll_fast``) and look again.
Each look takes the GIL. With one association that costs latency; with the
four of a split retrieve, plus the four sub-associations a C-MOVE brings back,
it was measured to double the gateway's CPU time for a study on loopback
(0.38 -> 0.85 s for the 100-instance CT, voluntary context switches 4.5k ->
45k), which made four associations slower than one.

Here the thread waits in ``select`` on its socket and on a wake-up socket
instead of sleeping: a PDU arriving, or a primitive the user queues
(``to_provider_queue``), an event put on ``event_queue`` by another thread, or
a kill, wakes it at once; otherwise it looks again after ``MAX_WAIT`` (the
ARTIM timer's resolution). The loop itself is pynetdicom's (3.0), unchanged
but for that wait: ``install`` patches only the pynetdicom versions it was
written against, and leaves others polling as before.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import ssl
import time
from typing import Any

from pynetdicom import dul as pynetdicom_dul
from pynetdicom.pdu import A_ABORT_RQ

from dicomweb_gw.pacs.patching import PynetdicomPatch

__all__ = ["MAX_WAIT", "WakingQueue", "install", "installed"]

log = logging.getLogger(__name__)

#: Longest wait without an event: how late an expired ARTIM timer is noticed.
MAX_WAIT = 0.05


class _Waker:
    """A socket pair: ``wake`` from any thread makes the reactor's ``select`` return."""

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._pending = False
        self._closed = False

    def fileno(self) -> int:
        return self._reader.fileno()

    def wake(self) -> None:
        if self._pending or self._closed:
            return  # one byte waiting is enough: the reactor drains them all
        self._pending = True
        with contextlib.suppress(OSError):  # full (already awake) or closed
            self._writer.send(b"\0")

    def drain(self) -> None:
        # Read first, then clear: a wake() in between skips its byte, but what it
        # queued is seen, since the reactor looks at its queues after this.
        with contextlib.suppress(OSError):
            while self._reader.recv(4096):
                pass
        self._pending = False

    def close(self) -> None:
        self._closed = True
        self._reader.close()
        self._writer.close()


class WakingQueue(queue.Queue[Any]):
    """A ``queue.Queue`` that wakes the DUL reactor whenever something is put on it."""

    def __init__(self, waker: _Waker) -> None:
        super().__init__()
        self._waker = waker

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._waker.wake()


def _apply() -> None:
    """Every DUL built from now on waits on its socket and a waker instead of polling."""
    provider = pynetdicom_dul.DULServiceProvider
    original_init = provider.__init__
    original_kill = provider.kill_dul

    def __init__(self: Any, assoc: Any) -> None:
        original_init(self, assoc)
        waker = _Waker()
        self._gw_waker = waker
        self.event_queue = WakingQueue(waker)
        self.to_provider_queue = WakingQueue(waker)

    def kill_dul(self: Any) -> None:
        original_kill(self)
        waker = getattr(self, "_gw_waker", None)
        if waker is not None:
            waker.wake()

    provider.__init__ = __init__  # type: ignore[method-assign]
    provider.kill_dul = kill_dul  # type: ignore[method-assign]
    provider.run_reactor = _run_reactor  # type: ignore[method-assign]


_PATCH = PynetdicomPatch("the event-driven DUL reactor", _apply)
#: Patch pynetdicom's DUL (once); False if its version is not one this was written for.
install = _PATCH.install
#: Whether the DUL reactors of associations opened from now on wait for events.
installed = _PATCH.installed


def _wait(dul: Any) -> None:
    """Until the socket has data, another thread queued something, or ``MAX_WAIT``."""
    waker: _Waker | None = getattr(dul, "_gw_waker", None)
    if waker is None:  # built before install(): poll as pynetdicom does
        time.sleep(dul._run_loop_delay)
        return
    sock = getattr(dul.socket, "socket", None) if dul.socket is not None else None
    readable: list[Any] = [waker]
    if isinstance(sock, socket.socket) and getattr(dul.socket, "_is_connected", False):
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return  # decrypted bytes select() cannot see
        readable.append(sock)
    # An expired ARTIM timer is put on the queue by the loop, once a millisecond at
    # most (pynetdicom's own pace).
    timeout = max(0.001, min(MAX_WAIT, dul.artim_timer.remaining))
    try:
        ready, _, _ = select.select(readable, [], [], timeout)
    except (OSError, ValueError):  # the socket was closed under us: let the loop see it
        return
    if waker in ready:
        waker.drain()


def _run_reactor(self: Any) -> None:
    """``DULServiceProvider.run_reactor`` of pynetdicom 3.0, waiting in ``_wait``
    where it slept."""
    try:
        _reactor_loop(self)
    finally:
        waker = getattr(self, "_gw_waker", None)
        if waker is not None:
            waker.close()


def _reactor_loop(self: Any) -> None:
    self._idle_timer.start()
    sleep = False
    while True:
        # Let the assoc reactor off the leash
        if not self.assoc._dul_ready.is_set():
            self.assoc._dul_ready.set()
            sleep = True
        if sleep:
            _wait(self)
        if self._kill_thread:
            break
        # Check the ARTIM timer first so its event is placed on the queue
        #   ahead of any other events this loop
        if self.artim_timer.expired:
            self.event_queue.put("Evt18")
        try:
            # Either encode and send a primitive, or receive and decode a PDU
            if self._process_recv_primitive():
                pass
            elif self._is_transport_event():
                self._idle_timer.restart()
        except Exception as exc:
            pynetdicom_dul.LOGGER.error("Exception in DUL.run(), aborting association")
            pynetdicom_dul.LOGGER.exception(exc)
            # Bypass the state machine and send an A-ABORT, as pynetdicom does
            abort_pdu = A_ABORT_RQ()
            abort_pdu.source = 0x02
            abort_pdu.reason_diagnostic = 0x00
            self.socket.send(abort_pdu.encode())
            self.assoc.is_aborted = True
            self.assoc.is_established = False
            self.assoc._kill = True
            self._kill_thread = True
            return
        try:
            event = self.event_queue.get(block=False)
        except queue.Empty:
            sleep = True
            continue
        self.state_machine.do_action(event)
        sleep = False
