"""InstanceSink: counting deliveries, and waiting for the ones still on their way."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pydicom.dataset import Dataset

from dicomweb_gw.errors import PacsFailure
from dicomweb_gw.model import RetrievedInstance, RetrieveReport
from dicomweb_gw.pacs.retrieve import await_stragglers
from dicomweb_gw.pacs.sink import STORE_SUCCESS, InstanceSink
from dicomweb_gw.settings import PacsNode

INSTANCE = RetrievedInstance("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", "1.2.840.10008.1.2.1", b"")
NODE = PacsNode("main", "127.0.0.1", 104, "PACS", timeout=0.05)


class Taken:
    """Stands in for the channel to the waiting request: takes everything at once."""

    cancelled = False

    def __init__(self) -> None:
        self.items: list[Any] = []

    def put(self, item: Any) -> None:
        self.items.append(item)


def _sink() -> InstanceSink:
    return InstanceSink(Taken())  # type: ignore[arg-type]


def test_wait_for_returns_once_the_late_instances_are_delivered() -> None:
    sink = _sink()
    assert sink.deliver(INSTANCE) == STORE_SUCCESS
    late = threading.Timer(0.05, sink.deliver, args=(INSTANCE,))
    late.start()
    assert sink.wait_for(2, timeout=10)
    assert sink.received == 2


def test_wait_for_gives_up_after_the_timeout() -> None:
    sink = _sink()
    sink.deliver(INSTANCE)
    assert not sink.wait_for(2, timeout=0.05)


def _final(completed: int, warnings: int = 0) -> Dataset:
    status = Dataset()
    status.Status = 0x0000
    status.NumberOfCompletedSuboperations = completed
    status.NumberOfWarningSuboperations = warnings
    return status


def test_a_retrieve_short_of_what_the_pacs_reported_fails() -> None:
    sink = _sink()
    for _ in range(3):
        sink.deliver(INSTANCE)

    await_stragglers(NODE, "C-MOVE", _final(3, warnings=0), sink)  # all there: fine
    with pytest.raises(PacsFailure, match="reported 4 instances sent, but 3 arrived"):
        await_stragglers(NODE, "C-MOVE", _final(3, warnings=1), sink)


def test_the_final_success_fills_in_the_report_with_the_pacs_counts() -> None:
    report = RetrieveReport()
    sink = InstanceSink(Taken(), report)  # type: ignore[arg-type]
    for _ in range(2):
        sink.deliver(INSTANCE)
    await_stragglers(NODE, "C-GET", _final(2), sink)
    assert report == RetrieveReport(succeeded=True, reported=2, failed=0, received=2)
    assert report.complete


def test_an_empty_successful_retrieve_is_not_complete() -> None:
    """dcmqrscp's answer for a study it does not hold (yet)."""
    report = RetrieveReport()
    await_stragglers(NODE, "C-MOVE", _final(0), InstanceSink(Taken(), report))  # type: ignore[arg-type]
    assert report.succeeded
    assert not report.complete


def test_a_retrieve_split_over_several_c_gets_adds_up_their_counts() -> None:
    report = RetrieveReport()
    sink = InstanceSink(Taken(), report)  # type: ignore[arg-type]
    for count in (2, 3):
        for _ in range(count):
            sink.deliver(INSTANCE)
        sink.finished(reported=count, failed=0)
    assert report == RetrieveReport(succeeded=True, reported=5, failed=0, received=5)
    sink.finished(reported=None, failed=0)  # a PACS that left the counts out of one
    assert report.reported is None


def test_pending_responses_tell_how_many_instances_to_expect() -> None:
    """What the status page shows as "expected" for a retrieve in one request."""
    report = RetrieveReport()
    sink = InstanceSink(Taken(), report)  # type: ignore[arg-type]
    sink.pending(None)  # NumberOfRemainingSuboperations is optional (PS3.4 C.4.2.1.6)
    assert report.expected is None
    sink.pending(5)
    assert report.expected == 5
    sink.deliver(INSTANCE)
    sink.pending(4)  # one arrived, four left
    assert report.expected == 5
    # The next request of a retrieve in several (one per group of series) counts afresh.
    sink.pending(3)
    assert report.expected == 5
    sink.deliver(INSTANCE)
    sink.pending(6)
    assert report.expected == 8
    sink.expect(12)  # a listing says so
    assert report.expected == 12
    InstanceSink(Taken()).pending(3)  # type: ignore[arg-type]  # no report: nothing to fill
