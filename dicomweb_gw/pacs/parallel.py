"""One study or series retrieve split across several associations to the same PACS node.

A C-GET or C-MOVE moves one instance per round trip (the PACS waits for each
C-STORE response), so on a real network one association is bound by round
trips, not bandwidth. Here one IMAGE-level C-FIND lists the instances
(``listing.py``), ``parallel_plan.py`` cuts them into IMAGE-level requests
naming lists of SOP Instance UIDs, first images first, and up to the node's
``retrieve_associations`` *parts* run them at once, each on an association of
its own, each taking the next request as it ends one (what they share:
``parallel_run.py``).

To the rest of the gateway it is still one retrieve (``PacsClient.retrieve``):
the parts share its channel, so single flight, the cache and the HTTP layer
see instances land as before, only from several associations. Instances come
in the order they land, interleaved across the parts; nothing above relies on
their order.

- Completeness: the ``RetrieveReport`` sums the requests (reported, received,
  failed); it says succeeded only if every request ended with Success.
- Cancellation: every request has its own watch and ``Stopper``
  (``Retriever.get_one``/``move_one``). When the client leaves, each is stopped
  as the node's ``cancel`` says; when a part fails, the others are stopped the
  same way (their outlet looks cancelled to them) and the error ends the retrieve.
- C-MOVE: each request registers its own Move Originator Message ID with the
  storage SCP, so with several replicas the cluster routes each on its own.
- Shrinking: the first part's association waits for room like any operation's;
  the others are *spare* (``Associations``): opened only if there is room now,
  given up after a second A-ASSOCIATE-RJ (the learned limit then caps the next
  retrieves), and they give their association up between two requests when an
  operation waits for room. A request refused for want of resources (0xA700-
  0xA702) hands what it has not delivered back to the others. Whatever is left
  when every part has stopped is finished on one association, as a plain
  retrieve would be.
- Falling back: a PACS that refuses IMAGE-level retrieves or lists of UIDs
  (0xA900 or 0xCxxx before anything arrived, or a request that brought another
  number of instances than it named) gets one study- or series-level retrieve
  instead, said once in the log and remembered. Instances that came already are
  not served twice. Small retrieves (``parallel_plan.worth_splitting``), single
  instances, a C-GET whose classes need several associations, and C-MOVEs to a
  PACS that leaves the Move Originator Message ID out (``move_originator =
  false``) go in one request too.

Runs in the DIMSE worker thread of the retrieve; each part in a thread of its own.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom.association import Association

from dicomweb_gw.errors import PacsError, PacsFailure, PacsTimeout
from dicomweb_gw.model import QueryLevel, RetrieveKeys, RetrieveReport
from dicomweb_gw.pacs import contexts
from dicomweb_gw.pacs.associations import Associations
from dicomweb_gw.pacs.failures import Failures
from dicomweb_gw.pacs.find import identifier_for
from dicomweb_gw.pacs.listing import Lister
from dicomweb_gw.pacs.parallel_plan import (
    Unit,
    fan_out,
    link_bound,
    plan_units,
    worth_splitting,
)
from dicomweb_gw.pacs.parallel_run import Outlet, Run, Stores
from dicomweb_gw.pacs.retrieve import NoCGet, Retriever
from dicomweb_gw.pacs.sink import InstanceSink
from dicomweb_gw.pacs.storescp import MoveReceiver
from dicomweb_gw.settings import PacsNode

__all__ = ["ParallelRetriever"]

log = logging.getLogger(__name__)

#: Refused: Out of Resources (PS3.4 C.4.2.1.4, C.4.3.1.4): that part stops and the
#: others take its share.
_OUT_OF_RESOURCES = frozenset({0xA700, 0xA701, 0xA702})
#: Identifier does not match SOP Class: a PACS that takes no IMAGE-level retrieve.
_IDENTIFIER_MISMATCH = 0xA900
_PATIENT_ROOT = frozenset({contexts.GET_MODELS[1], contexts.MOVE_MODELS[1]})


@dataclass(frozen=True)
class _Role:
    """How a part behaves: whether its association waits for room (not ``spare``),
    whether it gives it up to an operation waiting for room (``yields``), and whether
    a refusal for want of resources ends the retrieve (``strict``) or only the part."""

    spare: bool
    yields: bool
    strict: bool


_FIRST = _Role(spare=False, yields=False, strict=False)
_SPARE = _Role(spare=True, yields=True, strict=False)
#: What is left when every part has stopped: one association, as a plain retrieve.
_LAST = _Role(spare=False, yields=False, strict=True)


class ParallelRetriever:
    """The retrieves of one PACS node: split across associations when worth it."""

    def __init__(
        self, node: PacsNode, retriever: Retriever, lister: Lister, *,
        associations: Associations, failures: Failures, receiver: MoveReceiver | None = None,
    ) -> None:
        self._node = node
        self._retriever = retriever
        self._lister = lister
        self._associations = associations
        self._failures = failures
        self._receiver = receiver
        self._lock = threading.Lock()
        #: Learned: the PACS refuses IMAGE-level retrieves or lists of SOP Instance UIDs.
        self._lists_refused = False

    def retrieve(self, keys: RetrieveKeys, sink: InstanceSink) -> None:
        """The worker of ``PacsClient.retrieve``."""
        parts = self._parts_for(keys)
        if parts < 2:
            self._retriever.retrieve(keys, sink)
            return
        by_move = self._retriever.by_move
        try:
            listing = self._lister.listing(keys, holdings=not by_move)
        except PacsTimeout:
            raise  # a slow PACS: asking again in one request would only double the wait
        except PacsError as exc:
            log.debug("listing %s on PACS '%s' failed, retrieving it in one request: %s",
                      keys.describe(), self._node.name, exc)
            self._retriever.retrieve(keys, sink)
            return
        holdings = None if by_move else listing.holdings
        plans = [] if holdings is None else contexts.get_plans(
            holdings, compressed=self._node.compressed)
        if not worth_splitting(len(listing.instances), parts) or len(plans) > 1:
            self._retriever.retrieve(keys, sink, holdings)
            return
        sink.expect(len(listing.instances))
        units = plan_units(listing.instances, parts)
        plan = plans[0] if plans else None
        run = Run(keys, units, sink.channel, listing, "C-GET" if plan else "C-MOVE")
        log.debug("%s of %s from PACS '%s': %d instances in %d requests over up to %d "
                  "associations", run.operation, keys.describe(), self._node.name,
                  len(listing.instances), len(units), min(parts, len(units)))
        self._run_parts(run, plan, [_FIRST] + [_SPARE] * (min(parts, len(units)) - 1))
        if not run.stopped.is_set() and not sink.channel.cancelled and run.remaining:
            if not run.opened:  # no part got an association: that is the error
                raise run.first_quit_error() or PacsFailure(
                    self._node.name, f"{run.operation} could not start")
            self._run_parts(run, plan, [_LAST])
        self._finish(run, sink, holdings)

    def _parts_for(self, keys: RetrieveKeys) -> int:
        """How many associations ``keys`` may be split across (1: one request)."""
        if keys.instance_uid is not None or self._retriever.refuses(QueryLevel.IMAGE):
            return 1
        with self._lock:
            if self._lists_refused:
                return 1
        # Without the Move Originator Message ID, a move's instances are told apart by
        # their UIDs (MoveReceiver), and the parts of one study would all match.
        if self._retriever.by_move and (self._receiver is None or not self._node.move_originator):
            return 1
        parts = fan_out(self._node.retrieve_associations, self._associations.limit.value)
        if parts > 1 and not self._link_bound():
            return 1
        return parts

    def _link_bound(self) -> bool:
        """Whether round trips, not the gateway's CPU, bound a retrieve from the node
        (``parallel_plan.link_bound``). With none timed yet, some are now
        (associations opened and released: once per node)."""
        split_above = self._node.retrieve_split_above
        times = self._associations.round_trips
        if split_above > 0 and times.best is None:
            self._associations.measure(under=split_above)
        bound = link_bound(times.best, split_above)
        if not bound:
            log.debug("PACS '%s': round trip %.1f ms (under retrieve_split_above, %g s): one "
                      "request, not split", self._node.name,
                      (times.best or 0) * 1000, split_above)
        return bound

    # -- the parts -------------------------------------------------------------
    def _run_parts(self, run: Run, plan: contexts.GetPlan | None, roles: list[_Role]) -> None:
        threads = []
        for index, role in enumerate(roles):
            # Each part carries the request's context (its request id) into its log lines.
            context = contextvars.copy_context()
            thread = threading.Thread(target=context.run, args=(self._part, run, plan, role),
                                      name=f"part{index}-{self._node.name}", daemon=True)
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()

    def _part(self, run: Run, plan: contexts.GetPlan | None, role: _Role) -> None:
        stores = Stores()
        try:
            try:
                assoc = (self._retriever.open_move(spare=role.spare) if plan is None
                         else self._retriever.open_get(plan, stores.on_store, spare=role.spare))
            except NoCGet:
                run.fall_back(None)  # one request finds that out again, says so and moves
                return
            except PacsError as exc:
                if role.strict:
                    run.fail(exc)
                else:
                    run.quit(exc)
                return
            run.opened_one()
            try:
                self._take_requests(run, assoc, plan, stores, role)
            finally:
                self._associations.close(assoc)
        except BaseException as exc:  # a part that dies must not leave the others waiting
            run.fail(exc)

    def _take_requests(self, run: Run, assoc: Association, plan: contexts.GetPlan | None,
                       stores: Stores, role: _Role) -> None:
        total = self._node.total_timeout
        while not run.stopped.is_set() and not run.channel.cancelled:
            if 0 < total <= time.monotonic() - run.started:
                run.fail(self._failures.over_total(run.operation, received=run.delivered))
                return
            unit = run.take()
            if unit is None or not self._request(run, assoc, unit, plan, stores, role):
                return
            if role.yields and self._associations.waiting:
                return  # an operation waits for room: give it ours, the others go on

    def _request(self, run: Run, assoc: Association, unit: Unit,
                 plan: contexts.GetPlan | None, stores: Stores, role: _Role) -> bool:
        """One request of the run; whether the part goes on with the next one."""
        report = RetrieveReport()
        sink = InstanceSink(Outlet(run.channel, run, stoppable=True), report)
        # Study-level keys: a refusal is the run's to judge, not a level to climb.
        keys = RetrieveKeys(run.keys.study_uid)
        codes: list[int] = []

        def identifier(model: str) -> Dataset:
            return self._identifier(run, unit, model)

        try:
            if plan is None:
                receiver = self._receiver
                assert receiver is not None  # _parts_for checked it
                with receiver.expect(keys, sink, node=self._node.name) as msg_id:
                    self._retriever.move_one(assoc, keys, sink, msg_id, identifier=identifier,
                                             on_failure=codes.append)
            else:
                stores.current = sink
                try:
                    self._retriever.get_one(assoc, keys, sink, identifier=identifier,
                                            on_failure=codes.append)
                finally:
                    stores.current = None
        except PacsError as exc:
            self._request_failed(run, unit, sink, exc, codes[-1] if codes else None, role)
            return False
        if not report.succeeded:
            return False  # stopped: the client left, or the run ended
        if sink.received != len(unit.sop_instance_uids):
            run.fall_back(f"a request naming {len(unit.sop_instance_uids)} instances brought "
                          f"{sink.received}")
            return False
        run.succeeded(report)
        return True

    def _request_failed(self, run: Run, unit: Unit, sink: InstanceSink, error: PacsError,
                        code: int | None, role: _Role) -> None:
        if run.stopped.is_set():
            return  # the run was ended already: this is the echo of it
        refused = code is not None and (code == _IDENTIFIER_MISMATCH or code & 0xF000 == 0xC000)
        if refused and not sink.received and not run.reports:
            assert code is not None
            run.fall_back(f"0x{code:04X}")
        elif code in _OUT_OF_RESOURCES and not role.strict:
            run.give_back(unit)
            run.quit(error)
        else:
            run.fail(error)

    def _identifier(self, run: Run, unit: Unit, model: str) -> Dataset:
        """IMAGE level, one series, the request's SOP Instance UIDs (PS3.4 C.4.2.2.1:
        a list of UIDs is matched at the level's unique key)."""
        identifier = identifier_for(RetrieveKeys(run.keys.study_uid, unit.series_uid))
        identifier.QueryRetrieveLevel = QueryLevel.IMAGE.value
        uids = list(unit.sop_instance_uids)
        identifier.SOPInstanceUID = uids if len(uids) > 1 else uids[0]
        if model in _PATIENT_ROOT:
            identifier.PatientID = run.patient_id(lambda: self._retriever.patient_id(run.keys))
        return identifier

    # -- the end ---------------------------------------------------------------
    def _finish(self, run: Run, sink: InstanceSink,
                holdings: dict[str, contexts.Holdings] | None) -> None:
        if sink.channel.cancelled:
            return  # the client left: every part was stopped
        if run.falls_back:
            self._fall_back(run, sink, holdings)
            return
        if run.error is not None:
            raise run.error
        if run.remaining:  # every part stopped without an error: cannot happen
            raise PacsFailure(self._node.name, f"{run.operation} ended with "
                                               f"{run.remaining} request(s) not sent")
        report = sink.report
        if report is not None:
            reports = run.reports
            report.succeeded = True
            report.reported = (None if any(r.reported is None for r in reports)
                               else sum(r.reported or 0 for r in reports))
            report.failed = sum(r.failed for r in reports)
            report.received = sum(r.received for r in reports)

    def _fall_back(self, run: Run, sink: InstanceSink,
                   holdings: dict[str, contexts.Holdings] | None) -> None:
        """One study- or series-level retrieve; what came already is not served twice."""
        why = run.fallback_reason
        if why is not None:
            with self._lock:
                first, self._lists_refused = not self._lists_refused, True
            if first:
                log.warning(
                    "PACS '%s' does not take IMAGE-level %s with a list of SOP Instance UIDs "
                    "(%s): retrieving each study or series in one request from now on "
                    "(retrieve_associations = 1 in [pacs.%s] skips the attempt)",
                    self._node.name, run.operation, why, self._node.name)
        outlet = Outlet(run.channel, run, stoppable=False)
        self._retriever.retrieve(run.keys, InstanceSink(outlet, sink.report), holdings)
