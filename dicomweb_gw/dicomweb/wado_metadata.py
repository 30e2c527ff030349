"""WADO-RS metadata: DICOM JSON of every instance, with bulk data as URIs.

Series metadata is built once from the cached files and kept beside them, so
a warm request is a file read and one byte replacement: no PACS, no parsing.
BulkDataURIs are stored relative and made absolute per request, because the
client's base URL (proxies, ingress) is only known then.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from contextlib import aclosing

import anyio
import orjson

from dicomweb_gw.cache.protocol import CachedInstance
from dicomweb_gw.dicomweb.flights import Landed
from dicomweb_gw.dicomweb.metadata import instance_metadata
from dicomweb_gw.dicomweb.source import InstanceSource
from dicomweb_gw.errors import NotFound
from dicomweb_gw.model import RetrieveKeys
from dicomweb_gw.pacs.protocol import PacsClient

__all__ = ["MetadataService", "absolute_bulk_uris"]

_BULK_KEY = b'"BulkDataURI":"'


def absolute_bulk_uris(body: bytes, base_url: str) -> bytes:
    """Prefix every stored (relative) BulkDataURI with the client's base URL."""
    return body.replace(_BULK_KEY, _BULK_KEY + base_url.encode() + b"/")


class MetadataService:
    def __init__(self, source: InstanceSource, *, ttl: float, parse_threads: int = 2) -> None:
        self._source = source
        self._ttl = ttl
        self._limiter = anyio.CapacityLimiter(parse_threads)

    async def metadata(self, pacs: PacsClient, keys: RetrieveKeys) -> bytes:
        """A JSON array (bytes) with relative BulkDataURIs, for a study, series or instance."""
        store = self._source.store
        if keys.instance_uid is None and keys.series_uid is not None:
            cached = await anyio.to_thread.run_sync(store.get_metadata, keys.study_uid,
                                                    keys.series_uid, self._ttl)
            if cached is not None:
                return cached
        landed = await self._landed(pacs, keys)
        by_series: dict[str, list[Landed]] = defaultdict(list)
        for item in landed:
            by_series[item.series_uid].append(item)
        bodies = []
        for series_uid, items in by_series.items():
            body = None
            if keys.instance_uid is None:
                body = await anyio.to_thread.run_sync(store.get_metadata, keys.study_uid,
                                                      series_uid, self._ttl)
            if body is None:
                body = await self._build(items)
                # Only a whole series, entirely cached, is worth keeping.
                if keys.instance_uid is None and all(
                    isinstance(i.handle, CachedInstance) for i in items
                ):
                    await anyio.to_thread.run_sync(store.put_metadata, keys.study_uid,
                                                   series_uid, body)
            bodies.append(body[1:-1])
        return b"[" + b",".join(b for b in bodies if b) + b"]"

    async def _landed(self, pacs: PacsClient, keys: RetrieveKeys) -> list[Landed]:
        # A series' metadata is how a viewer opens a study: a miss prefetches the study.
        opening = keys.series_uid is not None and keys.instance_uid is None
        async with aclosing(self._source.instances(pacs, keys, prefetch=opening)) as landed:
            items = [item async for item in landed]
        if not items:
            raise NotFound(f"{keys.describe()} not found on PACS '{pacs.name}'")
        return items

    async def _build(self, items: Sequence[Landed]) -> bytes:
        async def one(item: Landed) -> bytes:
            handle = item.handle
            if not isinstance(handle, CachedInstance):
                raise NotFound(f"instance {item.sop_instance_uid} could not be cached "
                               "(cache full), so its metadata is not available")
            path = (f"studies/{item.study_uid}/series/{item.series_uid}"
                    f"/instances/{item.sop_instance_uid}")
            document = await anyio.to_thread.run_sync(instance_metadata, handle.path, path,
                                                      limiter=self._limiter)
            return orjson.dumps(document)

        parts = [await one(item) for item in items]
        return b"[" + b",".join(parts) + b"]"
