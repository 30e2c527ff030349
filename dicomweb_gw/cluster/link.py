"""The gateway's connection to Redis, and what happens when Redis is gone.

Redis is an optimisation for several replicas, never a dependency for serving:
every caller gets ``None`` (or its own fallback) when Redis fails, and the
gateway carries on per replica. The outage is said once in the log (and again
when it ends), and counted in the metrics, not repeated on every request.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError

__all__ = ["KEY_PREFIX", "RedisLink", "ping", "stream_entries", "text"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Every key the gateway writes starts with this, so one Redis can serve other users.
KEY_PREFIX = "dicomweb-gw:"
#: Short: a request waits at most this long for a Redis that does not answer.
_SOCKET_TIMEOUT = 2.0


class RedisLink:
    """Async and sync clients for one Redis URL, with the health state they share.

    The async client serves requests on the event loop; the sync one serves
    code that runs in worker threads (the C-MOVE storage SCP, cache calls).
    """

    def __init__(self, url: str, *, on_health: Callable[[bool], None] | None = None) -> None:
        self.url = url
        #: Unique per process: names this replica in leases and move routing.
        self.replica_id = uuid.uuid4().hex[:12]
        options: dict[str, Any] = {"socket_timeout": _SOCKET_TIMEOUT,
                                   "socket_connect_timeout": _SOCKET_TIMEOUT}
        self.aio: aioredis.Redis = aioredis.Redis.from_url(url, **options)
        self.sync: redis.Redis = redis.Redis.from_url(url, **options)
        # Blocking reads (XREAD BLOCK) need a socket timeout longer than the block.
        self.aio_blocking: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=_SOCKET_TIMEOUT + 5, socket_connect_timeout=_SOCKET_TIMEOUT)
        self._healthy = True
        self._health_lock = threading.Lock()
        self._on_health = on_health
        self.errors = 0

    @property
    def healthy(self) -> bool:
        return self._healthy

    async def call(self, operation: Callable[[], Awaitable[T]], what: str) -> T | None:
        """Run one async Redis operation; None when Redis failed (said once, counted)."""
        try:
            result = await operation()
        except (RedisError, OSError) as exc:
            self.failed(what, exc)
            return None
        self.succeeded()
        return result

    def call_sync(self, operation: Callable[[], T], what: str) -> T | None:
        """``call`` for worker threads."""
        try:
            result = operation()
        except (RedisError, OSError) as exc:
            self.failed(what, exc)
            return None
        self.succeeded()
        return result

    def failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        with self._health_lock:
            was_healthy, self._healthy = self._healthy, False
        if was_healthy:
            log.warning("Redis at %s failed (%s: %s); carrying on per replica (no shared "
                        "single flight or shared caches) until it is back", _safe(self.url),
                        what, exc)
            if self._on_health is not None:
                self._on_health(False)

    def succeeded(self) -> None:
        if self._healthy:
            return
        with self._health_lock:
            was_healthy, self._healthy = self._healthy, True
        if not was_healthy:
            log.warning("Redis at %s is back: shared single flight and caches resume",
                        _safe(self.url))
            if self._on_health is not None:
                self._on_health(True)

    async def aclose(self) -> None:
        for client in (self.aio, self.aio_blocking):
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()
        self.sync.close()


def _safe(url: str) -> str:
    """The URL without a password, for logs."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


def text(value: object) -> str | None:
    """A Redis reply as text (replies are bytes: the clients do not decode)."""
    if isinstance(value, bytes):
        return value.decode()
    return None if value is None else str(value)


def stream_entries(answer: Any) -> list[tuple[str, dict[str, str]]]:
    """(entry id, fields) of an XREAD reply for one stream, decoded."""
    if not answer:
        return []
    return [(str(text(entry_id)), {str(text(k)): str(text(v)) for k, v in raw.items()})
            for entry_id, raw in answer[0][1]]


def ping(url: str, timeout: float) -> str | None:
    """None if the Redis at ``url`` answers PING within ``timeout`` seconds, else why not."""
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    except RedisError as exc:
        return str(exc)
    finally:
        client.close()
    return None
