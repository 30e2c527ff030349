"""Prefetch on real PACS: a viewer opening a cold multi-series study the way OHIF 3.13
does (the study's series list, twice, then every series' metadata at once) causes
exactly one C-GET, counted on the wire, and every series' metadata is whole.

Orthanc answers a study-wide IMAGE-level C-FIND; dcmqrscp wants the series UID, so
there the study's listing is walked series by series.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

from corpus import Corpus, StudyInfo
from dicomweb_gw.settings import PacsNode
from gateway_fixtures import RunningGateway, make_settings, running_gateway
from pacs_fixtures import RunningPacs, free_port
from tcp_proxy import C_GET_RQ, C_MOVE_RQ, TcpProxy

pytestmark = pytest.mark.pacs
JSON = {"Accept": "application/dicom+json"}
# The two series lists OHIF asks for: the study list's row, then the viewer's.
SERIES_FIELDS = ("0008103E,00080021", "00080021,00080031,0008103E,00200011")


@pytest.fixture(params=["orthanc", "dcmqrscp"])
def pacs(request: pytest.FixtureRequest) -> RunningPacs:
    running: RunningPacs = request.getfixturevalue(f"{request.param}_pacs")
    return running


@contextmanager
def gateway_counting(pacs: RunningPacs, tmp_path: Path) -> Iterator[tuple[RunningGateway,
                                                                           TcpProxy]]:
    """A gateway with a cold cache, its DIMSE traffic through a proxy that counts requests.

    One association per retrieve, so that one retrieve is one C-GET on the wire.
    """
    with TcpProxy([(pacs.host, pacs.port)]) as proxy:
        node = PacsNode(name="pacs", host="127.0.0.1", port=proxy.port, ae_title=pacs.ae_title,
                        retrieve="c-get", timeout=15.0, retrieve_associations=1)
        settings = make_settings((node,), store_port=free_port(), tmp=tmp_path)
        with running_gateway(settings) as gateway:
            yield gateway, proxy


def _check_series(study: StudyInfo, series_uid: str, items: list[dict[str, Any]]) -> None:
    """The series' metadata: every instance of it, each as the PACS holds it."""
    series = study.series_by_uid(series_uid)
    assert sorted(item["00080018"]["Value"][0] for item in items) == sorted(
        i.sop_instance_uid for i in series.instances)
    for item in items:
        source = next(i for i in series.instances
                      if i.sop_instance_uid == item["00080018"]["Value"][0])
        held = pydicom.dcmread(source.path, stop_before_pixels=True)
        assert item["0020000D"]["Value"] == [study.study_uid]
        assert item["0020000E"]["Value"] == [series_uid]
        assert item["00200013"]["Value"] == [int(held.InstanceNumber)]
        assert item["00280010"]["Value"] == [int(held.Rows)]
        assert "BulkDataURI" in item["7FE00010"]


def _until(condition: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def _prefetches(gateway: RunningGateway, outcome: str) -> float:
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("dicomweb_gw_prefetches_total{") and f'outcome="{outcome}"' in line:
            return float(line.split()[-1])
    return 0.0


async def _open_like_ohif(base: str, study_uid: str) -> dict[str, httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as client:
        for fields in SERIES_FIELDS:
            listed = await client.get(f"{base}/studies/{study_uid}/series",
                                      params={"includefield": fields}, headers=JSON)
            assert listed.status_code == 200, listed.text
        series = [item["0020000E"]["Value"][0] for item in listed.json()]
        answers = await asyncio.gather(*(
            client.get(f"{base}/studies/{study_uid}/series/{uid}/metadata", headers=JSON)
            for uid in series))
        return dict(zip(series, answers, strict=True))


def test_opening_a_cold_study_like_ohif_retrieves_it_once(
        pacs: RunningPacs, corpus: Corpus, tmp_path: Path) -> None:
    study = corpus.study("ct_small")  # two series
    with gateway_counting(pacs, tmp_path) as (gateway, proxy):
        answers = asyncio.run(_open_like_ohif(gateway.dicomweb(), study.study_uid))

        assert sorted(answers) == sorted(s.series_uid for s in study.series)
        for series_uid, response in answers.items():
            assert response.status_code == 200, response.text
            _check_series(study, series_uid, response.json())
        assert proxy.commands[C_GET_RQ] == 1
        assert proxy.commands[C_MOVE_RQ] == 0
        # The prefetch recorded the study complete: the whole study now comes from the cache.
        _until(lambda: _prefetches(gateway, "completed") == 1)
        whole = httpx.get(f"{gateway.dicomweb()}/studies/{study.study_uid}/metadata",
                          headers=JSON, timeout=60)
        assert whole.status_code == 200
        assert len(whole.json()) == len(study.instances)
        assert proxy.commands[C_GET_RQ] == 1


def test_the_series_list_alone_starts_the_study_retrieve(
        pacs: RunningPacs, corpus: Corpus, tmp_path: Path) -> None:
    study = corpus.study("ct_small")
    with gateway_counting(pacs, tmp_path) as (gateway, proxy):
        base = gateway.dicomweb()
        listed = httpx.get(f"{base}/studies/{study.study_uid}/series", headers=JSON, timeout=60)
        assert listed.status_code == 200
        # No series requested yet: the study list's row alone set the retrieve going.
        _until(lambda: proxy.commands[C_GET_RQ] == 1)
        for series in study.series:
            response = httpx.get(f"{base}/studies/{study.study_uid}/series/"
                                 f"{series.series_uid}/metadata", headers=JSON, timeout=60)
            assert response.status_code == 200, response.text
            _check_series(study, series.series_uid, response.json())
        assert proxy.commands[C_GET_RQ] == 1
