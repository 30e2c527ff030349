"""HTTP caching and compression (#18 parts 2 and 3): a 304 against a warm frame, and a
600-instance series' metadata with and without compression over the simulated link.

Run with ``.venv/bin/python -m pytest bench/test_bench_http_caching.py -s -p no:cacheprovider``;
results in ``bench/results/http_caching.json`` (``bench/report.py`` puts them in
docs/benchmarks.md). Timings are reported, never asserted.

* Revalidation: one keep-alive client asks, one request at a time, for single
  frames of the 100-instance CT (512x512, 16 bits: 512 KB each) in full, then
  revalidates the same frames with ``If-None-Match``; both warm, side by side, on
  loopback, over the 10 ms link (one round trip is then the floor of both) and
  over a 10 ms link of 50 Mbit/s; and 8 concurrent clients on loopback.
* Compression: the series metadata, warm, fetched through ``tests/link_proxy.py``
  (10 ms each way) with each ``Accept-Encoding``: the bytes that crossed the link
  and the time to the last byte, on an unlimited link and one of 50 Mbit/s.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable

import httpx
import pytest
from record import comparison, save
from test_bench_viewer import series_600
from timing import stats

from conftest import GatewayProcess
from corpus import Corpus, SeriesInfo, StudyInfo
from link_proxy import LinkProxy

__all__ = ["series_600"]  # the fixture, shared with the viewer benchmark

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
REQUESTS = int(os.environ.get("BENCH_REVALIDATIONS", "200"))
LINK_DELAY_MS = 10
SLOW_LINK = 50e6 / 8  # 50 Mbit/s, in bytes per second
OCTET = {"Accept": "application/octet-stream"}
JSON = {"Accept": "application/dicom+json"}
CODINGS = ("identity", "gzip", "br", "zstd")

pytestmark = pytest.mark.pacs


def _per_request_ms(client: httpx.Client, urls: list[str],
                    headers: Callable[[str], dict[str, str]], status: int) -> dict[str, float]:
    times = []
    for url in urls:
        started = time.perf_counter()
        response = client.get(url, headers=headers(url))
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == status, response.text
    return stats(times)


def _concurrent_per_second(url: str, headers: dict[str, str], status: int,
                           requests: int = REQUESTS, concurrency: int = 8) -> float:
    """Answers per second with ``concurrency`` clients asking for ``url``."""
    async def run() -> float:
        left = requests
        async with httpx.AsyncClient(timeout=60) as client:
            async def worker() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    response = await client.get(url, headers=headers)
                    assert response.status_code == status, response.text
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return requests / (time.perf_counter() - started)
    return asyncio.run(run())


def _revalidation(base: str, corpus: Corpus) -> dict[str, dict[str, float]]:
    study = corpus.study("big_ct")
    series = study.series[0]
    rng = random.Random(18)
    urls = [f"{base}/studies/{study.study_uid}/series/{series.series_uid}/instances/"
            f"{rng.choice(series.instances).sop_instance_uid}/frames/1"
            for _ in range(REQUESTS)]
    with httpx.Client(timeout=60) as client:
        etags = {url: client.get(url, headers=OCTET).headers["etag"] for url in set(urls)}
        full = _per_request_ms(client, urls, lambda _: OCTET, 200)
        revalidated = _per_request_ms(
            client, urls, lambda url: {**OCTET, "If-None-Match": etags[url]}, 304)
    return {"full warm frame (200, 512 KB)": full, "revalidation (304)": revalidated}


def _metadata_transfer(url: str, coding: str) -> tuple[float, int]:
    """Seconds to the last byte, and the bytes of the body as sent."""
    with httpx.Client(timeout=120) as client:
        client.get(url.split("/pacs/")[0] + "/healthz")  # the connection is open: not timed
        started = time.perf_counter()
        size = 0
        with client.stream("GET", url, headers={**JSON, "Accept-Encoding": coding}) as response:
            assert response.status_code == 200
            for chunk in response.iter_raw():
                size += len(chunk)
        return time.perf_counter() - started, size


def test_http_caching(gateway: GatewayProcess, corpus: Corpus,
                      series_600: tuple[StudyInfo, SeriesInfo]) -> None:
    comparisons = []
    port = int(gateway.url.rsplit(":", 1)[1])
    for key, where, rate in (("loopback", "loopback", None),
                             ("link", f"{LINK_DELAY_MS} ms link", None),
                             ("slow_link", f"{LINK_DELAY_MS} ms link, 50 Mbit/s", SLOW_LINK)):
        if rate is None and key == "loopback":
            rows = _revalidation(gateway.dicomweb("orthanc"), corpus)
        else:
            with LinkProxy("127.0.0.1", port, delay_ms=LINK_DELAY_MS, rate=rate) as proxy:
                rows = _revalidation(f"http://127.0.0.1:{proxy.port}/pacs/orthanc/dicom-web",
                                     corpus)
        comparisons.append(comparison(
            f"http_caching.revalidation.{key}",
            f"single frame, warm, one request at a time ({where}): in full vs 304",
            "ms", rows, reference="full warm frame (200, 512 KB)"))
    big = corpus.study("big_ct")
    instance = big.series[0].instances[0]
    frame_url = (f"{gateway.dicomweb('orthanc')}/studies/{big.study_uid}/series/"
                 f"{big.series[0].series_uid}/instances/{instance.sop_instance_uid}/frames/1")
    etag = httpx.get(frame_url, headers=OCTET, timeout=60).headers["etag"]
    comparisons.append(comparison(
        "http_caching.revalidation.concurrent", "the same frame, warm, 8 concurrent clients "
        "(loopback): in full vs 304", "answers/s", {
            "full warm frame (200, 512 KB)": _concurrent_per_second(frame_url, OCTET, 200),
            "revalidation (304)": _concurrent_per_second(
                frame_url, {**OCTET, "If-None-Match": etag}, 304),
        }, better="higher", reference="full warm frame (200, 512 KB)"))

    study, series = series_600
    path = f"/studies/{study.study_uid}/series/{series.series_uid}/metadata"
    httpx.get(gateway.dicomweb("orthanc") + path, headers=JSON, timeout=300).raise_for_status()
    sizes: dict[str, float] = {}
    raw: dict[str, dict[str, float]] = {}
    for label, rate in (("10 ms link", None), ("10 ms link, 50 Mbit/s", SLOW_LINK)):
        with LinkProxy("127.0.0.1", port, delay_ms=LINK_DELAY_MS, rate=rate) as proxy:
            url = f"http://127.0.0.1:{proxy.port}/pacs/orthanc/dicom-web{path}"
            times = {}
            for coding in CODINGS:
                _metadata_transfer(url, coding)  # warm-up
                samples = [_metadata_transfer(url, coding) for _ in range(RUNS)]
                times[coding] = stats([seconds * 1000 for seconds, _ in samples])
                sizes[coding] = samples[0][1] / 1024
                raw[f"{label}.{coding}"] = times[coding]
        key = "slow_link" if rate else "link"
        comparisons.append(comparison(
            f"http_caching.metadata_600.{key}.time",
            f"600-instance series metadata, warm, over a {label}: time to the last byte",
            "ms", times, reference="identity"))
    comparisons.append(comparison(
        "http_caching.metadata_600.bytes", "600-instance series metadata: bytes sent",
        "KiB", sizes, reference="identity"))
    save("http_caching", "HTTP caching (304) and compression (#18)", comparisons, notes=[
        f"Revalidation: {REQUESTS} single-frame requests of the 100-instance CT, one at a "
        "time on one keep-alive connection, first in full (200) then with If-None-Match "
        "(304); median (min-max) per request. Concurrent: the same frame asked "
        f"{REQUESTS} times by 8 clients",
        f"Compression: median (min-max) of {RUNS} warm fetches after one warm-up, each on a "
        f"connection already open, through tests/link_proxy.py ({LINK_DELAY_MS} ms each "
        "way); the bytes are the body as sent (compressed)",
    ], raw=raw)
