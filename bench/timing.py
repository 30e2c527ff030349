"""Timing helpers shared by the benchmarks: latency, transfers, throughput, soak, memory.

Every benchmark measures the gateway and its reference the same way, with the
same warm-up, so the ratios compare like with like. Nothing else in bench/
runs its own timing loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypedDict
from urllib.parse import quote, urlencode

import httpx
import psutil

#: Request headers for a whole study as stored, as the retrieve benchmarks ask for it.
AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def stats(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def repeat_ms(call: Callable[[], object], runs: int, warmup: int = 1) -> dict[str, float]:
    """Median/min/max milliseconds of ``runs`` calls, after ``warmup`` untimed ones.

    A call that returns ``False`` failed: its time is left out (the caller
    counts the failure); every other return value counts as success.
    """
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        ok = call()
        if ok is not False:
            times.append((time.perf_counter() - started) * 1000)
    if not times:
        raise RuntimeError(f"all {runs} timed calls failed")
    return stats(times)


def browser_url(url: str, params: Mapping[str, str] | None) -> str:
    """``url`` with ``params`` encoded as a browser's encodeURIComponent does (OHIF).

    That leaves ``*`` as it is, where httpx would send ``%2A``: Orthanc's
    DICOMweb plugin (1.7) does not decode it, so its QIDO would match nothing
    and look very fast.
    """
    if not params:
        return url
    return f"{url}?{urlencode(params, quote_via=quote, safe='*')}"


def latency_ms(url: str, headers: Mapping[str, str], runs: int, *,
               params: Mapping[str, str] | None = None,
               expect_type: str | None = None,
               errors: list[str] | None = None) -> dict[str, float]:
    """Median/min/max of ``runs`` GETs on one connection, after one warm-up GET.

    An error answer raises, unless ``errors`` is given: then it is appended
    there (status and message) and its time left out of the stats.
    """
    url = browser_url(url, params)
    with httpx.Client(timeout=120) as client:
        def get() -> bool:
            response = client.get(url, headers=headers)
            if response.is_error and errors is not None:
                errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                return False
            response.raise_for_status()
            if expect_type is not None:
                assert response.headers["content-type"].startswith(expect_type)
            return True
        return repeat_ms(get, runs)


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


# --------------------------------------------------------------------------- transfers


@dataclass(frozen=True)
class Transfer:
    """One study transfer: seconds to the first part (or file), total seconds, bytes."""

    first_s: float
    total_s: float
    size: int


def stream_get(url: str, purge: str | None = None) -> Transfer:
    """GET a multipart study and discard it as it arrives.

    ``first_s`` is when the first part's DICM magic reached the client.
    ``purge`` is the gateway's cache purge URL for the study: called (untimed)
    first, it makes the run cold, so the study comes from the PACS.
    """
    if purge is not None:
        httpx.delete(purge, timeout=30).raise_for_status()
    started = time.perf_counter()
    first = math.nan
    size = 0
    with httpx.stream("GET", url, headers={"Accept": AS_STORED}, timeout=600) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            size += len(chunk)
            if math.isnan(first) and b"DICM" in chunk:
                first = time.perf_counter() - started
    return Transfer(first, time.perf_counter() - started, size)


class FirstFile:
    """When did the first file appear in ``folder``? Polled every ms from a thread.

    DCMTK's getscu and storescp write each instance once it is fully received,
    so this is their "time to first instance", the counterpart of the
    gateway's first multipart part. Polling a small directory every ms costs
    little next to the transfer it watches.
    """

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self.seen_at = math.nan

    def _poll(self) -> None:
        while not self._stop.is_set():
            with os.scandir(self._folder) as entries:
                if any(True for _ in entries):
                    self.seen_at = time.perf_counter()
                    return
            time.sleep(0.001)

    def __enter__(self) -> FirstFile:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def tool_transfer(command: Sequence[str], folder: Path, expect_files: int) -> Transfer:
    """Run a DCMTK tool whose instances land in ``folder`` (emptied first, untimed).

    For getscu the tool writes them itself; for movescu a storescp that is
    already running does. Either way the transfer is over when the tool exits
    (the C-GET/C-MOVE final response comes after the last sub-operation).
    """
    for old in folder.iterdir():
        old.unlink()
    env = dict(os.environ, TCP_NODELAY="1")
    with FirstFile(folder) as first:
        started = time.perf_counter()
        subprocess.run(command, check=True, env=env, capture_output=True)
        total = time.perf_counter() - started
    files = list(folder.iterdir())
    assert len(files) == expect_files, f"{command[0]} delivered {len(files)} files"
    return Transfer(first.seen_at - started, total, sum(p.stat().st_size for p in files))


class TransferStats(TypedDict):
    first_s: dict[str, float]
    total_s: dict[str, float]
    mb_per_s: dict[str, float]
    bytes: int


def transfer_stats(run: Callable[[], Transfer], runs: int) -> TransferStats:
    """Stats of ``runs`` transfers after one warm-up (connections, imports, page cache)."""
    run()
    samples = [run() for _ in range(runs)]
    return TransferStats(
        first_s=stats([s.first_s for s in samples]),
        total_s=stats([s.total_s for s in samples]),
        mb_per_s=stats([s.size / 1e6 / s.total_s for s in samples]),
        bytes=samples[0].size,
    )


# --------------------------------------------------------------------------- soak


@dataclass(frozen=True)
class Call:
    """One request of a soak: a kind (for per-kind latencies), URL and headers."""

    kind: str
    url: str
    headers: Mapping[str, str]


class KindStats(TypedDict):
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float


class SoakSummary(TypedDict):
    seconds: float
    requests: int
    requests_per_s: float
    errors: int
    error_samples: list[str]
    kinds: dict[str, KindStats]


@dataclass
class SoakResult:
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> SoakSummary:
        requests = sum(len(v) for v in self.latencies.values())
        return SoakSummary(
            seconds=self.seconds,
            requests=requests,
            requests_per_s=requests / self.seconds,
            errors=len(self.errors),
            error_samples=sorted(set(self.errors))[:10],
            kinds={kind: KindStats(count=len(values), p50_ms=_percentile(values, 50),
                                   p99_ms=_percentile(values, 99), max_ms=max(values))
                   for kind, values in sorted(self.latencies.items()) if values},
        )


def _percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(percent / 100 * (len(ordered) - 1)))]


def soak(sessions: Callable[[random.Random], list[Call]], *, clients: int,
         seconds: float, seed: int = 1) -> SoakResult:
    """``clients`` concurrent clients, each running viewer sessions back to back.

    A session is a list of requests made in order (like a viewer opening a
    study); a client starts its next session until ``seconds`` have passed and
    finishes the request in flight. Every non-2xx answer or transport error
    counts as an error (its status or exception type is kept as a sample).
    """
    result = SoakResult(seconds)

    async def run() -> None:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            deadline = time.perf_counter() + seconds

            async def worker(rng: random.Random) -> None:
                while time.perf_counter() < deadline:
                    for call in sessions(rng):
                        if time.perf_counter() >= deadline:
                            return
                        started = time.perf_counter()
                        try:
                            response = await client.get(call.url, headers=call.headers)
                            await response.aread()
                            if response.is_error:
                                result.errors.append(f"{call.kind}: HTTP {response.status_code}")
                        except httpx.HTTPError as exc:
                            result.errors.append(f"{call.kind}: {type(exc).__name__}")
                            continue
                        result.latencies.setdefault(call.kind, []).append(
                            (time.perf_counter() - started) * 1000)

            started = time.perf_counter()
            await asyncio.gather(*(worker(random.Random(seed * 1000 + i))
                                   for i in range(clients)))
            result.seconds = time.perf_counter() - started

    asyncio.run(run())
    return result


# --------------------------------------------------------------------------- memory


class PeakRss:
    """Peak resident memory of a process and its children, sampled every ``interval`` s.

    Sampled from a thread of the benchmark process, so the gateway is not
    disturbed beyond psutil reading /proc. Children count because a worker
    process would hold memory that the parent's RSS does not show.
    """

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self._process = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.samples: list[tuple[float, int]] = []

    def rss(self) -> int:
        total = 0
        for process in (self._process, *self._process.children(recursive=True)):
            # A child may exit between listing and reading it.
            with contextlib.suppress(psutil.NoSuchProcess):
                total += process.memory_info().rss
        return total

    def _sample(self) -> None:
        started = time.perf_counter()
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - started, self.rss()))
            self._stop.wait(self._interval)

    @property
    def peak(self) -> int:
        return max(rss for _, rss in self.samples)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((self.samples[-1][0] if self.samples else 0.0, self.rss()))


class CpuUse:
    """Cores a process used while the block ran: its CPU seconds over wall seconds.

    Says who was busy during a load test: on 2 shared cores the client, the
    gateway and the PACS compete, and a server that is not busy was not the limit.
    """

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.cores = math.nan

    def _cpu_seconds(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def __enter__(self) -> CpuUse:
        self._cpu, self._started = self._cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._started
        self.cores = (self._cpu_seconds() - self._cpu) / wall


def idle_rss(pid: int, seconds: float = 1.0) -> int:
    """Baseline: median RSS of a process (and children) left idle for ``seconds``."""
    with PeakRss(pid) as sampler:
        time.sleep(seconds)
    return int(statistics.median(rss for _, rss in sampler.samples))
