"""Associations to one PACS: opening them, the pool of idle C-FIND/C-ECHO ones, limits.

Opening an association costs a TCP connect plus an A-ASSOCIATE round trip, so
query associations are kept and reused; transfer associations (C-GET, C-MOVE,
C-STORE) are opened per operation because their presentation contexts depend
on what is transferred. Idle ones are released before the PACS or pynetdicom
times them out, and the gateway never holds more than the PACS's limit
(``limits.py``): an operation waits for room, closing idle ones first. A PACS
that refuses one more association (transient A-ASSOCIATE-RJ) teaches the
gateway its real limit.

A *spare* association (the second and later parts of a retrieve split across
several, ``parallel.py``) never waits: it is opened only if there is room now,
and given up after a second refusal, so that a PACS allowing fewer
associations than the fan-out shrinks it instead of failing the retrieve.
``waiting`` tells the holders of spare ones that an operation waits for room.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pynetdicom import AE, evt
from pynetdicom import _config as pynetdicom_config
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import A_ASSOCIATE, A_RELEASE
from pynetdicom.presentation import PresentationContext

from dicomweb_gw.errors import PacsError, PacsMisconfigured, PacsTimeout, PacsUnavailable
from dicomweb_gw.metrics import GatewayMetrics
from dicomweb_gw.pacs import contexts, reactor, store_response
from dicomweb_gw.pacs.limits import AssociationLimit
from dicomweb_gw.pacs.round_trips import RoundTrips
from dicomweb_gw.pacs.sockets import NODELAY_HANDLER
from dicomweb_gw.settings import PacsNode

__all__ = ["IDLE_SECONDS", "MAX_PDU", "MEASURE_TRIES", "Associations", "NoContextAccepted",
           "NoRoom"]

log = logging.getLogger(__name__)

# Every association the gateway opens or accepts waits for events instead of polling.
reactor.install()
# Each instance received is answered with a C-STORE-RSP encoded without pydicom.
store_response.install()
# pynetdicom binds "standard" handlers to every association that format each PDU and
# DIMSE message for its log: a sixth of the receive path's CPU on a retrieve, for lines
# the gateway never shows (logs.py keeps pynetdicom at CRITICAL). Warnings and errors
# are logged all the same.
pynetdicom_config.LOG_HANDLER_LEVEL = "none"

#: Our receive PDU size. Large PDUs cut per-PDU overhead on the receive path,
#: which is where pynetdicom spends its time on a retrieve.
MAX_PDU = 4 * 1024 * 1024
#: Idle pooled associations older than this are closed rather than reused:
#: PACS drop idle associations after a while, and a dead one costs a retry.
IDLE_SECONDS = 20.0
#: Associations a node's first round-trip measurement may open (``measure``).
MEASURE_TRIES = 3
#: A-ASSOCIATE-RJ results (PS3.8 9.3.4).
_PERMANENT, _TRANSIENT = 0x01, 0x02
#: Pauses between attempts while a PACS refuses for a passing reason. The first
#: retry also covers an association we released a moment ago that the PACS has
#: not counted as closed yet.
_BUSY_PAUSES = (0.2, 0.5, 1.0)
#: Waiting for one of our own associations to be freed: bounded, so that a
#: bookkeeping slip ends in an error rather than a hang. Each of them ends within
#: the idle (or total) timeout of the operation holding it.
_ROOM_WAIT_TIMEOUTS = 4


class NoContextAccepted(PacsMisconfigured):
    """The PACS accepted the association but none of the presentation contexts proposed."""

    def __init__(self, pacs: str, rejected: Sequence[PresentationContext]) -> None:
        names = sorted({str(cx.abstract_syntax.name) for cx in rejected
                        if cx.abstract_syntax is not None})
        super().__init__(pacs, "accepted none of the presentation contexts proposed "
                               f"({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})")
        self.rejected = [str(cx.abstract_syntax) for cx in rejected]


class NoRoom(PacsUnavailable):
    """A spare association found the node's limit reached (nothing was asked of the PACS)."""


class Associations:
    def __init__(self, node: PacsNode, *, ae_title: str,
                 metrics: GatewayMetrics | None = None) -> None:
        self._node = node
        self._ae_title = ae_title
        self._timeout = node.timeout
        self._ae = AE(ae_title=ae_title)
        self._ae.acse_timeout = node.timeout
        # pynetdicom waits this long for *each* DIMSE message: an idle timeout, which
        # every Pending response (and, on a C-GET, every C-STORE) starts anew.
        self._ae.dimse_timeout = node.dimse_idle_timeout
        # The DUL drops an association that received nothing for this long: never
        # before the idle timeout has had its say.
        self._ae.network_timeout = max(node.timeout, node.dimse_idle_timeout)
        self._ae.connection_timeout = min(node.timeout, 10.0)
        self.limit = AssociationLimit(node)
        #: How long the node took to answer our A-RELEASE-RQs: its round trip.
        self.round_trips = RoundTrips()
        self._room = threading.Condition()
        self._idle: list[tuple[float, Association]] = []
        self._open = 0
        self._pending = 0  # reserved, not yet established: not (yet) counted by the PACS
        self._waiting = 0
        self._holding = threading.local()  # associations the current thread's operation holds
        # Shorter than the network timeout, so we release idle associations first.
        self._idle_seconds = min(IDLE_SECONDS, node.timeout / 2)
        if metrics is not None:
            metrics.associations.labels(node.name).set_function(lambda: self._open)

    @property
    def open(self) -> int:
        """Associations open now (pooled idle ones included)."""
        return self._open

    @property
    def waiting(self) -> int:
        """Operations waiting for room under the limit now."""
        return self._waiting

    def close_idle(self) -> None:
        with self._room:
            idle, self._idle = self._idle, []
        for _, assoc in idle:
            self._discard(assoc)

    def associate(
        self,
        requested: list[Any],
        *,
        ext_neg: list[Any] | None = None,
        handlers: Sequence[tuple[Any, Callable[..., Any]]] = (),
        spare: bool = False,
    ) -> Association:
        """An association for the calling thread's operation, within the node's limit
        (waiting for room if need be); give it back with ``close``. A ``spare`` one
        does not wait: ``NoRoom`` at the limit, ``PacsUnavailable`` after a second
        transient refusal."""
        started = time.monotonic()
        refusals = 0
        while True:
            self._reserve(started + _ROOM_WAIT_TIMEOUTS * self._timeout, wait=not spare)
            attempt = time.monotonic()
            try:
                assoc, rejection = self._request(requested, ext_neg, handlers)
            except BaseException:
                self._unreserve()
                raise
            if assoc.is_established:
                _keep_stray_responses(assoc)
                with self._room:
                    self._pending -= 1
                self._hold(+1)
                return assoc
            self._unreserve()
            if rejection != _TRANSIENT:
                raise self._not_established(assoc, rejection, attempt)
            refusals += 1
            with self._room:
                # Established ones only: another thread's attempt in flight is not
                # among those the PACS counted when it refused this one.
                open_now = self._open - self._pending
            if refusals >= 2:  # not a close the PACS had yet to count: its limit
                self.limit.refused_beyond(open_now)
            # Waiting on ourselves has no end; a spare is not worth waiting for.
            gave_up = (self._holds() or spare) and refusals >= 2
            if gave_up or time.monotonic() - started >= self._timeout:
                raise PacsUnavailable(
                    self._node.name,
                    f"refused an association with {open_now} open (A-ASSOCIATE-RJ, transient): "
                    "it is busy, or allows fewer than the gateway's max_associations "
                    f"({self._node.max_associations})")
            time.sleep(_BUSY_PAUSES[min(refusals, len(_BUSY_PAUSES)) - 1])

    def measure(self, under: float, tries: int = MEASURE_TRIES) -> None:
        """Time round trips (``round_trips``) now: query associations opened and
        released one after another, until one comes back in less than ``under``
        seconds or ``tries`` were timed. One sample is one moment: a busy gateway or
        PACS can hold a loopback release for tens of ms, and that alone would split
        every retrieve from a PACS next door; the best of a few is the link. A near
        PACS is usually timed once, a far one ``tries`` times; either once per node.
        A PACS that refuses leaves nothing timed; the operation that asked goes on and
        meets the refusal itself."""
        for _ in range(tries):
            try:
                assoc = self.associate(contexts.find_contexts())
            except PacsError as exc:
                log.debug("PACS '%s': no round trip to time: %s", self._node.name, exc)
                return
            self.close(assoc)
            best = self.round_trips.best
            if best is None or best < under:
                return

    def close(self, assoc: Association) -> None:
        """Release an association ``associate`` gave the calling thread."""
        self._hold(-1)
        self._discard(assoc)

    def _request(
        self, requested: list[Any], ext_neg: list[Any] | None,
        handlers: Sequence[tuple[Any, Callable[..., Any]]],
    ) -> tuple[Association, int | None]:
        """One A-ASSOCIATE; the association and, if it was rejected, the RJ's result."""
        rejection: list[int] = []
        release_sent: list[float] = []

        def on_acse_sent(event: Any) -> None:
            if isinstance(event.primitive, A_RELEASE) and event.primitive.result is None:
                release_sent.append(time.monotonic())

        def on_acse(event: Any) -> None:
            primitive = event.primitive
            if isinstance(primitive, A_ASSOCIATE) and primitive.result in (_PERMANENT,
                                                                           _TRANSIENT):
                rejection.append(int(primitive.result))
            elif (isinstance(primitive, A_RELEASE) and primitive.result is not None
                  and release_sent):
                # A-RELEASE-RQ to -RP: one round trip, and next to no work for the PACS
                # (unlike an A-ASSOCIATE, which some take tens of ms to negotiate).
                self.round_trips.add(time.monotonic() - release_sent[0])

        assoc = self._ae.associate(
            self._node.host,
            self._node.port,
            contexts=requested,
            ae_title=self._node.ae_title,
            max_pdu=MAX_PDU,
            ext_neg=ext_neg,
            evt_handlers=[NODELAY_HANDLER, (evt.EVT_ACSE_SENT, on_acse_sent),
                          (evt.EVT_ACSE_RECV, on_acse), *handlers],
        )
        return assoc, _rejection_result(assoc, rejection)

    def _not_established(self, assoc: Association, rejection: int | None,
                         attempt: float) -> PacsUnavailable | PacsTimeout | PacsMisconfigured:
        where = f"{self._node.host}:{self._node.port}"
        if rejection is not None or assoc.is_rejected:
            return PacsUnavailable(
                self._node.name,
                f"rejected the association (called AE '{self._node.ae_title}', calling AE "
                f"'{self._ae_title}'): check both AE titles are configured on the PACS",
            )
        if assoc.rejected_contexts and not assoc.accepted_contexts:
            return NoContextAccepted(self._node.name, assoc.rejected_contexts)
        if time.monotonic() - attempt >= min(self._timeout, 10.0) - 0.5:
            return PacsTimeout(self._node.name, f"no answer from {where} within the timeout")
        return PacsUnavailable(self._node.name, f"cannot connect to {where}")

    # -- room under the limit -------------------------------------------------
    def _reserve(self, deadline: float, *, wait: bool = True) -> None:
        """Count one more association before opening it: close idle pooled ones to
        make room, else wait for one of ours to end (``NoRoom`` at once if not
        ``wait``). An operation that already holds one (a Patient ID look-up during
        a C-MOVE) does not wait for itself."""
        victims: list[Association] = []
        try:
            with self._room:
                while self._open >= self.limit.value:
                    if self._idle:
                        victims.append(self._idle.pop(0)[1])
                        self._open -= 1
                        continue
                    if self._holds():
                        break
                    if not wait:
                        raise NoRoom(self._node.name,
                                     f"all {self.limit.value} associations to it are in use")
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise PacsUnavailable(
                            self._node.name,
                            f"all {self.limit.value} associations to it stayed busy "
                            f"(max_associations = {self._node.max_associations})")
                    self._waiting += 1
                    try:
                        self._room.wait(min(remaining, 1.0))
                    finally:
                        self._waiting -= 1
                self._open += 1
                self._pending += 1
        finally:
            for assoc in victims:
                _release(assoc)

    def _unreserve(self) -> None:
        with self._room:
            self._open -= 1
            self._pending -= 1
            self._room.notify_all()

    def _discard(self, assoc: Association) -> None:
        with self._room:
            self._open -= 1
            self._room.notify_all()
        _release(assoc)

    def _hold(self, delta: int) -> None:
        self._holding.count = getattr(self._holding, "count", 0) + delta

    def _holds(self) -> bool:
        return getattr(self._holding, "count", 0) > 0

    # -- the pool -------------------------------------------------------------
    @contextmanager
    def pooled(self) -> Iterator[tuple[Association, bool]]:
        """A C-FIND/C-ECHO association, reused across requests.

        Yields ``(assoc, reused)``. The association goes back to the pool only
        if the operation left it established and idle.
        """
        assoc, reused = self._checkout()
        ok = False
        try:
            yield assoc, reused
            ok = True
        finally:
            self._hold(-1)
            if ok and assoc.is_established:
                with self._room:
                    self._idle.append((time.monotonic(), assoc))
                    self._room.notify_all()  # a waiter may close it to make room
                # Release it ourselves once idle long enough, before pynetdicom's
                # network timeout aborts it (and logs an ERROR that alarms admins).
                reaper = threading.Timer(self._idle_seconds + 0.5, self._reap_idle)
                reaper.daemon = True
                reaper.start()
            else:
                if assoc.is_established:
                    assoc.abort()
                with self._room:
                    self._open -= 1
                    self._room.notify_all()

    def _reap_idle(self) -> None:
        now = time.monotonic()
        with self._room:
            stale = [assoc for since, assoc in self._idle if now - since >= self._idle_seconds]
            self._idle = [(since, a) for since, a in self._idle if a not in stale]
        for assoc in stale:
            self._discard(assoc)

    def _checkout(self) -> tuple[Association, bool]:
        now = time.monotonic()
        stale: list[Association] = []
        found: Association | None = None
        with self._room:
            while self._idle:
                since, assoc = self._idle.pop()
                if assoc.is_established and now - since < self._idle_seconds:
                    found = assoc
                    break
                stale.append(assoc)
        for assoc in stale:
            self._discard(assoc)
        if found is not None:
            self._hold(+1)
            return found, True
        return self.associate(contexts.find_contexts()), False


def _rejection_result(assoc: Association, seen: list[int]) -> int | None:
    """The A-ASSOCIATE-RJ result (permanent or transient), if the PACS rejected."""
    if seen:
        return seen[-1]
    if not assoc.is_rejected:
        return None
    primitive = getattr(assoc.acceptor, "primitive", None)
    result = getattr(primitive, "result", None)
    return int(result) if isinstance(result, int) else _PERMANENT


def _release(assoc: Association) -> None:
    if assoc.is_established:
        assoc.release()


def _keep_stray_responses(assoc: Association) -> None:
    """Work around a pynetdicom race (pydicom/pynetdicom#875).

    Between two ``send_*()`` calls its reactor thread can wake up, find the next
    response already queued and take it for an incoming request: it logs
    "Received unexpected C-STORE service message" and drops it, and the sender
    then waits out the DIMSE timeout. Against dcmqrscp, which answers within a
    millisecond, this cut most 300-instance STOW batches short. Every association
    the gateway opens sends more than one message (pooled C-FINDs, C-CANCELs),
    so every one is guarded. The reactor (the only caller of ``get_msg`` that does
    not block) takes a message off the queue only if it is a request; one it took
    anyway goes back to the head of the queue. Putting it back at the tail, as
    this did first, let the final response of a C-FIND overtake a Pending one:
    about one in 600 back-to-back searches on dcmqrscp came back a match short.
    """
    dimse = getattr(assoc, "dimse", None)
    serve = getattr(assoc, "_serve_request", None)
    queue = getattr(dimse, "msg_queue", None)
    if serve is None or queue is None:  # pynetdicom changed: nothing to patch
        return
    get_msg = getattr(dimse, "get_msg", None)

    def put_back(item: Any) -> None:
        with queue.mutex:
            queue.queue.appendleft(item)
            queue.unfinished_tasks += 1
            queue.not_empty.notify()

    def serve_requests_only(message: Any, context_id: int) -> None:
        if getattr(message, "is_valid_request", True):
            serve(message, context_id)
        else:
            put_back((context_id, message))

    def requests_to_the_reactor(block: bool = False) -> Any:
        if block or get_msg is None:
            return get_msg(block=block) if get_msg is not None else (None, None)
        with queue.mutex:  # look and take at once: the sender may be reading too
            if not queue.queue or not getattr(queue.queue[0][1], "is_valid_request", True):
                return None, None
            item = queue.queue.popleft()
            queue.not_full.notify()
            return item

    assoc._serve_request = serve_requests_only  # type: ignore[method-assign, assignment]
    if get_msg is not None:
        assoc.dimse.get_msg = requests_to_the_reactor  # type: ignore[method-assign]
