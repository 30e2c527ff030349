"""Which replicas are alive, for the status page: a heartbeat key per replica in Redis.

Each replica writes ``dicomweb-gw:replica:<id>`` (the time, as JSON) every
``INTERVAL`` seconds with a TTL of ``TTL``: a replica that stopped disappears
on its own. ``snapshot()`` lists those seen, Redis's reachability and the
shared store's (URLs with their credentials masked). Redis failing is shown,
never raised (``RedisLink``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from dicomweb_gw.cache.blobs import BlobStore, BlobStoreError
from dicomweb_gw.cluster.link import KEY_PREFIX, RedisLink, text
from dicomweb_gw.settings.summary import mask_url_credentials

__all__ = ["INTERVAL", "TTL", "Replicas"]

log = logging.getLogger(__name__)

INTERVAL = 5.0
TTL = 20
_PREFIX = f"{KEY_PREFIX}replica:"
#: The shared store is probed at most this often (a LIST on S3 is not free).
_PROBE_EVERY = 10.0


class Replicas:
    def __init__(self, link: RedisLink, *, shared_store: str | None = None,
                 shared_blobs: Callable[[], BlobStore] | None = None,
                 interval: float = INTERVAL) -> None:
        self._link = link
        self._shared_store = shared_store
        self._shared_blobs = shared_blobs
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._probed: tuple[float, bool] | None = None
        self._blobs: BlobStore | None = None

    @property
    def key(self) -> str:
        return _PREFIX + self._link.replica_id

    def start(self) -> None:
        """Start beating (on the running loop); again is a no-op."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._beat())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            # Gone at once rather than after the TTL.
            await self._link.call(lambda: self._link.aio.delete(self.key), "replica heartbeat")

    async def beat(self) -> None:
        """Write this replica's heartbeat once."""
        value = orjson.dumps({"id": self._link.replica_id, "time": time.time()})
        await self._link.call(lambda: self._link.aio.set(self.key, value, ex=TTL),
                              "replica heartbeat")

    async def _beat(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self._interval)

    async def snapshot(self) -> dict[str, object]:
        link = self._link
        reachable = await link.call(lambda: link.aio.ping(), "status page ping") is not None
        replicas: list[dict[str, object]] = []
        if reachable:
            replicas = await self._replicas()
        body: dict[str, object] = {
            "redis": {"url": mask_url_credentials(link.url), "reachable": reachable},
            "replicas": replicas,
            "shared_store": None,
        }
        if self._shared_store is not None:
            body["shared_store"] = {"url": mask_url_credentials(self._shared_store),
                                    "reachable": await self._shared_reachable()}
        return body

    async def _replicas(self) -> list[dict[str, object]]:
        link = self._link

        async def read() -> list[tuple[str, object]]:
            keys = [key async for key in link.aio.scan_iter(match=_PREFIX + "*", count=100)]
            values = await link.aio.mget(keys) if keys else []
            return [(str(text(key)), value) for key, value in zip(keys, values, strict=True)]

        found = await link.call(read, "replica heartbeats") or []
        now = time.time()
        replicas: list[dict[str, object]] = []
        for key, raw in found:
            try:
                beat = orjson.loads(raw) if isinstance(raw, bytes | str) else None
                at = float(beat["time"]) if isinstance(beat, dict) else None
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                at = None
            if at is None:
                continue  # expired meanwhile, or not ours to read
            ident = key.removeprefix(_PREFIX)
            replicas.append({
                "id": ident,
                "last_heartbeat": datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
                .replace("+00:00", "Z"),
                "age_seconds": round(max(0.0, now - at), 1),
                "self": ident == link.replica_id})
        return sorted(replicas, key=lambda r: (not r["self"], str(r["id"])))

    async def _shared_reachable(self) -> bool | None:
        if self._shared_blobs is None:
            return None
        now = time.monotonic()
        if self._probed is not None and now - self._probed[0] < _PROBE_EVERY:
            return self._probed[1]
        make = self._shared_blobs

        def probe() -> bool:
            try:
                if self._blobs is None:  # made once: an S3 client is not free either
                    self._blobs = make()
                self._blobs.list_prefix("status-probe")
            except (BlobStoreError, OSError, ValueError) as exc:
                log.info("status page: the shared store is not reachable: %s", exc)
                return False
            return True

        reachable = await asyncio.to_thread(probe)
        self._probed = (now, reachable)
        return reachable
