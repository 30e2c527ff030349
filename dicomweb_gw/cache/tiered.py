"""Two cache tiers: each replica's own disk (L1) over a blob store all replicas share (L2).

The local DiskInstanceStore stays where every file the gateway streams comes
from (it opens them by path); the shared store carries Part 10 files and
completeness manifests between replicas (layout: _shared_layout.py). An
instance another replica cached is downloaded into L1 on first use, so from
then on it costs this replica what its own cached instances cost.

Ordering makes what a replica reads consistent: ``put`` uploads each instance
before it returns (so before the retrieve goes on and, later, before
``mark_complete`` writes the manifest naming it). A manifest can still name
an object that is gone (an upload failed, a purge is under way): then the
study is not complete, as in the local cache.

The shared store is an accelerator, never a dependency: its failures are
logged, counted (``shared_errors``) and answered as misses, never raised.
After one, it is left alone for ``outage_backoff`` seconds, so an outage
costs one timeout, not one per request. Purges always try, since they keep
other replicas from serving a study that changed; one that fails leaves the
shared copy to expire with its manifest's age.

Series metadata stays local: the gateway shares it through Redis.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

from dicomweb_gw.cache._shared_layout import (
    INSTANCE_SUFFIX,
    Manifest,
    instance_key,
    manifest_key,
    segment,
    series_prefix,
)
from dicomweb_gw.cache.blobs import BlobStore, BlobStoreError
from dicomweb_gw.cache.disk import DiskInstanceStore
from dicomweb_gw.cache.protocol import CachedInstance, CacheStats, InvalidInstance
from dicomweb_gw.model import RetrievedInstance

__all__ = ["TieredInstanceStore"]

log = logging.getLogger(__name__)

#: A member of a completeness record: (SOP Instance UID, its key in the shared store).
_Member = tuple[str, str]


class TieredInstanceStore:
    """An InstanceStore: ``local`` (this replica's) in front of ``shared`` (every replica's).

    Counters, beyond ``stats()``: ``shared_hits`` (instances downloaded from the
    shared store), ``shared_errors`` (failed shared-store operations) and
    ``shared_skipped`` (operations skipped while backing off after a failure).
    ``stats()`` counts hits and misses of this store (a shared hit is a hit);
    sizes and evictions are the local cache's.
    """

    def __init__(self, local: DiskInstanceStore, shared: BlobStore, *,
                 clock: Callable[[], float] = time.time, outage_backoff: float = 10.0,
                 fetch_threads: int = 8) -> None:
        self.local = local
        self.shared = shared
        self._clock = clock  # wall clock: manifests' times are compared across replicas
        self._backoff = outage_backoff
        self._fetch_threads = max(1, fetch_threads)
        self._counters = threading.Lock()
        self._hits = self._misses = 0
        self.shared_hits = self.shared_errors = self.shared_skipped = 0
        self._quiet_until = 0.0  # time.monotonic() until which the shared store is left alone

    # -- the InstanceStore protocol --------------------------------------------------------

    def put(self, instance: RetrievedInstance) -> CachedInstance:
        cached = self.local.put(instance)
        if self._shared_usable():
            self._upload(cached)
        return cached

    def get(self, sop_instance_uid: str, *, study_uid: str | None = None,
            series_uid: str | None = None) -> CachedInstance | None:
        """As the protocol says; without ``study_uid`` the shared store is not asked
        (its keys start with the study)."""
        found = self.local.get(sop_instance_uid)
        if found is None and study_uid is not None and self._shared_usable():
            found = self._fetch_instance(study_uid, series_uid, sop_instance_uid)
        self._count(found is not None)
        return found

    def mark_complete(self, study_uid: str, series_uid: str | None,
                      sop_instance_uids: Collection[str]) -> None:
        now = self._clock()
        self.local.mark_complete(study_uid, series_uid, sop_instance_uids, completed_at=now)
        if not self._shared_usable():
            return
        if series_uid is None:
            cached = self.local.peek(sop_instance_uids)
            members = tuple((uid, cached[uid].series_uid if uid in cached else None)
                            for uid in sop_instance_uids)
        else:
            members = tuple((uid, series_uid) for uid in sop_instance_uids)
        manifest = Manifest(study_uid, series_uid, now, members)
        key = manifest_key(study_uid, series_uid)
        try:
            self.shared.put_bytes(key, manifest.encode())
        except BlobStoreError as exc:
            self._shared_failed(f"writing {key}", exc)

    def complete(self, study_uid: str, series_uid: str | None,
                 max_age: float) -> list[CachedInstance] | None:
        """As the protocol says; when the local cache cannot answer, a fresh manifest
        in the shared store can: its instances are downloaded into the local cache,
        which then answers (and keeps the manifest's time, not now)."""
        found = self.local.complete(study_uid, series_uid, max_age)
        if found is None and self._shared_usable():
            found = self._complete_from_shared(study_uid, series_uid, max_age)
        self._count(found is not None)
        return found

    def put_metadata(self, study_uid: str, series_uid: str, data: bytes) -> None:
        self.local.put_metadata(study_uid, series_uid, data)

    def get_metadata(self, study_uid: str, series_uid: str, max_age: float) -> bytes | None:
        return self.local.get_metadata(study_uid, series_uid, max_age)

    def purge(self, study_uid: str, series_uid: str | None = None) -> int:
        """As the protocol says, in both tiers; returns the larger of the two counts
        (an instance is normally in both, or only in the shared one)."""
        # Shared first: purging local first would let a request in between download
        # the old shared copy again.
        shared = self._purge_shared(study_uid, series_uid)
        return max(self.local.purge(study_uid, series_uid), shared)

    def stats(self) -> CacheStats:
        local = self.local.stats()
        with self._counters:
            return CacheStats(instances=local.instances, bytes=local.bytes, hits=self._hits,
                              misses=self._misses, evictions=local.evictions)

    def close(self) -> None:
        self.local.close()

    def __enter__(self) -> TieredInstanceStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # -- instances -------------------------------------------------------------------------

    def _upload(self, cached: CachedInstance) -> None:
        key = instance_key(cached.study_uid, cached.series_uid, cached.sop_instance_uid)
        try:
            self.shared.put_file(key, cached.path)
        except BlobStoreError as exc:
            self._shared_failed(f"uploading {key}", exc)
        except OSError as exc:
            # The local file went (evicted or replaced already): nothing to share.
            log.warning("instance %s not shared: its cached file is gone (%s)",
                        cached.sop_instance_uid, exc)

    def _fetch_instance(self, study_uid: str, series_uid: str | None,
                        sop_instance_uid: str) -> CachedInstance | None:
        if series_uid is not None:
            key: str | None = instance_key(study_uid, series_uid, sop_instance_uid)
        else:
            key = self._locate(study_uid, [sop_instance_uid]).get(sop_instance_uid)
        return None if key is None else self._download(key, sop_instance_uid)

    def _locate(self, study_uid: str, sop_instance_uids: Sequence[str]) -> dict[str, str]:
        """The shared keys of those of the study's instances that are there, whatever
        their series (one listing of the study)."""
        try:
            keys = self.shared.list_prefix(segment(study_uid))
        except BlobStoreError as exc:
            self._shared_failed(f"listing study {study_uid}", exc)
            return {}
        by_name = {key.rsplit("/", 1)[-1]: key for key in keys
                   if key.count("/") == 2 and key.endswith(INSTANCE_SUFFIX)}
        found = {uid: by_name.get(f"{segment(uid)}{INSTANCE_SUFFIX}")
                 for uid in sop_instance_uids}
        return {uid: key for uid, key in found.items() if key is not None}

    def _download(self, key: str, sop_instance_uid: str) -> CachedInstance | None:
        """The shared object at ``key``, downloaded into the local cache; None if it is
        not there or cannot be cached (a warning says why)."""
        staging = self.local.staging_path(sop_instance_uid)
        try:
            if not self.shared.get_file(key, staging):
                return None
        except BlobStoreError as exc:
            self._shared_failed(f"downloading {key}", exc)
            return None
        except OSError as exc:  # the local side: a full disk, say
            log.warning("cannot download shared instance %s into the local cache: %s", key, exc)
            return None
        try:
            cached = self.local.adopt(staging)  # deletes the file if it cannot take it
        except (InvalidInstance, OSError) as exc:  # OSError includes CacheFull
            log.warning("shared instance %s not cached locally: %s", key, exc)
            return None
        with self._counters:
            self.shared_hits += 1
        if cached.sop_instance_uid != sop_instance_uid:
            log.warning("shared object %s holds instance %s instead", key,
                        cached.sop_instance_uid)
            return None
        return cached

    # -- completeness ----------------------------------------------------------------------

    def _complete_from_shared(self, study_uid: str, series_uid: str | None,
                              max_age: float) -> list[CachedInstance] | None:
        since = self._clock() - max_age
        # For a series, the study's manifest answers too (as in the local cache).
        candidates: list[str | None] = [None] if series_uid is None else [series_uid, None]
        manifests = []
        for candidate in candidates:
            manifest = self._read_manifest(study_uid, candidate)
            if manifest is not None and manifest.completed_at > since:
                manifests.append(manifest)
        for manifest in sorted(manifests, key=lambda m: m.completed_at, reverse=True):
            if not self._shared_usable():
                return None  # it failed meanwhile
            members = self._members(manifest, series_uid)
            if members is None or not self._hydrate(members):
                continue
            self.local.mark_complete(study_uid, series_uid, [uid for uid, _ in members],
                                     completed_at=manifest.completed_at)
            return self.local.complete(study_uid, series_uid, max_age)
        return None

    def _read_manifest(self, study_uid: str, series_uid: str | None) -> Manifest | None:
        key = manifest_key(study_uid, series_uid)
        try:
            data = self.shared.get_bytes(key)
        except BlobStoreError as exc:
            self._shared_failed(f"reading {key}", exc)
            return None
        if data is None:
            return None
        try:
            manifest = Manifest.decode(data)
        except ValueError as exc:
            log.warning("ignoring shared manifest %s: %s", key, exc)
            return None
        if (manifest.study_uid, manifest.series_uid) != (study_uid, series_uid):
            log.warning("ignoring shared manifest %s: it is for %s/%s", key,
                        manifest.study_uid, manifest.series_uid)
            return None
        return manifest

    def _members(self, manifest: Manifest, series_uid: str | None) -> list[_Member] | None:
        """The manifest's instances (of ``series_uid`` only, if given) with their keys;
        None if one of unknown series is not in the shared store, or none is left."""
        unknown = [uid for uid, series in manifest.members if series is None]
        located = self._locate(manifest.study_uid, unknown) if unknown else {}
        members: list[_Member] = []
        for uid, series in manifest.members:
            if series is not None:
                key = instance_key(manifest.study_uid, series, uid)
            elif uid in located:
                key = located[uid]
            else:
                return None
            members.append((uid, key))
        if series_uid is not None and manifest.series_uid is None:
            wanted = series_prefix(manifest.study_uid, series_uid) + "/"
            members = [member for member in members if member[1].startswith(wanted)]
        return members or None

    def _hydrate(self, members: Sequence[_Member]) -> bool:
        """Download the members the local cache lacks; False if one could not be."""
        cached = self.local.peek([uid for uid, _ in members])
        missing = [member for member in members if member[0] not in cached]
        failed = threading.Event()

        def fetch(member: _Member) -> None:
            # Once one is missing the study is not complete: skip the rest.
            if not failed.is_set() and self._download(member[1], member[0]) is None:
                failed.set()

        if len(missing) == 1:
            fetch(missing[0])
        elif missing:
            with ThreadPoolExecutor(min(self._fetch_threads, len(missing)),
                                    thread_name_prefix="shared-cache-fetch") as pool:
                list(pool.map(fetch, missing))
        return not failed.is_set()

    # -- purge -----------------------------------------------------------------------------

    def _purge_shared(self, study_uid: str, series_uid: str | None) -> int:
        prefix = series_prefix(study_uid, series_uid)
        try:
            if series_uid is not None:
                # The study's manifest no longer holds (as in the local cache); the
                # series' own goes with its prefix.
                self.shared.delete(manifest_key(study_uid, None))
            instances = sum(key.endswith(INSTANCE_SUFFIX)
                            for key in self.shared.list_prefix(prefix))
            self.shared.delete_prefix(prefix)
        except BlobStoreError as exc:
            self._shared_failed(f"purging {prefix}", exc)
            return 0
        return instances

    # -- counting and backing off ----------------------------------------------------------

    def _count(self, hit: bool) -> None:
        with self._counters:
            if hit:
                self._hits += 1
            else:
                self._misses += 1

    def _shared_usable(self) -> bool:
        with self._counters:
            if time.monotonic() < self._quiet_until:
                self.shared_skipped += 1
                return False
            return True

    def _shared_failed(self, what: str, exc: BlobStoreError) -> None:
        with self._counters:
            self.shared_errors += 1
            self._quiet_until = time.monotonic() + self._backoff
        log.warning("shared cache store: %s failed%s: %s", what,
                    f" (not using the store for {self._backoff:g} s)"
                    if self._backoff > 0 else "", exc)
