"""The demo PACS's C-GET and C-MOVE handlers: which instances a retrieve sends,
and its sub-operations, honouring C-CANCEL and the retrieve faults.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pynetdicom import evt
from pynetdicom.events import Event

from dicomweb_gw.demo.dimse import (
    CANCEL,
    GET_MODELS,
    IDENTIFIER_MISMATCH,
    MOVE_MODELS,
    PENDING,
    is_patient_root,
)
from dicomweb_gw.demo.faults import Fault, require_patient_id, stall
from dicomweb_gw.demo.index import IndexedInstance, InstanceIndex
from dicomweb_gw.demo.move_subassociation import MovePlan, store_contexts
from dicomweb_gw.demo.query import select_instances
from dicomweb_gw.demo.query_levels import QueryError, query_level
from dicomweb_gw.pacs.sockets import set_nodelay

__all__ = ["RetrieveHandlers"]

LOGGER = logging.getLogger("dicomweb_gw.demo")


class RetrieveHandlers:
    """Answers C-GET and C-MOVE requests (EVT_C_GET, EVT_C_MOVE) from the index."""

    def __init__(
        self,
        index: InstanceIndex,
        fault: Fault,
        *,
        move_destinations: Mapping[str, tuple[str, int]],
        stopping: threading.Event,
    ) -> None:
        self._index = index
        self._fault = fault
        self._move_destinations = move_destinations
        self._stopping = stopping

    def on_get(self, event: Event) -> Iterator[int | tuple[int, Dataset | None]]:
        # pynetdicom protocol: yield the number of sub-operations, then one
        # (status, dataset) per instance; it sends each as a C-STORE on this
        # association, using a context the requestor proposed with the SCP
        # role, converting Explicit <-> Implicit VR LE when it must.
        stall(self._fault, self._stopping)
        instances = self._select(event, GET_MODELS)
        if instances is None:
            yield 1
            yield IDENTIFIER_MISMATCH, None
            return
        LOGGER.info("C-GET: %d instances", len(instances))
        yield len(instances)
        yield from self._sub_operations(event, instances, abort=event.assoc.abort)

    def on_move(self, event: Event) -> Iterator[Any]:
        # pynetdicom protocol: yield the destination (None, None if unknown:
        # it answers 0xA801), then the number of sub-operations, then
        # (status, dataset) pairs that it sends over the sub-association.
        stall(self._fault, self._stopping)
        destination = self._move_destinations.get((event.move_destination or "").strip())
        if destination is None:
            LOGGER.info("C-MOVE to unknown destination %r", event.move_destination)
            yield None, None
            return
        instances = self._select(event, MOVE_MODELS)
        originator = (event.assoc.requestor.ae_title, event.message_id)
        plan = MovePlan(None if self._fault.omit_move_originator else originator)
        sub_association = {
            "contexts": store_contexts(instances or []),
            "max_pdu": 0,
            "evt_handlers": [(evt.EVT_CONN_OPEN, set_nodelay)],
            "move_plan": plan,
        }
        yield (*destination, sub_association)
        if instances is None:
            yield 1
            yield IDENTIFIER_MISMATCH, None
            return
        LOGGER.info("C-MOVE to %s: %d instances", event.move_destination, len(instances))
        yield len(instances)

        def abort_both() -> None:
            plan.abort()
            event.assoc.abort()

        yield from self._sub_operations(event, instances, abort=abort_both)

    def _select(self, event: Event, models: Mapping[str, bool]) -> list[IndexedInstance] | None:
        """The instances a retrieve asks for; None if the identifier is invalid."""
        identifier = event.identifier
        try:
            query_level(identifier, patient_root=is_patient_root(event, models))
            require_patient_id(self._fault, identifier)
        except QueryError as exc:
            LOGGER.info("retrieve refused: %s", exc)
            return None
        return select_instances(self._index.snapshot(), identifier)

    def _sub_operations(
        self, event: Event, instances: Sequence[IndexedInstance], *, abort: Callable[[], None]
    ) -> Iterator[tuple[int, Dataset | None]]:
        """(status, dataset) per instance, honouring C-CANCEL and the abort fault.

        pynetdicom resumes this generator only after the previous C-STORE was
        answered, so "abort after N" really means N instances were stored.
        """
        for sent, instance in enumerate(instances):
            if event.is_cancelled:
                LOGGER.info("retrieve cancelled after %d instances", sent)
                yield CANCEL, None
                return
            if self._fault.abort_after_instances == sent:
                LOGGER.info("fault: aborting after %d instances", sent)
                abort()
                return
            yield PENDING, _load(instance)


def _load(instance: IndexedInstance) -> Dataset:
    """The full dataset to send; a stub that fails the sub-operation if unreadable."""
    try:
        return dcmread(instance.path)
    except (OSError, ValueError, InvalidDicomError) as exc:
        LOGGER.warning("cannot read %s: %s", instance.path, exc)
        # No SOP Class UID: pynetdicom's send_c_store raises, which counts as a
        # failed sub-operation and lists this UID in FailedSOPInstanceUIDList.
        stub = Dataset()
        stub.SOPInstanceUID = instance.sop_instance_uid
        return stub
