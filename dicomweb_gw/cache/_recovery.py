"""Opening a cache directory: take it, open its index, repair what a crash left.

See disk.py for the ordering rule that makes every crash leftover one of the
kinds ``reconcile`` handles.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
from pathlib import Path

from dicomweb_gw.cache._files import Layout, scan, unlink_quietly
from dicomweb_gw.cache._index import Index

__all__ = ["CacheInUse", "lock_directory", "open_index", "reconcile"]

log = logging.getLogger("dicomweb_gw.cache.disk")


class CacheInUse(RuntimeError):
    """Another DiskInstanceStore (in this or another process) has the directory open."""


def lock_directory(path: Path) -> int:
    """An exclusive advisory lock on ``path``, held until the returned fd is closed
    (the kernel drops it when the process dies, however it dies)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CacheInUse(f"cache directory {path.parent} is in use by another store") from None
    return fd


def open_index(path: Path) -> Index:
    try:
        return Index(path)
    except sqlite3.DatabaseError as exc:
        # A damaged index only costs the cache: start afresh (reconcile drops the files).
        log.warning("cache index %s is unreadable (%s); starting with an empty cache", path, exc)
        for suffix in ("", "-wal", "-shm"):
            unlink_quietly(path.with_name(path.name + suffix))
        return Index(path)


def reconcile(layout: Layout, index: Index) -> None:
    """Make disk and index agree: delete temp files and files the index does not
    know (or knows with another size); forget rows whose file is missing."""
    rows = {layout.instance_path(r.sop_instance_uid): r for r in index.all_instances()}
    found = scan(layout.instances)
    lost = [row for path, row in rows.items() if found.files.get(path) != row.size]
    if lost:
        index.forget_instances(lost)
    orphans = [path for path, size in found.files.items()
               if path not in rows or rows[path].size != size]
    # Metadata after instances: forgetting an instance forgets its series' metadata.
    metadata = {layout.metadata_path(*key): (key, size) for key, size in index.all_metadata()}
    found_metadata = scan(layout.metadata)
    lost_metadata = [key for path, (key, size) in metadata.items()
                     if found_metadata.files.get(path) != size]
    if lost_metadata:
        index.forget_metadata(lost_metadata)
    orphans += [path for path, size in found_metadata.files.items()
                if path not in metadata or metadata[path][1] != size]
    temps = [*found.temps, *found_metadata.temps]
    for path in [*temps, *orphans]:
        unlink_quietly(path)
    if lost or lost_metadata or orphans or temps:
        log.warning("cache %s repaired: %d temp files and %d orphan files deleted, "
                    "%d instances and %d metadata entries without their file forgotten",
                    layout.root, len(temps), len(orphans), len(lost), len(lost_metadata))
