"""The storm: a viewer's cancellations (scroll, switch series, close study) against real PACS.

Each round starts cold (the study is purged), fires concurrent study, series
and metadata requests, drops most of them, and at once asks again for the
same series' metadata and frames (see tests/storm.py). Required: every
re-request 200 with the PACS's bytes, no 5xx anywhere (the dropped requests'
included, as the gateway's own counters saw them), and nothing left behind
once the storm ends: no request in flight, no association open, no flight
or DIMSE worker thread, no cache temp file, and memory back where it was.

``DICOMWEB_GW_STORM_ROUNDS`` sets the number of rounds after the warm-up (CI: 4,
the three replicas a third as many); bench/test_bench_storm.py is the long
variant with latencies.

Memory (one gateway, in this process): VmRSS of the test process after
``gc.collect()`` and glibc's ``malloc_trim(0)`` (so freed heap pages do not
count), taken after a warm-up round (imports, pools, allocator
arenas, first-use caches) and again after the storm and the settle; it may
be at most 10 % above the first figure. The client and the expected frames
live in the same process, which is why those are built before the warm-up.
With three replicas, each replica's VmRSS from /proc/<pid>/status.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from cluster_fixtures import RedisServer, Replica, running_replicas
from dicomweb_gw.pacs.associations import IDLE_SECONDS
from gateway_fixtures import RunningGateway, make_settings, node_for, running_gateway
from pacs_fixtures import DCMQRSCP_AE_TITLE, RunningPacs, free_port
from storm import (
    MetricSamples,
    StormPlan,
    StormStats,
    StormStudy,
    fetch_metrics,
    load_into,
    own_rss_after_cleanup,
    play_round,
    poll_until,
    purge_everywhere,
    rss_bytes,
    temp_files,
    write_storm_study,
)

pytestmark = pytest.mark.pacs

# CI default kept small: a round takes ~5 s on a busy 2-core runner (dcmqrscp ignores
# C-CANCEL, so cancelled retrieves linger for cancelling.CANCEL_GRACE_SECONDS).
ROUNDS = int(os.environ.get("DICOMWEB_GW_STORM_ROUNDS", "4"))
# Three processes and a shared store cost more per round: a third as many.
CLUSTER_ROUNDS = max(1, ROUNDS // 3)
# Two series of small slices: retrieves long enough to be dropped mid-way, short rounds.
SERIES_SIZES = (20, 10)
PLAN = StormPlan(frames_per_series=4, retrieves=1)
MEMORY_GROWTH = 1.10
# Cancelled retrieves end once the PACS answers the C-CANCEL, and pooled query
# associations are released once idle for min(IDLE_SECONDS, timeout / 2), by a timer
# half a second later: the settle must outlast that (15.5 s for the replicas' default
# 30 s timeout; 15 s was a race a CI run lost), or a pooled association on its way out
# passes for a leftover.
SETTLE_SECONDS = IDLE_SECONDS + 5.0


@dataclass(frozen=True)
class OneGateway:
    """A gateway in this process and the node the storm goes to."""

    running: RunningGateway
    node: str

    @property
    def base(self) -> str:
        return self.running.dicomweb(self.node)

    @property
    def cache_dir(self) -> Path:
        return self.running.settings.cache_dir


@pytest.fixture(scope="module")
def storm_studies(dcmqrscp_pacs: RunningPacs, orthanc_pacs: RunningPacs,
                  tmp_path_factory: pytest.TempPathFactory) -> list[StormStudy]:
    study = write_storm_study(tmp_path_factory.mktemp("storm"), "storm", SERIES_SIZES)
    load_into(study, dcmqrscp=dcmqrscp_pacs, orthanc=orthanc_pacs)
    return [StormStudy.load(study)]


@contextmanager
def dcmqrscp_c_get_gateway(pacs: RunningPacs, tmp: Path) -> Iterator[OneGateway]:
    node = node_for(pacs, "dcmqrscp", "c-get")
    with running_gateway(make_settings((node,), store_port=free_port(), tmp=tmp)) as running:
        yield OneGateway(running, "dcmqrscp")


@pytest.fixture(params=["dcmqrscp c-get", "orthanc c-move"])
def one_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OneGateway]:
    """dcmqrscp by C-GET: a gateway of its own with an empty cache. Orthanc by C-MOVE: the
    session gateway's ``orthanc-move`` node, as Orthanc moves only to the storage port that
    gateway listens on; its cache is purged before every round like the other's."""
    if request.param == "dcmqrscp c-get":
        with dcmqrscp_c_get_gateway(request.getfixturevalue("dcmqrscp_pacs"), tmp_path) as gw:
            yield gw
    else:
        yield OneGateway(request.getfixturevalue("gateway"), "orthanc-move")


def _storm(bases: list[str], gateway_urls: list[str], studies: list[StormStudy],
           rounds: range, stats: StormStats, seed: int) -> None:
    rng = random.Random(seed)
    for number in rounds:
        for study in studies:
            purge_everywhere(gateway_urls, study.info.study_uid)
        asyncio.run(play_round(bases, studies, PLAN, rng, stats, number))


# --------------------------------------------------------------------------- one gateway


def test_storm_on_one_gateway(one_gateway: OneGateway, storm_studies: list[StormStudy]) -> None:
    gw = one_gateway
    purge_root = f"{gw.running.url}/pacs/{gw.node}"  # DELETE <root>/cache/studies/<uid>
    errors_before = fetch_metrics(gw.running.url).server_errors()
    stats = StormStats()
    _storm([gw.base], [purge_root], storm_studies, range(1), stats, seed=1)  # warm-up
    _settle_one(gw)
    rss_start = own_rss_after_cleanup()

    _storm([gw.base], [purge_root], storm_studies, range(1, ROUNDS + 1), stats, seed=2)

    assert stats.failures == [], stats.summary()
    left = _settle_one(gw)
    assert left.server_errors() == errors_before, "the gateway answered 5xx (dropped " \
        "requests included)"
    assert left.total("dicomweb_gw_http_requests_in_flight") == 1, "requests still in " \
        "flight besides this scrape"
    assert left.total("dicomweb_gw_associations_open", lambda labels: labels["pacs"] == gw.node
                      ) == 0, "associations still open"
    assert _flights_left(gw) == [], "single flights still registered"
    assert _dimse_threads() == [], "DIMSE worker threads still running"
    assert temp_files(gw.cache_dir) == [], "cache temp files left behind"
    rss_end = own_rss_after_cleanup()
    assert rss_end <= rss_start * MEMORY_GROWTH, (
        f"VmRSS {rss_start / 2**20:.0f} MiB after the warm-up round, {rss_end / 2**20:.0f} MiB "
        f"after {ROUNDS} more rounds")


def _flights_left(gw: OneGateway) -> list[str]:
    flights = gw.running.app.state.services[gw.node].wado.source.flights
    return [flight.keys.describe() for flight in flights.in_flight(gw.node)]


def _dimse_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate()
            if thread.name.startswith("dimse-")]


def _settle_one(gw: OneGateway) -> MetricSamples:
    """The metrics once requests, associations, flights and workers are gone (or at the
    timeout: the caller's assertions then say what remained)."""
    def quiet(samples: MetricSamples) -> bool:
        return (samples.total("dicomweb_gw_http_requests_in_flight") == 1
                and samples.total("dicomweb_gw_associations_open",
                                  lambda labels: labels["pacs"] == gw.node) == 0
                and not _flights_left(gw) and not _dimse_threads())

    return poll_until(lambda: fetch_metrics(gw.running.url), quiet, timeout=SETTLE_SECONDS)


# --------------------------------------------------------------------------- three replicas


def _cluster_env(pacs: RunningPacs, redis_url: str, shared: Path) -> dict[str, str]:
    return {
        "DICOMWEB_GW_PACS_HOST": pacs.host,
        "DICOMWEB_GW_PACS_PORT": str(pacs.port),
        "DICOMWEB_GW_PACS_AE_TITLE": DCMQRSCP_AE_TITLE,
        "DICOMWEB_GW_RETRIEVE": "c-get",
        "DICOMWEB_GW_REDIS_URL": redis_url,
        "DICOMWEB_GW_SHARED_STORE": f"file://{shared}",
        "DICOMWEB_GW_LEASE_SECONDS": "2",
    }


def test_storm_on_three_replicas_with_redis(
    dcmqrscp_pacs: RunningPacs, redis_server: RedisServer, storm_studies: list[StormStudy],
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    with running_replicas(3, tmp_path, _cluster_env(dcmqrscp_pacs, redis_server.url,
                                                    shared)) as replicas:
        urls = [replica.url for replica in replicas]
        bases = [f"{url}/dicom-web" for url in urls]
        stats = StormStats()
        _storm(bases, urls, storm_studies, range(1), stats, seed=3)  # warm-up
        _settle_replicas(replicas)
        rss_start = {r.name: rss_bytes(r.process.pid) for r in replicas}

        _storm(bases, urls, storm_studies, range(1, CLUSTER_ROUNDS + 1), stats, seed=4)

        assert stats.failures == [], stats.summary()
        left = _settle_replicas(replicas)
        for replica in replicas:
            samples = left[replica.name]
            where = f"{replica.name} (log: {replica.log_path})"
            assert samples.server_errors() == 0, f"{where} answered 5xx"
            assert samples.total("dicomweb_gw_http_requests_in_flight") == 1, \
                f"{where}: requests still in flight besides this scrape"
            assert samples.total("dicomweb_gw_associations_open") == 0, \
                f"{where}: associations still open"
            rss_end = rss_bytes(replica.process.pid)
            assert rss_end <= rss_start[replica.name] * MEMORY_GROWTH, (
                f"{where}: VmRSS {rss_start[replica.name] / 2**20:.0f} MiB after the warm-up "
                f"round, {rss_end / 2**20:.0f} MiB after {CLUSTER_ROUNDS} more rounds")
        assert temp_files(tmp_path) == [], "cache or shared-store temp files left behind"


def _settle_replicas(replicas: list[Replica]) -> dict[str, MetricSamples]:
    def observe() -> dict[str, MetricSamples]:
        return {replica.name: fetch_metrics(replica.url) for replica in replicas}

    def quiet(seen: dict[str, MetricSamples]) -> bool:
        return all(samples.total("dicomweb_gw_http_requests_in_flight") == 1
                   and samples.total("dicomweb_gw_associations_open") == 0
                   for samples in seen.values())

    return poll_until(observe, quiet, timeout=SETTLE_SECONDS)
