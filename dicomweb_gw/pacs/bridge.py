"""A bounded hand-over from a DIMSE worker thread to an asyncio consumer.

pynetdicom blocks, so each DIMSE operation runs in a thread. The thread pushes
items here and blocks while the queue is full: a slow HTTP client therefore
slows the PACS transfer down (back-pressure) instead of filling memory. When
the consumer goes away it calls ``cancel()``; the producer sees that on its
next ``put`` and stops the DIMSE operation.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Cancelled", "Channel"]

T = TypeVar("T")
_POLL_SECONDS = 0.25


class Cancelled(Exception):
    """Raised in the producer thread once the consumer has gone."""


@dataclass(frozen=True, slots=True)
class _End:
    error: BaseException | None


class Channel(Generic[T]):
    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int = 8) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[T | _End] = asyncio.Queue(maxsize)
        self._cancelled = threading.Event()
        self._ended = False

    # -- producer side (worker thread) -------------------------------------
    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def put(self, item: T) -> None:
        """Hand ``item`` over, blocking while the consumer is behind."""
        self._put(item)

    def finish(self, error: BaseException | None = None) -> None:
        """Mark the end of the stream, with the error that ended it if any."""
        if self._ended:
            return
        self._ended = True
        with contextlib.suppress(Cancelled):
            self._put(_End(error))

    def _put(self, item: T | _End) -> None:
        if self._cancelled.is_set():
            raise Cancelled
        future = asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop)
        while True:
            try:
                future.result(timeout=_POLL_SECONDS)
                return
            except concurrent.futures.TimeoutError:
                if self._cancelled.is_set():
                    future.cancel()
                    raise Cancelled from None
            except (concurrent.futures.CancelledError, RuntimeError):
                # The event loop is closing: nobody will read this item.
                self._cancelled.set()
                raise Cancelled from None

    # -- consumer side (event loop) ----------------------------------------
    def cancel(self) -> None:
        self._cancelled.set()

    async def __aiter__(self) -> AsyncIterator[T]:
        while True:
            item = await self._queue.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
