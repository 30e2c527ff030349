"""Stopping a DIMSE operation nobody waits for any more: C-CANCEL, then A-ABORT.

Some PACS ignore a C-CANCEL and keep sending (openradx/adit, pynetdicom#553):
the association, and the node's association slot, would stay taken until the
PACS is done, which for a broad C-FIND can be never in practice. So a C-CANCEL
is followed by an A-ABORT if the PACS has not wound down within a grace
period; with the node's ``cancel = "abort"`` the association is aborted at once.

``stop()`` may come from the thread reading the responses or from a timer (the
node's ``total_timeout``), so it is thread-safe and only acts once.
"""

from __future__ import annotations

import logging
import threading
from contextlib import suppress
from typing import Any

from pynetdicom.association import Association

__all__ = ["CANCEL_GRACE_SECONDS", "Stopper"]

log = logging.getLogger(__name__)

#: After a C-CANCEL, how long the PACS gets to wind down before we abort. A PACS
#: that honours it answers Cancel once the sub-operation (or match) in progress is
#: over; one that ignores it would hold the association, and the node's slot, for
#: the rest of the operation. Short, so a viewer that cancels frees its slot soon.
CANCEL_GRACE_SECONDS = 2.0
#: Nodes already told about (one line each, whichever operation).
_TOLD: set[str] = set()


class Stopper:
    """Stops one DIMSE request (``msg_id`` on ``assoc``) the way the node's ``cancel`` says."""

    def __init__(
        self, assoc: Association, msg_id: int, model: str, *, method: str, node_name: str,
        operation: str,
    ) -> None:
        self._assoc = assoc
        self._msg_id = msg_id
        self._model = model
        self._method = method
        self._node_name = node_name
        self._operation = operation
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._closed = False
        #: stop() was called: responses from now on are the PACS winding down.
        self.requested = False
        #: We aborted the association (at once, or after the grace period).
        self.aborted = False

    def stop(self) -> None:
        """C-CANCEL the request and abort after ``CANCEL_GRACE_SECONDS``, or abort now."""
        with self._lock:
            if self.requested or self._closed:
                return
            self.requested = True
            if self._method != "abort":
                with suppress(RuntimeError):  # the association is gone already
                    self._assoc.send_c_cancel(self._msg_id, query_model=self._model)
                # Read at call time, so a test can shorten it.
                self._timer = threading.Timer(CANCEL_GRACE_SECONDS, self._abort_late)
                self._timer.daemon = True
                self._timer.start()
                return
        self.abort()

    def abort(self) -> None:
        """A-ABORT the association and wake the thread waiting for its next response."""
        with self._lock:
            if self.aborted:
                return
            self.aborted = True
        self._abort()

    def _abort(self) -> None:
        self._assoc.abort()
        # pynetdicom does not tell a reader blocked on the next response about an
        # abort we sent: without this it waits out the whole DIMSE timeout.
        _wake_reader(self._assoc)

    def close(self) -> None:
        """The request has ended: no C-CANCEL or abort from now on."""
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _abort_late(self) -> None:
        with self._lock:
            if self._closed or self.aborted:
                return
            self.aborted = True
        # A property of the PACS: said once per node, then only at DEBUG.
        level = logging.DEBUG if self._node_name in _TOLD else logging.WARNING
        _TOLD.add(self._node_name)
        log.log(level, "PACS '%s' did not end a %s within %g s of its C-CANCEL: aborting the "
                "association (cancel = \"abort\" for this node aborts at once)",
                self._node_name, self._operation, CANCEL_GRACE_SECONDS)
        self._abort()


def _wake_reader(assoc: Association) -> None:
    queue: Any = getattr(getattr(assoc, "dimse", None), "msg_queue", None)
    if queue is not None:
        queue.put((None, None))
