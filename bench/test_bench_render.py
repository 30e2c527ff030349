"""Rendered JPEG latency of a 512x512 CT frame, gateway vs Orthanc's own DICOMweb.

Run with ``.venv/bin/python -m pytest bench/test_bench_render.py -s -p no:cacheprovider``;
results in ``bench/results/render.json``. Timings are reported, never asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from pathlib import Path

import httpx
import pytest

from conftest import GatewayProcess as RunningGateway
from corpus import Corpus
from pacs_fixtures import RunningPacs

RUNS = int(os.environ.get("BENCH_RUNS", "20"))
RESULTS = Path(__file__).resolve().parent / "results"
JPEG = {"Accept": "image/jpeg"}


def _latency_ms(url: str, runs: int = RUNS) -> dict[str, float]:
    times = []
    with httpx.Client(timeout=120) as client:
        client.get(url, headers=JPEG).raise_for_status()  # warm: caches, connections
        for _ in range(runs):
            started = time.perf_counter()
            response = client.get(url, headers=JPEG)
            times.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            assert response.headers["content-type"].startswith("image/jpeg")
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


def _cold_ms(gateway: RunningGateway, study_uid: str, url: str) -> float:
    with httpx.Client(timeout=120) as client:
        client.delete(f"{gateway.url}/pacs/orthanc/cache/studies/{study_uid}").raise_for_status()
        started = time.perf_counter()
        client.get(url, headers=JPEG).raise_for_status()
        return (time.perf_counter() - started) * 1000


def _images_per_second(urls: list[str], concurrency: int = 8) -> float:
    async def run() -> float:
        queue = list(urls)
        async with httpx.AsyncClient(timeout=60) as client:
            async def worker() -> None:
                while queue:
                    (await client.get(queue.pop(), headers=JPEG)).raise_for_status()
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return len(urls) / (time.perf_counter() - started)
    return asyncio.run(run())


@pytest.mark.pacs
def test_rendered_latency(gateway: RunningGateway, corpus: Corpus,
                          orthanc_pacs: RunningPacs) -> None:
    big = corpus.study("big_ct")
    series = big.series[0]
    series_path = f"/studies/{big.study_uid}/series/{series.series_uid}"
    frame_paths = [f"{series_path}/instances/{i.sop_instance_uid}/frames/1/rendered"
                   for i in series.instances]
    mine, theirs = gateway.dicomweb("orthanc"), orthanc_pacs.dicomweb_url
    results: dict[str, object] = {
        "frame rendered, 512x512 CT": {
            "gateway cold ms": _cold_ms(gateway, big.study_uid, mine + frame_paths[0]),
            "gateway warm ms": _latency_ms(mine + frame_paths[0]),
            "orthanc ms": _latency_ms(theirs + frame_paths[0]),
        },
        "frame rendered, viewport=256,256": {
            "gateway warm ms": _latency_ms(mine + frame_paths[0] + "?viewport=256,256"),
            "orthanc ms": _latency_ms(theirs + frame_paths[0] + "?viewport=256,256"),
        },
        "series thumbnail, viewport=256,256 (OHIF)": {
            "gateway warm ms": _latency_ms(mine + series_path + "/thumbnail?viewport=256,256"),
        },
    }
    _images_per_second([mine + p for p in frame_paths])  # every instance cached
    results["frames rendered, 8 concurrent, 100 instances"] = {
        "gateway warm images/s": _images_per_second([mine + p for p in frame_paths]),
        "orthanc images/s": _images_per_second([theirs + p for p in frame_paths]),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "render.json").write_text(json.dumps(results, indent=2))
    print()
    for name, row in results.items():
        print(name)
        assert isinstance(row, dict)
        for key, value in row.items():
            shown = (f"{value['median']:.1f} ({value['min']:.1f}-{value['max']:.1f})"
                     if isinstance(value, dict) else f"{value:.1f}")
            print(f"  {key:24} {shown}")
