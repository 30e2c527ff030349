"""Predictive prefetch over a real InstanceSource, MetadataService and DiskInstanceStore.

Only the PACS is fake: it holds two studies (STUDY: series A and B; OTHER: series X),
answers IMAGE-level C-FINDs, and retrieves with a hand on the tap: the instances of
a "held" series wait until the test releases them. Like a PACS node, it has a number
of association slots (``max_associations``); a retrieve takes one, or, for a study
split across associations, ``study_slots``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicomweb_gw.cache.disk import DiskInstanceStore
from dicomweb_gw.codecs.part10 import instance_from_file
from dicomweb_gw.dicomweb.prefetch import Prefetcher
from dicomweb_gw.dicomweb.source import InstanceSource
from dicomweb_gw.dicomweb.wado_metadata import MetadataService
from dicomweb_gw.model import (
    FindReport,
    QueryLevel,
    RetrievedInstance,
    RetrieveKeys,
    RetrieveReport,
)
from dicomweb_gw.settings import PacsNode
from testdata import pydicom_file

T = TypeVar("T")
STUDY, OTHER = generate_uid(), generate_uid()
A, B, X = generate_uid(), generate_uid(), generate_uid()
TTL = 3600.0
#: Bound on every wait in these tests: reached only when something is broken.
PATIENCE = 10.0


@dataclass
class FakePacs:
    instances: list[tuple[str, str, RetrievedInstance]]
    settings: dict[str, Any] = field(default_factory=dict)
    #: Associations a study-level retrieve takes (a retrieve split across several).
    study_slots: int = 1
    name: str = "fake"
    retrieves: list[RetrieveKeys] = field(default_factory=list)
    cancelled: list[RetrieveKeys] = field(default_factory=list)
    #: Series whose instances wait for ``release``.
    held: set[str] = field(default_factory=set)
    _released: asyncio.Event | None = None
    _slots: asyncio.Semaphore | None = None

    @property
    def node(self) -> PacsNode:
        return PacsNode(name=self.name, host="127.0.0.1", port=104, ae_title="FAKE",
                        **self.settings)

    def release(self, *series: str) -> None:
        self.held -= set(series)
        if self._released is not None:
            self._released.set()
            self._released = None

    async def find(self, level: QueryLevel, identifier: Dataset, *,
                   report: FindReport | None = None) -> AsyncGenerator[Dataset, None]:
        study, series = identifier.get("StudyInstanceUID"), identifier.get("SeriesInstanceUID")
        seen: set[str] = set()
        for study_uid, series_uid, instance in self.instances:
            if study_uid != study or series not in (None, "", series_uid):
                continue
            answer = Dataset()
            answer.StudyInstanceUID = study_uid
            answer.SeriesInstanceUID = series_uid
            if level is QueryLevel.IMAGE:
                answer.SOPInstanceUID = instance.sop_instance_uid
            elif series_uid in seen:
                continue
            seen.add(series_uid)
            yield answer

    async def retrieve(self, keys: RetrieveKeys, *,
                       report: RetrieveReport | None = None,
                       ) -> AsyncGenerator[RetrievedInstance, None]:
        self.retrieves.append(keys)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.node.max_associations)
        taken = 0
        try:
            for _ in range(self.study_slots if keys.level is QueryLevel.STUDY else 1):
                await self._slots.acquire()
                taken += 1
            sent = 0
            for study_uid, series_uid, instance in self.instances:
                if not keys.covers(study_uid, series_uid, instance.sop_instance_uid):
                    continue
                while series_uid in self.held:
                    if self._released is None:
                        self._released = asyncio.Event()
                    await self._released.wait()
                sent += 1
                yield instance
            if report is not None:
                report.succeeded, report.reported, report.received = True, sent, sent
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled.append(keys)
            raise
        finally:
            for _ in range(taken):
                self._slots.release()

    async def echo(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


@dataclass
class Gateway:
    pacs: FakePacs
    store: DiskInstanceStore
    source: InstanceSource
    metadata: MetadataService

    @property
    def prefetch(self) -> Prefetcher:
        assert self.source.prefetch is not None
        return self.source.prefetch

    async def series(self, study: str, series: str) -> set[str]:
        """The SOP Instance UIDs in the series' metadata, each item checked against its keys."""
        body = await self.metadata.metadata(self.pacs, RetrieveKeys(study, series))
        items = json.loads(body)
        assert {item["0020000D"]["Value"][0] for item in items} == {study}
        assert {item["0020000E"]["Value"][0] for item in items} == {series}
        return {item["00080018"]["Value"][0] for item in items}

    def expected(self, series: str) -> set[str]:
        return {i.sop_instance_uid for _, s, i in self.pacs.instances if s == series}


def _instance(folder: Path, study: str, series: str) -> tuple[str, str, RetrievedInstance]:
    ds = dcmread(pydicom_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return study, series, instance_from_file(path)


@pytest.fixture
def instances(tmp_path: Path) -> list[tuple[str, str, RetrievedInstance]]:
    folder = tmp_path / "pacs"
    folder.mkdir()
    layout = [(STUDY, A), (STUDY, A), (STUDY, B), (STUDY, B), (STUDY, B), (OTHER, X)]
    return [_instance(folder, study, series) for study, series in layout]


@pytest.fixture
def make(tmp_path: Path, instances: list[tuple[str, str, RetrievedInstance]]
         ) -> Iterator[Callable[..., Gateway]]:
    stores: list[DiskInstanceStore] = []

    def build(study_slots: int = 1, **settings: Any) -> Gateway:
        store = DiskInstanceStore(tmp_path / f"cache{len(stores)}", 10**9)
        stores.append(store)
        source = InstanceSource(lambda: store, ttl=TTL, prefetch=True)
        return Gateway(FakePacs(instances, settings, study_slots), store, source,
                       MetadataService(source, ttl=TTL))

    yield build
    for store in stores:
        store.close()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


async def until(condition: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


async def answered(task: asyncio.Task[T]) -> T:
    async with asyncio.timeout(PATIENCE):
        return await task


def test_series_requests_of_a_cold_study_share_one_study_retrieve(
        make: Callable[..., Gateway]) -> None:
    gw = make()

    async def scenario() -> None:
        got = list(await asyncio.gather(gw.series(STUDY, A), gw.series(STUDY, B)))
        assert got == [gw.expected(A), gw.expected(B)]
        assert gw.pacs.retrieves == [RetrieveKeys(STUDY)]
        await until(lambda: not gw.prefetch.running(gw.pacs.name))
        assert gw.prefetch.outcomes == {"started": 1, "completed": 1}
        # Completed like any retrieve: the study is recorded complete, warm from now on.
        assert gw.store.complete(STUDY, None, TTL) is not None
        assert await gw.series(STUDY, B) == gw.expected(B)
        await gw.prefetch.start(gw.pacs, STUDY)  # what the series list does, awaited
        assert gw.pacs.retrieves == [RetrieveKeys(STUDY)]

    run(scenario())


def test_a_series_is_answered_as_soon_as_its_own_instances_landed(
        make: Callable[..., Gateway]) -> None:
    gw = make()
    gw.pacs.held = {B}

    async def scenario() -> None:
        first = asyncio.create_task(gw.series(STUDY, A))
        second = asyncio.create_task(gw.series(STUDY, B))
        assert await answered(first) == gw.expected(A)  # while B is still on its way
        assert not second.done()
        gw.pacs.release(B)
        assert await answered(second) == gw.expected(B)
        assert gw.pacs.retrieves == [RetrieveKeys(STUDY)]

    run(scenario())


def test_the_series_list_starts_the_prefetch_that_series_requests_join(
        make: Callable[..., Gateway]) -> None:
    gw = make()
    gw.pacs.held = {A, B}

    async def scenario() -> None:
        gw.prefetch.opened(gw.pacs, STUDY)
        await until(lambda: gw.pacs.retrieves == [RetrieveKeys(STUDY)])
        requests = [asyncio.create_task(gw.series(STUDY, s)) for s in (A, B)]
        await asyncio.sleep(0.05)
        gw.pacs.release(A, B)
        assert [await answered(r) for r in requests] == [gw.expected(A), gw.expected(B)]
        assert gw.pacs.retrieves == [RetrieveKeys(STUDY)]

    run(scenario())


def test_a_prefetch_nobody_asks_about_is_dropped_after_prefetch_idle(
        make: Callable[..., Gateway]) -> None:
    gw = make(prefetch_idle=0.2)
    gw.pacs.held = {B}

    async def scenario() -> None:
        gw.prefetch.opened(gw.pacs, STUDY)
        await until(lambda: gw.pacs.cancelled == [RetrieveKeys(STUDY)])
        assert gw.prefetch.outcomes == {"started": 1, "idle": 1}
        assert gw.prefetch.running(gw.pacs.name) == []
        assert gw.source.flights.in_flight(gw.pacs.name) == []
        assert gw.store.complete(STUDY, None, TTL) is None

    run(scenario())


def test_a_prefetch_a_request_waits_on_is_kept_past_prefetch_idle(
        make: Callable[..., Gateway]) -> None:
    gw = make(prefetch_idle=0.1)
    gw.pacs.held = {B}

    async def scenario() -> None:
        waiting = asyncio.create_task(gw.series(STUDY, B))
        await until(lambda: bool(gw.pacs.retrieves))
        await asyncio.sleep(1.0)  # ten times prefetch_idle, with a request waiting
        assert gw.pacs.cancelled == []
        gw.pacs.release(B)
        assert await answered(waiting) == gw.expected(B)
        assert gw.pacs.retrieves == [RetrieveKeys(STUDY)]
        await until(lambda: gw.prefetch.outcomes["completed"] == 1)

    run(scenario())


def test_at_most_prefetch_studies_at_once_per_node(make: Callable[..., Gateway]) -> None:
    gw = make(prefetch_studies=1)
    gw.pacs.held = {A, B, X}

    async def scenario() -> None:
        first = asyncio.create_task(gw.series(STUDY, A))  # waits on STUDY's prefetch
        await until(lambda: gw.pacs.retrieves == [RetrieveKeys(STUDY)])
        other = asyncio.create_task(gw.series(OTHER, X))
        await until(lambda: len(gw.pacs.retrieves) == 2)
        # The limit reached: the series is retrieved as without prefetch.
        assert gw.pacs.retrieves[1] == RetrieveKeys(OTHER, X)
        assert gw.prefetch.outcomes["skipped"] == 1
        gw.pacs.release(A, B, X)
        assert await answered(first) == gw.expected(A)
        assert await answered(other) == gw.expected(X)

    run(scenario())


def test_no_prefetch_on_a_node_with_one_association(make: Callable[..., Gateway]) -> None:
    gw = make(max_associations=1)

    async def scenario() -> None:
        assert await gw.series(STUDY, A) == gw.expected(A)
        assert gw.pacs.retrieves == [RetrieveKeys(STUDY, A)]

    run(scenario())


def test_prefetch_false_retrieves_series_by_series(make: Callable[..., Gateway]) -> None:
    gw = make(prefetch=False)

    async def scenario() -> None:
        gw.prefetch.opened(gw.pacs, STUDY)
        got = list(await asyncio.gather(gw.series(STUDY, A), gw.series(STUDY, B)))
        assert got == [gw.expected(A), gw.expected(B)]
        assert sorted(gw.pacs.retrieves, key=str) == sorted(
            [RetrieveKeys(STUDY, A), RetrieveKeys(STUDY, B)], key=str)
        assert gw.prefetch.outcomes == {}

    run(scenario())


def test_a_request_for_another_study_is_not_held_up_by_a_prefetch(
        make: Callable[..., Gateway]) -> None:
    # The study's retrieve is split across both associations the node allows.
    gw = make(study_slots=2, max_associations=2)
    gw.pacs.held = {A, B}

    async def scenario() -> None:
        gw.prefetch.opened(gw.pacs, STUDY)
        await until(lambda: gw.pacs.retrieves == [RetrieveKeys(STUDY)])
        await asyncio.sleep(0.05)  # it holds both associations now
        assert await answered(asyncio.create_task(gw.series(OTHER, X))) == gw.expected(X)
        assert gw.pacs.cancelled == [RetrieveKeys(STUDY)]
        assert gw.prefetch.outcomes["preempted"] == 1

    run(scenario())


def test_instance_requests_inside_a_prefetched_study_do_not_wait_for_the_study(
        make: Callable[..., Gateway]) -> None:
    gw = make()
    gw.pacs.held = {A, B}
    first_a = next(i for _, s, i in gw.pacs.instances if s == A)

    async def scenario() -> None:
        series_b = asyncio.create_task(gw.series(STUDY, B))  # starts the prefetch
        await until(lambda: bool(gw.pacs.retrieves))
        instance = asyncio.create_task(gw.metadata.metadata(
            gw.pacs, RetrieveKeys(STUDY, A, first_a.sop_instance_uid)))
        await asyncio.sleep(0.05)  # joined the study's flight, not answered from the cache
        gw.pacs.release(A)
        body = await answered(instance)
        assert [item["00080018"]["Value"][0] for item in json.loads(body)] == [
            first_a.sop_instance_uid]
        gw.pacs.release(B)
        assert await answered(series_b) == gw.expected(B)
        assert gw.pacs.retrieves == [RetrieveKeys(STUDY)]

    run(scenario())
