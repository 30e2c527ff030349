"""Running blocking pynetdicom operations in threads, for the event loop.

pynetdicom is blocking and thread-based, so every operation runs in its own
worker thread and hands results to the event loop through a bounded
``Channel``. A per-PACS semaphore bounds the associations we hold at once
(many PACS allow only a few); the slot is released by the worker when the
DIMSE operation has really ended, not when the HTTP side gave up on it. The
bound follows the node's association limit, which shrinks when the PACS turns
out to allow fewer than configured (``limits.py``): requests then wait here.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import threading
from collections import deque
from collections.abc import AsyncGenerator, Callable
from contextlib import suppress
from typing import TypeVar

from dicomweb_gw.errors import (
    PacsError,
    PacsFailure,
    PacsMisconfigured,
    PacsTimeout,
    PacsUnavailable,
)
from dicomweb_gw.metrics import GatewayMetrics
from dicomweb_gw.pacs.bridge import Cancelled, Channel
from dicomweb_gw.settings import PacsNode

__all__ = ["MessageIds", "Workers"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The outcome label of ``dimse_operations`` for each error; any other is "failure".
_OUTCOMES: dict[type[PacsError], str] = {
    PacsUnavailable: "unavailable",
    PacsTimeout: "timeout",
    PacsMisconfigured: "misconfigured",
}


class MessageIds:
    """The Message IDs of one client's requests: 2, 3, ... 65535, 1, 2, ... (a US)."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def next(self) -> int:
        return next(self._counter) % 65535 + 1


_RETRIEVES = frozenset({"C-GET", "C-MOVE"})


class Workers:
    """Starts one PACS node's operations, each in a thread, under the node's limits."""

    def __init__(self, node: PacsNode, metrics: GatewayMetrics | None = None, *,
                 limit: Callable[[], int] | None = None) -> None:
        self._node = node
        self._metrics = metrics
        self._limit = limit or (lambda: node.max_associations)
        self._slots: Slots | None = None
        self._move_gate: asyncio.Semaphore | None = None

    async def stream(
        self, worker: Callable[[Channel[T]], None], maxsize: int, operation: str,
        size: Callable[[T], int] | None = None,
    ) -> AsyncGenerator[T, None]:
        """Run ``worker`` in a thread; yield what it puts on its channel (at most ``maxsize``
        waiting). Closing the generator cancels the channel, which stops the worker."""
        loop = asyncio.get_running_loop()
        held = await self._acquire(operation)
        channel: Channel[T] = Channel(loop, maxsize)

        def run() -> None:
            outcome = "success"
            try:
                worker(channel)
                # A retrieve the client left is C-CANCELled and ends without an error:
                # counted as what it was, not as a success. (A C-FIND cancelled once the
                # page is full ended as it should: a success.)
                if channel.cancelled and operation in _RETRIEVES:
                    outcome = "cancelled"
                channel.finish()
            except Cancelled:
                outcome = "cancelled"
            except PacsError as exc:
                outcome = _OUTCOMES.get(type(exc), "failure")
                channel.finish(exc)
            except Exception as exc:  # a pynetdicom bug must not hang the request
                outcome = "error"
                log.exception("DIMSE worker for PACS '%s' failed", self._node.name)
                channel.finish(PacsFailure(self._node.name, f"internal DIMSE error: {exc}"))
            finally:
                if self._metrics is not None:
                    self._metrics.dimse_operations.labels(self._node.name, operation,
                                                          outcome).inc()
                with suppress(RuntimeError):  # the loop is already closed at shutdown
                    for semaphore in held:
                        loop.call_soon_threadsafe(semaphore.release)

        # The worker carries the request's context (its request id) into its log lines.
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(run,), name=f"dimse-{self._node.name}",
                         daemon=True).start()
        received = (self._metrics.retrieved_bytes.labels(self._node.name)
                    if self._metrics is not None and size is not None else None)
        try:
            async for item in channel:
                if received is not None and size is not None:
                    received.inc(size(item))
                yield item
        finally:
            channel.cancel()

    async def _acquire(self, operation: str) -> list[asyncio.Semaphore | Slots]:
        """What an operation holds until its worker ends: an association slot and, for a
        C-MOVE to a PACS that omits the Move Originator Message ID, the node's move gate.

        Such a PACS's instances are routed by UID matching (see ``MoveReceiver``), so
        overlapping moves (a series and its study, an instance and its series) would
        each get the other's instances too. The gate is taken first: a move waiting
        for it holds no association slot that a query could use.
        """
        if self._slots is None:
            self._slots = Slots(self._limit)
        held: list[asyncio.Semaphore | Slots] = []
        if operation == "C-MOVE" and not self._node.move_originator:
            if self._move_gate is None:
                self._move_gate = asyncio.Semaphore(1)
            await self._move_gate.acquire()
            held.append(self._move_gate)
        try:
            await self._slots.acquire()
        except BaseException:
            for semaphore in held:
                semaphore.release()
            raise
        held.append(self._slots)
        return held


class Slots:
    """An asyncio semaphore whose size is read at each acquire, so that it can shrink
    (and grow back) while operations hold it; ``release`` may be called by a loop callback."""

    def __init__(self, size: Callable[[], int]) -> None:
        self._size = size
        self._used = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def used(self) -> int:
        return self._used

    async def acquire(self) -> None:
        while self._used >= max(1, self._size()):
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                with suppress(ValueError):
                    self._waiters.remove(waiter)
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, then cancelled: pass the turn on
                raise
        self._used += 1

    def release(self) -> None:
        self._used -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
