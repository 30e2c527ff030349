"""Workers: DIMSE operations in threads, and what the metrics say about how each ended."""

from __future__ import annotations

import asyncio
import threading

from dicomweb_gw.metrics import GatewayMetrics
from dicomweb_gw.pacs.bridge import Channel
from dicomweb_gw.pacs.workers import Workers
from dicomweb_gw.settings import PacsNode

NODE = PacsNode("main", "127.0.0.1", 104, "PACS")


def _count(metrics: GatewayMetrics, outcome: str, operation: str = "C-GET") -> float:
    sample = metrics.registry.get_sample_value(
        "dicomweb_gw_dimse_operations_total",
        {"pacs": "main", "operation": operation, "outcome": outcome})
    return sample or 0.0


def _wait_for_count(metrics: GatewayMetrics, operation: str) -> None:
    for _ in range(100):
        if any(_count(metrics, outcome, operation) for outcome in ("cancelled", "success")):
            return
        threading.Event().wait(0.05)


async def _leave_after_the_first(workers: Workers, ends: threading.Event,
                                 operation: str = "C-GET") -> None:
    def worker(channel: Channel[int]) -> None:
        channel.put(1)
        # Like a C-GET that sees its client gone, C-CANCELs, and gets Cancel (0xFE00):
        # the worker ends without raising.
        ends.wait(5)

    stream = workers.stream(worker, 1, operation)
    async for _ in stream:
        break
    await stream.aclose()


def test_a_retrieve_whose_client_left_is_counted_cancelled_not_success() -> None:
    metrics = GatewayMetrics()
    ends = threading.Event()
    asyncio.run(_leave_after_the_first(Workers(NODE, metrics), ends))
    ends.set()
    _wait_for_count(metrics, "C-GET")
    assert _count(metrics, "cancelled") == 1
    assert _count(metrics, "success") == 0


async def _finish(workers: Workers) -> list[int]:
    def worker(channel: Channel[int]) -> None:
        channel.put(1)
        channel.put(2)

    return [item async for item in workers.stream(worker, 1, "C-GET")]


def test_a_retrieve_that_ran_to_its_end_is_counted_success() -> None:
    metrics = GatewayMetrics()
    assert asyncio.run(_finish(Workers(NODE, metrics))) == [1, 2]
    for _ in range(100):
        if _count(metrics, "success"):
            break
        threading.Event().wait(0.05)
    assert _count(metrics, "success") == 1
    assert _count(metrics, "cancelled") == 0


def test_a_c_find_cancelled_once_the_page_is_full_is_a_success() -> None:
    metrics = GatewayMetrics()
    ends = threading.Event()
    asyncio.run(_leave_after_the_first(Workers(NODE, metrics), ends, "C-FIND"))
    ends.set()
    _wait_for_count(metrics, "C-FIND")
    assert _count(metrics, "success", "C-FIND") == 1
    assert _count(metrics, "cancelled", "C-FIND") == 0
