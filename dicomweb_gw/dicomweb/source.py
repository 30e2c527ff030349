"""Where instances come from: the cache when it can answer alone, else the PACS.

Every instance retrieved from the PACS goes into the cache first and is then
served from there, so a warm request never touches the PACS and a crash
never serves half an instance.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from io import BytesIO

import anyio
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicomweb_gw.cache.protocol import CachedInstance, CacheFull, InstanceStore, InvalidInstance
from dicomweb_gw.codecs.part10 import part10_chunks
from dicomweb_gw.dicomweb.flights import (
    FlightCoordinator,
    FlightTable,
    Landed,
    Producer,
    flying,
)
from dicomweb_gw.dicomweb.prefetch import Prefetcher
from dicomweb_gw.errors import NotFound, PacsError, PacsFailure
from dicomweb_gw.model import MemoryInstance, RetrievedInstance, RetrieveKeys, RetrieveReport
from dicomweb_gw.pacs.protocol import PacsClient

__all__ = ["InstanceSource", "MemoryInstance"]

log = logging.getLogger(__name__)


class InstanceSource:
    def __init__(self, store: Callable[[], InstanceStore], *, ttl: float,
                 cluster: FlightCoordinator | None = None, prefetch: bool = False,
                 on_prefetch: Callable[[str, str], None] | None = None) -> None:
        # A factory: the store is opened (and reopened after a restart of the
        # app's lifespan) by the composition root, not when services are built.
        self._open_store = store
        self._ttl = ttl
        self.flights = FlightTable()
        #: With several replicas: one retrieve per object cluster-wide, not per replica.
        self._cluster = cluster
        #: Whole studies retrieved ahead of a viewer's series requests (each node's
        #: ``prefetch`` setting still decides); None: never.
        self.prefetch = (Prefetcher(self.flights, self.producer, store, ttl=ttl,
                                    on_outcome=on_prefetch) if prefetch else None)

    @property
    def store(self) -> InstanceStore:
        return self._open_store()

    async def instances(self, pacs: PacsClient, keys: RetrieveKeys, *,
                        prefetch: bool = False) -> AsyncGenerator[Landed, None]:
        """Every instance under ``keys``, as soon as each is available.

        Only instances whose own Study and Series Instance UIDs are those
        ``keys`` name come out of here (``RetrieveKeys.covers``): a cached
        instance is checked in ``_cached``, a completeness record lists only
        instances filed under its keys, and the flight join checks every
        instance a retrieve (or another replica) brings.

        ``prefetch``: a viewer is opening the study (a series' metadata), so a
        miss retrieves the whole study in the background and waits on that.
        """
        cached = await self._cached(keys)
        if cached is not None:
            for instance in cached:
                yield _landed(instance)
            return

        prefetcher = self.prefetch
        if prefetcher is not None:
            # First what this request needs (other studies' idle prefetches give way),
            # then perhaps a prefetch of its own study, which it then joins.
            prefetcher.waiting(pacs.name, keys)
            if prefetch:
                await prefetcher.start(pacs, keys.study_uid, cold=True)
        delivered = False
        try:
            async with aclosing(self.flights.join(pacs.name, keys,
                                                  self.producer(pacs))) as landed:
                async for item in landed:
                    delivered = True
                    yield item
        except PacsFailure:
            # Orthanc answers a retrieve of an unknown UID with 0xC000: find out
            # whether the object exists before calling it a PACS failure.
            if not delivered and not await exists(pacs, keys):
                raise NotFound(f"{keys.describe()} not found on PACS '{pacs.name}'") from None
            raise
        finally:
            if prefetcher is not None:
                prefetcher.seen(pacs.name, keys.study_uid)  # its idle time counts from now

    def producer(self, pacs: PacsClient) -> Producer:
        """A flight's retrieve from ``pacs``: each instance into the cache as it lands,
        the keys recorded complete if the PACS says they are; with several replicas,
        run once cluster-wide."""

        async def produce(flight_keys: RetrieveKeys) -> AsyncGenerator[Landed, None]:
            report = RetrieveReport()
            if (flight := flying()) is not None:
                flight.progress = report  # the status page's "expected"
            landed: list[Landed] = []
            async with aclosing(pacs.retrieve(flight_keys, report=report)) as retrieved:
                async for instance in retrieved:
                    item = await anyio.to_thread.run_sync(self._keep, instance)
                    landed.append(item)
                    yield item
            await self._record_complete(flight_keys, report, landed)

        if self._cluster is not None:
            return self._cluster.producer(pacs.name, produce, self._fetch)
        return produce

    async def _record_complete(self, keys: RetrieveKeys, report: RetrieveReport,
                               landed: list[Landed]) -> None:
        """Remember a study or series as complete, only if it certainly is.

        Complete means the PACS ended with Success, counted as many instances as
        arrived, and every one is in the cache under these keys. Anything less
        (an empty answer for a study still arriving from the modality, a count
        that does not add up) is left partial, so the next request asks again.
        """
        if keys.instance_uid is not None:
            return
        if not report.complete:
            log.info("retrieve of %s not recorded as complete (%d received, %s reported)",
                     keys.describe(), report.received,
                     "none" if report.reported is None else report.reported)
            return
        if not all(isinstance(item.handle, CachedInstance)
                   and keys.covers(item.study_uid, item.series_uid, item.sop_instance_uid)
                   for item in landed):
            return
        await anyio.to_thread.run_sync(
            self.store.mark_complete, keys.study_uid, keys.series_uid,
            [item.sop_instance_uid for item in landed])

    async def _cached(self, keys: RetrieveKeys) -> list[CachedInstance] | None:
        if keys.instance_uid is not None:
            hit = await self._get(keys.instance_uid, keys.study_uid, keys.series_uid)
            if hit is None or not keys.covers(hit.study_uid, hit.series_uid,
                                              hit.sop_instance_uid):
                return None
            return [hit]
        return await anyio.to_thread.run_sync(
            self.store.complete, keys.study_uid, keys.series_uid, self._ttl)

    async def _get(self, sop_uid: str, study_uid: str,
                   series_uid: str | None) -> CachedInstance | None:
        # The UIDs above it let a shared store find an instance other replicas cached.
        def get() -> CachedInstance | None:
            return self.store.get(sop_uid, study_uid=study_uid, series_uid=series_uid)

        return await anyio.to_thread.run_sync(get)

    async def _fetch(self, study_uid: str, series_uid: str, sop_uid: str) -> Landed | None:
        """An instance another replica retrieved, from the shared store."""
        found = await self._get(sop_uid, study_uid, series_uid)
        return None if found is None else _landed(found)

    def _keep(self, instance: RetrievedInstance) -> Landed:
        """Put a retrieved instance into the cache (worker thread)."""
        try:
            return _landed(self.store.put(instance))
        except (CacheFull, InvalidInstance) as exc:
            log.warning("serving %s without caching it: %s", instance.sop_instance_uid, exc)
            header = dcmread(BytesIO(b"".join(part10_chunks(instance))), stop_before_pixels=True,
                             specific_tags=["StudyInstanceUID", "SeriesInstanceUID"])
            return Landed(str(header.get("StudyInstanceUID", "")),
                          str(header.get("SeriesInstanceUID", "")),
                          instance.sop_instance_uid, MemoryInstance(instance))


async def exists(pacs: PacsClient, keys: RetrieveKeys) -> bool:
    query = Dataset()
    query.StudyInstanceUID = keys.study_uid
    if keys.series_uid is not None:
        query.SeriesInstanceUID = keys.series_uid
    if keys.instance_uid is not None:
        query.SOPInstanceUID = keys.instance_uid
    try:
        async with aclosing(pacs.find(keys.level, query)) as found:
            async for _ in found:
                return True
    except PacsError:
        return True  # cannot tell: report the original failure
    return False


def _landed(instance: CachedInstance) -> Landed:
    return Landed(instance.study_uid, instance.series_uid, instance.sop_instance_uid, instance)
