"""The shared state of one retrieve split across associations (``parallel.py``).

``Run`` is what its parts share: the requests left, the SOP Instance UIDs
delivered, how it ended. ``Outlet`` is the retrieve's channel as one request
sees it; ``Stores`` hands a part's C-GET C-STOREs to its request in progress.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from dicomweb_gw.errors import PacsError
from dicomweb_gw.model import RetrievedInstance, RetrieveKeys, RetrieveReport
from dicomweb_gw.pacs.bridge import Cancelled, Channel
from dicomweb_gw.pacs.listing import Listing
from dicomweb_gw.pacs.parallel_plan import Unit
from dicomweb_gw.pacs.sink import STORE_REFUSED, InstanceSink

__all__ = ["Outlet", "Run", "Stores"]

log = logging.getLogger(__name__)


class Run:
    """One split retrieve: the requests left, the instances delivered, how it ended."""

    def __init__(self, keys: RetrieveKeys, units: list[Unit],
                 channel: Channel[RetrievedInstance], listing: Listing, operation: str) -> None:
        self.keys = keys
        self.operation = operation
        self.channel = channel
        self.started = time.monotonic()
        #: Set once the run ends early (an error, a fall-back): every part stops.
        self.stopped = threading.Event()
        self.error: BaseException | None = None
        self.falls_back = False
        self.fallback_reason: str | None = None
        #: The report of every request that ended with Success.
        self.reports: list[RetrieveReport] = []
        self._lock = threading.Lock()
        self._units = deque(units)
        self._delivered: set[str] = set()
        self._quit_errors: list[PacsError] = []
        self._opened = 0
        self._patient_id = listing.patient_id

    @property
    def opened(self) -> int:
        """Parts that got an association."""
        with self._lock:
            return self._opened

    def opened_one(self) -> None:
        with self._lock:
            self._opened += 1

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._units)

    @property
    def delivered(self) -> int:
        with self._lock:
            return len(self._delivered)

    def take(self) -> Unit | None:
        with self._lock:
            return self._units.popleft() if self._units and not self.stopped.is_set() else None

    def give_back(self, unit: Unit) -> None:
        """A request that was refused: what it did not deliver goes first to the next part."""
        with self._lock:
            left = tuple(uid for uid in unit.sop_instance_uids if uid not in self._delivered)
            if left:
                self._units.appendleft(Unit(unit.series_uid, left))

    def claim(self, sop_instance_uid: str) -> bool:
        """True the first time an instance arrives (it is to be delivered), else False."""
        with self._lock:
            if sop_instance_uid in self._delivered:
                return False
            self._delivered.add(sop_instance_uid)
            return True

    def succeeded(self, report: RetrieveReport) -> None:
        with self._lock:
            self.reports.append(report)

    def quit(self, error: PacsError) -> None:
        """A part stops for want of room or resources; the others take its share."""
        log.debug("a part of a retrieve stopped: %s", error)
        with self._lock:
            self._quit_errors.append(error)

    def first_quit_error(self) -> PacsError | None:
        with self._lock:
            return self._quit_errors[0] if self._quit_errors else None

    def fail(self, error: BaseException) -> None:
        """End the run with ``error`` (the first one stands)."""
        with self._lock:
            if self.stopped.is_set():
                return
            self.error = error
            self.stopped.set()

    def fall_back(self, why: str | None) -> None:
        """End the run for one request instead; ``why`` the PACS refused the split
        (None: not a property of the PACS to remember)."""
        with self._lock:
            if self.stopped.is_set():
                return
            self.falls_back, self.fallback_reason = True, why
            self.stopped.set()

    def patient_id(self, look_up: Callable[[], str]) -> str:
        """The study's Patient ID: from the listing, else looked up once."""
        with self._lock:
            known = self._patient_id
        if known is None:
            known = look_up()
            with self._lock:
                self._patient_id = known
        return known


class Outlet(Channel[RetrievedInstance]):
    """The retrieve's channel as one request sees it; holds no queue of its own.

    Every instance goes through once, whichever request brings it: a PACS that
    sends more than a request named, or a fall-back after some requests, would
    otherwise serve instances twice. While the run is on (``stoppable``), a run
    that ended looks to the request like a client that left: its watch stops it
    the way the node's ``cancel`` says, and instances still coming are refused.
    """

    def __init__(self, channel: Channel[RetrievedInstance], run: Run, *,
                 stoppable: bool) -> None:
        # Not Channel.__init__: everything is handed on to ``channel``.
        self._inner = channel
        self._run = run
        self._stoppable = stoppable

    @property
    def cancelled(self) -> bool:
        return self._inner.cancelled or (self._stoppable and self._run.stopped.is_set())

    def put(self, item: RetrievedInstance) -> None:
        if self._stoppable and self._run.stopped.is_set():
            raise Cancelled
        if self._run.claim(item.sop_instance_uid):
            self._inner.put(item)

    def finish(self, error: BaseException | None = None) -> None:
        """The storage SCP ends a move (its cluster route was dropped): the whole
        retrieve ends with ``error``."""
        if error is not None:
            self._run.fail(error)
        self._inner.finish(error)

    def cancel(self) -> None:
        self._inner.cancel()


class Stores:
    """The C-STORE handler of a part's C-GET association: each instance goes to the
    request in progress."""

    def __init__(self) -> None:
        self.current: InstanceSink | None = None

    def on_store(self, event: Any) -> int:
        sink = self.current
        return STORE_REFUSED if sink is None else sink.on_store(event)
