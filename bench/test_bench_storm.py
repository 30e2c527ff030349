"""The storm at full length: a viewer's cancellations, then the same objects asked again.

tests/test_integration_storm.py plays a few short rounds in CI; this one plays
``BENCH_STORM_ROUNDS`` (50) fuller rounds against the gateway in its own
process (dcmqrscp by C-GET, the default 4 associations) and records how many
requests were dropped and asked again, how many frames came back wrong, what
was left behind, and the re-request latencies. Results in
``bench/results/storm.json``; latencies are reported, never asserted. Findings
(wrong bytes, errors, leftovers) fail the benchmark after the results are saved.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import psutil
import pytest
from record import comparison, save

from conftest import GatewayProcess, run_gateway
from pacs_fixtures import RunningPacs, free_port
from storm import (
    MetricSamples,
    StormPlan,
    StormStats,
    StormStudy,
    fetch_metrics,
    load_into,
    play_round,
    poll_until,
    purge_everywhere,
    temp_files,
    write_storm_study,
)

ROUNDS = int(os.environ.get("BENCH_STORM_ROUNDS", "50"))
PLAN = StormPlan(frames_per_series=None, retrieves=2)  # every instance's frame, every time
SERIES_SIZES = (48, 24)
SETTLE_SECONDS = 30.0


def _quiet(samples: MetricSamples) -> bool:
    return (samples.total("dicomweb_gw_http_requests_in_flight") == 1
            and samples.total("dicomweb_gw_associations_open") == 0)


# pyproject's 300 s stopped the default 50 rounds (10-21 s each on 2 cores) well before the end.
@pytest.mark.timeout(60 * (ROUNDS + 1) + 2 * int(SETTLE_SECONDS) + 300)
@pytest.mark.pacs
def test_storm(dcmqrscp_pacs: RunningPacs, tmp_path: Path) -> None:
    study = write_storm_study(tmp_path / "study", "benchstorm", SERIES_SIZES)
    load_into(study, dcmqrscp=dcmqrscp_pacs)
    studies = [StormStudy.load(study)]
    with run_gateway(tmp_path / "gateway", {"dcmqrscp": (dcmqrscp_pacs, "c-get")},
                     free_port()) as gateway:
        stats, rss = _play(gateway, studies)
        left = poll_until(lambda: fetch_metrics(gateway.url), _quiet, timeout=SETTLE_SECONDS)
        rss["after"] = psutil.Process(gateway.pid).memory_info().rss
    temps = [str(path) for path in temp_files(tmp_path / "gateway" / "cache")]
    leftovers = {
        "requests in flight": left.total("dicomweb_gw_http_requests_in_flight") - 1,  # the scrape
        "associations open": left.total("dicomweb_gw_associations_open"),
        "temp files": len(temps),
        "5xx answers": left.server_errors(),
    }
    save("storm", "Viewer storm: requests dropped mid-way and asked again "
         "(dcmqrscp, C-GET, cold every round)", [
        comparison("storm.re_request_latency", "re-request latency (series metadata, frames)",
                   "ms", {"p50": stats.percentile_ms(0.50), "p95": stats.percentile_ms(0.95)}),
        comparison("storm.round", "one round (purge, storm, every re-request answered)", "s",
                   {"median": sorted(stats.round_seconds)[len(stats.round_seconds) // 2]}),
    ], notes=[
        f"{ROUNDS} rounds after one warm-up; series of {SERIES_SIZES} instances; per round "
        f"each study and series retrieved {PLAN.retrieves}x and its metadata once, "
        f"{PLAN.drop_share:.0%} dropped (after the first bytes or before the answer), each "
        "drop followed at once by its series' metadata and every frame.",
        "Gateway RSS (MiB): "
        + ", ".join(f"{k} {v / 2**20:.0f}" for k, v in rss.items()),
    ], raw={
        "rounds": stats.rounds - 1, "requests": stats.requests, "dropped": stats.dropped,
        "re_requests": stats.re_requests, "wrong_bytes": stats.wrong_bytes,
        "findings": len(stats.failures), "first_findings": stats.failures[:20],
        "leftovers": leftovers, "temp_files": temps[:20],
        "rss_bytes": rss, "round_seconds": stats.round_seconds,
    })
    assert stats.failures == [], stats.summary()
    assert all(value == 0 for value in leftovers.values()), leftovers


def _play(gateway: GatewayProcess, studies: list[StormStudy]) -> tuple[StormStats, dict[str, int]]:
    """One warm-up round, then ROUNDS rounds, each cold; the gateway's RSS around them."""
    base = gateway.dicomweb("dcmqrscp")
    purge_root = f"{gateway.url}/pacs/dcmqrscp"
    rng = random.Random(50)
    stats = StormStats()
    rss: dict[str, int] = {}
    for number in range(ROUNDS + 1):
        for study in studies:
            purge_everywhere([purge_root], study.info.study_uid)
        asyncio.run(play_round([base], studies, PLAN, rng, stats, number))
        if number == 0:
            poll_until(lambda: fetch_metrics(gateway.url), _quiet, timeout=SETTLE_SECONDS)
            time.sleep(0.5)
            rss["after warm-up"] = psutil.Process(gateway.pid).memory_info().rss
            stats.latencies.clear()  # the warm-up's are not the steady state
    return stats, rss
