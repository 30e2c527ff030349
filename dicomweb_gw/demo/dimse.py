"""DIMSE constants the demo PACS's handlers share: the Query/Retrieve information
models it serves (PS3.4 C.6) and the statuses it answers with (PS3.4 C.4).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from pynetdicom.events import Event

__all__ = [
    "CANCEL",
    "FIND_MODELS",
    "GET_MODELS",
    "IDENTIFIER_MISMATCH",
    "MOVE_MODELS",
    "PENDING",
    "STORE_CANNOT_UNDERSTAND",
    "STORE_OUT_OF_RESOURCES",
    "SUCCESS",
    "VERIFICATION",
    "is_patient_root",
]

VERIFICATION: Final = "1.2.840.10008.1.1"
# SOP Class UID -> is it the Patient Root model (which has a PATIENT level)?
FIND_MODELS: Final = {"1.2.840.10008.5.1.4.1.2.1.1": True, "1.2.840.10008.5.1.4.1.2.2.1": False}
MOVE_MODELS: Final = {"1.2.840.10008.5.1.4.1.2.1.2": True, "1.2.840.10008.5.1.4.1.2.2.2": False}
GET_MODELS: Final = {"1.2.840.10008.5.1.4.1.2.1.3": True, "1.2.840.10008.5.1.4.1.2.2.3": False}

SUCCESS: Final = 0x0000
PENDING: Final = 0xFF00
CANCEL: Final = 0xFE00
IDENTIFIER_MISMATCH: Final = 0xA900
STORE_OUT_OF_RESOURCES: Final = 0xA700
STORE_CANNOT_UNDERSTAND: Final = 0xC000


def is_patient_root(event: Event, models: Mapping[str, bool]) -> bool:
    """Whether the request came in on the Patient Root model's context."""
    return models.get(str(getattr(event.request, "AffectedSOPClassUID", "")), False)
