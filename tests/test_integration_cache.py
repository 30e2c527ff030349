"""The instance cache under real traffic: single flight, restarts, crashes, small budgets."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

from corpus import Corpus
from dicomweb_gw.cache._files import TEMP_PREFIX
from dicomweb_gw.cache.disk import DiskInstanceStore
from dicomweb_gw.model import RetrieveKeys
from dicomweb_gw.settings import PacsNode
from gateway_fixtures import RunningGateway, make_settings, node_for, running_gateway
from multipart_helpers import parse_multipart
from pacs_fixtures import RunningPacs, free_port, wait_until

pytestmark = pytest.mark.pacs
DICOM_AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
FRAME = "multipart/related; type=application/octet-stream; transfer-syntax=*"


@contextmanager
def orthanc_gateway(orthanc_pacs: RunningPacs, cache: Path, **settings: Any
                    ) -> Iterator[tuple[RunningGateway, list[RetrieveKeys]]]:
    """A gateway with its own cache in front of Orthanc (C-GET); records every DIMSE retrieve."""
    node = node_for(orthanc_pacs, "orthanc", "c-get")
    config = replace(make_settings((node,), store_port=free_port(), tmp=cache.parent),
                     cache_dir=cache, **settings)
    with running_gateway(config) as gateway:
        client = gateway.app.state.gateway.clients["orthanc"]
        calls: list[RetrieveKeys] = []
        original = client.retrieve

        def counting(keys: RetrieveKeys, **kwargs: Any) -> AsyncGenerator[Any, None]:
            calls.append(keys)
            return original(keys, **kwargs)

        client.retrieve = counting
        yield gateway, calls


def test_concurrent_cold_requests_cause_one_retrieve(orthanc_pacs: RunningPacs, corpus: Corpus,
                                                     tmp_path: Path) -> None:
    study = corpus.study("big_ct")
    series = study.series[0]
    with orthanc_gateway(orthanc_pacs, tmp_path / "cache") as (gateway, calls):
        url = f"{gateway.dicomweb()}/studies/{study.study_uid}/series/{series.series_uid}"

        async def fetch(client: httpx.AsyncClient, path: str, accept: str) -> httpx.Response:
            return await client.get(url + path, headers={"Accept": accept}, timeout=120)

        async def eight() -> list[httpx.Response]:
            async with httpx.AsyncClient() as client:
                return await asyncio.gather(
                    *(fetch(client, "", DICOM_AS_STORED) for _ in range(4)),
                    *(fetch(client, "/metadata", "application/dicom+json") for _ in range(4)))

        responses = asyncio.run(eight())
    assert [r.status_code for r in responses] == [200] * 8
    assert calls == [RetrieveKeys(study.study_uid, series.series_uid)]
    for response in responses[:4]:
        parts = parse_multipart(response.headers["content-type"], response.content)
        assert len(parts) == 100
    for response in responses[4:]:
        assert len(response.json()) == 100


def test_frame_of_an_uncached_instance_retrieves_only_that_instance(
    orthanc_pacs: RunningPacs, corpus: Corpus, tmp_path: Path
) -> None:
    study = corpus.study("mr_multiframe")
    series = study.series[0]
    instance = series.instances[0]
    with orthanc_gateway(orthanc_pacs, tmp_path / "cache") as (gateway, calls):
        url = (f"{gateway.dicomweb()}/studies/{study.study_uid}/series/{series.series_uid}"
               f"/instances/{instance.sop_instance_uid}/frames/2")
        first = httpx.get(url, headers={"Accept": FRAME}, timeout=60)
        second = httpx.get(url.replace("/frames/2", "/frames/5"), headers={"Accept": FRAME},
                           timeout=60)
    assert first.status_code == second.status_code == 200
    assert calls == [RetrieveKeys(study.study_uid, series.series_uid, instance.sop_instance_uid)]


def test_cached_instance_is_served_after_restart_with_the_pacs_down(
    orthanc_pacs: RunningPacs, corpus: Corpus, tmp_path: Path
) -> None:
    study = corpus.study("ct_small")
    series = study.series[-1]
    instance = series.instances[1]
    path = (f"/studies/{study.study_uid}/series/{series.series_uid}"
            f"/instances/{instance.sop_instance_uid}")
    cache = tmp_path / "cache"
    with orthanc_gateway(orthanc_pacs, cache) as (gateway, _):
        warm = httpx.get(gateway.dicomweb() + path, headers={"Accept": DICOM_AS_STORED},
                         timeout=60)
        assert warm.status_code == 200
    down = PacsNode(name="orthanc", host="127.0.0.1", port=free_port(), ae_title="GONE",
                    retrieve="c-get", timeout=3)
    settings = replace(make_settings((down,), store_port=free_port(), tmp=tmp_path),
                       cache_dir=cache)
    with running_gateway(settings) as restarted:
        again = httpx.get(restarted.dicomweb() + path, headers={"Accept": DICOM_AS_STORED},
                          timeout=30)
        frame = httpx.get(restarted.dicomweb() + path + "/frames/1",
                          headers={"Accept": FRAME}, timeout=30)
        study_level = httpx.get(f"{restarted.dicomweb()}/studies/{study.study_uid}/series/"
                                f"{study.series[0].series_uid}", timeout=30)
    assert again.status_code == 200
    (part,) = parse_multipart(again.headers["content-type"], again.content)
    assert part.dataset().PixelData == pydicom.dcmread(instance.path).PixelData
    assert frame.status_code == 200
    assert study_level.status_code == 503  # never fetched: the PACS is needed and down


def test_a_cache_too_small_still_serves_everything(orthanc_pacs: RunningPacs, corpus: Corpus,
                                                    tmp_path: Path) -> None:
    study = corpus.study("big_ct")
    budget = 5_000_000  # the study is 53 MB
    with orthanc_gateway(orthanc_pacs, tmp_path / "cache", cache_max_bytes=budget) as (gw, _):
        response = httpx.get(f"{gw.dicomweb()}/studies/{study.study_uid}",
                             headers={"Accept": DICOM_AS_STORED}, timeout=120)
        stats = gw.app.state.gateway.store("orthanc").stats()
    assert response.status_code == 200
    parts = parse_multipart(response.headers["content-type"], response.content)
    expected = {i.sop_instance_uid: i.path for i in study.instances}
    assert len(parts) == 100
    for part in parts[::10]:
        dataset = part.dataset()
        assert dataset.PixelData == pydicom.dcmread(expected[dataset.SOPInstanceUID]).PixelData
    assert stats.bytes <= budget
    assert stats.evictions > 0


def test_sigkill_during_a_retrieve_leaves_only_whole_instances(
    orthanc_pacs: RunningPacs, corpus: Corpus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    study = corpus.study("big_ct")
    cache = tmp_path / "cache"
    port = free_port()
    log_path = tmp_path / "gateway.log"
    env = dict(os.environ, DICOMWEB_GW_PACS_HOST=orthanc_pacs.host,
               DICOMWEB_GW_PACS_PORT=str(orthanc_pacs.port),
               DICOMWEB_GW_PACS_AE_TITLE=orthanc_pacs.ae_title, DICOMWEB_GW_RETRIEVE="c-get",
               DICOMWEB_GW_CACHE_DIR=str(cache), DICOMWEB_GW_STORE_PORT=str(free_port()))
    with log_path.open("ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "dicomweb_gw", "-q", "serve", "--port", str(port)], env=env,
            stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{base}/healthz"), name="gateway", what="/healthz",
                   process=server, log_path=log_path, timeout=20)
        with httpx.stream("GET", f"{base}/dicom-web/studies/{study.study_uid}",
                          headers={"Accept": DICOM_AS_STORED}, timeout=60) as response:
            received = 0
            for chunk in response.iter_bytes():
                received += len(chunk)
                if received > 15_000_000:  # some 30 instances in: kill it mid-retrieve
                    server.send_signal(signal.SIGKILL)
                    break
    finally:
        server.kill()
        server.wait()
    # What the crash left, looked at before the store's start-up repair deletes anything:
    # a file under its final name must be whole; a write cut short is only ever a temp file.
    originals = {i.sop_instance_uid: pydicom.dcmread(i.path).PixelData for i in study.instances}
    for path in _instance_files(cache):
        dataset = pydicom.dcmread(path)
        assert dataset.PixelData == originals[dataset.SOPInstanceUID], f"{path} is not whole"
    # A write cut short, for sure (SIGKILL mid-write leaves one only sometimes).
    _plant_cut_short_write(cache / "default", study.instances[-1].path)
    temps = _temp_files(cache)

    with caplog.at_level(logging.WARNING, logger="dicomweb_gw.cache"):
        store = DiskInstanceStore(cache / "default", 10**10)
    try:
        stats = store.stats()
        assert 0 < stats.instances < 100
        for instance in study.instances:
            cached = store.get(instance.sop_instance_uid)
            if cached is None:
                continue
            dataset = pydicom.dcmread(cached.path)
            assert dataset.PixelData == originals[instance.sop_instance_uid]
        repairs = [r.getMessage() for r in caplog.records if "repaired" in r.getMessage()]
        assert len(repairs) == 1
        assert f": {len(temps)} temp files" in repairs[0]
        assert _temp_files(cache) == []
    finally:
        store.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _temp_files(cache: Path) -> list[Path]:
    return [path for path in cache.rglob(f"{TEMP_PREFIX}*") if path.is_file()]


def _instance_files(cache: Path) -> list[Path]:
    return [path for path in cache.rglob("*.dcm")
            if path.is_file() and not path.name.startswith(TEMP_PREFIX)]


def _plant_cut_short_write(root: Path, original: Path) -> None:
    """Half an instance in a temp file, where the store writes its instances."""
    folder = root / "instances" / "00"
    folder.mkdir(parents=True, exist_ok=True)
    data = original.read_bytes()
    (folder / f"{TEMP_PREFIX}planted.part").write_bytes(data[:len(data) // 2])


def test_purge_makes_the_next_request_go_to_the_pacs(orthanc_pacs: RunningPacs, corpus: Corpus,
                                                     tmp_path: Path) -> None:
    study = corpus.study("ct_small")
    series = study.series[-1]
    with orthanc_gateway(orthanc_pacs, tmp_path / "cache") as (gateway, calls):
        url = f"{gateway.dicomweb()}/studies/{study.study_uid}/series/{series.series_uid}"
        assert httpx.get(url, timeout=60).status_code == 200
        assert httpx.get(url, timeout=60).status_code == 200
        assert len(calls) == 1  # the second came from the cache
        purged = httpx.delete(f"{gateway.url}/cache/studies/{study.study_uid}", timeout=30)
        assert purged.status_code == 200
        assert purged.json()["purged"] == len(series.instances)
        assert httpx.get(url, timeout=60).status_code == 200
        bad = httpx.delete(f"{gateway.url}/pacs/nowhere/cache/studies/{study.study_uid}")
    assert len(calls) == 2
    assert bad.status_code == 404
