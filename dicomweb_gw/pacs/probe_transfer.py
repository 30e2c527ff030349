"""The probe's retrieves: one C-GET or C-MOVE, recorded rather than handed on.

A ``Recorder`` stands where a retrieve's ``InstanceSink`` stands in the
gateway: it counts what arrives (bytes, transfer syntaxes, when the first
instance came) and, after ``cancel_after`` instances, sends the C-CANCEL
itself, from the C-STORE handler, before answering that C-STORE: a PACS that
honours C-CANCEL then stops before its next sub-operation, one that ignores it
keeps sending. Anything still running ``CANCEL_GRACE`` seconds after the
C-CANCEL is aborted.

Runs in a worker thread: everything here blocks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, cast

from pydicom import uid
from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.presentation import build_context, build_role

from dicomweb_gw.model import RetrievedInstance, RetrieveKeys
from dicomweb_gw.pacs import contexts
from dicomweb_gw.pacs.bridge import Channel
from dicomweb_gw.pacs.probe_dimse import CANCEL_GRACE, Session
from dicomweb_gw.pacs.sink import InstanceSink
from dicomweb_gw.pacs.status import PENDING
from dicomweb_gw.pacs.storescp import MoveReceiver

__all__ = ["Recorder", "TransferOutcome", "accepted", "get", "move"]

_UNCOMPRESSED = (uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian)


@dataclass
class TransferOutcome:
    #: The final status; None when none came.
    status: int | None = None
    #: The final response's counts (None: it left them out).
    completed: int | None = None
    failed: int | None = None
    #: Pending responses before the first instance arrived.
    pending_before_first: int = 0
    #: No message within the DIMSE timeout (not an abort of ours).
    silent: bool = False
    seconds: float = 0.0


class _NoChannel:
    """The channel a recorder has instead of an HTTP client: nothing reads it."""

    cancelled = False

    def put(self, item: object) -> None:
        pass

    def finish(self, error: BaseException | None = None) -> None:
        pass


class Recorder(InstanceSink):
    """What one probe retrieve received."""

    def __init__(self, *, cancel_after: int | None = None) -> None:
        super().__init__(cast(Channel[RetrievedInstance], _NoChannel()))
        self.cancel_after = cancel_after
        self.bytes = 0
        self.syntaxes: dict[str, int] = {}
        self.started = time.monotonic()
        self.first_after: float | None = None
        #: Instances that arrived after the C-CANCEL went out.
        self.after_cancel = 0
        self.cancel_sent = False
        self._cancel: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        #: The PACS went on after the C-CANCEL and its grace period: the probe aborted.
        self.aborted = False

    def arm(self, cancel: Callable[[], None]) -> None:
        """How to C-CANCEL this retrieve, once its request is out."""
        self._cancel = cancel
        self.started = time.monotonic()

    def deliver(self, instance: RetrievedInstance) -> int:
        with self._lock:
            if self.received == 0:
                self.first_after = time.monotonic() - self.started
            self.received += 1
            self.bytes += len(instance.dataset)
            syntax = instance.transfer_syntax_uid
            self.syntaxes[syntax] = self.syntaxes.get(syntax, 0) + 1
            if self.cancel_sent:
                self.after_cancel += 1
            cancel = (self._cancel if not self.cancel_sent and self.cancel_after is not None
                      and self.received >= self.cancel_after else None)
            if cancel is not None:
                self.cancel_sent = True
        if cancel is not None:
            cancel()  # before our C-STORE response: the PACS sees it before going on
        self.last_activity = time.monotonic()
        return 0x0000

    def cancel_with_grace(self, assoc: Association, msg_id: int, model: str) -> None:
        with suppress(RuntimeError):
            assoc.send_c_cancel(msg_id, query_model=model)

        def abort() -> None:
            self.aborted = True
            assoc.abort()

        self._timer = threading.Timer(CANCEL_GRACE, abort)
        self._timer.daemon = True
        self._timer.start()

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def get(session: Session, identifier: Dataset, model: str, recorder: Recorder, *,
        holdings: Mapping[str, Collection[str]], uncompressed_only: bool = False,
        ) -> TransferOutcome:
    """One C-GET on an association of its own, proposing contexts for ``holdings``."""
    if uncompressed_only:
        classes = list(holdings) or list(contexts.COMMON_STORAGE_SOP_CLASSES)
        requested = [*(build_context(m) for m in contexts.GET_MODELS),
                     *(build_context(sop_class, list(_UNCOMPRESSED)) for sop_class in classes)]
        roles = [build_role(sop_class, scp_role=True) for sop_class in classes]
    else:
        requested, roles = contexts.get_contexts(holdings)
    with session.association(requested, ext_neg=list(roles),
                             handlers=[(evt.EVT_C_STORE, recorder.on_store)]) as assoc:
        msg_id = session.message_id()
        recorder.arm(lambda: recorder.cancel_with_grace(assoc, msg_id, model))
        return _follow(assoc.send_c_get(identifier, model, msg_id=msg_id), recorder)


def move(session: Session, identifier: Dataset, model: str, recorder: Recorder, *,
         receiver: MoveReceiver) -> TransferOutcome:
    """One C-MOVE to our own AE title, whose instances ``receiver`` hands to ``recorder``."""
    keys = RetrieveKeys(str(identifier.StudyInstanceUID),
                        str(identifier.get("SeriesInstanceUID", "")) or None,
                        str(identifier.get("SOPInstanceUID", "")) or None)
    with receiver.expect(keys, recorder, node=session.node.name) as msg_id, \
            session.association(contexts.move_contexts()) as assoc:
        recorder.arm(lambda: recorder.cancel_with_grace(assoc, msg_id, model))
        responses = assoc.send_c_move(identifier, session.ae_title, model, msg_id=msg_id)
        return _follow(responses, recorder)


def _follow(responses: Iterator[tuple[Dataset, Dataset | None]],
            recorder: Recorder) -> TransferOutcome:
    outcome = TransferOutcome()
    try:
        for status, _ in responses:
            if "Status" not in status:
                outcome.silent = True
                break
            code = int(status.Status)
            if code in PENDING:
                if recorder.received == 0:
                    outcome.pending_before_first += 1
                continue
            outcome.status = code
            outcome.completed = _count(status, "NumberOfCompletedSuboperations")
            outcome.failed = _count(status, "NumberOfFailedSuboperations")
            break
    finally:
        recorder.stop_timer()
        if recorder.aborted:
            outcome.silent = False  # our own abort after the grace period, not silence
        outcome.seconds = time.monotonic() - recorder.started
    return outcome


def accepted(assoc: Association, models: tuple[str, ...]) -> list[str]:
    """Which of ``models`` the PACS accepted on ``assoc``, in ``models``' order."""
    taken = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
    return [model for model in models if model in taken]


def _count(status: Dataset, keyword: str) -> int | None:
    value: Any = status.get(keyword)
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None

