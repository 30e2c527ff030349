"""The instance cache: DICOM Part 10 files kept so a warm request never touches the PACS.

``InstanceStore`` (protocol.py) is what the gateway codes against;
``DiskInstanceStore`` (disk.py) is the embedded default on local disk.
"""

from __future__ import annotations

from dicomweb_gw.cache.disk import CacheInUse, DiskInstanceStore
from dicomweb_gw.cache.protocol import (
    CachedInstance,
    CacheFull,
    CacheStats,
    InstanceStore,
    InvalidInstance,
)

__all__ = ["CacheFull", "CacheInUse", "CacheStats", "CachedInstance", "DiskInstanceStore",
           "InstanceStore", "InvalidInstance"]
