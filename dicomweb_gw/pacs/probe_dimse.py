"""The probe's own DIMSE plumbing: short timeouts, one association per check, and a
C-FIND that cannot run away.

The probe does not use the gateway's association pool (``associations.py``):
it has to see what the PACS does with each association as proposed (which
contexts it accepts, when it rejects one), and a check must never leave
anything behind for the next. Every wait is bounded: connect, associate and
each DIMSE message by ``PROBE_TIMEOUT`` (or the node's timeout when shorter),
a C-FIND by a cap on its matches and its duration, after which it is
C-CANCELled, then aborted if the PACS keeps sending.

Runs in a worker thread: everything here blocks.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Literal

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext

from dicomweb_gw.pacs.associations import MAX_PDU
from dicomweb_gw.pacs.sockets import NODELAY_HANDLER
from dicomweb_gw.pacs.status import CANCELLED, PENDING
from dicomweb_gw.settings import PacsNode

__all__ = ["CANCEL_GRACE", "PROBE_TIMEOUT", "FindOutcome", "ProbeError", "Session"]

#: Longest wait for a connection, an association or one DIMSE message.
PROBE_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0
#: After a C-CANCEL, how long the PACS has to stop before the probe aborts.
CANCEL_GRACE = 3.0
_RETRY_AFTER = 0.5

ErrorKind = Literal["unreachable", "rejected", "timeout", "no-context"]


class ProbeError(Exception):
    """An association the probe could not open; ``kind`` says why."""

    def __init__(self, kind: ErrorKind, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        #: A rejection the PACS called transient (e.g. too many associations).
        self.transient = transient


@dataclass
class FindOutcome:
    matches: list[Dataset] = field(default_factory=list)
    #: Pending responses that carried no identifier (or an empty one).
    empty: int = 0
    #: The final status; None when none came (silence, abort).
    status: int | None = None
    #: The probe stopped it (C-CANCEL) at its cap on matches or time.
    capped: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status == 0x0000 or (self.capped and self.status in (CANCELLED, None))


class Session:
    """Associations to one node as the probe opens them: one per check."""

    def __init__(self, node: PacsNode, ae_title: str) -> None:
        self.node = node
        self.ae_title = ae_title
        self.timeout = min(node.timeout, PROBE_TIMEOUT)
        self._ae = AE(ae_title=ae_title)
        self._ae.acse_timeout = self.timeout
        self._ae.dimse_timeout = self.timeout
        self._ae.network_timeout = self.timeout
        self._ae.connection_timeout = min(node.timeout, CONNECT_TIMEOUT)
        self._ids = itertools.count(1)
        #: Our address as the PACS sees it (from ``connect``): what to register there.
        self.local_host: str | None = None

    @property
    def where(self) -> str:
        return f"{self.node.host}:{self.node.port}"

    def message_id(self) -> int:
        return next(self._ids) % 65535 + 1

    def connect(self) -> None:
        """A bare TCP connect: 'cannot connect' said plainly, before any DICOM."""
        try:
            with socket.create_connection((self.node.host, self.node.port),
                                          timeout=min(self.node.timeout, CONNECT_TIMEOUT)) as sock:
                self.local_host = str(sock.getsockname()[0])
        except TimeoutError:
            raise ProbeError("unreachable", f"no TCP answer from {self.where} within "
                                            f"{min(self.node.timeout, CONNECT_TIMEOUT):g} s"
                             ) from None
        except OSError as exc:
            raise ProbeError("unreachable", f"cannot connect to {self.where}: "
                                            f"{exc.strerror or exc}") from None

    def open(self, contexts: Sequence[PresentationContext], *, ext_neg: list[Any] | None = None,
             handlers: Sequence[tuple[Any, Callable[..., Any]]] = (),
             retry: bool = True) -> Association:
        """An established association, or ``ProbeError`` saying why not.

        A transient rejection is tried again once, half a second later: a PACS that
        counts associations per calling AE may not have seen the previous one close.
        """
        try:
            return self._open(contexts, ext_neg=ext_neg, handlers=handlers)
        except ProbeError as exc:
            if not (retry and exc.transient):
                raise
        time.sleep(_RETRY_AFTER)
        return self._open(contexts, ext_neg=ext_neg, handlers=handlers)

    def _open(self, contexts: Sequence[PresentationContext], *, ext_neg: list[Any] | None,
              handlers: Sequence[tuple[Any, Callable[..., Any]]]) -> Association:
        rejection: list[Any] = []

        def on_acse(event: Any) -> None:
            primitive = getattr(event, "primitive", None)
            if getattr(primitive, "result", None) in (0x01, 0x02):
                rejection.append(primitive)

        started = time.monotonic()
        assoc = self._ae.associate(
            self.node.host, self.node.port, contexts=list(contexts),
            ae_title=self.node.ae_title, max_pdu=MAX_PDU, ext_neg=ext_neg,
            evt_handlers=[NODELAY_HANDLER, (evt.EVT_ACSE_RECV, on_acse), *handlers])
        if assoc.is_established:
            return assoc
        if assoc.is_rejected:
            reason = ""
            if rejection:
                reject = rejection[0]
                with suppress(Exception):
                    reason = f" ({reject.result_str}: {reject.reason_str})"
            transient = bool(rejection) and getattr(rejection[0], "result", None) == 0x02
            raise ProbeError("rejected", f"rejected the association{reason}",
                             transient=transient)
        if assoc.is_aborted and time.monotonic() - started < self.timeout - 0.5:
            # pynetdicom aborts itself when the PACS accepted none of the contexts.
            raise ProbeError("no-context", "accepted none of the presentation contexts proposed")
        if time.monotonic() - started >= min(self.node.timeout, CONNECT_TIMEOUT) - 0.5:
            raise ProbeError("timeout", f"no association answer from {self.where} within "
                                        f"{self.timeout:g} s")
        raise ProbeError("unreachable", f"cannot connect to {self.where}")

    @contextmanager
    def association(self, contexts: Sequence[PresentationContext], *,
                    ext_neg: list[Any] | None = None,
                    handlers: Sequence[tuple[Any, Callable[..., Any]]] = ()
                    ) -> Iterator[Association]:
        assoc = self.open(contexts, ext_neg=ext_neg, handlers=handlers)
        try:
            yield assoc
        finally:
            close(assoc)

    def find(self, assoc: Association, model: str, query: Dataset, *, cap: int,
             seconds: float) -> FindOutcome:
        """One C-FIND, C-CANCELled after ``cap`` matches or ``seconds``, aborted if the
        PACS does not stop within ``CANCEL_GRACE``."""
        outcome = FindOutcome()
        msg_id = self.message_id()
        started = time.monotonic()
        timer: threading.Timer | None = None
        try:
            for status, identifier in assoc.send_c_find(query, model, msg_id=msg_id):
                if "Status" not in status:
                    return outcome  # silence or abort: no final status
                code = int(status.Status)
                if code not in PENDING:
                    outcome.status = code
                    return outcome
                if identifier is None or len(identifier) == 0:
                    outcome.empty += 1
                elif not outcome.capped:
                    outcome.matches.append(identifier)
                if not outcome.capped and (len(outcome.matches) >= cap
                                           or time.monotonic() - started > seconds):
                    outcome.capped = True
                    with suppress(RuntimeError):
                        assoc.send_c_cancel(msg_id, query_model=model)
                    timer = abort_later(assoc)
        finally:
            if timer is not None:
                timer.cancel()
        return outcome


def abort_later(assoc: Association, grace: float = CANCEL_GRACE) -> threading.Timer:
    """Abort ``assoc`` unless the returned timer is cancelled within ``grace``."""
    timer = threading.Timer(grace, assoc.abort)
    timer.daemon = True
    timer.start()
    return timer


def close(assoc: Association) -> None:
    """Release (abort if the release is not answered); never raises."""
    if not assoc.is_established:
        return
    with suppress(Exception):
        assoc.release()
    if assoc.is_established:
        with suppress(Exception):
            assoc.abort()
