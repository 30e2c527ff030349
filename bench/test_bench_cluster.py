"""Several replicas: retrieves under contention, and warm frames/s with 1 vs 3 replicas.

Real parts as in tests/test_cluster.py: gateway processes, one redis-server, a
shared folder, dcmqrscp behind a proxy that counts the DIMSE requests. On
this 2-core machine three replicas can use both cores (one GIL each), which
is what the frames figure shows; more cores would show more.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from record import comparison, save
from timing import per_second, stats

from cluster_fixtures import RedisServer, Replica, running_replicas
from corpus import Corpus, StudyInfo
from pacs_fixtures import RunningPacs
from tcp_proxy import C_GET_RQ, TcpProxy

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
CLIENTS = 30
FRAME_REQUESTS = int(os.environ.get("BENCH_FRAME_REQUESTS", "600"))
FRAME = {"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"}
STUDY = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}


@contextmanager
def cluster(count: int, tmp: Path, pacs: RunningPacs, *,
            redis_url: str | None) -> Iterator[tuple[list[Replica], TcpProxy]]:
    env = {"DICOMWEB_GW_RETRIEVE": "c-get", "DICOMWEB_GW_PACS_HOST": pacs.host,
           "DICOMWEB_GW_PACS_AE_TITLE": pacs.ae_title, "DICOMWEB_GW_LOG_FORMAT": "json"}
    if redis_url is not None:
        env |= {"DICOMWEB_GW_REDIS_URL": redis_url,
                "DICOMWEB_GW_SHARED_STORE": f"file://{tmp / 'shared'}"}
    with TcpProxy([(pacs.host, pacs.port)]) as proxy, running_replicas(
            count, tmp, {**env, "DICOMWEB_GW_PACS_PORT": str(proxy.port)}) as replicas:
        yield replicas, proxy


def contention(replicas: list[Replica], study: StudyInfo) -> float:
    """Seconds until CLIENTS clients spread over ``replicas`` all have the cold study."""
    async def run() -> float:
        async with httpx.AsyncClient(timeout=300) as client:
            async def one(index: int) -> None:
                url = f"{replicas[index % len(replicas)].url}/dicom-web/studies/{study.study_uid}"
                async with client.stream("GET", url, headers=STUDY) as response:
                    response.raise_for_status()
                    async for _ in response.aiter_bytes():
                        pass
            started = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(CLIENTS)))
            return time.perf_counter() - started
    return asyncio.run(run())


def frames_per_second(replicas: list[Replica], study: StudyInfo) -> dict[str, float]:
    series = study.series[0]
    rng = random.Random(11)
    urls = [f"{replicas[i % len(replicas)].url}/dicom-web/studies/{study.study_uid}/series/"
            f"{series.series_uid}/instances/{rng.choice(series.instances).sop_instance_uid}"
            "/frames/1" for i in range(FRAME_REQUESTS)]
    per_second(urls[:200], FRAME, concurrency=16)  # every replica's local tier warm
    return stats([per_second(urls, FRAME, concurrency=16) for _ in range(RUNS)])


@pytest.mark.pacs
def test_cluster(dcmqrscp_pacs: RunningPacs, corpus: Corpus, tmp_path: Path) -> None:
    study = corpus.study("big_ct")
    redis = RedisServer(tmp_path)
    redis.start()
    seconds: dict[str, float] = {}
    retrieves: dict[str, float] = {}
    fps: dict[str, dict[str, float]] = {}
    try:
        setups = [("1 replica", 1, None), ("3 replicas, Redis + shared store", 3, redis.url),
                  ("3 replicas, no Redis", 3, None)]
        for label, count, url in setups:
            with cluster(count, tmp_path / label.replace(" ", "_").replace(",", ""),
                         dcmqrscp_pacs, redis_url=url) as (replicas, proxy):
                seconds[label] = contention(replicas, study)
                retrieves[label] = proxy.commands[C_GET_RQ]
                if url is not None or count == 1:
                    fps[label] = frames_per_second(replicas, study)
    finally:
        redis.stop()

    save("cluster", "Several replicas (dcmqrscp, C-GET, 100-instance 53 MB CT study)", [
        comparison("cluster_retrieves", f"C-GETs reaching the PACS: {CLIENTS} clients, one "
                   "cold study", "retrieves", retrieves, reference="1 replica"),
        comparison("cluster_contention", f"{CLIENTS} clients, one cold study: until all have it",
                   "s", seconds, reference="1 replica"),
        comparison("cluster_frames", "Warm frames, 16 concurrent, requests spread over the "
                   "replicas", "frames/s", fps, better="higher", reference="1 replica"),
    ], notes=[f"{os.cpu_count()} cores: replicas share them with the client and the PACS."])

    assert retrieves["3 replicas, Redis + shared store"] == 1
