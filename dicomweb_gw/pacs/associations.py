"""Associations to one PACS: opening them, the pool of idle C-FIND/C-ECHO ones, limits.

Opening an association costs a TCP connect plus an A-ASSOCIATE round trip, so
query associations are kept and reused; transfer associations (C-GET, C-MOVE,
C-STORE) are opened per operation because their presentation contexts depend
on what is transferred. Idle ones are released before the PACS or pynetdicom
times them out, and the pool never holds more than the PACS's limit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pynetdicom import AE
from pynetdicom.association import Association

from dicomweb_gw.errors import PacsTimeout, PacsUnavailable
from dicomweb_gw.metrics import GatewayMetrics
from dicomweb_gw.pacs import contexts
from dicomweb_gw.pacs.sockets import NODELAY_HANDLER
from dicomweb_gw.settings import PacsNode

__all__ = ["IDLE_SECONDS", "MAX_PDU", "Associations"]

#: Our receive PDU size. Large PDUs cut per-PDU overhead on the receive path,
#: which is where pynetdicom spends its time on a retrieve.
MAX_PDU = 4 * 1024 * 1024
#: Idle pooled associations older than this are closed rather than reused:
#: PACS drop idle associations after a while, and a dead one costs a retry.
IDLE_SECONDS = 20.0


class Associations:
    def __init__(self, node: PacsNode, *, ae_title: str,
                 metrics: GatewayMetrics | None = None) -> None:
        self._node = node
        self._ae_title = ae_title
        self._timeout = node.timeout
        self._ae = AE(ae_title=ae_title)
        self._ae.acse_timeout = node.timeout
        self._ae.dimse_timeout = node.timeout
        self._ae.network_timeout = node.timeout
        self._ae.connection_timeout = min(node.timeout, 10.0)
        self._lock = threading.Lock()
        self._idle: list[tuple[float, Association]] = []
        self._open = 0
        # Shorter than the network timeout, so we release idle associations first.
        self._idle_seconds = min(IDLE_SECONDS, node.timeout / 2)
        if metrics is not None:
            metrics.associations.labels(node.name).set_function(lambda: self._open)

    @property
    def open(self) -> int:
        """Associations open now (pooled idle ones included)."""
        return self._open

    def close_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for _, assoc in idle:
            self.close(assoc)

    def associate(
        self,
        requested: list[Any],
        *,
        ext_neg: list[Any] | None = None,
        handlers: Sequence[tuple[Any, Callable[..., Any]]] = (),
    ) -> Association:
        self._make_room()
        started = time.monotonic()
        assoc = self._ae.associate(
            self._node.host,
            self._node.port,
            contexts=requested,
            ae_title=self._node.ae_title,
            max_pdu=MAX_PDU,
            ext_neg=ext_neg,
            evt_handlers=[NODELAY_HANDLER, *handlers],
        )
        if assoc.is_established:
            _keep_stray_responses(assoc)
            with self._lock:
                self._open += 1
            return assoc
        where = f"{self._node.host}:{self._node.port}"
        if assoc.is_rejected:
            raise PacsUnavailable(
                self._node.name,
                f"rejected the association (called AE '{self._node.ae_title}', calling AE "
                f"'{self._ae_title}'): check both AE titles are configured on the PACS",
            )
        if time.monotonic() - started >= min(self._timeout, 10.0) - 0.5:
            raise PacsTimeout(self._node.name, f"no answer from {where} within the timeout")
        raise PacsUnavailable(self._node.name, f"cannot connect to {where}")

    def close(self, assoc: Association) -> None:
        with self._lock:
            self._open -= 1
        if assoc.is_established:
            assoc.release()

    def _make_room(self) -> None:
        """Close idle pooled associations so we stay within the PACS's limit."""
        with self._lock:
            surplus = max(0, self._open + 1 - self._node.max_associations)
            victims = [assoc for _, assoc in self._idle[:surplus]]
            self._idle = self._idle[surplus:]
        for assoc in victims:
            self.close(assoc)

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
            if ok and assoc.is_established:
                with self._lock:
                    self._idle.append((time.monotonic(), assoc))
                # Release it ourselves once idle long enough, before pynetdicom's
                # network timeout aborts it (and logs an ERROR that alarms admins).
                reaper = threading.Timer(self._idle_seconds + 0.5, self._reap_idle)
                reaper.daemon = True
                reaper.start()
            else:
                if assoc.is_established:
                    assoc.abort()
                with self._lock:
                    self._open -= 1

    def _reap_idle(self) -> None:
        now = time.monotonic()
        with self._lock:
            stale = [assoc for since, assoc in self._idle if now - since >= self._idle_seconds]
            self._idle = [(since, a) for since, a in self._idle if a not in stale]
        for assoc in stale:
            self.close(assoc)

    def _checkout(self) -> tuple[Association, bool]:
        now = time.monotonic()
        stale: list[Association] = []
        found: Association | None = None
        with self._lock:
            while self._idle:
                since, assoc = self._idle.pop()
                if assoc.is_established and now - since < self._idle_seconds:
                    found = assoc
                    break
                stale.append(assoc)
        for assoc in stale:
            self.close(assoc)
        if found is not None:
            return found, True
        return self.associate(contexts.find_contexts()), False


def _keep_stray_responses(assoc: Association) -> None:
    """Work around a pynetdicom race (pydicom/pynetdicom#875).

    Between two ``send_*()`` calls its reactor thread can wake up, find the next
    response already queued and take it for an incoming request: it logs
    "Received unexpected C-STORE service message" and drops it, and the sender
    then waits out the DIMSE timeout. Against dcmqrscp, which answers within a
    millisecond, this cut most 300-instance STOW batches short. Every association
    the gateway opens sends more than one message (pooled C-FINDs, C-CANCELs),
    so every one is guarded. Responses the reactor takes are put back for the
    sender instead.
    """
    serve = getattr(assoc, "_serve_request", None)
    queue = getattr(getattr(assoc, "dimse", None), "msg_queue", None)
    if serve is None or queue is None:  # pynetdicom changed: nothing to patch
        return

    def serve_requests_only(message: Any, context_id: int) -> None:
        if getattr(message, "is_valid_request", True):
            serve(message, context_id)
        else:
            queue.put((context_id, message))

    assoc._serve_request = serve_requests_only  # type: ignore[method-assign, assignment]
