"""Faults: PACS down, refusing, stalling, aborting; unknown move destination; client leaving.

The misbehaving PACS is the embedded pynetdicom SCP with a ``Fault``; the
unknown-destination case uses the real dcmqrscp.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet  # type: ignore

from corpus import Corpus, StudyInfo
from dicomweb_gw.demo import DemoPacs, Fault
from dicomweb_gw.settings import PacsNode
from gateway_fixtures import RunningGateway, make_settings, node_for, running_gateway
from multipart_helpers import boundary_of
from pacs_fixtures import GATEWAY_AE_TITLE, UNKNOWN_AE_TITLE, RunningPacs, free_port

pytestmark = pytest.mark.pacs
DICOM = 'multipart/related; type="application/dicom"'


@contextmanager
def demo_gateway(tmp_path: Path, study: StudyInfo, fault: Fault | None = None,
                 *, retrieve: str = "c-move", timeout: float = 10.0,
                 max_associations: int = 4) -> Iterator[RunningGateway]:
    store_port = free_port()
    pacs = DemoPacs(tmp_path / "pacs", ae_title="FAULTY", fault=fault,
                    move_destinations={GATEWAY_AE_TITLE: ("127.0.0.1", store_port)})
    pacs.add_files(i.path for s in study.series for i in s.instances)
    pacs.start()
    node = PacsNode(name="faulty", host="127.0.0.1", port=pacs.port, ae_title="FAULTY",
                    retrieve=retrieve, timeout=timeout,  # type: ignore[arg-type]
                    max_associations=max_associations)
    try:
        with running_gateway(make_settings((node,), store_port=store_port,
                                           tmp=tmp_path)) as gateway:
            yield gateway
    finally:
        pacs.stop()


def test_pacs_down_is_503_naming_the_pacs(tmp_path: Path, corpus: Corpus) -> None:
    node = PacsNode(name="gone", host="127.0.0.1", port=free_port(), ae_title="GONE",
                    retrieve="c-get", timeout=5)
    with running_gateway(make_settings((node,), store_port=free_port(), tmp=tmp_path)) as gw:
        search = httpx.get(f"{gw.dicomweb()}/studies", timeout=20)
        retrieve = httpx.get(f"{gw.dicomweb()}/studies/{corpus.study('ct_small').study_uid}",
                             timeout=20)
        ready = httpx.get(f"{gw.url}/readyz", timeout=20)
    for response in (search, retrieve):
        assert response.status_code == 503
        assert "'gone'" in response.json()["message"]
        assert "cannot connect" in response.json()["message"]
    assert ready.status_code == 503


def test_refused_association_is_503(tmp_path: Path, corpus: Corpus) -> None:
    with demo_gateway(tmp_path, corpus.study("ct_small"), Fault(refuse_association=True)) as gw:
        response = httpx.get(f"{gw.dicomweb()}/studies", timeout=20)
    assert response.status_code == 503
    assert "rejected the association" in response.json()["message"]


def test_stalled_pacs_is_504(tmp_path: Path, corpus: Corpus) -> None:
    with demo_gateway(tmp_path, corpus.study("ct_small"), Fault(stall_seconds=4),
                      timeout=1) as gw:
        response = httpx.get(f"{gw.dicomweb()}/studies", timeout=20)
    assert response.status_code == 504
    assert "no response within 1 s" in response.json()["message"]


def test_find_failure_is_502(tmp_path: Path, corpus: Corpus) -> None:
    with demo_gateway(tmp_path, corpus.study("ct_small"),
                      Fault(find_failure_status=0xC001)) as gw:
        response = httpx.get(f"{gw.dicomweb()}/studies", timeout=20)
    assert response.status_code == 502
    assert "0xC001" in response.json()["message"]


@pytest.mark.parametrize("retrieve", ["c-get", "c-move"])
def test_abort_mid_transfer_never_looks_complete(tmp_path: Path, corpus: Corpus,
                                                 retrieve: str) -> None:
    study = corpus.study("big_ct")
    with demo_gateway(tmp_path, study, Fault(abort_after_instances=3),
                      retrieve=retrieve) as gw:
        url = f"{gw.dicomweb()}/studies/{study.study_uid}"
        received: list[bytes] = []
        with httpx.stream("GET", url, headers={"Accept": DICOM}, timeout=30) as response:
            assert response.status_code == 200  # the first parts were already on their way
            boundary = boundary_of(response.headers["content-type"]).encode()
            with pytest.raises(httpx.RemoteProtocolError):
                received.extend(response.iter_bytes())
        body = b"".join(received)
        assert not body.endswith(b"--" + boundary + b"--\r\n")
        assert 1 <= body.count(b"--" + boundary + b"\r\n") < 100


def test_move_without_originator_id_is_routed_by_uid(tmp_path: Path, corpus: Corpus) -> None:
    study = corpus.study("ct_small")
    with demo_gateway(tmp_path, study, Fault(omit_move_originator=True)) as gw:
        response = httpx.get(f"{gw.dicomweb()}/studies/{study.study_uid}",
                             headers={"Accept": DICOM}, timeout=30)
    assert response.status_code == 200
    assert response.content.count(b"Content-Type: application/dicom") == sum(
        len(s.instances) for s in study.series)


def test_unknown_move_destination_names_our_ae_title(
    tmp_path: Path, dcmqrscp_pacs: RunningPacs, corpus: Corpus
) -> None:
    node = node_for(dcmqrscp_pacs, "dcmqrscp", "c-move")
    settings = make_settings((node,), store_port=free_port(), tmp=tmp_path,
                             ae_title=UNKNOWN_AE_TITLE)
    with running_gateway(settings) as gw:
        response = httpx.get(f"{gw.dicomweb()}/studies/{corpus.study('ct_small').study_uid}",
                             timeout=30)
    assert response.status_code == 502
    message = response.json()["message"]
    assert UNKNOWN_AE_TITLE in message
    assert "move destination" in message
    assert "0xA801" in message


def test_client_leaving_mid_retrieve_frees_the_association(tmp_path: Path,
                                                          corpus: Corpus) -> None:
    # With one association allowed, a leaked one would make the next request hang.
    study = corpus.study("big_ct")
    with demo_gateway(tmp_path, study, retrieve="c-get", max_associations=1) as gw:
        url = f"{gw.dicomweb()}/studies/{study.study_uid}"
        with httpx.stream("GET", url, headers={"Accept": DICOM}, timeout=30) as response:
            assert response.status_code == 200
            next(response.iter_bytes())
        # closed after the first bytes: the gateway must cancel and release
        follow_up = httpx.get(f"{gw.dicomweb()}/studies", timeout=30)
    assert follow_up.status_code == 200
    assert len(follow_up.json()) == 1


class _GatedGetScp:
    """A C-GET SCP that sends the first instance, then waits for the test to open the gate."""

    def __init__(self, paths: list[Path]) -> None:
        self.gate = threading.Event()
        self._paths = paths
        ae = AE(ae_title="GATED")
        for context in StoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, scu_role=False, scp_role=True)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
        self._server = ae.start_server(("127.0.0.1", 0), block=False,
                                       evt_handlers=[(evt.EVT_C_GET, self._on_get)])
        self.port = self._server.server_address[1]

    def _on_get(self, event: Any) -> Iterator[Any]:
        yield len(self._paths)
        for index, path in enumerate(self._paths):
            if index == 1 and not self.gate.wait(timeout=30):
                yield 0xA702, None  # the gateway never streamed: fail loudly
                return
            yield 0xFF00, dcmread(path)

    def stop(self) -> None:
        self._server.shutdown()


def test_first_part_arrives_before_the_pacs_has_sent_the_rest(tmp_path: Path,
                                                             corpus: Corpus) -> None:
    study = corpus.study("big_ct")
    scp = _GatedGetScp([i.path for i in study.series[0].instances[:5]])
    node = PacsNode(name="gated", host="127.0.0.1", port=scp.port, ae_title="GATED",
                    retrieve="c-get", timeout=30)
    try:
        with running_gateway(make_settings((node,), store_port=free_port(),
                                           tmp=tmp_path)) as gw, \
                httpx.stream("GET", f"{gw.dicomweb()}/studies/{study.study_uid}",
                             headers={"Accept": DICOM}, timeout=30) as response:
            assert response.status_code == 200
            chunks = response.iter_bytes()
            first = next(chunks)
            while b"DICM" not in first:
                first += next(chunks)
            assert not scp.gate.is_set()  # the PACS is still holding the other instances
            scp.gate.set()
            rest = b"".join(chunks)
        assert (first + rest).count(b"Content-Type: application/dicom") == 5
    finally:
        scp.stop()


@pytest.mark.parametrize("retrieve", ["c-get", "c-move"])
def test_patient_root_only_pacs_is_searched_and_retrieved(tmp_path: Path, corpus: Corpus,
                                                          retrieve: str) -> None:
    # This PACS offers no Study Root and refuses study queries without a Patient ID:
    # the gateway falls back to Patient Root and walks the patients first.
    study = corpus.study("ct_small")
    with demo_gateway(tmp_path, study, Fault(patient_root_only=True), retrieve=retrieve) as gw:
        studies = httpx.get(f"{gw.dicomweb()}/studies", params={"PatientName": "Lestrade*"},
                            timeout=20)
        series = httpx.get(f"{gw.dicomweb()}/studies/{study.study_uid}/series", timeout=20)
        retrieved = httpx.get(f"{gw.dicomweb()}/studies/{study.study_uid}",
                              headers={"Accept": DICOM}, timeout=30)
    assert studies.status_code == 200, studies.text
    assert [s["0020000D"]["Value"][0] for s in studies.json()] == [study.study_uid]
    assert {s["0020000E"]["Value"][0] for s in series.json()} == {
        s.series_uid for s in study.series}
    assert retrieved.status_code == 200, retrieved.text
    assert retrieved.content.count(b"Content-Type: application/dicom") == len(study.instances)


def test_idle_pooled_associations_are_released_before_the_network_timeout(
    tmp_path: Path, corpus: Corpus
) -> None:
    # pynetdicom would abort them at its network timeout and log an ERROR; the
    # gateway releases them itself after half the timeout.
    with demo_gateway(tmp_path, corpus.study("ct_small"), timeout=2) as gw:
        assert httpx.get(f"{gw.dicomweb()}/studies", timeout=20).status_code == 200
        client = gw.app.state.gateway.clients["faulty"]
        assert client._associations.open == 1  # pooled, kept for the next query
        deadline = time.monotonic() + 5
        while client._associations.open and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client._associations.open == 0
        assert httpx.get(f"{gw.dicomweb()}/studies", timeout=20).status_code == 200
