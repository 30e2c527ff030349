"""A BlobStore in a folder every replica mounts (a ReadWriteMany NFS or CephFS volume).

One file per object, at the key's path under the root. Writes go to a temp
file in the object's own directory (``.tmp-*``: same file system, so the
rename is atomic, also over NFS), fsynced, then ``os.replace``-d over the
name; readers open the name, so they get the old file or the new one, whole.
No locks and no SQLite, which are not safe over NFS: several processes write
at once, and the last rename wins.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from dicomweb_gw.cache import blobs
from dicomweb_gw.cache._files import TEMP_PREFIX
from dicomweb_gw.cache.blobs import (
    COPY_CHUNK,
    BlobStoreError,
    atomic_file,
    check_key,
    check_prefix,
)

__all__ = ["FolderBlobStore"]

log = logging.getLogger(__name__)


class FolderBlobStore:
    """A BlobStore under ``root``, which is created on first write, not here: a
    volume that is not mounted yet must not stop the gateway from starting."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"FolderBlobStore({str(self.root)!r})"

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        with (blobs.open_source(path) as source, self._failing("write", key),
              atomic_file(target, sync_directory=True) as out):
            while chunk := source.read(COPY_CHUNK):
                out.write(chunk)

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self._path(key)
        with self._failing("write", key), atomic_file(target, sync_directory=True) as out:
            out.write(data)

    def get_file(self, key: str, dest: Path) -> bool:
        source_path = self._path(key)
        try:
            source = source_path.open("rb")
        except (FileNotFoundError, IsADirectoryError):
            return False
        except OSError as exc:
            if self._absent(exc):
                return False
            raise self._error("read", key, exc) from exc
        with source, atomic_file(dest) as out:
            while True:
                try:
                    chunk = source.read(COPY_CHUNK)
                except OSError as exc:
                    raise self._error("read", key, exc) from exc
                if not chunk:
                    return True
                out.write(chunk)  # the local side: its errors stay plain OSErrors
        raise AssertionError("unreachable")

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return None
        except OSError as exc:
            if self._absent(exc):
                return None
            raise self._error("read", key, exc) from exc

    def list_prefix(self, prefix: str) -> list[str]:
        return sorted(key for key, _ in self._walk(prefix, temps=False))

    def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        for key in self.list_prefix(prefix):
            try:
                self._path(key).unlink()
                deleted += 1
            except FileNotFoundError:
                pass  # another replica was quicker
            except OSError as exc:
                raise self._error("delete", key, exc) from exc
        self._prune(self._top(prefix))
        return deleted

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except (FileNotFoundError, IsADirectoryError):
            pass
        except OSError as exc:
            if not self._absent(exc):
                raise self._error("delete", key, exc) from exc

    def remove_stale_temps(self, max_age: float = 3600.0) -> int:
        """Delete temp files older than ``max_age`` seconds: what writers that died
        midway left. Younger ones may be another replica's write in progress."""
        cutoff = time.time() - max_age
        removed = 0
        for key, path in self._walk("", temps=True):
            if not path.name.startswith(TEMP_PREFIX):
                continue
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
                    log.info("deleted stale temp file %s of the shared store", key)
        return removed

    # -- internals -----------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _top(self, prefix: str) -> Path:
        check_prefix(prefix)
        return self.root.joinpath(*prefix.split("/")) if prefix else self.root

    def _walk(self, prefix: str, *, temps: bool) -> Iterator[tuple[str, Path]]:
        """(key, path) of every file under ``prefix``; temp files only if ``temps``."""
        top = self._top(prefix)

        def failed(exc: OSError) -> None:
            # A directory another replica just pruned, or a prefix naming no
            # directory, holds nothing; anything else is the store failing.
            if not self._absent(exc):
                raise self._error("list", prefix or "/", exc) from exc

        for directory, _, names in os.walk(top, onerror=failed):
            relative = Path(directory).relative_to(self.root).parts
            for name in names:
                if temps or not name.startswith(TEMP_PREFIX):
                    yield "/".join((*relative, name)), Path(directory, name)

    def _prune(self, top: Path) -> None:
        """Remove the empty directories under ``top`` (and ``top``), never the root."""
        for directory, _, _ in os.walk(top, topdown=False):
            if Path(directory) != self.root:
                # Not empty (a new object or a write in progress) or already gone: fine.
                with contextlib.suppress(OSError):
                    os.rmdir(directory)

    def _absent(self, exc: OSError) -> bool:
        """Whether ``exc`` means "no such object": a missing file or directory, or a
        path through a file (``a/b`` when ``a`` is an object) while the root is fine."""
        if isinstance(exc, FileNotFoundError):
            return True
        return isinstance(exc, NotADirectoryError) and self.root.is_dir()

    def _error(self, action: str, key: str, exc: OSError) -> BlobStoreError:
        return BlobStoreError(exc.errno, f"cannot {action} {key!r} in the shared folder "
                                         f"{self.root}: {exc.strerror or exc}")

    @contextlib.contextmanager
    def _failing(self, action: str, key: str) -> Iterator[None]:
        """Turn the OSErrors of the block into BlobStoreErrors."""
        try:
            yield
        except BlobStoreError:
            raise
        except OSError as exc:
            raise self._error(action, key, exc) from exc
