"""A store of immutable objects (blobs) that every gateway replica sees: the cache's L2.

Deliberately dumb: a key -> bytes map with no locks, no index and no
read-modify-write, so several processes can share it safely whatever backs it:
a ReadWriteMany volume (``FolderBlobStore``, blobs_folder.py; SQLite or
``flock`` over NFS would not be safe) or an S3-compatible bucket
(``S3BlobStore``, blobs_s3.py). Every write is atomic: a reader sees the whole
new object, the old one or nothing, never part of one, even when the writer
dies midway. Concurrent writers of one key leave one of their objects, whole.

Keys are ``/``-separated like S3 keys. A prefix selects whole segments, as in
obstore: ``a/b`` covers ``a/b/c`` but not ``a/bc`` nor the object ``a/b``.
A key must not also be a prefix of other keys (``a/b`` and ``a/b/c``): a
folder cannot hold a file and a directory of one name.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from dicomweb_gw.cache._files import TEMP_PREFIX

__all__ = ["BUCKET_NAME", "COPY_CHUNK", "BlobStore", "BlobStoreError", "atomic_file",
           "check_key", "check_prefix", "open_source"]

#: Bytes per read when copying a file: to or from a store, into the cache, a STOW part to disk.
COPY_CHUNK = 1 << 20
_MAX_KEY = 1024  # S3's limit, in bytes of UTF-8
# S3 bucket names (MinIO and Ceph follow the same rules).
#: An S3 bucket name (AWS's rules, loosely).
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class BlobStoreError(OSError):
    """The store failed: unreachable, refused, out of space, broken. Never "no such
    object", which is a False or None answer."""


class BlobStore(Protocol):
    """Synchronous and thread-safe, like ``InstanceStore``: called from worker threads.

    Failures of the store raise ``BlobStoreError``; a failure on the local side
    (opening ``put_file``'s source, writing ``get_file``'s destination) raises
    the plain ``OSError``. Malformed keys raise ``ValueError`` (see ``check_key``).
    """

    def put_file(self, key: str, path: Path) -> None:
        """Store the file's contents under ``key``, replacing any object there."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing any object there."""
        ...

    def get_file(self, key: str, dest: Path) -> bool:
        """Download the object to ``dest`` (replacing it); False if there is none.

        ``dest`` appears whole or not at all: the download goes to a temp file
        next to it (named like the disk cache's temps, so a crash leaves
        something its reconcile deletes), fsynced, then renamed.
        """
        ...

    def get_bytes(self, key: str) -> bytes | None:
        """The object's contents, or None if there is none."""
        ...

    def list_prefix(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` ('' for all), sorted."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many were deleted."""
        ...

    def delete(self, key: str) -> None:
        """Delete the object if there is one."""
        ...


def check_key(key: str) -> str:
    """``key`` if it is a valid key, else ValueError.

    Segments are non-empty and never ``.``/``..`` (the folder store maps them to
    path components) nor start with the temp-file prefix (the folder store's
    writes in progress, which listings skip).
    """
    if not key or len(key.encode()) > _MAX_KEY or "\0" in key or "\\" in key:
        raise ValueError(f"invalid blob key {key!r}: empty, too long, or has NUL or backslash")
    for part in key.split("/"):
        if part in ("", ".", "..") or part.startswith(TEMP_PREFIX):
            raise ValueError(f"invalid blob key {key!r}: empty, '.' or '..' segment, "
                             f"or one starting with {TEMP_PREFIX!r}")
    return key


def check_prefix(prefix: str) -> str:
    """``prefix`` if it is '' (everything) or a valid key, else ValueError."""
    return prefix if prefix == "" else check_key(prefix)


def open_source(path: Path) -> BinaryIO:
    """Open a file to upload (tests replace this to make a read fail midway)."""
    return path.open("rb")


@contextlib.contextmanager
def atomic_file(dest: Path, *, sync_directory: bool = False) -> Iterator[BinaryIO]:
    """A temp file next to ``dest`` that becomes ``dest`` (fsynced, renamed) when the
    block ends normally and is deleted when it raises.

    ``sync_directory`` also fsyncs the directory so the rename itself survives a
    power loss (wanted for the shared store, which has no reconcile to repair it).
    """
    fd, name = _temp_in(dest.parent)
    temp = Path(name)
    try:
        with open(fd, "wb") as file:
            yield file
            file.flush()
            # Data on disk before the name is: else a power loss could leave a
            # complete-looking object with missing contents.
            os.fsync(file.fileno())
        os.replace(temp, dest)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if sync_directory:
        _fsync_directory(dest.parent)


def _temp_in(directory: Path) -> tuple[int, str]:
    # Another replica's delete_prefix may remove an empty directory between the
    # mkdir and the mkstemp: make it again (a directory holding a temp file is
    # not empty, so it stays until the rename).
    for attempt in range(3):
        directory.mkdir(parents=True, exist_ok=True)
        try:
            return tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".part", dir=directory)
        except FileNotFoundError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _fsync_directory(directory: Path) -> None:
    # Best effort: the object is already visible, and some file systems refuse this.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
