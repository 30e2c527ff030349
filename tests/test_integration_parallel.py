"""A study retrieve split across several associations (pacs/parallel.py), end to end.

Against the quirky PACS (tests/quirky_pacs.py), subclassed to see how many C-GETs
or C-MOVEs it serves at once and how each ended: the split itself, a client
that leaves, a PACS that refuses IMAGE-level retrieves, takes only the first UID
of a list, limits associations or refuses for want of resources, and
``retrieve_associations = 1``. Against the real dcmqrscp and Orthanc: the
instances of a split retrieve are those of one request, byte for byte, and the
study is recorded complete.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.events import Event

import quirky_pacs
from cluster_fixtures import RedisServer, running_replicas
from corpus import Corpus, StudyInfo
from dicomweb_gw.demo.dimse import CANCEL, PENDING
from dicomweb_gw.pacs import parallel
from gateway_fixtures import RunningGateway, make_settings, node_for, running_gateway
from link_proxy import LinkProxy
from multipart_helpers import parse_multipart
from pacs_fixtures import DCMQRSCP_AE_TITLE, LOOPBACK, free_port, running_dcmqrscp
from quirky_pacs import Quirks, QuirkyPacs, quirky_gateway
from tcp_proxy import C_MOVE_RQ, TcpProxy
from testdata import pydicom_file

pytestmark = pytest.mark.timeout(120)

DICOM = 'multipart/related; type="application/dicom"'
AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
#: How long the first retrieves wait for the others (a bound on a hang, not a timing).
RENDEZVOUS_SECONDS = 10.0
OUT_OF_RESOURCES = 0xA700
PARALLEL_LOGGER = "dicomweb_gw.pacs.parallel"


class SplitPacs(QuirkyPacs):
    """Counts the C-GETs and C-MOVEs served at once and how each ended.

    ``meet``: the first retrieves wait until that many have arrived before sending
    anything (up to ``RENDEZVOUS_SECONDS``), so retrieves sent together are seen
    together, and retrieves sent one after another are seen one at a time.
    ``pause``: seconds before each instance after a retrieve's first, so that a
    client can leave mid-way. ``busy_beyond``: a C-GET arriving while that many are
    in flight is refused with 0xA700 (Refused: Out of Resources).
    """

    meet = 0
    pause = 0.0
    busy_beyond: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gate = threading.Condition()
        self.arrived = 0
        self.in_flight = 0
        self.most_in_flight = 0
        #: "finished", "cancelled", "abandoned" (the association went away), "failed",
        #: "refused" (busy_beyond)
        self.ended: Counter[str] = Counter()

    def _on_get(self, event: Event) -> Iterator[Any]:
        return self._watched(event, super()._on_get(event), busy=True)

    def _on_move(self, event: Event) -> Iterator[Any]:
        return self._watched(event, super()._on_move(event), busy=False)

    def _watched(self, event: Event, handler: Iterator[Any], *, busy: bool) -> Iterator[Any]:
        with self._gate:
            self.arrived += 1
            refused = (busy and self.busy_beyond is not None
                       and self.in_flight >= self.busy_beyond)
            if refused:
                self.ended["refused"] += 1
            else:
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self._gate.notify_all()
            if self.meet and not refused:
                self._gate.wait_for(lambda: self.arrived >= self.meet,
                                    timeout=RENDEZVOUS_SECONDS)
        if refused:
            yield 1
            yield OUT_OF_RESOURCES, None
            return
        outcome, sent = "abandoned", 0
        items = iter(handler)
        try:
            while True:
                if sent and self.pause:
                    self._stopping.wait(self.pause)
                try:
                    item = next(items)
                except StopIteration:
                    break
                if not event.assoc.is_established:
                    return
                if isinstance(item, tuple) and len(item) == 2:
                    if item[0] == PENDING:
                        sent += 1
                    else:  # a final status: pynetdicom asks for nothing after it
                        outcome = "cancelled" if item[0] == CANCEL else "failed"
                yield item
            if outcome == "abandoned":
                outcome = "finished"
        finally:
            with self._gate:
                self.in_flight -= 1
                self.ended[outcome] += 1
                self._gate.notify_all()

    def wait_idle(self) -> bool:
        """Until no retrieve is in flight (False after RENDEZVOUS_SECONDS)."""
        with self._gate:
            return self._gate.wait_for(lambda: self.in_flight == 0, timeout=RENDEZVOUS_SECONDS)


class FirstOfListPacs(SplitPacs):
    """Takes only the first SOP Instance UID of a list, and says Success."""

    def _on_get(self, event: Event) -> Iterator[Any]:
        identifier = event.identifier
        uids = identifier.get("SOPInstanceUID")
        if uids is not None and not isinstance(uids, str) and len(uids) > 1:
            bent = copy.deepcopy(identifier)
            bent.SOPInstanceUID = uids[0]
            event = _BentEvent(event, bent)  # type: ignore[assignment]
        return super()._on_get(event)


class _BentEvent:
    def __init__(self, event: Event, identifier: Dataset) -> None:
        self._event = event
        self.identifier = identifier

    def __getattr__(self, name: str) -> Any:
        return getattr(self._event, name)


@pytest.fixture(autouse=True)
def split_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Split as over a slow link: these tests are about the split, on loopback, where
    the gateway would otherwise retrieve in one request (``parallel_plan.link_bound``;
    the choice itself: test_integration_split_choice.py)."""
    monkeypatch.setattr(parallel, "link_bound", lambda set_up, split_above: True)


@pytest.fixture
def split_pacs(monkeypatch: pytest.MonkeyPatch) -> type[SplitPacs]:
    """quirky_gateway serves with a SplitPacs (a fresh subclass per test)."""
    pacs_class = type("Split", (SplitPacs,), {})
    monkeypatch.setattr(quirky_pacs, "QuirkyPacs", pacs_class)
    return pacs_class


@dataclass(frozen=True)
class Study:
    uid: str
    paths: list[Path]

    def sources(self) -> dict[str, Dataset]:
        return {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, self.paths)}


def _study(folder: Path, series_sizes: tuple[int, ...] = (8, 8), patient: str = "SPLIT-1",
           ) -> Study:
    """One study from CT_small: series of the sizes given (2 x 8: 4 associations, 8
    requests of 2)."""
    template = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    study_uid = generate_uid()
    paths = []
    for series_number, size in enumerate(series_sizes, start=1):
        series_uid = generate_uid()
        for number in range(1, size + 1):
            ds = copy.deepcopy(template)
            ds.PatientID = patient
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
            ds.SeriesNumber, ds.InstanceNumber = series_number, number
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            path = folder / f"{ds.SOPInstanceUID}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return Study(study_uid, paths)


def _get(url: str, accept: str = DICOM) -> httpx.Response:
    return httpx.get(url, headers={"Accept": accept}, timeout=60)


def _check_every_instance_once(response: httpx.Response, study: Study) -> None:
    assert response.status_code == 200, response.text
    parts = parse_multipart(response.headers["content-type"], response.content)
    sources = study.sources()
    received = [part.dataset() for part in parts]
    assert sorted(str(ds.SOPInstanceUID) for ds in received) == sorted(sources)
    for ds in received:
        source = sources[str(ds.SOPInstanceUID)]
        assert ds.SeriesInstanceUID == source.SeriesInstanceUID
        assert ds.PixelData == source.PixelData


def _levels(pacs: QuirkyPacs) -> list[str]:
    return [str(identifier.QueryRetrieveLevel) for _, identifier in pacs.retrieves]


def _completeness_recorded(gateway: RunningGateway, url: str, pacs: QuirkyPacs) -> bool:
    """A second request comes from the cache: no new flight, nothing asked of the PACS."""
    flights, retrieves = gateway.flights_started(), len(pacs.retrieves)
    assert _get(url).status_code == 200
    return gateway.flights_started() == flights and len(pacs.retrieves) == retrieves


# --- the split ---------------------------------------------------------------------------------


@pytest.mark.parametrize("retrieve", ["c-get", "c-move"])
def test_a_study_is_split_across_associations_and_comes_whole(
        tmp_path: Path, split_pacs: type[SplitPacs], retrieve: str) -> None:
    split_pacs.meet = 2
    study = _study(tmp_path / "data")
    with quirky_gateway(tmp_path, study.paths, retrieve=retrieve) as setup:
        url = f"{setup.gateway.dicomweb()}/studies/{study.uid}"
        response = _get(url)
        pacs = setup.pacs
        assert isinstance(pacs, SplitPacs)
        _check_every_instance_once(response, study)
        assert _completeness_recorded(setup.gateway, url, pacs)
    assert 2 <= pacs.most_in_flight <= 4
    assert pacs.ended == Counter(finished=len(pacs.retrieves))
    # IMAGE level, one series each, a list of UIDs: every instance asked for once.
    asked: list[str] = []
    for operation, identifier in pacs.retrieves:
        assert operation == retrieve.upper()
        assert identifier.QueryRetrieveLevel == "IMAGE"
        assert identifier.StudyInstanceUID == study.uid
        uids = identifier.SOPInstanceUID
        asked += [str(uids)] if isinstance(uids, str) else [str(uid) for uid in uids]
    assert sorted(asked) == sorted(study.sources())
    assert len(pacs.retrieves) == 8
    series = {str(identifier.SeriesInstanceUID) for _, identifier in pacs.retrieves}
    assert len(series) == 2


def test_one_retrieve_association_is_one_request_as_before(
        tmp_path: Path, split_pacs: type[SplitPacs]) -> None:
    study = _study(tmp_path / "data")
    with quirky_gateway(tmp_path, study.paths, node={"retrieve_associations": 1}) as setup:
        url = f"{setup.gateway.dicomweb()}/studies/{study.uid}"
        response = _get(url)
        pacs = setup.pacs
        _check_every_instance_once(response, study)
        assert _completeness_recorded(setup.gateway, url, pacs)
    assert _levels(pacs) == ["STUDY"]
    # No instance listing: only what the C-GET's contexts need (a series, then one
    # instance of each series: the first match is enough).
    assert [str(q.QueryRetrieveLevel) for q in pacs.finds] == ["SERIES", "IMAGE", "IMAGE"]


def test_a_small_study_is_one_request(tmp_path: Path, split_pacs: type[SplitPacs]) -> None:
    study = _study(tmp_path / "data", (3, 4))  # 7 instances: fewer than 2 per association
    with quirky_gateway(tmp_path, study.paths) as setup:
        response = _get(f"{setup.gateway.dicomweb()}/studies/{study.uid}")
        pacs = setup.pacs
    _check_every_instance_once(response, study)
    assert _levels(pacs) == ["STUDY"]
    assert [str(q.QueryRetrieveLevel) for q in pacs.finds] == ["IMAGE"]  # the listing only


@pytest.mark.parametrize("retrieve", ["c-get", "c-move"])
def test_a_patient_root_only_pacs_gets_the_patient_id_with_each_list(
        tmp_path: Path, split_pacs: type[SplitPacs], retrieve: str) -> None:
    study = _study(tmp_path / "data")
    with quirky_gateway(tmp_path, study.paths, retrieve=retrieve,
                        quirks=Quirks(patient_root_only=True)) as setup:
        url = f"{setup.gateway.dicomweb()}/studies/{study.uid}"
        response = _get(url)
        pacs = setup.pacs
        _check_every_instance_once(response, study)
        assert _completeness_recorded(setup.gateway, url, pacs)
    assert set(_levels(pacs)) == {"IMAGE"}
    assert {str(identifier.PatientID) for _, identifier in pacs.retrieves} == {"SPLIT-1"}


# --- a client that leaves ----------------------------------------------------------------------


@pytest.mark.parametrize(("retrieve", "cancel"), [("c-get", "c-cancel"), ("c-get", "abort"),
                                                  ("c-move", "c-cancel"), ("c-move", "abort")])
def test_a_client_leaving_stops_every_part(
        tmp_path: Path, split_pacs: type[SplitPacs], retrieve: str, cancel: str) -> None:
    split_pacs.meet = 2  # two parts at least are under way when the first bytes go out
    split_pacs.pause = 2.0  # 16 instances, 2 per request: 8 x 2 s if left to finish
    study = _study(tmp_path / "data")
    with quirky_gateway(tmp_path, study.paths, retrieve=retrieve,
                        node={"cancel": cancel}) as setup:
        pacs = setup.pacs
        assert isinstance(pacs, SplitPacs)
        url = f"{setup.gateway.dicomweb()}/studies/{study.uid}"
        with httpx.stream("GET", url, headers={"Accept": DICOM}, timeout=30) as response:
            assert response.status_code == 200
            chunks = response.iter_bytes()
            first = next(chunks)
            while b"DICM" not in first:  # an instance landed: the parts are running
                first += next(chunks)
        assert pacs.wait_idle()
        started = len(pacs.retrieves)
        # Every part was stopped: none finished, each saw the node's cancel.
        assert started >= 2
        assert pacs.ended["finished"] == 0
        if cancel == "c-cancel":
            assert pacs.cancels_received == started
            assert pacs.ended["cancelled"] == started
        else:
            assert pacs.cancels_received == 0
            assert pacs.ended["abandoned"] == started
        # ...and no part started another request after it.
        assert len(pacs.retrieves) == started
        follow_up = httpx.get(f"{setup.gateway.dicomweb()}/studies", timeout=30)
        assert follow_up.status_code == 200


# --- PACS that do not take it -------------------------------------------------------------------


def test_a_pacs_refusing_image_level_retrieves_gets_one_request_from_then_on(
        tmp_path: Path, split_pacs: type[SplitPacs], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=PARALLEL_LOGGER)
    first, second = _study(tmp_path / "one"), _study(tmp_path / "two", patient="SPLIT-2")
    quirks = Quirks(retrieve_levels=frozenset({"STUDY", "SERIES"}))
    with quirky_gateway(tmp_path, first.paths + second.paths, quirks=quirks) as setup:
        base = setup.gateway.dicomweb()
        url = f"{base}/studies/{first.uid}"
        responses = [_get(url), _get(f"{base}/studies/{second.uid}")]
        pacs = setup.pacs
        _check_every_instance_once(responses[0], first)
        _check_every_instance_once(responses[1], second)
        assert _completeness_recorded(setup.gateway, url, pacs)
    levels = _levels(pacs)
    # The first study: its first IMAGE-level requests refused, then one study-level
    # retrieve; the second study: one request at once.
    assert levels[-2:] == ["STUDY", "STUDY"]
    assert 1 <= levels.count("IMAGE") <= 4
    assert set(levels[:-2]) == {"IMAGE"}
    told = [r.getMessage() for r in caplog.records if r.name == PARALLEL_LOGGER]
    assert len(told) == 1
    assert "PACS 'quirky'" in told[0]
    assert "0xA900" in told[0]
    assert "retrieve_associations = 1" in told[0]


def test_a_pacs_taking_only_the_first_uid_of_a_list_gets_one_request(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=PARALLEL_LOGGER)
    monkeypatch.setattr(quirky_pacs, "QuirkyPacs", type("First", (FirstOfListPacs,), {}))
    study = _study(tmp_path / "data")
    with quirky_gateway(tmp_path, study.paths) as setup:
        url = f"{setup.gateway.dicomweb()}/studies/{study.uid}"
        response = _get(url)
        pacs = setup.pacs
        _check_every_instance_once(response, study)  # the early ones are not sent twice
        assert _completeness_recorded(setup.gateway, url, pacs)
    assert _levels(pacs)[-1] == "STUDY"
    told = [r.getMessage() for r in caplog.records if r.name == PARALLEL_LOGGER]
    assert len(told) == 1
    assert "naming 2 instances brought 1" in told[0]


def test_an_association_limit_below_the_fan_out_still_completes(
        tmp_path: Path, split_pacs: type[SplitPacs]) -> None:
    study = _study(tmp_path / "data")
    quirks = Quirks(max_associations_per_ae=2)
    with quirky_gateway(tmp_path, study.paths, quirks=quirks,
                        node={"max_associations": 4, "retrieve_associations": 4}) as setup:
        url = f"{setup.gateway.dicomweb()}/studies/{study.uid}"
        response = _get(url)
        pacs = setup.pacs
        _check_every_instance_once(response, study)
        assert _completeness_recorded(setup.gateway, url, pacs)
    assert pacs.associations_rejected >= 1  # the limit was hit, and shrank the fan-out
    assert set(_levels(pacs)) == {"IMAGE"}


def test_a_part_refused_for_want_of_resources_leaves_its_share_to_the_others(
        tmp_path: Path, split_pacs: type[SplitPacs]) -> None:
    split_pacs.meet = 3  # the first two wait until a third has come (and been refused)
    split_pacs.busy_beyond = 2
    study = _study(tmp_path / "data")
    with quirky_gateway(tmp_path, study.paths) as setup:
        url = f"{setup.gateway.dicomweb()}/studies/{study.uid}"
        response = _get(url)
        pacs = setup.pacs
        assert isinstance(pacs, SplitPacs)
        _check_every_instance_once(response, study)
        assert _completeness_recorded(setup.gateway, url, pacs)
    assert pacs.ended["refused"] >= 1
    # The refused ones are not among pacs.retrieves: they were answered before it.
    assert pacs.ended["finished"] == len(pacs.retrieves)
    assert pacs.arrived == pacs.ended["finished"] + pacs.ended["refused"]
    assert set(_levels(pacs)) == {"IMAGE"}


# --- real PACS ---------------------------------------------------------------------------------


def _split_logged(caplog: pytest.LogCaptureFixture, associations: int) -> bool:
    return any(r.name == PARALLEL_LOGGER and f"over up to {associations} associations"
               in r.getMessage() for r in caplog.records)


def _fell_back(caplog: pytest.LogCaptureFixture) -> bool:
    return any(r.name == PARALLEL_LOGGER and r.levelno >= logging.WARNING
               for r in caplog.records)


@pytest.mark.parametrize("node", ["dcmqrscp", "orthanc", "orthanc-move"])
def test_a_big_study_split_on_a_real_pacs_is_whole_and_complete(
        gateway: RunningGateway, corpus: Corpus, node: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """dcmqrscp by C-MOVE, Orthanc by C-GET and C-MOVE: 100 instances, 4 associations."""
    caplog.set_level(logging.DEBUG, logger=PARALLEL_LOGGER)
    study = corpus.study("big_ct")
    purged = httpx.delete(f"{gateway.url}/pacs/{node}/cache/studies/{study.study_uid}",
                          timeout=30)
    assert purged.status_code == 200, purged.text
    url = f"{gateway.dicomweb(node)}/studies/{study.study_uid}"
    response = _get(url, AS_STORED)
    _check_corpus_study(response, study)
    assert _split_logged(caplog, 4)
    assert not _fell_back(caplog)  # the PACS took the lists of UIDs
    flights = gateway.flights_started(node)
    assert _get(url).status_code == 200
    assert gateway.flights_started(node) == flights  # recorded complete


def _check_corpus_study(response: httpx.Response, study: StudyInfo) -> None:
    assert response.status_code == 200, response.text
    parts = parse_multipart(response.headers["content-type"], response.content)
    expected = {i.sop_instance_uid: i for i in study.instances}
    assert len(parts) == len(expected)
    for part in parts:
        received = part.dataset()
        source = pydicom.dcmread(expected.pop(str(received.SOPInstanceUID)).path)
        assert received.PixelData == source.PixelData
    assert expected == {}


@dataclass(frozen=True)
class Link:
    gateway: RunningGateway
    study: StudyInfo


@pytest.fixture(scope="module")
def link(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Link]:
    """A dcmqrscp of its own behind a 5 ms link (its C-MOVE back-channel too): split
    C-GET and C-MOVE nodes over the link, and one request straight to it, for the
    reference bytes."""
    study = corpus.study("ct_small")  # 2 series, 1 + 3 instances
    tmp: Path = tmp_path_factory.mktemp("parallel-link")
    store_port, back_channel_port = free_port(), free_port()
    with running_dcmqrscp(tmp / "pacs", study.instances, back_channel_port) as pacs, \
            LinkProxy(pacs.host, pacs.port, delay_ms=5) as dimse, \
            LinkProxy(LOOPBACK, store_port, delay_ms=5, port=back_channel_port):
        far = replace(pacs, port=dimse.port)
        nodes = (node_for(far, "split-move", "c-move", retrieve_associations=2),
                 node_for(far, "split-get", "c-get", retrieve_associations=2),
                 node_for(pacs, "one", "c-get", retrieve_associations=1))
        with running_gateway(make_settings(nodes, store_port=store_port, tmp=tmp)) as gateway:
            yield Link(gateway, study)


def _bodies(gateway: RunningGateway, node: str, study_uid: str) -> dict[str, bytes]:
    response = _get(f"{gateway.dicomweb(node)}/studies/{study_uid}", AS_STORED)
    assert response.status_code == 200, response.text
    parts = parse_multipart(response.headers["content-type"], response.content)
    bodies = {str(part.dataset().SOPInstanceUID): part.body for part in parts}
    assert len(bodies) == len(parts)  # no instance twice
    return bodies


@pytest.mark.parametrize("node", ["split-get", "split-move"])
def test_a_split_retrieve_from_dcmqrscp_is_byte_identical_to_one_request(
        link: Link, node: str, caplog: pytest.LogCaptureFixture) -> None:
    """dcmqrscp lists instances only series by series, and takes lists of UIDs."""
    caplog.set_level(logging.DEBUG, logger=PARALLEL_LOGGER)
    uid = link.study.study_uid
    one = _bodies(link.gateway, "one", uid)
    assert set(one) == {i.sop_instance_uid for i in link.study.instances}
    split = _bodies(link.gateway, node, uid)
    assert split == one
    assert _split_logged(caplog, 2)
    assert not _fell_back(caplog)
    flights = link.gateway.flights_started(node)
    assert _get(f"{link.gateway.dicomweb(node)}/studies/{uid}").status_code == 200
    assert link.gateway.flights_started(node) == flights


def test_a_split_c_move_landing_on_another_replica_reaches_the_owner(
        corpus: Corpus, redis_server: RedisServer, tmp_path: Path) -> None:
    """Each request of a split C-MOVE registers its own Move Originator Message ID
    cluster-wide: the PACS sends every C-STORE to the one replica no client asked
    (cluster/moves.py), which hands each to the request it belongs to."""
    study = corpus.study("ct_small")
    shared = tmp_path / "shared"
    shared.mkdir()
    service_port = free_port()  # the "Service" the PACS knows
    with running_dcmqrscp(tmp_path / "pacs", study.instances, service_port) as pacs, \
            TcpProxy([(pacs.host, pacs.port)]) as proxy, \
            running_replicas(3, tmp_path, {
                "DICOMWEB_GW_PACS_HOST": "127.0.0.1",
                "DICOMWEB_GW_PACS_PORT": str(proxy.port),
                "DICOMWEB_GW_PACS_AE_TITLE": DCMQRSCP_AE_TITLE,
                "DICOMWEB_GW_RETRIEVE": "c-move",
                "DICOMWEB_GW_PACS_RETRIEVE_ASSOCIATIONS": "2",
                "DICOMWEB_GW_PACS_RETRIEVE_SPLIT_ABOVE": "0",  # loopback: split all the same
                "DICOMWEB_GW_REDIS_URL": redis_server.url,
                "DICOMWEB_GW_SHARED_STORE": f"file://{shared}"}) as replicas, \
            TcpProxy([("127.0.0.1", replicas[2].store_port)], port=service_port):
        response = _get(f"{replicas[0].url}/dicom-web/studies/{study.study_uid}", AS_STORED)
        _check_corpus_study(response, study)
        assert proxy.commands[C_MOVE_RQ] == 2, replicas[0].log()[-3000:]
