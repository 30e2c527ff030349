"""The embedded instance cache: Part 10 files on local disk, indexed in SQLite.

Crash safety rests on one ordering rule: **a file name is made visible only
after its index row is gone, and a row is added only after its file is in
place.** Writing an instance is: write and fsync a temp file; (if replacing)
commit the old row's deletion; rename the temp file into place; commit the new
row. Evicting is: commit the deletion, then unlink. So a crash at any point
leaves at worst temp files and files without rows, and ``reconcile``
(_recovery.py) deletes both on the next open. It also drops rows whose file is
missing or has the wrong size, which only a power loss (losing the last
commits or renames) or an outside hand can cause for an instance.

Series metadata (an extra) bends the rule: a replacement is renamed over the
old file before its row is updated, so a crash in between leaves a row that
describes the old file. Reconcile drops row and file if the sizes differ; if
not, the new data keeps the old row's time and only expires sooner.

One process owns a cache directory (an advisory lock enforces it, see
_recovery.py): reconcile would otherwise delete another process's temp files.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from types import TracebackType

from dicomweb_gw.cache import _files
from dicomweb_gw.cache._files import (
    NO_SPACE,
    TEMP_PREFIX,
    Header,
    Layout,
    header_of,
    read_header,
    unlink_quietly,
)
from dicomweb_gw.cache._index import STUDY, InstanceRow
from dicomweb_gw.cache._recovery import CacheInUse, lock_directory, open_index, reconcile
from dicomweb_gw.cache.blobs import COPY_CHUNK
from dicomweb_gw.cache.protocol import CachedInstance, CacheFull, CacheStats, InvalidInstance
from dicomweb_gw.codecs.part10 import part10_chunks
from dicomweb_gw.model import RetrievedInstance

__all__ = ["CacheInUse", "DiskInstanceStore"]

log = logging.getLogger(__name__)



class DiskInstanceStore:
    """An InstanceStore on local disk (see the module docstring for the crash-safety rule).

    ``clock`` gives the wall-clock time of completeness records and metadata
    (ages survive restarts); tests replace it.
    """

    def __init__(self, root: Path, max_bytes: int, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._layout = Layout(Path(root))
        self._layout.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock_directory(self._layout.lock)
        try:
            self._index = open_index(self._layout.index)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._lock = threading.Lock()
        self._closed = False
        self._max_bytes = max_bytes
        self._clock = clock
        self._hits = self._misses = self._evictions = 0
        try:
            with self._lock:
                reconcile(self._layout, self._index)
                self._count, self._bytes, self._tick = self._index.totals()
                self._evict(self._max_bytes, exclude=None)
        except BaseException:
            self.close()
            raise

    # -- the InstanceStore protocol --------------------------------------------------------

    def put(self, instance: RetrievedInstance) -> CachedInstance:
        uid = instance.sop_instance_uid
        chunks = part10_chunks(instance)
        size = sum(len(chunk) for chunk in chunks)
        if size > self._max_bytes:
            raise CacheFull(errno.EFBIG, f"instance {uid} ({size} bytes) is larger than the "
                                         f"whole cache ({self._max_bytes} bytes)")
        final = self._layout.instance_path(uid)
        temp = self._write(final.parent, chunks, size, uid)
        try:
            # Parsed before the rename: a data set we cannot file is never visible.
            header = header_of(instance) or read_header(temp)
        except BaseException:
            unlink_quietly(temp)
            raise
        return self._install(temp, final, uid, header, instance.sop_class_uid,
                             instance.transfer_syntax_uid, size)

    def get(self, sop_instance_uid: str, *, study_uid: str | None = None,
            series_uid: str | None = None) -> CachedInstance | None:
        """As the protocol says; the hints only help shared tiers and are ignored here."""
        with self._lock:
            row = self._index.instance(sop_instance_uid)
            if row is None or not self._present(row):
                self._misses += 1
                return None
            self._touch([row])
            self._hits += 1
            return self._cached(row)

    def mark_complete(self, study_uid: str, series_uid: str | None,
                      sop_instance_uids: Collection[str], *,
                      completed_at: float | None = None) -> None:
        """As the protocol says. ``completed_at`` (default: now) lets a record copied
        from a shared tier keep its original time, so it does not outlive it."""
        with self._lock:
            when = self._clock() if completed_at is None else completed_at
            self._index.mark_complete(study_uid, series_uid, list(sop_instance_uids), when)

    def complete(self, study_uid: str, series_uid: str | None,
                 max_age: float) -> list[CachedInstance] | None:
        with self._lock:
            since = self._clock() - max_age
            for record_id, record_series in self._index.records(study_uid, series_uid, since):
                covering = series_uid is not None and record_series == STUDY
                members = self._index.record_members(record_id,
                                                     series_uid if covering else None)
                rows = [row for row in members if row is not None]
                if len(rows) < len(members):
                    continue  # a member is not cached (any more)
                if covering:
                    rows = [row for row in rows if row.series_uid == series_uid]
                    if not rows:
                        continue  # the series was not part of the study when it was recorded
                if not all([self._present(row) for row in rows]):
                    # Forgetting the vanished files also dropped the records holding them.
                    break
                self._touch(rows)
                self._hits += 1
                return [self._cached(row) for row in rows]
            self._misses += 1
            return None

    def put_metadata(self, study_uid: str, series_uid: str, data: bytes) -> None:
        """As the protocol says; a full disk is logged, not raised (metadata is an extra)."""
        path = self._layout.metadata_path(study_uid, series_uid)
        try:
            temp = _files.write_temp(path.parent, (data,))
        except OSError as exc:
            if exc.errno not in NO_SPACE:
                raise
            log.warning("cache full, series metadata of %s not cached: %s", series_uid, exc)
            return
        with self._lock:
            try:
                os.replace(temp, path)
            except BaseException:
                unlink_quietly(temp)
                raise
            self._index.put_metadata(study_uid, series_uid, len(data), self._clock())

    def get_metadata(self, study_uid: str, series_uid: str, max_age: float) -> bytes | None:
        with self._lock:
            stored_at = self._index.metadata_stored_at(study_uid, series_uid)
            if stored_at is None or stored_at <= self._clock() - max_age:
                return None
        try:
            # Read outside the lock: a concurrent replacement is an atomic rename.
            return self._layout.metadata_path(study_uid, series_uid).read_bytes()
        except FileNotFoundError:
            return None

    def purge(self, study_uid: str, series_uid: str | None = None) -> int:
        with self._lock:
            rows, metadata = self._index.purge(study_uid, series_uid)
            self._unlink(rows, metadata)
            self._discount(rows)
            return len(rows)

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(instances=self._count, bytes=self._bytes, hits=self._hits,
                              misses=self._misses, evictions=self._evictions)

    def largest_studies(self, limit: int = 10) -> list[tuple[str, int, int]]:
        """(study UID, bytes, instances) of the largest studies cached, largest first
        (for the status page). Without the store's lock: a scan of the whole index
        on a connection of its own (``_index.Counts``)."""
        return self._index.counts.largest_studies(limit)

    def study_count(self) -> int:
        """How many studies have instances cached (as ``largest_studies``, lock-free)."""
        return self._index.counts.study_count()

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._index.close()
            os.close(self._lock_fd)

    def __enter__(self) -> DiskInstanceStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # -- beyond the protocol: filling the cache from a shared tier (tiered.py) -------------

    def staging_path(self, sop_instance_uid: str) -> Path:
        """A fresh temp-file name where the instance will live. A file written there
        is adopted by a rename, and one a crash leaves behind is deleted by reconcile."""
        directory = self._layout.instance_path(sop_instance_uid).parent
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}.part"

    def adopt(self, path: Path) -> CachedInstance:
        """Cache a complete, fsynced Part 10 file, replacing any with its SOP Instance UID.

        The store takes the file over: it is renamed into place (copied if it is on
        another file system), or deleted when it cannot be cached. What the instance
        is (SOP Instance/Class UID, transfer syntax) comes from its File Meta
        Information. Raises ``CacheFull`` and ``InvalidInstance`` like ``put``.
        """
        try:
            size = path.stat().st_size
            header = read_header(path)
            uid = header.sop_instance_uid
            if not (uid and header.sop_class_uid and header.transfer_syntax_uid):
                raise InvalidInstance("the file meta lacks the SOP Instance UID, SOP Class "
                                      "UID or transfer syntax")
            if size > self._max_bytes:
                raise CacheFull(errno.EFBIG, f"instance {uid} ({size} bytes) is larger than "
                                             f"the whole cache ({self._max_bytes} bytes)")
            final = self._layout.instance_path(uid)
            if path.parent != final.parent:
                path = _move_into(path, final.parent)
        except BaseException:
            unlink_quietly(path)
            raise
        return self._install(path, final, uid, header, header.sop_class_uid,
                             header.transfer_syntax_uid, size)

    def peek(self, sop_instance_uids: Iterable[str]) -> dict[str, CachedInstance]:
        """Which of the instances are cached, by SOP Instance UID, without marking them
        used or counting hits and misses (a tier above asks this to decide what to fetch)."""
        with self._lock:
            found: dict[str, CachedInstance] = {}
            for uid in sop_instance_uids:
                row = self._index.instance(uid)
                if row is not None and self._present(row):
                    found[uid] = self._cached(row)
            return found

    # -- internals (called with self._lock held, except _write and _install) ---------------

    def _write(self, directory: Path, chunks: Sequence[bytes], size: int, uid: str) -> Path:
        """A temp file with the chunks; on a full disk, evict ``size`` bytes and retry once."""
        try:
            return _files.write_temp(directory, chunks)
        except OSError as exc:
            if exc.errno not in NO_SPACE:
                raise
            first = exc
        with self._lock:
            freed = self._evict(self._bytes - size, exclude=None)
        if not freed:
            raise CacheFull(errno.ENOSPC, f"no space left for instance {uid} and nothing "
                                          "to evict") from first
        try:
            return _files.write_temp(directory, chunks)
        except OSError as exc:
            if exc.errno not in NO_SPACE:
                raise
            raise CacheFull(errno.ENOSPC, f"no space left for instance {uid} "
                                          f"after evicting {freed} bytes") from exc

    def _install(self, temp: Path, final: Path, uid: str, header: Header, sop_class_uid: str,
                 transfer_syntax_uid: str, size: int) -> CachedInstance:
        """Rename a complete temp file (in ``final``'s directory) into place and index it."""
        with self._lock:
            old = self._index.instance(uid)
            try:
                if old is not None:
                    # The old row goes first (the rename would make it lie), keeping the
                    # file (renamed over) and the completeness records (same UID).
                    self._forget([old], keep_records=True, keep_files=True)
                os.replace(temp, final)
            except BaseException:
                unlink_quietly(temp)
                raise
            self._tick += 1
            row = InstanceRow(uid, header.study_uid, header.series_uid, sop_class_uid,
                              transfer_syntax_uid, header.series_number,
                              header.instance_number, size, self._tick, self._tick)
            try:
                metadata = self._index.insert(row)
            except sqlite3.Error as exc:
                unlink_quietly(final)
                if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                    raise CacheFull(errno.ENOSPC, f"no space for the index: {exc}") from exc
                raise
            self._unlink([], metadata)
            self._count += 1
            self._bytes += size
            self._evict(self._max_bytes, exclude=uid)
            return self._cached(row)

    def _evict(self, budget: int, exclude: str | None) -> int:
        """Evict least recently used instances until at most ``budget`` bytes are cached."""
        excess = self._bytes - budget
        if excess <= 0:
            return 0
        victims = self._index.least_recently_used(excess, exclude)
        if victims:
            self._forget(victims)
            self._evictions += len(victims)
        return sum(row.size for row in victims)

    def _present(self, row: InstanceRow) -> bool:
        """Whether the row's file is there; forgets the row if not."""
        try:
            size = self._layout.instance_path(row.sop_instance_uid).stat().st_size
        except FileNotFoundError:
            size = -1
        if size == row.size:
            return True
        log.warning("cached instance %s vanished or changed on disk; forgetting it",
                    row.sop_instance_uid)
        self._forget([row])
        return False

    def _forget(self, rows: Sequence[InstanceRow], *, keep_records: bool = False,
                keep_files: bool = False) -> None:
        metadata = self._index.forget_instances(rows, keep_records=keep_records)
        self._unlink([] if keep_files else rows, metadata)
        self._discount(rows)

    def _discount(self, rows: Sequence[InstanceRow]) -> None:
        """Take rows the index no longer has out of the running totals."""
        self._count -= len(rows)
        self._bytes -= sum(row.size for row in rows)

    def _unlink(self, rows: Sequence[InstanceRow], metadata: Sequence[tuple[str, str]]) -> None:
        # Rows are committed away first: a crash before these unlinks leaves orphans only.
        for row in rows:
            unlink_quietly(self._layout.instance_path(row.sop_instance_uid))
        for key in metadata:
            unlink_quietly(self._layout.metadata_path(*key))

    def _touch(self, rows: Sequence[InstanceRow]) -> None:
        self._tick += 1
        self._index.touch([row.sop_instance_uid for row in rows], self._tick)

    def _cached(self, row: InstanceRow) -> CachedInstance:
        return CachedInstance(row.study_uid, row.series_uid, row.sop_instance_uid,
                              row.sop_class_uid, row.transfer_syntax_uid,
                              self._layout.instance_path(row.sop_instance_uid), row.size)


def _move_into(path: Path, directory: Path) -> Path:
    """``path`` moved to a temp name in ``directory``: renamed, or copied across file systems."""
    moved = directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}.part"
    directory.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(path, moved)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        with path.open("rb") as source:
            moved = _files.write_temp(directory, iter(lambda: source.read(COPY_CHUNK), b""))
        unlink_quietly(path)
    return moved
