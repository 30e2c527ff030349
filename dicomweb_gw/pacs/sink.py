"""Where the C-STORE sub-operations of one retrieve land.

The same sink serves C-GET (stores arrive on the retrieve's own association)
and C-MOVE (they arrive on the gateway's storage SCP), so both paths hand
instances to the waiting request in exactly the same way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from dicomweb_gw.model import RetrievedInstance, RetrieveReport
from dicomweb_gw.pacs.bridge import Cancelled, Channel

__all__ = ["InstanceSink", "instance_from_store_event"]

STORE_SUCCESS = 0x0000
#: Refused: Out of Resources. The sub-operation was not taken (the request it was
#: for is gone, or it could not be kept); the PACS may try it again later.
STORE_REFUSED = 0xA700


class InstanceSink:
    def __init__(self, channel: Channel[RetrievedInstance],
                 report: RetrieveReport | None = None) -> None:
        self.channel = channel
        self.received = 0
        #: Filled in when the PACS ends the retrieve with Success (see ``finished``).
        self.report = report
        self.last_activity = time.monotonic()
        self._arrival = threading.Condition()
        self._handing_over = 0

    def on_store(self, event: Any) -> int:
        """``evt.EVT_C_STORE`` handler for a C-GET association."""
        return self.deliver(instance_from_store_event(event))

    @property
    def handing_over(self) -> bool:
        """An instance is waiting for a slow client to take it: the PACS waits on
        us, so its silence is no sign of trouble (see ``retrieve_watch.py``)."""
        return self._handing_over > 0

    def deliver(self, instance: RetrievedInstance) -> int:
        """Hand ``instance`` to the waiting request; the C-STORE status to answer."""
        self.last_activity = time.monotonic()
        with self._arrival:
            self._handing_over += 1
        try:
            self.channel.put(instance)
        except Cancelled:
            return STORE_REFUSED
        finally:
            with self._arrival:
                self._handing_over -= 1
            self.last_activity = time.monotonic()
        with self._arrival:
            self.received += 1
            self._arrival.notify_all()
        return STORE_SUCCESS

    def expect(self, count: int) -> None:
        """The retrieve will bring ``count`` instances (a listing said so)."""
        if self.report is not None:
            self.report.expected = count

    def pending(self, remaining: int | None) -> None:
        """A Pending response said ``remaining`` sub-operations are left (PS3.4
        C.4.2.1.6: optional, so None when the PACS left it out)."""
        report = self.report
        if report is None or remaining is None:
            return
        with self._arrival:
            # Never down: a retrieve done in several requests counts one at a time.
            report.expected = max(report.expected or 0, self.received + remaining)

    def finished(self, *, reported: int | None, failed: int) -> None:
        """A final Success, with its counts, for the caller's completeness check.

        A retrieve split over several C-GETs (one per group of series) ends
        once per C-GET: the counts add up, and one that left them out makes
        the total unknown.
        """
        report = self.report
        if report is None:
            return
        if not report.succeeded:
            report.reported = reported
        elif report.reported is not None:
            report.reported = None if reported is None else report.reported + reported
        report.succeeded = True
        report.failed += failed
        with self._arrival:
            report.received = self.received

    def wait_for(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` instances have been delivered; False once none has
        arrived for ``timeout`` seconds (an idle timeout: each arrival restarts it).

        With several replicas, an instance of our C-MOVE that another replica
        received is handed to us through Redis, possibly after the PACS's final
        response: the retrieve is over only when the reported number arrived.
        """
        with self._arrival:
            while self.received < count:
                if (not self._arrival.wait_for(self._arrived_since(self.received), timeout)
                        and not self._handing_over):  # a slow client is no missing instance
                    return False
        return True

    def _arrived_since(self, before: int) -> Callable[[], bool]:
        return lambda: self.received != before


def instance_from_store_event(event: Any) -> RetrievedInstance:
    """Keep the encoded bytes as received: nothing is decoded on the hot path."""
    request = event.request
    return RetrievedInstance(
        sop_class_uid=str(request.AffectedSOPClassUID),
        sop_instance_uid=str(request.AffectedSOPInstanceUID),
        transfer_syntax_uid=str(event.context.transfer_syntax),
        dataset=request.DataSet.getvalue(),
    )
