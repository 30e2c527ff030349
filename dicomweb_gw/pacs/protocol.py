"""The seam between DICOMweb semantics and the PACS.

``dicomweb/`` talks only to this Protocol, so a test can put a fake here and a
future backend (another DICOMweb server, a VNA API) can slot in beside DIMSE.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydicom.dataset import Dataset

from dicomweb_gw.model import (
    FindReport,
    QueryLevel,
    RetrievedInstance,
    RetrieveKeys,
    RetrieveReport,
)
from dicomweb_gw.settings import PacsNode

__all__ = [
    "CANNOT_UNDERSTAND",
    "DOES_NOT_MATCH_SOP_CLASS",
    "PROCESSING_FAILURE",
    "SOP_CLASS_NOT_SUPPORTED",
    "STUDY_MISMATCH",
    "TRANSFER_SYNTAX_NOT_SUPPORTED",
    "PacsClient",
    "StoreOutcome",
    "StoreRequest",
]

# Failure Reason (0008,1197) values, PS3.18 Table I.2-2, that the gateway assigns itself:
# to what it refuses before sending (dicomweb/stow.py), and to what the PACS gave no
# C-STORE status for (StoreOutcome.failure_reason, set by pacs/storescu.py).
#: "Processing failure": not sent, or no answer, because the association broke.
PROCESSING_FAILURE = 0x0110
#: "Referenced SOP Class not supported": the PACS accepted no context for the class.
SOP_CLASS_NOT_SUPPORTED = 0x0122
#: "Referenced Transfer Syntax not supported": not accepted as is, and not convertible.
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
#: "Error: Data Set does not match SOP Class": a Type 1 UID the instance needs is missing.
DOES_NOT_MATCH_SOP_CLASS = 0xA900
#: "Error: Cannot understand": not a DICOM Part 10 instance, or its identity is unreadable.
CANNOT_UNDERSTAND = 0xC000
#: The instance belongs to another study than the one in the URL. PS3.18 defines
#: no code for this (only the 409 it leads to); 0xC409 is dcm4chee-arc's.
STUDY_MISMATCH = 0xC409


@dataclass(frozen=True)
class StoreRequest:
    """One instance to store: a complete DICOM Part 10 file on disk.

    The UIDs are those of its File Meta Information (Media Storage SOP Class and
    Instance UIDs, Transfer Syntax UID), which is what goes on the C-STORE request.
    The file is sent as it is whenever the PACS accepts its transfer syntax.
    """

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str


@dataclass(frozen=True)
class StoreOutcome:
    """What became of one ``StoreRequest``.

    ``status`` is the C-STORE status the PACS answered, or None when it gave
    none: the instance was not sent (no usable presentation context, conversion
    failed) or no answer came (the association broke). ``failure_reason`` is
    then the PS3.18 Table I.2-2 code the gateway assigns instead.
    """

    sop_class_uid: str
    sop_instance_uid: str
    status: int | None
    message: str
    failure_reason: int | None = None

    @property
    def stored(self) -> bool:
        """Only what the PACS confirmed: success, or a warning (PS3.4 B.2.3: Bxxx)."""
        return self.status is not None and (self.status == 0 or self.warning)

    @property
    def warning(self) -> bool:
        return self.status is not None and 0xB000 <= self.status <= 0xBFFF


class PacsClient(Protocol):
    """One PACS. Iterators are lazy: closing one early cancels the operation."""

    @property
    def name(self) -> str: ...

    @property
    def node(self) -> PacsNode:
        """The node's settings: the quirks that shape how it is queried and retrieved."""
        ...

    def find(
        self, level: QueryLevel, identifier: Dataset, *, report: FindReport | None = None,
    ) -> AsyncGenerator[Dataset, None]:
        """C-FIND at ``level`` (Study Root); yields each matching identifier.

        ``report``, when given, is filled in as the C-FIND runs (see ``FindReport``):
        read it once the iterator is exhausted.
        """
        ...

    def retrieve(
        self, keys: RetrieveKeys, *, report: RetrieveReport | None = None,
    ) -> AsyncGenerator[RetrievedInstance, None]:
        """C-GET or C-MOVE the instances under ``keys``, yielding each as it arrives.

        ``report``, when given, is filled in once the PACS has ended the
        retrieve: what it counted against what arrived (see ``RetrieveReport``).

        A C-GET client finds out itself which SOP classes (and stored transfer
        syntaxes) to propose: no caller knows them before the PACS is asked.
        """
        ...

    async def store(self, requests: Sequence[StoreRequest]) -> list[StoreOutcome]:
        """C-STORE the instances over one association: one outcome per request, in order.

        Raises a ``PacsError`` when nothing could be stored because the PACS is
        unreachable or the association broke before any instance was confirmed.
        """
        ...

    async def echo(self) -> None:
        """C-ECHO; raises a ``PacsError`` when the PACS does not answer."""
        ...

    async def aclose(self) -> None:
        """Release pooled associations."""
        ...
