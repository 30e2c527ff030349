"""The demo PACS's C-FIND handler: checks the identifier, applies the C-FIND
faults, and yields one pending response per matching record.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from dicomweb_gw.demo.dimse import (
    CANCEL,
    FIND_MODELS,
    IDENTIFIER_MISMATCH,
    PENDING,
    is_patient_root,
)
from dicomweb_gw.demo.faults import Fault, require_patient_id, stall
from dicomweb_gw.demo.index import InstanceIndex
from dicomweb_gw.demo.query import find
from dicomweb_gw.demo.query_levels import QueryError, query_level

__all__ = ["FindHandler"]

LOGGER = logging.getLogger("dicomweb_gw.demo")


class FindHandler:
    """Answers C-FIND requests (pynetdicom's EVT_C_FIND) from the index."""

    def __init__(
        self, index: InstanceIndex, fault: Fault, *, ae_title: str, stopping: threading.Event
    ) -> None:
        self._index = index
        self._fault = fault
        self._ae_title = ae_title
        self._stopping = stopping

    def on_find(self, event: Event) -> Iterator[tuple[int, Dataset | None]]:
        stall(self._fault, self._stopping)
        if self._fault.find_failure_status is not None:
            yield self._fault.find_failure_status, None
            return
        identifier = event.identifier
        try:
            level = query_level(identifier, patient_root=is_patient_root(event, FIND_MODELS))
            require_patient_id(self._fault, identifier)
        except QueryError as exc:
            LOGGER.info("C-FIND refused: %s", exc)
            yield IDENTIFIER_MISMATCH, None
            return
        matches = find(self._index.snapshot(), level, identifier, retrieve_ae_title=self._ae_title)
        for match in matches:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, match
