"""The Query/Retrieve levels the demo PACS knows and the unique key of each (PS3.4 C.6).

Also the error a handler turns into 0xA900 when an identifier cannot be answered.
"""

from __future__ import annotations

from typing import Final, Literal

from pydicom.dataset import Dataset

__all__ = ["LEVELS", "UNIQUE_KEY", "Level", "QueryError", "depth", "query_level"]

Level = Literal["PATIENT", "STUDY", "SERIES", "IMAGE"]
LEVELS: Final[tuple[Level, ...]] = ("PATIENT", "STUDY", "SERIES", "IMAGE")

# The unique key of each level (PS3.4 C.6, Patient and Study Root models).
UNIQUE_KEY: Final[dict[Level, str]] = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}


class QueryError(ValueError):
    """The identifier cannot be answered (the SCP replies 0xA900)."""


def query_level(identifier: Dataset, *, patient_root: bool) -> Level:
    """The identifier's QueryRetrieveLevel, checked against the information model."""
    raw = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    for level in LEVELS:
        if raw == level:
            if level == "PATIENT" and not patient_root:
                raise QueryError("the Study Root model has no PATIENT level")
            return level
    raise QueryError(f"invalid QueryRetrieveLevel {raw!r}")


def depth(level: Level) -> int:
    """How far below PATIENT a level is (PATIENT is 0, IMAGE 3)."""
    return LEVELS.index(level)
