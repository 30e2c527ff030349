"""Value objects shared by every layer."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["QueryLevel", "RetrieveKeys", "RetrievedInstance"]


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

    def describe(self) -> str:
        """A short human-readable name for error messages."""
        if self.instance_uid is not None:
            return f"instance {self.instance_uid}"
        if self.series_uid is not None:
            return f"series {self.series_uid}"
        return f"study {self.study_uid}"


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
