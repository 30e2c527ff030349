"""A BlobStore in an S3-compatible bucket (AWS, MinIO, Ceph RGW), through obstore.

S3 makes every PUT atomic (a multipart upload becomes visible only when it is
completed, and obstore aborts it on failure), and reads are strongly
consistent. Downloads stream into a temp file that is renamed into place.

obstore retries on its own; its defaults (10 retries within 3 minutes) would
stall a retrieve for minutes during an outage, so they are tightened here:
the shared store is a cache, and a miss is always an answer.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import obstore
from obstore.exceptions import BaseError, NotFoundError
from obstore.store import S3Store

from dicomweb_gw.cache import blobs
from dicomweb_gw.cache.blobs import (
    COPY_CHUNK,
    BlobStoreError,
    atomic_file,
    check_key,
    check_prefix,
)

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config

__all__ = ["DEFAULT_CLIENT_OPTIONS", "DEFAULT_RETRY", "S3BlobStore"]

DEFAULT_CLIENT_OPTIONS: ClientConfig = {
    "connect_timeout": timedelta(seconds=5),
    # A whole request, body included: room for a large instance on a slow link.
    "timeout": timedelta(minutes=5),
}
DEFAULT_RETRY: RetryConfig = {
    "max_retries": 3,
    "retry_timeout": timedelta(seconds=20),
    "backoff": {"init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=2), "base": 2},
}
# S3's DeleteObjects takes at most 1000 keys.
_DELETE_BATCH = 1000
# obstore raises its own errors and, for some (a missing object, a missing bucket),
# the built-in OSError subclasses.
_FAILURES = (BaseError, OSError)


class S3BlobStore:
    """A BlobStore under ``prefix`` in ``bucket``.

    Credentials, and the region and endpoint when not given, come from the
    ``AWS_*`` environment variables (or an instance or pod role); ``config``,
    ``client_options`` and ``retry_config`` override obstore's settings (tests
    pass credentials this way instead of through the environment). An
    ``http://`` endpoint (MinIO, an emulator) is allowed unless
    ``client_options`` says otherwise.
    """

    def __init__(self, bucket: str, prefix: str = "", *, endpoint: str | None = None,
                 region: str | None = None, config: S3Config | None = None,
                 client_options: ClientConfig | None = None,
                 retry_config: RetryConfig | None = None) -> None:
        self.bucket = bucket
        self.prefix = check_prefix(prefix)
        self.endpoint = endpoint
        settings: S3Config = {}
        if endpoint is not None:
            settings["endpoint"] = endpoint
        if region is not None:
            settings["region"] = region
        settings.update(config or {})
        options: ClientConfig = {**DEFAULT_CLIENT_OPTIONS, **(client_options or {})}
        if str(settings.get("endpoint", "")).startswith("http://"):
            options.setdefault("allow_http", True)
        self._store = S3Store(bucket, prefix=prefix or None, config=settings,
                              client_options=options,
                              retry_config=DEFAULT_RETRY if retry_config is None else retry_config)

    def __repr__(self) -> str:
        return f"S3BlobStore('s3://{self.bucket}/{self.prefix}')"

    def put_file(self, key: str, path: Path) -> None:
        check_key(key)
        # Opened here, so a missing source is the caller's plain OSError; a read
        # failing midway surfaces from inside obstore, as a BlobStoreError.
        with blobs.open_source(path) as source:
            try:
                obstore.put(self._store, key, source)
            except _FAILURES as exc:
                raise self._error("upload", key, exc) from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        check_key(key)
        try:
            obstore.put(self._store, key, data)
        except _FAILURES as exc:
            raise self._error("upload", key, exc) from exc

    def get_file(self, key: str, dest: Path) -> bool:
        check_key(key)
        try:
            result = obstore.get(self._store, key)
        except (FileNotFoundError, NotFoundError):
            return False
        except _FAILURES as exc:
            raise self._error("download", key, exc) from exc
        stream = iter(result.stream(min_chunk_size=COPY_CHUNK))
        with atomic_file(dest) as out:
            while True:
                try:
                    chunk = next(stream)
                except StopIteration:
                    return True
                except _FAILURES as exc:
                    raise self._error("download", key, exc) from exc
                out.write(chunk)  # the local side: its errors stay plain OSErrors
        raise AssertionError("unreachable")

    def get_bytes(self, key: str) -> bytes | None:
        check_key(key)
        try:
            return obstore.get(self._store, key).bytes().to_bytes()
        except (FileNotFoundError, NotFoundError):
            return None
        except _FAILURES as exc:
            raise self._error("download", key, exc) from exc

    def list_prefix(self, prefix: str) -> list[str]:
        check_prefix(prefix)
        try:
            return sorted(meta["path"]
                          for batch in obstore.list(self._store, prefix or None, chunk_size=1000)
                          for meta in batch)
        except _FAILURES as exc:
            raise self._error("list", prefix or "/", exc) from exc

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list_prefix(prefix)
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start:start + _DELETE_BATCH]
            try:
                obstore.delete(self._store, batch)
            except _FAILURES as exc:
                raise self._error("delete", batch[0], exc) from exc
        return len(keys)

    def delete(self, key: str) -> None:
        check_key(key)
        try:
            obstore.delete(self._store, key)
        except (FileNotFoundError, NotFoundError):
            pass
        except _FAILURES as exc:
            raise self._error("delete", key, exc) from exc

    def _error(self, action: str, key: str, exc: Exception) -> BlobStoreError:
        # obstore's messages go on for lines (a debug dump): the first says what failed.
        summary = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return BlobStoreError(f"cannot {action} {key!r} in s3://{self.bucket}/{self.prefix}: "
                              f"{summary}")
