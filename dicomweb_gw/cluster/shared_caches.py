"""Series metadata and QIDO results shared by every replica through Redis, with TTLs.

Building a series' metadata costs a parse of every instance; a QIDO search
costs a C-FIND. With several replicas each would pay that once per replica;
through Redis they pay it once per cluster. Redis failing means a miss (and
a write that did not happen), never an error.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Collection

import orjson

from dicomweb_gw.cache.protocol import CachedInstance, CacheStats, InstanceStore
from dicomweb_gw.cluster.link import KEY_PREFIX, RedisLink, text
from dicomweb_gw.dicomweb.qido import QidoResult, QidoService
from dicomweb_gw.dicomweb.query import QidoQuery
from dicomweb_gw.model import RetrievedInstance
from dicomweb_gw.pacs.protocol import PacsClient

__all__ = ["MetadataSharingStore", "SharedQidoService"]

_STAMP = struct.Struct("!d")  # when the value was stored: answers get_metadata's max_age
#: Stands for the request's base URL in shared QIDO answers (never in DICOM text:
#: NUL is not allowed in any string VR).
_BASE_URL = b"\\u0000base-url\\u0000"


class MetadataSharingStore:
    """An ``InstanceStore`` whose series metadata is also kept in Redis.

    Everything else goes to the wrapped store. Purging a study or series also
    forgets its shared metadata and makes every replica's cached QIDO
    answers for the node stale (a STOW purges, so new instances show at once).
    """

    def __init__(self, store: InstanceStore, link: RedisLink, *, node: str, ttl: float) -> None:
        self._store = store
        self._link = link
        self._node = node
        self._ttl_ms = max(1000, int(ttl * 1000))

    def get_metadata(self, study_uid: str, series_uid: str, max_age: float) -> bytes | None:
        local = self._store.get_metadata(study_uid, series_uid, max_age)
        if local is not None:
            return local
        value = self._link.call_sync(
            lambda: self._link.sync.hget(self._key(study_uid), series_uid), "metadata cache")
        if not isinstance(value, bytes) or len(value) < _STAMP.size:
            return None
        (stored,) = _STAMP.unpack_from(value)
        if time.time() - stored > max_age:
            return None
        data = value[_STAMP.size:]
        self._store.put_metadata(study_uid, series_uid, data)  # next time from local disk
        return data

    def put_metadata(self, study_uid: str, series_uid: str, data: bytes) -> None:
        self._store.put_metadata(study_uid, series_uid, data)

        def share() -> None:
            key = self._key(study_uid)
            with self._link.sync.pipeline(transaction=False) as pipe:
                pipe.hset(key, series_uid, _STAMP.pack(time.time()) + data)
                pipe.pexpire(key, self._ttl_ms)  # the study's: each entry has its own stamp
                pipe.execute()

        self._link.call_sync(share, "metadata cache")

    def purge(self, study_uid: str, series_uid: str | None = None) -> int:
        count = self._store.purge(study_uid, series_uid)

        def forget() -> None:
            with self._link.sync.pipeline(transaction=False) as pipe:
                if series_uid is None:
                    pipe.delete(self._key(study_uid))
                else:
                    pipe.hdel(self._key(study_uid), series_uid)
                pipe.incr(qido_generation_key(self._node))
                pipe.execute()

        self._link.call_sync(forget, "metadata cache purge")
        return count

    def _key(self, study_uid: str) -> str:
        # One hash per study, a field per series: a purge (every STOW) deletes one key
        # instead of scanning the keyspace for the study's series.
        return f"{KEY_PREFIX}metadata:{self._node}:{study_uid}"

    # -- the rest is the wrapped store's ------------------------------------
    def put(self, instance: RetrievedInstance) -> CachedInstance:
        return self._store.put(instance)

    def get(self, sop_instance_uid: str, *, study_uid: str | None = None,
            series_uid: str | None = None) -> CachedInstance | None:
        return self._store.get(sop_instance_uid, study_uid=study_uid, series_uid=series_uid)

    def mark_complete(self, study_uid: str, series_uid: str | None,
                      sop_instance_uids: Collection[str]) -> None:
        self._store.mark_complete(study_uid, series_uid, sop_instance_uids)

    def complete(self, study_uid: str, series_uid: str | None,
                 max_age: float) -> list[CachedInstance] | None:
        return self._store.complete(study_uid, series_uid, max_age)

    def stats(self) -> CacheStats:
        return self._store.stats()

    def close(self) -> None:
        self._store.close()


class SharedQidoService(QidoService):
    """QIDO answers cached in Redis for ``ttl`` seconds, per node and query.

    The key includes the node's generation, which every purge (and so every
    STOW) increments: stale answers are never read again, and expire.
    """

    def __init__(self, *, max_results: int, link: RedisLink, ttl: float) -> None:
        super().__init__(max_results=max_results)
        self._link = link
        self._ttl_ms = max(1000, int(ttl * 1000))

    async def search(self, pacs: PacsClient, query: QidoQuery, *, base_url: str,
                     fresh: bool = False) -> QidoResult:
        """A cached answer unless ``fresh`` (``Cache-Control: no-cache``, PS3.18: "search
        results returned should be current and not cached"); a fresh answer is cached."""
        generation_key = qido_generation_key(pacs.name)
        generation = await self._link.call(lambda: self._link.aio.get(generation_key),
                                           "QIDO cache")
        key = _qido_key(pacs.name, text(generation), query)
        # Answers name the base URL the client used (RetrieveURL); replicas behind
        # different addresses share them with a placeholder in its place.
        base = base_url.encode()
        cached = None if fresh else await self._link.call(lambda: self._link.aio.get(key),
                                                          "QIDO cache")
        if isinstance(cached, bytes):
            stored = orjson.loads(cached.replace(_BASE_URL, base))
            return QidoResult(items=stored["items"], warnings=stored["warnings"])
        result = await super().search(pacs, query, base_url=base_url)
        if self._link.healthy:
            value = orjson.dumps({"items": result.items, "warnings": result.warnings})
            value = value.replace(base, _BASE_URL)
            await self._link.call(lambda: self._link.aio.set(key, value, px=self._ttl_ms),
                                  "QIDO cache")
        return result


def qido_generation_key(node: str) -> str:
    return f"{KEY_PREFIX}qido-generation:{node}"


def _qido_key(node: str, generation: str | None, query: QidoQuery) -> str:
    # The scope (parent UIDs in the path) decides which parent attributes an answer holds.
    described = repr((query.level.value, sorted(query.match.items()), query.include_all,
                      query.include, query.limit, query.offset, query.fuzzy,
                      sorted(level.value for level in query.scope)))
    digest = hashlib.sha256(described.encode()).hexdigest()[:32]
    return f"{KEY_PREFIX}qido:{node}:{generation or '0'}:{digest}"
