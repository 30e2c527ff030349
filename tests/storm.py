"""The storm: a viewer's cancellation pattern played against a cold gateway.

OHIF cancels requests when the user scrolls, switches series or closes a
study, then asks again for the same objects. One *round* here does the same:
it starts concurrent study, series and metadata requests, drops most of them
(after their first bytes, or before any answer), and each dropped request at
once asks again for its series' metadata and for frames whose URLs come from
that metadata, as OHIF builds them. Every re-request must answer 200 with the
bytes the PACS holds.

Shared by tests/test_integration_storm.py (short, in CI) and
bench/test_bench_storm.py (long, with latencies). Findings are collected as
plain sentences (which request, what status, what text) so a failing run says
what went wrong and how often, not just the first assertion.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import random
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import httpx
import pydicom
from prometheus_client.parser import text_string_to_metric_families
from pydicom.encaps import generate_frames
from pydicom.uid import ExplicitVRLittleEndian

from corpus import StudyInfo, _stack, _StudySpec, _StudyWriter
from dicomweb_gw.cache._files import TEMP_PREFIX
from gateway_fixtures import KEEPALIVE_EXPIRY
from multipart_helpers import parse_multipart
from pacs_fixtures import RunningPacs, _load_into_orthanc, _require_binary, load_with_storescu

__all__ = ["FRAME_ACCEPT", "METADATA_ACCEPT", "STUDY_ACCEPT", "MetricSamples", "StormPlan",
           "StormStats", "StormStudy", "fetch_metrics", "load_into", "own_rss_after_cleanup",
           "play_round", "poll_until", "purge_everywhere", "rss_bytes", "temp_files",
           "write_storm_study"]

STUDY_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
METADATA_ACCEPT = "application/dicom+json"
# As OHIF asks for frames: whatever the instance is stored in, no transcoding.
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
# The DICOM JSON tags a viewer reads to build a frame URL.
_STUDY_TAG, _SERIES_TAG, _SOP_TAG = "0020000D", "0020000E", "00080018"

Fate = Literal["keep", "after-first-bytes", "before-answer"]
Kind = Literal["study", "series", "study-metadata", "series-metadata"]
T = TypeVar("T")


# --------------------------------------------------------------------------- the study


def write_storm_study(root: Path, label: str, series_sizes: Sequence[int]) -> StudyInfo:
    """A CT study of small slices (128x128, 32 KiB of pixels each), one series per size.

    Many small instances: a retrieve lasts long enough (per-instance DIMSE
    round trips) to be dropped mid-way, yet a round stays short.
    """
    writer = _StudyWriter(root, _StudySpec(label, f"Storm^{label}", f"GW-{label.upper()}",
                                           "19990909", f"ACC-{label.upper()}",
                                           "viewer cancellation storm"))
    for number, size in enumerate(series_sizes, start=1):
        writer.add_series("CT", f"storm {number}", _stack("CT_small.dcm", size),
                          ExplicitVRLittleEndian)
    return writer.finish()


def load_into(study: StudyInfo, *, dcmqrscp: RunningPacs | None = None,
              orthanc: RunningPacs | None = None) -> None:
    """Store ``study`` in the session's PACS (their other tests only look for their own
    studies, which STOW tests rely on too)."""
    if dcmqrscp is not None:
        load_with_storescu(dcmqrscp, study.instances, _require_binary("storescu", "dcmtk"))
    if orthanc is not None:
        _load_into_orthanc(orthanc, study.instances)


# --------------------------------------------------------------------------- expectations


def stored_frames(path: Path) -> list[bytes]:
    """The frames as stored in the file the PACS was loaded with: what ``transfer-syntax=*``
    returns (encapsulated fragments of a compressed file, the native pixel bytes otherwise)."""
    dataset = pydicom.dcmread(path)
    count = int(dataset.get("NumberOfFrames") or 1)
    if dataset.file_meta.TransferSyntaxUID.is_compressed:
        return list(generate_frames(dataset.PixelData, number_of_frames=count))
    size = len(dataset.PixelData) // count
    return [dataset.PixelData[i * size:(i + 1) * size] for i in range(count)]


@dataclass(frozen=True)
class StormStudy:
    """A corpus study and the first frame of each of its instances, as the PACS holds them."""

    info: StudyInfo
    first_frames: dict[str, bytes]

    @classmethod
    def load(cls, info: StudyInfo) -> StormStudy:
        return cls(info, {i.sop_instance_uid: stored_frames(i.path)[0] for i in info.instances})

    def sops(self, series_uid: str) -> set[str]:
        return {i.sop_instance_uid for i in self.info.series_by_uid(series_uid).instances}


@dataclass(frozen=True)
class StormPlan:
    """How one round plays. ``frames_per_series`` None: every instance's frame."""

    drop_share: float = 0.75
    frames_per_series: int | None = 8
    retrieves: int = 2  # concurrent retrieves of each study and series
    # A drop "before any answer" happens this many seconds after the request left.
    early_drop_seconds: tuple[float, float] = (0.0, 0.05)
    # A dropped request's re-requests start within this many seconds of the drop, before
    # or after it: the gateway must cope with both orders.
    overlap_seconds: float = 0.03
    timeout: float = 120.0


@dataclass
class StormStats:
    rounds: int = 0
    requests: int = 0        # storm requests started (dropped or kept)
    dropped: int = 0
    re_requests: int = 0     # metadata and frame requests made after a drop
    wrong_bytes: int = 0     # frames that differ from the PACS's copy
    latencies: list[float] = field(default_factory=list)  # re-requests, seconds
    round_seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def fail(self, kind: str, detail: str) -> None:
        """One finding: ``kind`` groups it in the summary, ``detail`` says which request."""
        self.failures.append(f"{kind}: {detail}")

    def summary(self, shown: int = 25) -> str:
        kinds = Counter(failure.split(":", 1)[0] for failure in self.failures)
        lines = [f"{len(self.failures)} findings in {self.rounds} rounds ({self.requests} storm "
                 f"requests, {self.dropped} dropped, {self.re_requests} re-requests):"]
        lines += [f"  {count:5} x {kind}" for kind, count in kinds.most_common()]
        lines += ["first ones:", *(f"  {failure}" for failure in self.failures[:shown])]
        return "\n".join(lines)

    def percentile_ms(self, share: float) -> float:
        if not self.latencies:
            return 0.0
        if len(self.latencies) == 1:
            return self.latencies[0] * 1000
        cuts = statistics.quantiles(self.latencies, n=100, method="inclusive")
        return cuts[min(98, max(0, round(share * 100) - 1))] * 1000


# --------------------------------------------------------------------------- one round


@dataclass(frozen=True)
class _StormRequest:
    kind: Kind
    study: StormStudy
    series_uid: str | None
    fate: Fate

    def path(self) -> str:
        path = f"/studies/{self.study.info.study_uid}"
        if self.series_uid is not None:
            path += f"/series/{self.series_uid}"
        return path + ("/metadata" if self.kind.endswith("metadata") else "")

    def accept(self) -> str:
        return METADATA_ACCEPT if self.kind.endswith("metadata") else STUDY_ACCEPT

    def series_to_ask_again(self) -> list[str]:
        if self.series_uid is not None:
            return [self.series_uid]
        return [series.series_uid for series in self.study.info.series]


def _storm_requests(studies: Sequence[StormStudy], plan: StormPlan,
                    rng: random.Random) -> list[_StormRequest]:
    """Per study: its retrieve ``plan.retrieves`` times and its metadata, and the same per
    series; ``drop_share`` of them dropped (half after the first bytes, half earlier)."""
    Shape = tuple[Kind, StormStudy, str | None]
    shapes: list[Shape] = []
    for study in studies:
        whole: list[Shape] = [("study", study, None)] * plan.retrieves
        shapes += [*whole, ("study-metadata", study, None)]
        for series in study.info.series:
            one: list[Shape] = [("series", study, series.series_uid)] * plan.retrieves
            shapes += [*one, ("series-metadata", study, series.series_uid)]
    rng.shuffle(shapes)
    dropped = max(1, round(len(shapes) * plan.drop_share))
    requests = []
    for index, (kind, study, series_uid) in enumerate(shapes):
        fate: Fate = "keep"
        if index < dropped:
            fate = "after-first-bytes" if rng.random() < 0.5 else "before-answer"
        requests.append(_StormRequest(kind, study, series_uid, fate))
    return requests


class _Round:
    def __init__(self, client: httpx.AsyncClient, bases: Sequence[str], plan: StormPlan,
                 rng: random.Random, stats: StormStats, number: int) -> None:
        self.client = client
        self.bases = bases
        self.plan = plan
        self.rng = rng
        self.stats = stats
        self.number = number

    def where(self) -> str:
        """A DICOMweb root: with several replicas, each request may land on any of them."""
        return self.rng.choice(self.bases)

    async def storm(self, request: _StormRequest) -> None:
        self.stats.requests += 1
        url = self.where() + request.path()
        label = f"round {self.number} storm {request.kind} ({request.fate}) GET {url}"
        if request.fate == "keep":
            await self._read(url, request, label)
            return
        self.stats.dropped += 1
        again: asyncio.Task[None] | None = None
        if request.fate == "before-answer":
            delay = self.rng.uniform(*self.plan.early_drop_seconds)
            again = self._ask_again_soon(
                request, max(0.0, delay + self._jitter() - self.plan.overlap_seconds / 2))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._read(url, request, label)
        else:
            async def at_first_bytes() -> None:
                nonlocal again
                again = self._ask_again_soon(request, self._jitter())
                await asyncio.sleep(self._jitter())

            await self._read(url, request, label, at_first_bytes)
        await (again or self._ask_again_soon(request, 0.0))

    def _jitter(self) -> float:
        return self.rng.uniform(0.0, self.plan.overlap_seconds)

    def _ask_again_soon(self, request: _StormRequest, delay: float) -> asyncio.Task[None]:
        """The re-requests, started ``delay`` seconds from now: a viewer issues its new
        requests and cancels the old ones in no particular order, so they overlap."""
        async def later() -> None:
            await asyncio.sleep(delay)
            await asyncio.gather(*(self.ask_again(request.study, series_uid)
                                   for series_uid in request.series_to_ask_again()))

        return asyncio.create_task(later())

    async def _read(self, url: str, request: _StormRequest, label: str,
                    at_first_bytes: Callable[[], Awaitable[None]] | None = None) -> None:
        try:
            async with self.client.stream("GET", url,
                                          headers={"Accept": request.accept()}) as response:
                if response.status_code != 200:
                    body = (await response.aread())[:300]
                    self.stats.fail(_status_kind("storm request", response.status_code),
                                    f"{label} -> {response.status_code}: {body!r}")
                    return
                if at_first_bytes is not None:
                    async for _chunk in response.aiter_raw():
                        break
                    await at_first_bytes()
                    return  # leaving the block closes the connection: the viewer moved on
                body = await response.aread()
            if request.fate == "keep":
                self._check_complete(request, response, body, label)
        except httpx.HTTPError as exc:
            self.stats.fail("storm request transport error",
                            f"{label}: {type(exc).__name__}: {exc}")

    def _check_complete(self, request: _StormRequest, response: httpx.Response, body: bytes,
                        label: str) -> None:
        expected = {sop for series_uid in request.series_to_ask_again()
                    for sop in request.study.sops(series_uid)}
        try:
            if request.kind.endswith("metadata"):
                got = {item[_SOP_TAG]["Value"][0] for item in response.json()}
            else:
                parts = parse_multipart(response.headers["content-type"], body)
                got = {str(part.dataset().SOPInstanceUID) for part in parts}
        except (AssertionError, ValueError, KeyError) as exc:
            self.stats.fail("kept request unreadable", f"{label}: {exc}")
            return
        if got != expected:
            self.stats.fail("kept request incomplete",
                            f"{label}: {len(got)} of {len(expected)} instances")

    async def ask_again(self, study: StormStudy, series_uid: str) -> None:
        """What the viewer does next: the series' metadata, then frames built from it."""
        url = f"{self.where()}/studies/{study.info.study_uid}/series/{series_uid}/metadata"
        label = f"round {self.number} re-request GET {url}"
        response = await self._timed_get(url, METADATA_ACCEPT, label)
        if response is None:
            return
        if response.status_code != 200:
            self.stats.fail(_status_kind("metadata re-request", response.status_code),
                            f"{label} -> {response.status_code}: {response.text[:300]}")
            return
        items = response.json()
        sops = {item[_SOP_TAG]["Value"][0] for item in items}
        if sops != study.sops(series_uid):
            self.stats.fail("metadata re-request incomplete",
                            f"{label}: {len(sops)} of {len(study.sops(series_uid))} instances")
        wanted = self.plan.frames_per_series
        chosen = items if wanted is None or wanted >= len(items) else self.rng.sample(items,
                                                                                      wanted)
        await asyncio.gather(*(self.frame(study, item) for item in chosen))

    async def frame(self, study: StormStudy, item: dict[str, dict[str, list[str]]]) -> None:
        study_uid, series_uid, sop_uid = (item[tag]["Value"][0]
                                          for tag in (_STUDY_TAG, _SERIES_TAG, _SOP_TAG))
        url = (f"{self.where()}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
               "/frames/1")
        label = f"round {self.number} frame GET {url}"
        response = await self._timed_get(url, FRAME_ACCEPT, label)
        if response is None:
            return
        if response.status_code != 200:
            self.stats.fail(_status_kind("frame re-request", response.status_code),
                            f"{label} -> {response.status_code}: {response.text[:300]}")
            return
        try:
            parts = parse_multipart(response.headers["content-type"], response.content)
        except AssertionError as exc:
            self.stats.wrong_bytes += 1
            self.stats.fail("frame unreadable", f"{label}: {exc}")
            return
        expected = study.first_frames.get(sop_uid)
        if len(parts) != 1 or parts[0].body != expected:
            self.stats.wrong_bytes += 1
            got = [len(part.body) for part in parts]
            self.stats.fail("frame bytes differ from the PACS's copy",
                            f"{label}: parts of {got} bytes, expected one of "
                            f"{len(expected or b'')} bytes")

    async def _timed_get(self, url: str, accept: str, label: str) -> httpx.Response | None:
        self.stats.re_requests += 1
        started = time.perf_counter()
        try:
            response = await self.client.get(url, headers={"Accept": accept})
        except httpx.HTTPError as exc:
            self.stats.fail("re-request transport error",
                            f"{label}: {type(exc).__name__}: {exc}")
            return None
        self.stats.latencies.append(time.perf_counter() - started)
        return response


def _status_kind(what: str, status: int) -> str:
    return f"{what} answered {'5xx' if status >= 500 else status}"


async def play_round(bases: Sequence[str], studies: Sequence[StormStudy], plan: StormPlan,
                     rng: random.Random, stats: StormStats, number: int) -> None:
    """One round: the storm requests at once; each dropped one asks again right after."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=16,
                          keepalive_expiry=KEEPALIVE_EXPIRY)
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=plan.timeout, limits=limits) as client:
        one = _Round(client, bases, plan, rng, stats, number)
        await asyncio.gather(*(one.storm(request)
                               for request in _storm_requests(studies, plan, rng)))
    stats.rounds += 1
    stats.round_seconds.append(time.perf_counter() - started)


# --------------------------------------------------------------------------- leftovers


def purge_everywhere(gateway_urls: Iterable[str], study_uid: str) -> None:
    """Forget the study on every gateway (replica), so the next round starts cold."""
    for url in gateway_urls:
        response = httpx.delete(f"{url}/cache/studies/{study_uid}", timeout=60)
        assert response.status_code == 200, f"purge on {url}: {response.status_code} " \
                                             f"{response.text[:300]}"


class MetricSamples(dict[tuple[str, tuple[tuple[str, str], ...]], float]):
    """One /metrics scrape: (sample name, sorted labels) -> value."""

    def total(self, name: str, where: Callable[[dict[str, str]], bool] = lambda _: True
              ) -> float:
        """The sum of ``name``'s samples whose labels satisfy ``where``."""
        return sum(value for (sample, labels), value in self.items()
                   if sample == name and where(dict(labels)))

    def server_errors(self) -> float:
        """Requests the gateway answered 5xx, whether or not the client was still there."""
        return self.total("dicomweb_gw_http_requests_total",
                          lambda labels: labels.get("status", "").startswith("5"))


def fetch_metrics(gateway_url: str) -> MetricSamples:
    response = httpx.get(f"{gateway_url}/metrics", timeout=30)
    assert response.status_code == 200, f"/metrics on {gateway_url}: {response.status_code}"
    return MetricSamples({(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                          for family in text_string_to_metric_families(response.text)
                          for sample in family.samples})


def temp_files(*folders: Path) -> list[Path]:
    """Unfinished cache writes (``.tmp-*``: see dicomweb_gw/cache/_files.py and blobs.py)."""
    return sorted(path for folder in folders if folder.exists()
                  for path in folder.rglob(f"{TEMP_PREFIX}*"))


def own_rss_after_cleanup() -> int:
    """This process's VmRSS once garbage is collected and glibc has handed its free pages
    back (malloc_trim), so the figure follows live memory rather than the allocator's
    high-water mark."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: the plain figure
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_bytes()


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size from /proc (VmRSS): psutil is a bench extra, not a test dependency."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def poll_until(observe: Callable[[], T], done: Callable[[T], bool], *,
               timeout: float, interval: float = 0.2) -> T:
    """Observe until ``done`` or ``timeout``; returns the last observation either way, so the
    caller's assertion shows what was still there."""
    deadline = time.monotonic() + timeout
    while True:
        seen = observe()
        if done(seen) or time.monotonic() > deadline:
            return seen
        time.sleep(interval)
