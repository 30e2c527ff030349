"""Ending a C-GET or C-MOVE that has to end, from a thread beside the one reading it.

The thread reading a retrieve's responses blocks until the PACS says
something, so by itself it notices neither a client that left nor a PACS
gone quiet: a PACS silent for minutes before its first C-STORE (Sectra,
pynetdicom#382) kept the association, and the node's slot, that long after the
viewer had gone. The watch looks every ``TICK`` seconds:

- the client left: the retrieve is stopped as the node's ``cancel`` says
  (``cancelling.Stopper``: C-CANCEL, then A-ABORT if the PACS has not wound down
  after its grace period; or A-ABORT at once);
- nothing heard for the node's ``idle_timeout``: no response on the association
  and no instance landing. On a C-MOVE the instances land on the storage SCP,
  not on this association, so pynetdicom's per-message DIMSE timeout (disabled
  on retrieve associations) would end a move that is busy delivering;
- running longer than the node's ``total_timeout``.

The reader then finds the association aborted and asks ``reason`` why.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType
from typing import Literal

from dicomweb_gw.pacs.cancelling import Stopper
from dicomweb_gw.pacs.sink import InstanceSink
from dicomweb_gw.settings import PacsNode

__all__ = ["TICK", "RetrieveWatch", "StopReason"]

log = logging.getLogger(__name__)

#: How often the watch looks. A client that leaves is acted on within this.
TICK = 0.05

#: Why the watch stopped the retrieve: the client left, the PACS went quiet
#: for ``idle_timeout``, or the retrieve ran past ``total_timeout``.
StopReason = Literal["left", "idle", "total"]


class RetrieveWatch:
    """Watches one C-GET or C-MOVE request while its responses are read (a context manager)."""

    def __init__(self, node: PacsNode, operation: str, stopper: Stopper,
                 sink: InstanceSink) -> None:
        self._node = node
        self._operation = operation
        self._stopper = stopper
        self._sink = sink
        self._started = time.monotonic()
        self._heard = self._started
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"watch-{node.name}")
        #: Set once the watch has stopped the retrieve.
        self.reason: StopReason | None = None

    def heard(self, at: float | None = None) -> None:
        """A response arrived on the association (now, unless ``at`` says when)."""
        self._heard = time.monotonic() if at is None else at

    @property
    def last_heard(self) -> float:
        """When the PACS last said something: a response, or an instance it sent."""
        return max(self._heard, self._sink.last_activity)

    def __enter__(self) -> RetrieveWatch:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(TICK):
            try:
                self.check(time.monotonic())
            except Exception:  # a watch that dies would leave the retrieve unwatched
                log.exception("watching a %s on PACS '%s' failed: aborting it",
                              self._operation, self._node.name)
                self._stopper.abort()
                return

    def check(self, now: float) -> None:
        """One look (the watch's thread calls it; tests may too)."""
        if self.reason is not None:
            return  # stopped already (the stopper aborts a PACS that ignores its C-CANCEL)
        if self._sink.channel.cancelled:
            self.reason = "left"
            log.info("client went away: stopping %s on PACS '%s' (cancel = \"%s\")",
                     self._operation, self._node.name, self._node.cancel)
            self._stopper.stop()
        elif 0 < self._node.total_timeout <= now - self._started:
            self.reason = "total"
            self._stopper.abort()
        elif (not self._sink.handing_over
              and now - self.last_heard >= self._node.dimse_idle_timeout):
            self.reason = "idle"
            self._stopper.abort()
