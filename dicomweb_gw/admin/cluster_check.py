"""``config check`` for several replicas: does Redis answer, can the shared store be written?

A replica that cannot reach either still serves (alone), so at run time these
are warnings in the log; before a deployment they are what to fix.
"""

from __future__ import annotations

import time
import uuid

from dicomweb_gw.admin.checks import Check, millis
from dicomweb_gw.cache.blob_urls import blob_store_from_url
from dicomweb_gw.cache.blobs import BlobStoreError
from dicomweb_gw.cluster.link import ping
from dicomweb_gw.settings import Settings

__all__ = ["check_redis", "check_shared_store"]

_TIMEOUT = 3.0


def check_redis(url: str) -> Check:
    what = "Redis (DICOMWEB_GW_REDIS_URL)"
    started = time.perf_counter()
    problem = ping(url, _TIMEOUT)
    if problem is not None:
        return Check(what, False, f"no answer: {problem} (after {millis(started)})")
    return Check(what, True, f"answered PING in {millis(started)}")


def check_shared_store(settings: Settings) -> Check:
    """Write, read back and delete a small object, as every replica will."""
    what = "shared store (DICOMWEB_GW_SHARED_STORE)"
    started = time.perf_counter()
    try:
        store = blob_store_from_url(settings.shared_store or "", s3_endpoint=settings.s3_endpoint,
                                    s3_region=settings.s3_region)
    except ValueError as exc:
        return Check(what, False, str(exc))
    key = f"config-check/{uuid.uuid4().hex}"
    probe = b"dicomweb-gw config check"
    try:
        store.put_bytes(key, probe)
        read = store.get_bytes(key)
        store.delete(key)
    except (BlobStoreError, OSError) as exc:
        return Check(what, False, f"cannot write and read back: {exc}")
    if read != probe:
        return Check(what, False, "an object written could not be read back whole")
    return Check(what, True, f"written, read back and deleted in {millis(started)}")
