"""``PacsClient`` over DIMSE with pynetdicom.

pynetdicom is blocking and thread-based, so every operation runs in its own
worker thread and hands results to the event loop through a bounded
``Channel``. A per-PACS semaphore bounds the associations we hold at once
(many PACS allow only a few); the slot is released by the worker when the
DIMSE operation has really ended, not when the HTTP side gave up on it.

Two per-node quirk switches: ``query_model`` forces Study or Patient Root
(``auto`` prefers Study Root and falls back), and ``move_originator = false``
runs C-MOVEs to the node one at a time (see ``_acquire``).
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from contextlib import suppress
from typing import Any, TypeVar

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pynetdicom import _config as pynetdicom_config
from pynetdicom import evt
from pynetdicom.association import Association

from dicomweb_gw.errors import (
    NotFound,
    PacsError,
    PacsFailure,
    PacsMisconfigured,
    PacsTimeout,
    PacsUnavailable,
)
from dicomweb_gw.metrics import GatewayMetrics
from dicomweb_gw.model import QueryLevel, RetrievedInstance, RetrieveKeys, RetrieveReport
from dicomweb_gw.pacs import contexts, storescu
from dicomweb_gw.pacs.associations import Associations
from dicomweb_gw.pacs.bridge import Cancelled, Channel
from dicomweb_gw.pacs.protocol import StoreOutcome, StoreRequest
from dicomweb_gw.pacs.sink import InstanceSink
from dicomweb_gw.pacs.sockets import FAST_POLL_HANDLER
from dicomweb_gw.pacs.status import CANCELLED, PENDING, SUCCESS, failure_for_status
from dicomweb_gw.pacs.storescp import MoveReceiver
from dicomweb_gw.settings import PacsNode

__all__ = ["DimsePacsClient"]

# pynetdicom formats every C-FIND/C-GET/C-MOVE identifier it sends or receives for
# its INFO log, whatever the log level: about 0.2 ms per C-FIND answer (a fifth of
# a 1,000-study search), and the identifiers are patient data, which stays out of
# logs (see dicomweb_gw/redaction.py).
pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False
pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False

log = logging.getLogger(__name__)
T = TypeVar("T")

#: After a C-CANCEL, how long the PACS gets to wind down before we abort.
CANCEL_GRACE_SECONDS = 5.0
_FIND_QUEUE = 64
_RETRIEVE_QUEUE = 4


class DimsePacsClient:
    def __init__(
        self, node: PacsNode, *, ae_title: str, receiver: MoveReceiver | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._node = node
        self._ae_title = ae_title
        self._receiver = receiver
        self._timeout = node.timeout
        self._associations = Associations(node, ae_title=ae_title, metrics=metrics)
        self._slots: asyncio.Semaphore | None = None
        self._move_gate: asyncio.Semaphore | None = None
        self._message_ids = itertools.count(1)
        self._metrics = metrics

    @property
    def name(self) -> str:
        return self._node.name

    @property
    def node(self) -> PacsNode:
        return self._node

    # -- PacsClient ----------------------------------------------------------
    async def echo(self) -> None:
        async for _ in self._stream(self._echo_worker, 1, "C-ECHO"):
            pass

    def find(self, level: QueryLevel, identifier: Dataset) -> AsyncGenerator[Dataset, None]:
        def worker(channel: Channel[Dataset]) -> None:
            self._find_worker(level, identifier, channel)

        return self._stream(worker, _FIND_QUEUE, "C-FIND")

    def retrieve(
        self, keys: RetrieveKeys, *, report: RetrieveReport | None = None,
    ) -> AsyncGenerator[RetrievedInstance, None]:
        def worker(channel: Channel[RetrievedInstance]) -> None:
            sink = InstanceSink(channel, report)
            if self._node.retrieve == "c-get":
                self._get_worker(keys, sink)
            else:
                self._move_worker(keys, sink)

        operation = "C-GET" if self._node.retrieve == "c-get" else "C-MOVE"
        return self._stream(worker, _RETRIEVE_QUEUE, operation,
                            size=lambda instance: len(instance.dataset))

    async def store(self, requests: Sequence[StoreRequest]) -> list[StoreOutcome]:
        """C-STORE over one association of its own, under the same slot limit as the rest."""
        if not requests:
            return []
        results: list[list[StoreOutcome]] = []

        def worker(channel: Channel[list[StoreOutcome]]) -> None:
            channel.put(self._store_worker(requests))

        async for outcomes in self._stream(worker, 1, "C-STORE"):
            results.append(outcomes)
        if not results:
            raise PacsFailure(self._node.name, "C-STORE batch ended without outcomes")
        return results[0]

    async def aclose(self) -> None:
        await asyncio.to_thread(self._associations.close_idle)

    # -- thread plumbing ----------------------------------------------------
    async def _stream(
        self, worker: Callable[[Channel[T]], None], maxsize: int, operation: str,
        size: Callable[[T], int] | None = None,
    ) -> AsyncGenerator[T, None]:
        loop = asyncio.get_running_loop()
        held = await self._acquire(operation)
        channel: Channel[T] = Channel(loop, maxsize)

        def run() -> None:
            outcome = "success"
            try:
                worker(channel)
                channel.finish()
            except Cancelled:
                outcome = "cancelled"
            except PacsError as exc:
                outcome = _OUTCOMES.get(type(exc), "failure")
                channel.finish(exc)
            except Exception as exc:  # a pynetdicom bug must not hang the request
                outcome = "error"
                log.exception("DIMSE worker for PACS '%s' failed", self._node.name)
                channel.finish(PacsFailure(self._node.name, f"internal DIMSE error: {exc}"))
            finally:
                if self._metrics is not None:
                    self._metrics.dimse_operations.labels(self._node.name, operation,
                                                          outcome).inc()
                with suppress(RuntimeError):  # the loop is already closed at shutdown
                    for semaphore in held:
                        loop.call_soon_threadsafe(semaphore.release)

        # The worker carries the request's context (its request id) into its log lines.
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(run,), name=f"dimse-{self._node.name}",
                         daemon=True).start()
        received = (self._metrics.retrieved_bytes.labels(self._node.name)
                    if self._metrics is not None and size is not None else None)
        try:
            async for item in channel:
                if received is not None and size is not None:
                    received.inc(size(item))
                yield item
        finally:
            channel.cancel()

    async def _acquire(self, operation: str) -> list[asyncio.Semaphore]:
        """What an operation holds until its worker ends: an association slot and, for a
        C-MOVE to a PACS that omits the Move Originator Message ID, the node's move gate.

        Such a PACS's instances are routed by UID matching (see ``MoveReceiver``), so
        overlapping moves (a series and its study, an instance and its series) would
        each get the other's instances too. The gate is taken first: a move waiting
        for it holds no association slot that a query could use.
        """
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._node.max_associations)
        held: list[asyncio.Semaphore] = []
        if operation == "C-MOVE" and not self._node.move_originator:
            if self._move_gate is None:
                self._move_gate = asyncio.Semaphore(1)
            await self._move_gate.acquire()
            held.append(self._move_gate)
        try:
            await self._slots.acquire()
        except BaseException:
            for semaphore in held:
                semaphore.release()
            raise
        held.append(self._slots)
        return held

    def _query_model(self, assoc: Association, models: tuple[str, str], operation: str) -> str:
        """Study Root (``models[0]``) or Patient Root (``models[1]``), as the node's
        ``query_model`` allows and the PACS accepted."""
        allowed = {"auto": models, "study": models[:1], "patient": models[1:]}
        model = _model(assoc, allowed[self._node.query_model])
        if model is not None:
            return model
        if self._node.query_model == "auto":
            raise PacsMisconfigured(
                self._node.name, f"accepts neither Study Root nor Patient Root {operation}")
        root = "Study Root" if self._node.query_model == "study" else "Patient Root"
        raise PacsMisconfigured(self._node.name, f"does not accept {root} {operation} "
                                f"(query_model = \"{self._node.query_model}\")")

    def _next_message_id(self) -> int:
        return next(self._message_ids) % 65535 + 1

    # -- operations (worker threads) -----------------------------------------
    def _echo_worker(self, channel: Channel[None]) -> None:
        for attempt in range(2):
            with self._associations.pooled() as (assoc, reused):
                status = assoc.send_c_echo(msg_id=self._next_message_id())
                if "Status" in status and status.Status == SUCCESS:
                    return
                if reused and attempt == 0:
                    continue
                raise self._broken(assoc, "C-ECHO", time.monotonic())

    def _find_worker(
        self, level: QueryLevel, identifier: Dataset, channel: Channel[Dataset]
    ) -> None:
        query = Dataset()
        query.update(identifier)
        query.QueryRetrieveLevel = level.value
        self._find(query, channel.put, stop=lambda: channel.cancelled)

    def _collect(self, query: Dataset, *, first_only: bool = False) -> list[Dataset]:
        """A C-FIND into a list, for the gateway's own look-ups; ``first_only``
        C-CANCELs it after the first match."""
        results: list[Dataset] = []

        def keep(dataset: Dataset) -> None:
            if first_only and results:
                raise Cancelled
            results.append(dataset)

        self._find(query, keep, stop=lambda: first_only and bool(results))
        return results

    def _find(
        self, query: Dataset, deliver: Callable[[Dataset], None], stop: Callable[[], bool]
    ) -> None:
        for attempt in range(2):
            with self._associations.pooled() as (assoc, reused):
                try:
                    model = self._query_model(assoc, contexts.FIND_MODELS, "C-FIND")
                    if model == contexts.PATIENT_FIND_MODEL and _needs_patient_id(query):
                        self._find_per_patient(assoc, query, deliver, stop)
                    else:
                        self._run_find(assoc, model, query, deliver)
                    return
                except _NoResponse as silence:
                    # A reused association that died while idle: retry once on a fresh one.
                    if not (reused and attempt == 0 and not silence.delivered):
                        raise self._broken(assoc, "C-FIND", silence.last_activity) from None

    def _find_per_patient(
        self, assoc: Association, query: Dataset, deliver: Callable[[Dataset], None],
        stop: Callable[[], bool],
    ) -> None:
        """Patient Root below PATIENT level: many PACS insist on the Patient ID,
        so list the matching patients first, then ask once per patient."""
        patients = Dataset()
        patients.QueryRetrieveLevel = "PATIENT"
        patients.PatientID = ""
        for keyword in ("SpecificCharacterSet", *_PATIENT_KEYS):
            if keyword in query:
                patients[keyword] = query[keyword]
        found: list[Dataset] = []
        self._run_find(assoc, contexts.PATIENT_FIND_MODEL, patients, found.append)
        for patient in found:
            if stop():
                return
            patient_id = str(patient.get("PatientID", ""))
            if not patient_id:
                continue
            per_patient = Dataset()
            per_patient.update(query)
            per_patient.PatientID = patient_id
            self._run_find(assoc, contexts.PATIENT_FIND_MODEL, per_patient, deliver)

    def _run_find(
        self, assoc: Association, model: str, query: Dataset,
        deliver: Callable[[Dataset], None],
    ) -> None:
        msg_id = self._next_message_id()
        delivered = 0
        cancel_sent = False
        last = time.monotonic()
        for status, identifier in assoc.send_c_find(query, model, msg_id=msg_id):
            if "Status" not in status:
                raise _NoResponse(last, delivered > 0 or cancel_sent)
            last = time.monotonic()
            code = int(status.Status)
            if code in PENDING:
                if identifier is None or cancel_sent:
                    continue
                try:
                    deliver(identifier)
                    delivered += 1
                except Cancelled:
                    # The client has enough (limit reached) or went away.
                    assoc.send_c_cancel(msg_id, query_model=model)
                    cancel_sent = True
            elif code in (SUCCESS, CANCELLED):
                return
            else:
                raise self._failure("C-FIND", code)

    def _get_worker(self, keys: RetrieveKeys, sink: InstanceSink) -> None:
        """C-GET over one association, or over several, series by series, when the
        stored syntaxes of the whole retrieve do not fit in one (``contexts.get_plans``)."""
        for plan in contexts.get_plans(self._discover_holdings(keys)):
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

    def _get(self, assoc: Association, keys: RetrieveKeys, sink: InstanceSink) -> None:
        model, identifier = self._retrieve_request(assoc, contexts.GET_MODELS, keys, "C-GET")
        msg_id = self._next_message_id()
        responses = assoc.send_c_get(identifier, model, msg_id=msg_id)
        self._follow_retrieve(assoc, "C-GET", model, msg_id, responses, sink)

    def _store_worker(self, requests: Sequence[StoreRequest]) -> list[StoreOutcome]:
        def associate(requested: list[Any], handlers: Sequence[Any]) -> Association:
            return self._associations.associate(requested, handlers=[FAST_POLL_HANDLER, *handlers])

        try:
            return storescu.store_batch(associate, requests, release=self._associations.close,
                                        message_id=self._next_message_id)
        except storescu.StoreInterrupted as exc:
            raise self._broken(exc.association, "C-STORE", exc.last_activity) from None

    def _move_worker(self, keys: RetrieveKeys, sink: InstanceSink) -> None:
        if self._receiver is None:
            raise PacsFailure(self._node.name, "C-MOVE needs the gateway's storage SCP")
        with self._receiver.expect(keys, sink, node=self._node.name) as msg_id:
            assoc = self._associations.associate(contexts.move_contexts(),
                                                 handlers=[FAST_POLL_HANDLER])
            try:
                model, identifier = self._retrieve_request(assoc, contexts.MOVE_MODELS, keys,
                                                           "C-MOVE")
                responses = assoc.send_c_move(identifier, self._ae_title, model, msg_id=msg_id)
                self._follow_retrieve(assoc, "C-MOVE", model, msg_id, responses, sink)
            finally:
                self._associations.close(assoc)

    def _retrieve_request(
        self, assoc: Association, models: tuple[str, str], keys: RetrieveKeys, operation: str
    ) -> tuple[str, Dataset]:
        """The query model the PACS accepted and the identifier to send with it."""
        model = self._query_model(assoc, models, operation)
        identifier = _retrieve_identifier(keys)
        if model == models[1]:  # Patient Root: the identifier needs the Patient ID
            query = _retrieve_identifier(RetrieveKeys(keys.study_uid))
            query.PatientID = ""
            found = {str(ds.get("PatientID", "")) for ds in self._collect(query)} - {""}
            if not found:
                raise NotFound(f"{keys.describe()} not found on PACS '{self._node.name}'")
            identifier.PatientID = found.pop()
        return model, identifier

    def _follow_retrieve(
        self,
        assoc: Association,
        operation: str,
        model: str,
        msg_id: int,
        responses: Iterator[tuple[Dataset, Dataset | None]],
        sink: InstanceSink,
    ) -> None:
        cancel_timer: threading.Timer | None = None
        try:
            for status, _ in responses:
                if "Status" not in status:
                    if cancel_timer is not None:
                        return  # we aborted it ourselves after the grace period
                    raise self._broken(assoc, operation, sink.last_activity,
                                       received=sink.received)
                sink.last_activity = time.monotonic()
                if sink.channel.cancelled and cancel_timer is None:
                    cancel_timer = self._cancel(assoc, msg_id, model)
                code = int(status.Status)
                if code in PENDING:
                    continue
                if code == SUCCESS:
                    self._await_stragglers(operation, status, sink)
                    return
                if code == CANCELLED and cancel_timer is not None:
                    return
                if sink.channel.cancelled:
                    return  # the client left; whatever the PACS says no one reads it
                raise self._failure(operation, code, received=sink.received,
                                    failed=status.get("NumberOfFailedSuboperations"))
        finally:
            if cancel_timer is not None:
                cancel_timer.cancel()

    def _await_stragglers(self, operation: str, status: Dataset, sink: InstanceSink) -> None:
        """Success means every instance the PACS counts as sent has reached us.

        They all have, except C-MOVE instances another replica received: those
        come through Redis, possibly after the final response. Waiting for them
        is what keeps a study from ending short without an error.
        """
        counts = [status.get(name) for name in
                  ("NumberOfCompletedSuboperations", "NumberOfWarningSuboperations")]
        reported = sum(int(count or 0) for count in counts)
        if sink.received >= reported or sink.wait_for(reported, self._node.timeout):
            sink.finished(reported=reported if any(c is not None for c in counts) else None,
                          failed=int(status.get("NumberOfFailedSuboperations") or 0))
            return
        raise PacsFailure(self._node.name,
                          f"{operation} reported {reported} instances sent, but "
                          f"{sink.received} arrived within {self._node.timeout:g} s")

    def _cancel(self, assoc: Association, msg_id: int, model: str) -> threading.Timer:
        """C-CANCEL, then abort if the PACS has not wound down within the grace period."""
        log.info("client went away: cancelling retrieve on PACS '%s'", self._node.name)
        with suppress(RuntimeError):
            assoc.send_c_cancel(msg_id, query_model=model)
        timer = threading.Timer(CANCEL_GRACE_SECONDS, assoc.abort)
        timer.daemon = True
        timer.start()
        return timer

    def _discover_holdings(self, keys: RetrieveKeys) -> dict[str, contexts.Holdings]:
        """Ask the PACS what a C-GET will return, to propose just that: for each
        series, its SOP classes and, where the PACS says, their stored syntaxes.

        One instance per series is enough (a series holds one kind of object in
        practice), and asking for every instance of a large series costs more
        than the retrieve itself: each series' IMAGE query is cancelled after
        its first answer. Not every PACS answers an IMAGE-level query (dcmqrscp
        needs the series UID, and omits SOP Class UID): the common classes are
        the fallback, for a series that does not say and when no series does.
        """
        try:
            if keys.series_uid is not None:
                series_uids = [keys.series_uid]
            else:
                query = _retrieve_identifier(keys)
                query.QueryRetrieveLevel = QueryLevel.SERIES.value
                query.SeriesInstanceUID = ""
                series_uids = [str(ds.SeriesInstanceUID) for ds in self._collect(query)
                               if ds.get("SeriesInstanceUID")]
            return {series_uid: self._series_holdings(keys, series_uid)
                    for series_uid in series_uids}
        except PacsError as exc:
            log.debug("SOP class discovery failed on '%s': %s", self._node.name, exc)
            return {}

    def _series_holdings(self, keys: RetrieveKeys, series_uid: str) -> contexts.Holdings:
        query = _retrieve_identifier(RetrieveKeys(keys.study_uid, series_uid, keys.instance_uid))
        query.QueryRetrieveLevel = QueryLevel.IMAGE.value
        query.SOPClassUID = ""
        query.SOPInstanceUID = keys.instance_uid or ""
        # PS3.4 C.6.1.1.5: the syntaxes the instance is available in (few PACS fill it).
        query.AvailableTransferSyntaxUID = ""
        holdings: dict[str, set[str]] = {}
        for answer in self._collect(query, first_only=True):
            if answer.get("SOPClassUID"):
                holdings.setdefault(str(answer.SOPClassUID), set()).update(
                    _stored_syntaxes(answer))
        return holdings or {sop_class: set() for sop_class in contexts.COMMON_STORAGE_SOP_CLASSES}

    # -- errors ---------------------------------------------------------------
    def _failure(
        self, operation: str, code: int, *, received: int = 0, failed: Any = None
    ) -> PacsError:
        error = failure_for_status(
            self._node.name, operation, code, our_ae_title=self._ae_title,
            store_address=self._receiver.address if self._receiver else "(no storage SCP)",
            received=received,
        )
        if received or failed:
            error.message += f" after {received} instance(s)"
            if failed:
                error.message += f", {failed} failed"
            error.args = (error.message,)
        return error

    def _broken(
        self, assoc: Association, operation: str, last_activity: float, *, received: int = 0
    ) -> PacsError:
        """No response: either our DIMSE timeout fired or the PACS aborted."""
        after = f" after {received} instance(s)" if received else ""
        if time.monotonic() - last_activity >= self._timeout * 0.9:
            return PacsTimeout(
                self._node.name,
                f"{operation} got no response within {self._timeout:g} s{after}",
            )
        return PacsFailure(self._node.name, f"aborted the association during {operation}{after}")


_OUTCOMES: dict[type[PacsError], str] = {
    PacsUnavailable: "unavailable",
    PacsTimeout: "timeout",
    PacsMisconfigured: "misconfigured",
}


class _NoResponse(Exception):
    """The association ended without a final response (timeout or abort)."""

    def __init__(self, last_activity: float, delivered: bool) -> None:
        super().__init__("no response")
        self.last_activity = last_activity
        self.delivered = delivered


_PATIENT_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")


def _model(assoc: Association, models: tuple[str, ...]) -> str | None:
    """The first of ``models`` the PACS accepted, else None."""
    accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
    return next((model for model in models if model in accepted), None)


def _stored_syntaxes(answer: Dataset) -> set[str]:
    """Available Transfer Syntax UID, or the (0002,0010) some PACS put in C-FIND answers."""
    syntaxes: set[str] = set()
    for tag in (_AVAILABLE_TRANSFER_SYNTAX_UID, _TRANSFER_SYNTAX_UID):
        value = answer[tag].value if tag in answer else None
        values = value if isinstance(value, MultiValue | list) else [value]
        syntaxes.update(str(syntax) for syntax in values if syntax)
    return syntaxes


_AVAILABLE_TRANSFER_SYNTAX_UID = 0x00083002
_TRANSFER_SYNTAX_UID = 0x00020010


def _needs_patient_id(query: Dataset) -> bool:
    return query.QueryRetrieveLevel != "PATIENT" and not query.get("PatientID", "")


def _retrieve_identifier(keys: RetrieveKeys) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = keys.level.value
    identifier.StudyInstanceUID = keys.study_uid
    if keys.series_uid is not None:
        identifier.SeriesInstanceUID = keys.series_uid
    if keys.instance_uid is not None:
        identifier.SOPInstanceUID = keys.instance_uid
    return identifier
