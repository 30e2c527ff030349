"""C-GET and C-MOVE: send the request, follow the responses, check the PACS's count.

A C-GET's instances arrive on its own association(s), planned from what the
PACS holds (``holdings.py``, ``contexts.get_plans``); a C-MOVE's arrive on the
gateway's storage SCP (``storescp.MoveReceiver``). Either way they land in the
retrieve's ``InstanceSink``. A ``RetrieveWatch`` beside the reading thread
stops a retrieve whose client left (C-CANCEL, then A-ABORT if the PACS is still
at it ``cancelling.CANCEL_GRACE_SECONDS`` later; A-ABORT at once with ``cancel = "abort"``),
whose PACS said nothing for ``idle_timeout`` (Pending responses count), or that
ran past ``total_timeout``.

What a PACS turns out not to do is remembered per node and worked around:

- no C-GET (it accepts no C-GET context: knopkem/dicomweb-proxy#3): the
  retrieve goes by C-MOVE, said once in the log with the setting that makes it
  permanent; the storage SCP is started for it if no node needed it so far.
  If C-MOVE cannot be used either, the error says both, and what to register.
- a retrieve level refused with 0xA900 (Identifier does not match SOP Class;
  PACS that take no IMAGE-level retrieve, so no single instance): the level
  above (the instance's series, then its study) is retrieved instead. Every
  instance is cached, only those the request asked for are served (the flight
  checks each with ``RetrieveKeys.covers``).

A retrieve split across several associations (``parallel.py``) sends its
requests through ``get_one`` and ``move_one``, on associations opened with
``open_get`` and ``open_move``, with identifiers of its own.

Runs in a DIMSE worker thread (see ``workers.py``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association

from dicomweb_gw.errors import NotFound, PacsError, PacsFailure
from dicomweb_gw.model import QueryLevel, RetrieveKeys
from dicomweb_gw.pacs import contexts
from dicomweb_gw.pacs.associations import Associations, NoContextAccepted
from dicomweb_gw.pacs.cancelling import Stopper
from dicomweb_gw.pacs.failures import Failures
from dicomweb_gw.pacs.find import Finder, identifier_for, query_model
from dicomweb_gw.pacs.holdings import HoldingsFinder
from dicomweb_gw.pacs.retrieve_watch import RetrieveWatch
from dicomweb_gw.pacs.sink import InstanceSink
from dicomweb_gw.pacs.sockets import FAST_POLL_HANDLER
from dicomweb_gw.pacs.status import PENDING, SUCCESS
from dicomweb_gw.pacs.storescp import MoveReceiver
from dicomweb_gw.settings import PacsNode

__all__ = ["IdentifierFor", "NoCGet", "OnFailure", "Retriever", "await_stragglers"]

log = logging.getLogger(__name__)

#: Failed: Identifier does not match SOP Class (PS3.4 C.4.2.1.4, C.4.3.1.4): what a
#: PACS answers a retrieve at a level it does not take.
IDENTIFIER_MISMATCH = 0xA900

Responses = Iterator[tuple[Dataset, Dataset | None]]
#: Builds the error for a final failure status (code, the response's status data set).
FailureFor = Callable[[int, Dataset], PacsError]
#: The identifier of a request, for the query model the PACS accepted.
IdentifierFor = Callable[[str], Dataset]
#: Told the final failure status of a request before its error is raised.
OnFailure = Callable[[int], None]


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
        self._holdings = HoldingsFinder(finder)
        self._failures = failures
        self._message_id = message_id
        self._receiver = receiver
        self._lock = threading.Lock()
        #: Learned: the PACS accepts no C-GET context (retrieves go by C-MOVE).
        self._no_c_get = False
        #: Learned: retrieve levels the PACS refuses (the level above is asked for).
        self._refused_levels: set[QueryLevel] = set()

    @property
    def by_move(self) -> bool:
        """Whether a retrieve goes by C-MOVE: configured, or the PACS has no C-GET."""
        return self._node.retrieve == "c-move" or self._no_c_get

    def refuses(self, level: QueryLevel) -> bool:
        """Whether the PACS turned out to refuse retrieves at ``level``."""
        with self._lock:
            return level in self._refused_levels

    def retrieve(self, keys: RetrieveKeys, sink: InstanceSink,
                 holdings: Mapping[str, contexts.Holdings] | None = None) -> None:
        """The worker of ``PacsClient.retrieve``: one request (or one per association
        a C-GET needs). ``holdings``: what each series under ``keys`` holds, when the
        caller asked already (a C-GET then asks no C-FIND for it)."""
        if self._node.retrieve == "c-move":
            self.move(keys, sink)
        elif self._no_c_get:
            self._move_instead(keys, sink, local_host=None)
        else:
            self.get(keys, sink, holdings)

    # -- C-GET ----------------------------------------------------------------
    def get(self, keys: RetrieveKeys, sink: InstanceSink,
            holdings: Mapping[str, contexts.Holdings] | None = None) -> None:
        """C-GET over one association, or over several, series by series, when the
        stored syntaxes of the whole retrieve do not fit in one (``contexts.get_plans``);
        by C-MOVE if the PACS accepts no C-GET."""
        def run(level_keys: RetrieveKeys, level_sink: InstanceSink) -> None:
            self._get(level_keys, level_sink, holdings if level_keys == keys else None)

        try:
            self._by_level(keys, sink, run, "C-GET")
        except NoCGet as refused:
            if sink.received:  # a later association of a split C-GET: cannot start over
                raise self._failures.no_c_get(refused.local_host, "part of it was sent") from None
            self._move_instead(keys, sink, refused.local_host)

    def _get(self, keys: RetrieveKeys, sink: InstanceSink,
             holdings: Mapping[str, contexts.Holdings] | None) -> None:
        if holdings is None:
            holdings = self._holdings.discover(keys)
        for plan in contexts.get_plans(holdings, compressed=self._node.compressed):
            parts = [RetrieveKeys(keys.study_uid, series_uid) for series_uid in plan.series_uids]
            assoc = self.open_get(plan, sink.on_store)
            try:
                for part in parts or [keys]:
                    if sink.channel.cancelled:
                        return
                    self.get_one(assoc, part, sink)
            finally:
                self._associations.close(assoc)

    def open_get(self, plan: contexts.GetPlan, on_store: Callable[[Any], int], *,
                 spare: bool = False) -> Association:
        """The association of one C-GET plan, its C-STOREs handed to ``on_store``;
        ``NoCGet`` if the PACS took no C-GET model (``spare``: see ``Associations``)."""
        try:
            assoc = self._open(plan.contexts, ext_neg=plan.roles, spare=spare,
                               handlers=[(evt.EVT_C_STORE, on_store), FAST_POLL_HANDLER])
        except NoContextAccepted as refused:
            if set(refused.rejected) & set(contexts.GET_MODELS):
                raise NoCGet(None) from None
            raise
        accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
        if not accepted & set(contexts.GET_MODELS):
            local_host = _local_host(assoc)
            self._associations.close(assoc)
            raise NoCGet(local_host)
        return assoc

    def get_one(self, assoc: Association, keys: RetrieveKeys, sink: InstanceSink, *,
                identifier: IdentifierFor | None = None,
                on_failure: OnFailure | None = None) -> None:
        """One C-GET on ``assoc``: of ``keys``, or with the ``identifier`` given."""
        model, request = self._request(assoc, contexts.GET_MODELS, keys, "C-GET", identifier)
        msg_id = self._message_id()
        local_host = _local_host(assoc)

        def failure(code: int, status: Dataset) -> PacsError:
            if on_failure is not None:
                on_failure(code)
            return self._failures.for_status(
                "C-GET", code, received=sink.received,
                failed=status.get("NumberOfFailedSuboperations"), local_host=local_host)

        self._run(assoc, "C-GET", model, msg_id, keys, sink, failure,
                  lambda: assoc.send_c_get(request, model, msg_id=msg_id))

    # -- C-MOVE ---------------------------------------------------------------
    def move(self, keys: RetrieveKeys, sink: InstanceSink) -> None:
        """C-MOVE to the gateway's own storage SCP, which hands each instance to ``sink``."""
        self._by_level(keys, sink, self._move, "C-MOVE")

    def _move(self, keys: RetrieveKeys, sink: InstanceSink) -> None:
        receiver = self._receiver
        if receiver is None:
            raise PacsFailure(self._node.name, "C-MOVE needs the gateway's storage SCP")
        with receiver.expect(keys, sink, node=self._node.name) as msg_id:
            assoc = self.open_move()
            try:
                if sink.channel.cancelled:  # the client left while we waited for room
                    return
                self.move_one(assoc, keys, sink, msg_id)
            finally:
                self._associations.close(assoc)

    def open_move(self, *, spare: bool = False) -> Association:
        """A C-MOVE association (``spare``: see ``Associations``)."""
        return self._open(contexts.move_contexts(), handlers=[FAST_POLL_HANDLER], spare=spare)

    def move_one(self, assoc: Association, keys: RetrieveKeys, sink: InstanceSink, msg_id: int,
                 *, identifier: IdentifierFor | None = None,
                 on_failure: OnFailure | None = None) -> None:
        """One C-MOVE on ``assoc``, registered with the storage SCP as ``msg_id``: of
        ``keys``, or with the ``identifier`` given."""
        receiver = self._receiver
        if receiver is None:
            raise PacsFailure(self._node.name, "C-MOVE needs the gateway's storage SCP")
        model, request = self._request(assoc, contexts.MOVE_MODELS, keys, "C-MOVE", identifier)
        local_host = _local_host(assoc)
        connections = receiver.connections

        def failure(code: int, status: Dataset) -> PacsError:
            if on_failure is not None:
                on_failure(code)
            # Whether the PACS connected back at all (unknowable with replicas:
            # its sub-association may have reached another one).
            reached = (None if receiver.routing is not None
                       else receiver.connections > connections)
            return self._failures.move_failed(
                code, received=sink.received, failed=status.get("NumberOfFailedSuboperations"),
                local_host=local_host, reached=reached)

        self._run(assoc, "C-MOVE", model, msg_id, keys, sink, failure,
                  lambda: assoc.send_c_move(request, self._ae_title, model, msg_id=msg_id))

    def _move_instead(self, keys: RetrieveKeys, sink: InstanceSink,
                      local_host: str | None) -> None:
        """C-MOVE for a C-GET node whose PACS accepts no C-GET."""
        receiver = self._receiver
        if receiver is None:
            raise self._failures.no_c_get(local_host, "this gateway has no storage SCP for "
                                                      "C-MOVE")
        try:
            receiver.ensure_started()
        except OSError as exc:
            raise self._failures.no_c_get(
                local_host, f"the gateway's storage SCP for a C-MOVE instead cannot listen on "
                            f"port {receiver.port} ({exc.strerror})") from None
        with self._lock:
            first, self._no_c_get = not self._no_c_get, True
        if first:
            log.warning(
                "PACS '%s' accepts no C-GET (no C-GET context accepted at association): "
                "retrieving by C-MOVE instead, to AE title '%s' at %s, which the PACS must "
                "know. Set retrieve = \"c-move\" in [pacs.%s] (DICOMWEB_GW_RETRIEVE=c-move for "
                "the default node) to go to C-MOVE directly", self._node.name, self._ae_title,
                self._failures.store_address(local_host), self._node.name)
        try:
            self.move(keys, sink)
        except PacsError as exc:
            raise self._failures.after_no_c_get(exc) from None

    # -- both -----------------------------------------------------------------
    def _open(self, requested: list[Any], **options: Any) -> Association:
        """A retrieve association. Its idle timeout is the watch's, not pynetdicom's
        per-message one: on a C-MOVE the instances flow over another association."""
        assoc = self._associations.associate(requested, **options)
        assoc.dimse_timeout = None
        assoc.network_timeout = None
        return assoc

    def _by_level(self, keys: RetrieveKeys, sink: InstanceSink,
                  run: Callable[[RetrieveKeys, InstanceSink], None], operation: str) -> None:
        """``run`` at the level ``keys`` name, or at the one above if the PACS refuses it."""
        level_keys = keys
        while level_keys.level in self._refused_levels and (up := _above(level_keys)):
            level_keys = up
        while True:
            try:
                run(level_keys, sink)
                return
            except _LevelRefused as refused:
                above = _above(level_keys)
                if above is None:
                    raise refused.error from None
                with self._lock:
                    first = level_keys.level not in self._refused_levels
                    self._refused_levels.add(level_keys.level)
                if first:
                    log.warning(
                        "PACS '%s' refuses %s-level %s (0x%04X): retrieving the %s level "
                        "instead (the other instances are cached; only those asked for are "
                        "sent)", self._node.name, level_keys.level.value, operation,
                        IDENTIFIER_MISMATCH, above.level.value)
                level_keys = above

    def _request(
        self, assoc: Association, models: tuple[str, str], keys: RetrieveKeys, operation: str,
        identifier: IdentifierFor | None = None,
    ) -> tuple[str, Dataset]:
        """The query model the PACS accepted and the identifier to send with it."""
        model = query_model(self._node, assoc, models, operation)
        if identifier is not None:
            return model, identifier(model)
        request = identifier_for(keys)
        if model == models[1]:  # Patient Root: the identifier needs the Patient ID
            request.PatientID = self.patient_id(keys)
        return model, request

    def patient_id(self, keys: RetrieveKeys) -> str:
        """The Patient ID of the study ``keys`` name (a Patient Root retrieve needs it)."""
        query = identifier_for(RetrieveKeys(keys.study_uid))
        query.PatientID = ""
        found = {str(ds.get("PatientID", "")) for ds in self._finder.collect(query)} - {""}
        if not found:
            raise NotFound(f"{keys.describe()} not found on PACS '{self._node.name}'")
        return found.pop()

    def _run(
        self, assoc: Association, operation: str, model: str, msg_id: int, keys: RetrieveKeys,
        sink: InstanceSink, failure: FailureFor, send: Callable[[], Responses],
    ) -> None:
        """Send the request and read its responses to the end, under a watch."""
        stopper = Stopper(assoc, msg_id, model, method=self._node.cancel,
                          node_name=self._node.name, operation=operation)
        try:
            with RetrieveWatch(self._node, operation, stopper, sink) as watch:
                self._follow(operation, keys, send(), sink, watch, failure)
        finally:
            stopper.close()  # after the watch has stopped: nothing aborts from now on

    def _follow(
        self, operation: str, keys: RetrieveKeys, responses: Responses, sink: InstanceSink,
        watch: RetrieveWatch, failure: FailureFor,
    ) -> None:
        """Read the responses to the end: the final one, or the association's end."""
        for status, _ in responses:
            if "Status" not in status:
                if watch.reason == "left":
                    return  # we stopped it: the client is gone
                if watch.reason == "total":
                    raise self._failures.over_total(operation, received=sink.received)
                raise self._failures.silent(operation, watch.last_heard,
                                            received=sink.received)
            watch.heard()
            code = int(status.Status)
            if code in PENDING:
                remaining = status.get("NumberOfRemainingSuboperations")
                # Optional, and a quirky PACS may send it empty or odd: only a count counts.
                sink.pending(remaining if isinstance(remaining, int) else None)
                continue
            if sink.channel.cancelled:
                return  # the client left; whatever the PACS says no one reads it
            if code == SUCCESS:
                await_stragglers(self._node, operation, status, sink)
                return
            error = failure(code, status)
            if code == IDENTIFIER_MISMATCH and not sink.received and _above(keys) is not None:
                raise _LevelRefused(error)
            raise error


def await_stragglers(node: PacsNode, operation: str, status: Dataset, sink: InstanceSink) -> None:
    """Success means every instance the PACS counts as sent has reached us.

    They all have, except C-MOVE instances another replica received: those
    come through Redis, possibly after the final response. Waiting for them
    (while they keep coming, up to the node's idle timeout between two) is
    what keeps a study from ending short without an error.
    """
    counts = [status.get(name) for name in
              ("NumberOfCompletedSuboperations", "NumberOfWarningSuboperations")]
    reported = sum(int(count or 0) for count in counts)
    idle = node.dimse_idle_timeout
    if sink.received >= reported or sink.wait_for(reported, idle):
        sink.finished(reported=reported if any(c is not None for c in counts) else None,
                      failed=int(status.get("NumberOfFailedSuboperations") or 0))
        return
    raise PacsFailure(node.name,
                      f"{operation} reported {reported} instances sent, but "
                      f"{sink.received} arrived (none for {idle:g} s: idle_timeout)")


class NoCGet(Exception):
    """The PACS accepted no C-GET model on the association."""

    def __init__(self, local_host: str | None) -> None:
        super().__init__("no C-GET")
        self.local_host = local_host


class _LevelRefused(Exception):
    """The PACS refused the retrieve's level (0xA900) before sending anything."""

    def __init__(self, error: PacsError) -> None:
        super().__init__(error.message)
        self.error = error


def _above(keys: RetrieveKeys) -> RetrieveKeys | None:
    """The keys one level up (an instance's series, a series' study); None for a study."""
    if keys.instance_uid is not None and keys.series_uid is not None:
        return RetrieveKeys(keys.study_uid, keys.series_uid)
    if keys.instance_uid is not None or keys.series_uid is not None:
        return RetrieveKeys(keys.study_uid)
    return None


def _local_host(assoc: Association) -> str | None:
    """Our end of the association: the address the PACS sees the gateway at."""
    address = getattr(assoc.requestor, "address", None)
    return str(address) if address else None
