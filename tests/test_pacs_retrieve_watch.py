"""RetrieveWatch: what ends a C-GET/C-MOVE from beside the thread reading its responses.

Driven through ``check(now)`` with a stand-in stopper, so no clock is waited on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from dicomweb_gw.pacs.retrieve_watch import RetrieveWatch
from dicomweb_gw.pacs.sink import InstanceSink
from dicomweb_gw.settings import PacsNode

NODE = PacsNode("main", "127.0.0.1", 104, "PACS", idle_timeout=2.0)


@dataclass
class FakeStopper:
    calls: list[str] = field(default_factory=list)
    aborted: bool = False
    requested: bool = False

    def stop(self) -> None:
        self.calls.append("stop")
        self.requested = True

    def abort(self) -> None:
        self.calls.append("abort")
        self.aborted = True


@dataclass
class FakeChannel:
    cancelled: bool = False

    def put(self, item: Any) -> None:
        return None


def _watch(node: PacsNode = NODE) -> tuple[RetrieveWatch, FakeStopper, FakeChannel, float]:
    stopper, channel = FakeStopper(), FakeChannel()
    sink = InstanceSink(channel)  # type: ignore[arg-type]
    watch = RetrieveWatch(node, "C-GET", stopper, sink)  # type: ignore[arg-type]
    return watch, stopper, channel, time.monotonic()


def test_a_client_that_left_is_stopped_once_and_then_left_to_the_stopper() -> None:
    """The stopper C-CANCELs (and aborts after its grace) or aborts: the watch only
    tells it once, and a PACS winding down is then no silence to abort for."""
    watch, stopper, channel, now = _watch()
    channel.cancelled = True
    watch.check(now)
    assert (watch.reason, stopper.calls) == ("left", ["stop"])
    watch.check(now + 60)
    assert (watch.reason, stopper.calls) == ("left", ["stop"])


def test_silence_for_the_idle_timeout_aborts_and_says_why() -> None:
    watch, stopper, _, now = _watch()
    watch.check(now + 1.0)
    assert (watch.reason, stopper.calls) == (None, [])
    watch.heard(now + 1.0)  # a Pending response starts the wait again
    watch.check(now + 2.9)
    assert stopper.calls == []
    watch.check(now + 3.1)
    assert (watch.reason, stopper.calls) == ("idle", ["abort"])


def test_an_instance_waiting_for_a_slow_client_is_not_silence() -> None:
    watch, stopper, _, now = _watch()
    watch._sink._handing_over = 1  # a C-STORE blocked on the client's back-pressure
    watch.check(now + 10)
    assert (watch.reason, stopper.calls) == (None, [])


@pytest.mark.parametrize("total", [0.0, 5.0])
def test_total_timeout_ends_a_retrieve_that_keeps_talking(total: float) -> None:
    watch, stopper, _, now = _watch(replace(NODE, total_timeout=total))
    for second in range(1, 8):
        watch.heard(now + second)
        watch.check(now + second)
    expected = ("total", ["abort"]) if total else (None, [])
    assert (watch.reason, stopper.calls) == expected
