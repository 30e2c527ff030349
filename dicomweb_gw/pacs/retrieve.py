"""C-GET and C-MOVE: send the request, follow the responses, check the PACS's count.

A C-GET's instances arrive on its own association(s), planned from what the
PACS holds (``holdings.py``, ``contexts.get_plans``); a C-MOVE's arrive on the
gateway's storage SCP (``storescp.MoveReceiver``). Either way they land in the
retrieve's ``InstanceSink``. When the client leaves, the retrieve is
C-CANCELled, and aborted if the PACS does not wind down in time.

Runs in a DIMSE worker thread (see ``workers.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association

from dicomweb_gw.errors import NotFound, PacsFailure
from dicomweb_gw.model import RetrieveKeys
from dicomweb_gw.pacs import contexts
from dicomweb_gw.pacs.associations import Associations
from dicomweb_gw.pacs.failures import Failures
from dicomweb_gw.pacs.find import Finder, identifier_for, query_model
from dicomweb_gw.pacs.holdings import discover_holdings
from dicomweb_gw.pacs.sink import InstanceSink
from dicomweb_gw.pacs.sockets import FAST_POLL_HANDLER
from dicomweb_gw.pacs.status import CANCELLED, PENDING, SUCCESS
from dicomweb_gw.pacs.storescp import MoveReceiver
from dicomweb_gw.settings import PacsNode

__all__ = ["CANCEL_GRACE_SECONDS", "Retriever", "await_stragglers"]

log = logging.getLogger(__name__)

#: After a C-CANCEL, how long the PACS gets to wind down before we abort.
CANCEL_GRACE_SECONDS = 5.0

Responses = Iterator[tuple[Dataset, Dataset | None]]


class Retriever:
    """The C-GETs and C-MOVEs of one PACS node."""

    def __init__(
        self, node: PacsNode, *, ae_title: str, associations: Associations, finder: Finder,
        failures: Failures, message_id: Callable[[], int], receiver: MoveReceiver | None = None,
    ) -> None:
        self._node = node
        self._ae_title = ae_title
        self._associations = associations
        self._finder = finder
        self._failures = failures
        self._message_id = message_id
        self._receiver = receiver

    def get(self, keys: RetrieveKeys, sink: InstanceSink) -> None:
        """C-GET over one association, or over several, series by series, when the
        stored syntaxes of the whole retrieve do not fit in one (``contexts.get_plans``)."""
        for plan in contexts.get_plans(discover_holdings(self._finder, keys)):
            parts = [RetrieveKeys(keys.study_uid, series_uid) for series_uid in plan.series_uids]
            assoc = self._associations.associate(
                plan.contexts, ext_neg=plan.roles,
                handlers=[(evt.EVT_C_STORE, sink.on_store), FAST_POLL_HANDLER])
            try:
                for part in parts or [keys]:
                    if sink.channel.cancelled:
                        return
                    self._get(assoc, part, sink)
            finally:
                self._associations.close(assoc)

    def move(self, keys: RetrieveKeys, sink: InstanceSink) -> None:
        """C-MOVE to the gateway's own storage SCP, which hands each instance to ``sink``."""
        if self._receiver is None:
            raise PacsFailure(self._node.name, "C-MOVE needs the gateway's storage SCP")
        with self._receiver.expect(keys, sink, node=self._node.name) as msg_id:
            assoc = self._associations.associate(contexts.move_contexts(),
                                                 handlers=[FAST_POLL_HANDLER])
            try:
                model, identifier = self._request(assoc, contexts.MOVE_MODELS, keys, "C-MOVE")
                responses = assoc.send_c_move(identifier, self._ae_title, model, msg_id=msg_id)
                self._follow(assoc, "C-MOVE", model, msg_id, responses, sink)
            finally:
                self._associations.close(assoc)

    def _get(self, assoc: Association, keys: RetrieveKeys, sink: InstanceSink) -> None:
        model, identifier = self._request(assoc, contexts.GET_MODELS, keys, "C-GET")
        msg_id = self._message_id()
        responses = assoc.send_c_get(identifier, model, msg_id=msg_id)
        self._follow(assoc, "C-GET", model, msg_id, responses, sink)

    def _request(
        self, assoc: Association, models: tuple[str, str], keys: RetrieveKeys, operation: str
    ) -> tuple[str, Dataset]:
        """The query model the PACS accepted and the identifier to send with it."""
        model = query_model(self._node, assoc, models, operation)
        identifier = identifier_for(keys)
        if model == models[1]:  # Patient Root: the identifier needs the Patient ID
            query = identifier_for(RetrieveKeys(keys.study_uid))
            query.PatientID = ""
            found = {str(ds.get("PatientID", "")) for ds in self._finder.collect(query)} - {""}
            if not found:
                raise NotFound(f"{keys.describe()} not found on PACS '{self._node.name}'")
            identifier.PatientID = found.pop()
        return model, identifier

    def _follow(
        self, assoc: Association, operation: str, model: str, msg_id: int,
        responses: Responses, sink: InstanceSink,
    ) -> None:
        """Read the responses to the end; C-CANCEL once the client has gone."""
        cancel_timer: threading.Timer | None = None
        try:
            for status, _ in responses:
                if "Status" not in status:
                    if cancel_timer is not None:
                        return  # we aborted it ourselves after the grace period
                    raise self._failures.no_response(operation, sink.last_activity,
                                                     received=sink.received)
                sink.last_activity = time.monotonic()
                if sink.channel.cancelled and cancel_timer is None:
                    cancel_timer = self._cancel(assoc, msg_id, model)
                code = int(status.Status)
                if code in PENDING:
                    continue
                if code == SUCCESS:
                    await_stragglers(self._node, operation, status, sink)
                    return
                if code == CANCELLED and cancel_timer is not None:
                    return
                if sink.channel.cancelled:
                    return  # the client left; whatever the PACS says no one reads it
                raise self._failures.for_status(
                    operation, code, received=sink.received,
                    failed=status.get("NumberOfFailedSuboperations"))
        finally:
            if cancel_timer is not None:
                cancel_timer.cancel()

    def _cancel(self, assoc: Association, msg_id: int, model: str) -> threading.Timer:
        """C-CANCEL, then abort if the PACS has not wound down within the grace period."""
        log.info("client went away: cancelling retrieve on PACS '%s'", self._node.name)
        with suppress(RuntimeError):
            assoc.send_c_cancel(msg_id, query_model=model)
        timer = threading.Timer(CANCEL_GRACE_SECONDS, assoc.abort)
        timer.daemon = True
        timer.start()
        return timer


def await_stragglers(node: PacsNode, operation: str, status: Dataset, sink: InstanceSink) -> None:
    """Success means every instance the PACS counts as sent has reached us.

    They all have, except C-MOVE instances another replica received: those
    come through Redis, possibly after the final response. Waiting for them
    (up to the node's timeout) is what keeps a study from ending short
    without an error.
    """
    counts = [status.get(name) for name in
              ("NumberOfCompletedSuboperations", "NumberOfWarningSuboperations")]
    reported = sum(int(count or 0) for count in counts)
    if sink.received >= reported or sink.wait_for(reported, node.timeout):
        sink.finished(reported=reported if any(c is not None for c in counts) else None,
                      failed=int(status.get("NumberOfFailedSuboperations") or 0))
        return
    raise PacsFailure(node.name,
                      f"{operation} reported {reported} instances sent, but "
                      f"{sink.received} arrived within {node.timeout:g} s")
