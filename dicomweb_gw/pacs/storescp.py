"""The gateway's storage SCP: where C-MOVE sub-operations land.

Every C-MOVE we send gets a Message ID from here and the incoming C-STOREs
are routed back to the waiting request by their Move Originator Message ID.
Some PACS leave that out; then the instance goes to every in-flight move
whose study/series/instance keys it matches.

With several replicas (``routing`` set), Message IDs are unique cluster-wide
and an instance for another replica's move is handed to that replica
(see ``dicomweb_gw.cluster.moves``).

What the SCP accepts is one set for every node, except that a node with
``compressed = false`` gets only the uncompressed syntaxes: the storage SCP
tells the nodes' sub-associations apart by their calling AE title (the
PACS's own, as configured), before negotiation. A PACS that moves from
another AE title than the one the gateway calls it by is offered everything.

It is started with the gateway when a node retrieves by C-MOVE, or on first
need (``ensure_started``) when a C-GET node turns out to have no C-GET.
"""

from __future__ import annotations

import copy
import itertools
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from pynetdicom import AE, AllStoragePresentationContexts, build_context, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import ThreadedAssociationServer

from dicomweb_gw.model import RetrievedInstance, RetrieveKeys
from dicomweb_gw.pacs.associations import MAX_PDU
from dicomweb_gw.pacs.contexts import ACCEPTED_SYNTAXES, UNCOMPRESSED, VERIFICATION
from dicomweb_gw.pacs.sink import STORE_REFUSED, InstanceSink, instance_from_store_event
from dicomweb_gw.pacs.sockets import FAST_POLL_HANDLER, NODELAY_HANDLER

__all__ = ["MoveReceiver", "MoveRouter", "QuicklyCopiedContexts"]

log = logging.getLogger(__name__)


class MoveRouter(Protocol):
    """Routes C-MOVE sub-operations between gateway replicas (cluster/moves.py, over Redis).

    A PACS sends a move's instances to whichever replica its move destination
    reaches, not necessarily the one that sent the C-MOVE.
    """

    def register(self, node: str) -> int | None:
        """A cluster-wide Message ID for a new move to ``node``; None to allocate locally."""
        ...

    def unregister(self, msg_id: int) -> None: ...

    def forward(self, msg_id: int, instance: RetrievedInstance) -> int | None:
        """Hand an instance of another replica's move ``msg_id`` over; the C-STORE
        status, or None when no replica owns that move."""
        ...


class MoveReceiver:
    def __init__(self, ae_title: str, *, host: str = "0.0.0.0", port: int = 11113) -> None:
        self.ae_title = ae_title
        self._host = host
        self._port = port
        self._server: ThreadedAssociationServer | None = None
        self._lock = threading.Lock()
        self._expected: dict[int, tuple[RetrieveKeys, InstanceSink]] = {}
        self._ids = itertools.count(1)
        self._starting = threading.Lock()
        self._uncompressed_callers: set[str] = set()
        #: Associations the PACS opened to us so far: a failed C-MOVE during which
        #: none came never reached us.
        self.connections = 0
        #: Set by the gateway when replicas share moves through Redis.
        self.routing: MoveRouter | None = None

    @property
    def port(self) -> int:
        if self._server is not None:
            return int(self._server.server_address[1])
        return self._port

    @property
    def address(self) -> str:
        """Where the PACS must send to, for logs (``address_for`` knows better)."""
        return self.address_for(None)

    @property
    def started(self) -> bool:
        return self._server is not None

    def address_for(self, local_host: str | None) -> str:
        """The host and port the PACS must have registered for our AE title.

        Our listening address if it is a specific one; else ``local_host``, our
        end of an association to that PACS (the address it sees us at). With
        several replicas the PACS must send to their Service, not to one pod.
        """
        if self.routing is not None:
            return f"the gateway's storage Service (Helm store.advertisedHost), port {self.port}"
        host = self._host if self._host not in ("0.0.0.0", "::", "") else local_host
        if not host:
            return f"<gateway host>:{self.port}"
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def accept_only_uncompressed_from(self, calling_ae_title: str) -> None:
        """Offer the PACS that calls as ``calling_ae_title`` only uncompressed syntaxes
        (its node's ``compressed = false``)."""
        self._uncompressed_callers.add(calling_ae_title.strip())

    def ensure_started(self) -> None:
        """Start listening unless it already does (``OSError`` if the port is taken)."""
        with self._starting:
            if self._server is None:
                self.start()

    def start(self) -> None:
        ae = AE(ae_title=self.ae_title)
        ae.maximum_pdu_size = MAX_PDU
        # Every storage class, every syntax pydicom knows, uncompressed last (see
        # ACCEPTED_SYNTAXES): a PACS proposes what it stores, and we take that.
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                ae.add_supported_context(context.abstract_syntax, list(ACCEPTED_SYNTAXES))
        ae.add_supported_context(VERIFICATION)
        server = ae.start_server(
            (self._host, self._port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._on_store), (evt.EVT_REQUESTED, self._on_request),
                          NODELAY_HANDLER, FAST_POLL_HANDLER],
        )
        assert server is not None  # only a blocking start returns None
        server.contexts = QuicklyCopiedContexts(server.contexts)
        self._server = server
        log.info("storage SCP for C-MOVE listening on %s as %s", self.address, self.ae_title)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    @contextmanager
    def expect(self, keys: RetrieveKeys, sink: InstanceSink, *, node: str = "") -> Iterator[int]:
        """Register an in-flight C-MOVE of ``node``; yields the Message ID to send it with."""
        shared = self.routing.register(node) if self.routing is not None else None
        with self._lock:
            msg_id = shared if shared is not None else next(self._ids) % 65535 + 1
            while shared is None and msg_id in self._expected:
                msg_id = next(self._ids) % 65535 + 1
            self._expected[msg_id] = (keys, sink)
        try:
            yield msg_id
        finally:
            with self._lock:
                self._expected.pop(msg_id, None)
            if shared is not None and self.routing is not None:
                self.routing.unregister(shared)

    def deliver(self, msg_id: int, instance: RetrievedInstance) -> int:
        """Hand an instance another replica received to our move ``msg_id``."""
        with self._lock:
            expected = self._expected.get(msg_id)
        if expected is None:
            return STORE_REFUSED
        return expected[1].deliver(instance)

    def abandon(self, msg_id: int, error: Exception) -> None:
        """End our move ``msg_id`` with ``error``: its client gets it after what it has."""
        with self._lock:
            expected = self._expected.get(msg_id)
        if expected is not None:
            expected[1].channel.finish(error)

    def _on_request(self, event: Any) -> None:
        """Before negotiation: count the association; a ``compressed = false`` node's
        PACS gets the uncompressed syntaxes only, so it must decompress what it sends."""
        with self._lock:
            self.connections += 1
        request = getattr(event.assoc.requestor, "primitive", None)
        calling = str(getattr(request, "calling_ae_title", "") or "").strip()
        if calling and calling in self._uncompressed_callers:
            event.assoc.acceptor.supported_contexts = copy.deepcopy(_UNCOMPRESSED_CONTEXTS)

    def _on_store(self, event: Any) -> int:
        instance = instance_from_store_event(event)
        msg_id = event.request.MoveOriginatorMessageID
        with self._lock:
            expected = self._expected.get(msg_id) if msg_id is not None else None
            in_flight = list(self._expected.values())
        if expected is not None:
            return expected[1].deliver(instance)
        if msg_id is not None and self.routing is not None:
            forwarded = self.routing.forward(msg_id, instance)
            if forwarded is not None:
                return forwarded
        sinks = [sink for keys, sink in in_flight if _matches(keys, event.dataset)]
        if not sinks:
            log.warning("refused unsolicited instance %s (no matching C-MOVE in flight)",
                        instance.sop_instance_uid)
            return STORE_REFUSED
        statuses = [sink.deliver(instance) for sink in sinks]
        return min(statuses)


def _matches(keys: RetrieveKeys, dataset: Any) -> bool:
    """Does an instance belong to the study/series/instance a move asked for?"""
    return keys.covers(str(dataset.get("StudyInstanceUID", "")),
                       str(dataset.get("SeriesInstanceUID", "")),
                       str(dataset.get("SOPInstanceUID", "")))


class QuicklyCopiedContexts(list[PresentationContext]):
    """The storage SCP's presentation contexts, copied fast.

    pynetdicom deep-copies the server's contexts for every incoming association:
    about 50 ms for our ~170 storage classes x ~45 transfer syntaxes, which every
    C-MOVE's first instance waited for. Everything in a context is immutable but
    its list of transfer syntaxes, so copying that list gives what deepcopy gives.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> list[PresentationContext]:
        copies = []
        for context in self:
            duplicate = copy.copy(context)
            duplicate._transfer_syntax = list(context._transfer_syntax)
            copies.append(duplicate)
        return copies


#: What a ``compressed = false`` node's PACS is offered: every storage class,
#: Explicit or Implicit VR Little Endian only.
_UNCOMPRESSED_CONTEXTS = QuicklyCopiedContexts(
    [build_context(context.abstract_syntax, list(UNCOMPRESSED))
     for context in AllStoragePresentationContexts if context.abstract_syntax is not None]
    + [build_context(VERIFICATION)])
