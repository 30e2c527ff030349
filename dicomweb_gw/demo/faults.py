"""The demo PACS's fault and strictness switches (:class:`Fault`), and the checks
the Query/Retrieve handlers make of them, so tests can choose how the PACS fails.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from pydicom.dataset import Dataset

from dicomweb_gw.demo.query_levels import QueryError

__all__ = ["Fault", "require_patient_id", "stall"]


@dataclass(frozen=True)
class Fault:
    """Misbehaviour to inject, for testing how the gateway copes."""

    refuse_association: bool = False
    """Reject every association (A-ASSOCIATE-RJ, permanent, calling AE not recognised)."""
    abort_after_instances: int | None = None
    """During C-GET/C-MOVE, send A-ABORT after this many instances were stored.

    C-MOVE aborts both the sub-association to the destination and the C-MOVE
    association, like a PACS that crashed mid-transfer."""
    stall_seconds: float = 0.0
    """Sleep this long before answering each C-FIND, C-GET or C-MOVE."""
    omit_move_originator: bool = False
    """C-MOVE sub-operation C-STOREs carry no Move Originator AE Title / Message ID."""
    find_failure_status: int | None = None
    """Answer every C-FIND with this (failure) status and no matches, e.g. 0xC000."""
    patient_root_only: bool = False
    """Offer only the Patient Root models, and (like many such PACS) refuse
    queries and retrieves below PATIENT level that carry no Patient ID."""

    def __post_init__(self) -> None:
        if self.abort_after_instances is not None and self.abort_after_instances < 0:
            raise ValueError("abort_after_instances must be >= 0")
        if self.stall_seconds < 0:
            raise ValueError("stall_seconds must be >= 0")
        if self.find_failure_status is not None and not 0 <= self.find_failure_status <= 0xFFFF:
            raise ValueError("find_failure_status must be a 16-bit status code")


def stall(fault: Fault, stopping: threading.Event) -> None:
    """Wait out the ``stall_seconds`` fault; setting ``stopping`` cuts it short."""
    if fault.stall_seconds > 0:
        stopping.wait(fault.stall_seconds)


def require_patient_id(fault: Fault, identifier: Dataset) -> None:
    """Raise :class:`QueryError` where the ``patient_root_only`` PACS wants a Patient ID."""
    level = str(identifier.get("QueryRetrieveLevel", ""))
    if fault.patient_root_only and level != "PATIENT" and not identifier.get("PatientID", ""):
        raise QueryError(f"Patient ID required at {level} level")
