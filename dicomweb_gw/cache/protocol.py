"""What the gateway asks of an instance cache, whatever stores it.

Every method is synchronous and thread-safe: the gateway calls them from
worker threads (``anyio.to_thread``), never on the event loop.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from dicomweb_gw.model import CachedInstance, RetrievedInstance

__all__ = ["CacheFull", "CacheStats", "CachedInstance", "InstanceStore", "InvalidInstance"]


class CacheFull(OSError):
    """The instance could not be cached (no disk space, or bigger than the whole budget).

    Nothing was changed for it: the caller can serve the instance without caching it.
    """


class InvalidInstance(ValueError):
    """The data set could not be parsed, or lacks its Study/Series Instance UID.

    Such an instance cannot be filed under its study and series, so it is not cached.
    """


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counts: ``instances`` and ``bytes`` are what is cached now (instances only,
    not series metadata); ``hits``, ``misses`` and ``evictions`` count since the
    store was opened (``get`` and ``complete`` calls each count one hit or miss)."""

    instances: int
    bytes: int
    hits: int
    misses: int
    evictions: int


class InstanceStore(Protocol):
    def put(self, instance: RetrievedInstance) -> CachedInstance:
        """Cache ``instance`` as a Part 10 file, replacing any with the same SOP Instance UID.

        Atomic: a crash never leaves a partial instance visible. Evicts least
        recently used instances (never this one) to stay within the budget.
        Raises ``CacheFull`` when it cannot be stored and ``InvalidInstance``
        when its data set cannot be parsed.
        """
        ...

    def get(self, sop_instance_uid: str, *, study_uid: str | None = None,
            series_uid: str | None = None) -> CachedInstance | None:
        """The cached instance (now most recently used), or None.

        ``study_uid`` and ``series_uid`` are hints, when the caller knows them: a
        store with a shared tier (tiered.py) needs them to find the instance there,
        a purely local store ignores them.
        """
        ...

    def mark_complete(self, study_uid: str, series_uid: str | None,
                      sop_instance_uids: Collection[str]) -> None:
        """Remember, with the time, that the study (``series_uid`` None) or series had
        exactly these instances when it was retrieved in full."""
        ...

    def complete(self, study_uid: str, series_uid: str | None,
                 max_age: float) -> list[CachedInstance] | None:
        """Every instance of the study or series, if a completeness record younger
        than ``max_age`` seconds exists for it (for a series, a study record counts
        too) and all its instances are still cached; else None.

        Ordered by series, then InstanceNumber. Marks them used.
        """
        ...

    def put_metadata(self, study_uid: str, series_uid: str, data: bytes) -> None:
        """Keep opaque series metadata; dropped when any instance of the series is
        evicted, purged or replaced."""
        ...

    def get_metadata(self, study_uid: str, series_uid: str, max_age: float) -> bytes | None:
        """The series metadata if stored less than ``max_age`` seconds ago, else None."""
        ...

    def purge(self, study_uid: str, series_uid: str | None = None) -> int:
        """Forget a study or series: instances, metadata and completeness. Returns
        how many instances were deleted."""
        ...

    def stats(self) -> CacheStats: ...

    def close(self) -> None: ...
