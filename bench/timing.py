"""Timing helpers shared by the benchmarks: latency, a cold request, throughput.

Every benchmark measures the gateway and its reference the same way, with the
same warm-up, so the ratios compare like with like.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Mapping

import httpx


def stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def latency_ms(url: str, headers: Mapping[str, str], runs: int, *,
               params: Mapping[str, str] | None = None,
               expect_type: str | None = None) -> dict[str, float]:
    """Median/min/max of ``runs`` GETs on one connection, after one warm-up GET."""
    times = []
    with httpx.Client(timeout=120) as client:
        client.get(url, params=params, headers=headers).raise_for_status()  # caches, connection
        for _ in range(runs):
            started = time.perf_counter()
            response = client.get(url, params=params, headers=headers)
            times.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            if expect_type is not None:
                assert response.headers["content-type"].startswith(expect_type)
    return stats(times)


def cold_ms(gateway_url: str, node: str, study_uid: str, url: str,
            headers: Mapping[str, str]) -> float:
    """One GET right after purging the study from the gateway's cache (the purge untimed)."""
    with httpx.Client(timeout=120) as client:
        client.delete(f"{gateway_url}/pacs/{node}/cache/studies/{study_uid}").raise_for_status()
        started = time.perf_counter()
        client.get(url, headers=headers).raise_for_status()
        return (time.perf_counter() - started) * 1000


def per_second(urls: list[str], headers: Mapping[str, str], concurrency: int = 8) -> float:
    """Requests per second with ``concurrency`` clients working through ``urls``."""
    async def run() -> float:
        queue = list(urls)
        async with httpx.AsyncClient(timeout=60) as client:
            async def worker() -> None:
                while queue:
                    (await client.get(queue.pop(), headers=headers)).raise_for_status()
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return len(urls) / (time.perf_counter() - started)
    return asyncio.run(run())
