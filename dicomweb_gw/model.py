"""Value objects shared by every layer."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CachedInstance", "FindReport", "InstanceHandle", "MemoryInstance", "QueryLevel",
           "RetrieveKeys", "RetrieveReport", "RetrievedInstance"]


class QueryLevel(enum.Enum):
    """The DIMSE Query/Retrieve level; the value is what goes into (0008,0052)."""

    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


@dataclass(frozen=True, slots=True)
class RetrieveKeys:
    """What to retrieve: a study, one of its series, or one instance."""

    study_uid: str
    series_uid: str | None = None
    instance_uid: str | None = None

    @property
    def level(self) -> QueryLevel:
        if self.instance_uid is not None:
            return QueryLevel.IMAGE
        if self.series_uid is not None:
            return QueryLevel.SERIES
        return QueryLevel.STUDY

    def covers(self, study_uid: str, series_uid: str | None,
               sop_instance_uid: str | None) -> bool:
        """Is the object named by these UIDs under these keys?

        The one check that an instance belongs where a request's path puts it.
        A PACS matches a retrieve on its lowest-level key only, so an instance
        UID under someone else's study UID comes back all the same: whatever
        is served (from the cache, a retrieve or another replica) must pass
        this first, or a study-scoped permission could be bypassed.

        Passing another request's keys (None for "every series/instance")
        asks whether those keys lie wholly inside these: a study covers its
        series, a series does not cover its study.
        """
        return (self.study_uid == study_uid
                and self.series_uid in (None, series_uid)
                and self.instance_uid in (None, sop_instance_uid))

    def covers_keys(self, other: RetrieveKeys) -> bool:
        """Does every instance ``other`` asks for fall under these keys?"""
        return self.covers(other.study_uid, other.series_uid, other.instance_uid)

    def describe(self) -> str:
        """A short human-readable name for error messages."""
        if self.instance_uid is not None:
            return f"instance {self.instance_uid}"
        if self.series_uid is not None:
            return f"series {self.series_uid}"
        return f"study {self.study_uid}"


@dataclass(slots=True)
class RetrieveReport:
    """What the PACS said about a C-GET/C-MOVE when it ended, filled in by the PACS client.

    ``complete`` is the only ground for recording a study or series as
    complete in the cache: a retrieve that brought nothing (the study is not
    there *yet*: a modality still sending) or fewer instances than the PACS
    counted must be asked again next time, not answered from the cache.
    """

    #: The PACS sent its final Success (0x0000) response.
    succeeded: bool = False
    #: Completed + Warning sub-operations in that response; None when the PACS left them out.
    reported: int | None = None
    #: Failed sub-operations in that response.
    failed: int = 0
    #: Instances that reached the gateway.
    received: int = 0
    #: While it runs, the instances it will bring, when known: the listing of a split
    #: retrieve, or what arrived plus what the PACS's Pending responses say remains.
    #: For the status page; completeness goes by the final counts above.
    expected: int | None = None

    @property
    def complete(self) -> bool:
        if not self.succeeded or self.received == 0 or self.failed:
            return False
        return self.reported is None or self.reported == self.received


@dataclass
class FindReport:
    """What a C-FIND left unsaid in its matches, filled in by the PACS client as it runs.

    A PACS with a match limit either refuses once it is reached (0xA700, after
    sending N matches) or just stops; either way the client must tell its user
    that more exist (PS3.18 8.3.4.2: a ``Warning`` header) rather than fail.
    """

    #: The PACS stopped at its match limit (refused with 0xA700 after some matches,
    #: or answered Success after exactly the node's ``max_matches``).
    limit_reached: bool = False
    #: Pending responses that carried no identifier, skipped.
    empty_pending: int = 0
    #: The query was walked level by level (the PACS refused a relational query).
    walked: bool = False


@dataclass(frozen=True, slots=True)
class RetrievedInstance:
    """One instance as the PACS delivered it over DIMSE.

    ``dataset`` is the encoded data set (no File Meta Information) in
    ``transfer_syntax_uid``: keeping the bytes as received means an instance
    sent on "as stored" is never decoded or re-encoded.
    """

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    dataset: bytes


@dataclass(frozen=True, slots=True)
class CachedInstance:
    """One cached instance. ``path`` is a complete DICOM Part 10 file.

    The file can be evicted or replaced once the store's lock is released: open
    it promptly, and treat ``FileNotFoundError`` as a cache miss. An open file
    stays readable (and unchanged) after eviction or replacement.
    """

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    path: Path
    size: int


@dataclass(frozen=True, slots=True)
class MemoryInstance:
    """An instance the cache could not take (full disk): served from memory once."""

    instance: RetrievedInstance


#: Where a retrieved instance is to be served from: the cache, or (when the cache
#: could not take it) memory.
InstanceHandle = CachedInstance | MemoryInstance
