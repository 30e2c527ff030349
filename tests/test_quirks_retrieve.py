"""Retrieves and associations against the quirky PACS (tests/quirky_pacs.py), through a gateway.

One test (or two) per behaviour of real PACS on the retrieve side: no C-GET,
move destinations registered wrong, C-CANCEL ignored, long silences before the
first C-STORE, total timeouts, uncompressed-only nodes, association limits per
calling AE, C-ECHO rejected next to queries, and IMAGE-level retrieves refused.
Delays are short and timeouts small (1-2 s) so the suite stays fast.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom.events import Event

import quirky_pacs
from gateway_fixtures import KEEPALIVE_EXPIRY
from multipart_helpers import parse_multipart
from pacs_fixtures import GATEWAY_AE_TITLE, free_port
from quirky_pacs import Quirks, QuirkyPacs, SampleStudy, quirky_gateway, sample_studies
from testdata import pydicom_file

pytestmark = pytest.mark.timeout(120)

DICOM = 'multipart/related; type="application/dicom"'
GET_MODELS = {"1.2.840.10008.5.1.4.1.2.2.3", "1.2.840.10008.5.1.4.1.2.1.3"}
UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
STORAGE_PREFIX = "1.2.840.10008.5.1.4.1.1."


class RecordingPacs(QuirkyPacs):
    """Records the presentation contexts proposed on every association, and lets the
    C-GET sub-operations after the first be paced (``store_pause``) so that a client
    can leave mid-way; counts C-GETs that found their association gone."""

    store_pause = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.proposals: list[dict[str, list[str]]] = []
        self.gets_abandoned = 0
        self.gets_finished = 0

    def _on_requested(self, event: Event) -> None:
        request = event.assoc.requestor.primitive
        self.proposals.append({
            str(cx.abstract_syntax): [str(ts) for ts in cx.transfer_syntax]
            for cx in request.presentation_context_definition_list})
        super()._on_requested(event)

    def _on_get(self, event: Event) -> Iterator[Any]:
        sent = 0
        finished = False
        try:
            for item in super()._on_get(event):
                if sent >= 2 and self.store_pause:  # after the count and the first instance
                    self._stopping.wait(self.store_pause)
                if not event.assoc.is_established:
                    return
                sent += 1
                yield item
            finished = event.assoc.is_established
        finally:  # pynetdicom stops asking for more once the association is gone
            if finished:
                self.gets_finished += 1
            else:
                self.gets_abandoned += 1

    def get_proposals(self) -> list[dict[str, list[str]]]:
        return [p for p in self.proposals if set(p) & GET_MODELS]


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> type[RecordingPacs]:
    """quirky_gateway serves with a RecordingPacs (a fresh subclass per test)."""
    pacs_class = type("Recording", (RecordingPacs,), {})
    monkeypatch.setattr(quirky_pacs, "QuirkyPacs", pacs_class)
    return pacs_class


@pytest.fixture
def studies(tmp_path: Path) -> list[SampleStudy]:
    return sample_studies(tmp_path / "data")


def _files(studies: list[SampleStudy]) -> list[Path]:
    return [path for study in studies for path in study.paths]


def _long_study(folder: Path, count: int) -> tuple[str, list[Path]]:
    """One study, one series of ``count`` small instances (from CT_small)."""
    template = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    study_uid, series_uid = generate_uid(), generate_uid()
    paths = []
    for number in range(1, count + 1):
        ds = copy.deepcopy(template)
        ds.PatientID = "LONG-1"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = number
        path = folder / f"{number}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return study_uid, paths


def _get(url: str, timeout: float = 60) -> httpx.Response:
    return httpx.get(url, headers={"Accept": DICOM}, timeout=timeout)


def _sop_uids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(str(part.dataset().SOPInstanceUID)
                  for part in parse_multipart(response.headers["content-type"], response.content))


def _message(response: httpx.Response) -> str:
    return str(response.json()["message"])


def _study_url(base: str, study: SampleStudy) -> str:
    return f"{base}/studies/{study.study_uid}"


def _instances(study: SampleStudy) -> list[str]:
    return sorted(str(pydicom.dcmread(path).SOPInstanceUID) for path in study.paths)


# --- no C-GET ----------------------------------------------------------------------------------


def test_no_c_get_falls_back_to_c_move_once_and_remembers_it(
        tmp_path: Path, studies: list[SampleStudy], recording: type[RecordingPacs],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dicomweb_gw.pacs.retrieve")
    with quirky_gateway(tmp_path, _files(studies), quirks=Quirks(no_c_get=True)) as setup:
        base = setup.gateway.dicomweb()
        first = _get(_study_url(base, studies[0]))
        second = _get(_study_url(base, studies[1]))
        pacs = setup.pacs
    assert _sop_uids(first) == _instances(studies[0])
    assert _sop_uids(second) == _instances(studies[1])
    assert [operation for operation, _ in pacs.retrieves] == ["C-MOVE", "C-MOVE"]
    assert isinstance(pacs, RecordingPacs)
    assert len(pacs.get_proposals()) == 1  # the second retrieve went straight to C-MOVE
    told = [r.getMessage() for r in caplog.records if "accepts no C-GET" in r.getMessage()]
    assert len(told) == 1
    assert 'retrieve = "c-move"' in told[0]
    assert "DICOMWEB_GW_RETRIEVE=c-move" in told[0]


def test_no_c_get_and_no_move_destination_says_both(tmp_path: Path,
                                                    studies: list[SampleStudy]) -> None:
    quirks = Quirks(no_c_get=True, registered_destinations={})
    with quirky_gateway(tmp_path, _files(studies), quirks=quirks) as setup:
        response = _get(_study_url(setup.gateway.dicomweb(), studies[0]))
    assert response.status_code == 502
    message = _message(response)
    assert "no C-GET" in message
    assert "C-MOVE" in message
    assert "0xA801" in message
    assert f"register AE title '{GATEWAY_AE_TITLE}' at 127.0.0.1:{setup.store_port}" in message


# --- move destinations -------------------------------------------------------------------------


def test_unknown_move_destination_gives_the_address_to_register(
        tmp_path: Path, studies: list[SampleStudy]) -> None:
    quirks = Quirks(registered_destinations={"SOMEONE_ELSE": ("127.0.0.1", free_port())})
    with quirky_gateway(tmp_path, _files(studies), quirks=quirks, retrieve="c-move") as setup:
        response = _get(_study_url(setup.gateway.dicomweb(), studies[0]))
    assert response.status_code == 502
    message = _message(response)
    assert "0xA801" in message
    assert f"register AE title '{GATEWAY_AE_TITLE}' at 127.0.0.1:{setup.store_port}" in message
    assert "<gateway host>" not in message
    assert "PORT" not in message


def test_destination_registered_at_a_wrong_port_names_the_port(
        tmp_path: Path, studies: list[SampleStudy]) -> None:
    wrong = free_port()  # nothing listens there
    quirks = Quirks(registered_destinations={GATEWAY_AE_TITLE: ("127.0.0.1", wrong)})
    with quirky_gateway(tmp_path, _files(studies), quirks=quirks, retrieve="c-move") as setup:
        response = _get(_study_url(setup.gateway.dicomweb(), studies[0]))
    assert response.status_code == 502
    message = _message(response)
    assert "could not connect" in message
    assert f"127.0.0.1:{setup.store_port}" in message
    assert "host and port" in message


# --- cancel ------------------------------------------------------------------------------------


def _leave_after_the_first_part(url: str, pacs: QuirkyPacs) -> int:
    """Read the first bytes of a retrieve, then leave; the PACS's C-CANCEL count then
    (the C-FIND that found what the C-GET will return was C-CANCELled after one match)."""
    with httpx.stream("GET", url, headers={"Accept": DICOM}, timeout=30) as response:
        assert response.status_code == 200
        next(response.iter_bytes())
        return pacs.cancels_received


def _eventually(condition: Any, seconds: float = 20) -> bool:
    """Poll ``condition`` (no timing asserted: the deadline is only a bound on a hang)."""
    done = threading.Event()
    for _ in range(int(seconds / 0.05)):
        if condition():
            return True
        done.wait(0.05)
    return bool(condition())


@pytest.mark.parametrize(("cancel", "cancels"), [("c-cancel", 1), ("abort", 0)])
def test_a_client_leaving_stops_the_retrieve_as_the_node_says(
        tmp_path: Path, recording: type[RecordingPacs], cancel: str, cancels: int) -> None:
    """A PACS that ignores C-CANCEL (the gateway survived it before: pinned for c-cancel),
    and ``cancel = "abort"``, which must abort without any C-CANCEL."""
    recording.store_pause = 0.5  # 30 instances: 15 s if the PACS were left to finish
    study_uid, paths = _long_study(tmp_path / "long", 30)
    with quirky_gateway(tmp_path, paths, quirks=Quirks(ignore_cancel=True),
                        node={"cancel": cancel, "max_associations": 1}) as setup:
        base = setup.gateway.dicomweb()
        pacs = setup.pacs
        assert isinstance(pacs, RecordingPacs)
        before = _leave_after_the_first_part(f"{base}/studies/{study_uid}", pacs)
        assert _eventually(lambda: pacs.gets_abandoned == 1)
        follow_up = httpx.get(f"{base}/studies", timeout=30)  # needs the one slot
        assert follow_up.status_code == 200
        assert pacs.cancels_received - before == cancels
        assert pacs.gets_finished == 0


# --- idle and total timeouts -------------------------------------------------------------------


@pytest.mark.parametrize("retrieve", ["c-get", "c-move"])
def test_pending_responses_keep_a_slow_first_store_alive(
        tmp_path: Path, studies: list[SampleStudy], retrieve: str) -> None:
    """Sectra (pynetdicom#382): Pending for longer than the idle timeout before the
    first C-STORE. The gateway survived this before (pinned)."""
    quirks = Quirks(first_store_delay=2.5, pending_every=0.25)
    with quirky_gateway(tmp_path, _files(studies), quirks=quirks, retrieve=retrieve,
                        node={"idle_timeout": 1.0}) as setup:
        response = _get(_study_url(setup.gateway.dicomweb(), studies[0]))
    assert _sop_uids(response) == _instances(studies[0])


@pytest.mark.parametrize("retrieve", ["c-get", "c-move"])
def test_silence_beyond_the_idle_timeout_is_504_naming_it(
        tmp_path: Path, studies: list[SampleStudy], retrieve: str) -> None:
    quirks = Quirks(first_store_delay=4.0)
    with quirky_gateway(tmp_path, _files(studies), quirks=quirks, retrieve=retrieve,
                        node={"idle_timeout": 1.0}) as setup:
        response = _get(_study_url(setup.gateway.dicomweb(), studies[0]))
    assert response.status_code == 504
    assert "idle_timeout" in _message(response)


def test_a_retrieve_longer_than_total_timeout_is_504_naming_it(
        tmp_path: Path, studies: list[SampleStudy]) -> None:
    quirks = Quirks(first_store_delay=5.0, pending_every=0.2)
    with quirky_gateway(tmp_path, _files(studies), quirks=quirks,
                        node={"idle_timeout": 1.0, "total_timeout": 1.5}) as setup:
        response = _get(_study_url(setup.gateway.dicomweb(), studies[0]))
    assert response.status_code == 504
    assert "total_timeout" in _message(response)


# --- compressed = false ------------------------------------------------------------------------


def test_uncompressed_only_node_proposes_only_little_endian_for_c_get(
        tmp_path: Path, studies: list[SampleStudy], recording: type[RecordingPacs]) -> None:
    with quirky_gateway(tmp_path, _files(studies), node={"compressed": False}) as setup:
        response = _get(_study_url(setup.gateway.dicomweb(), studies[0]))
        pacs = setup.pacs
    assert _sop_uids(response) == _instances(studies[0])
    assert isinstance(pacs, RecordingPacs)
    (proposal,) = pacs.get_proposals()
    storage = {sop: syntaxes for sop, syntaxes in proposal.items()
               if sop.startswith(STORAGE_PREFIX)}
    assert storage
    assert all(set(syntaxes) <= UNCOMPRESSED for syntaxes in storage.values())


# --- association limit per calling AE ----------------------------------------------------------


def test_a_pacs_limiting_associations_per_ae_is_waited_for_not_failed(
        tmp_path: Path, studies: list[SampleStudy]) -> None:
    quirks = Quirks(max_associations_per_ae=2, first_store_delay=0.3, pending_every=0.1)
    with quirky_gateway(tmp_path, _files(studies), quirks=quirks,
                        node={"max_associations": 4}) as setup:
        base = setup.gateway.dicomweb()

        async def together() -> list[httpx.Response]:
            limits = httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY)
            async with httpx.AsyncClient(timeout=60, limits=limits) as client:
                retrieves = [client.get(_study_url(base, study), headers={"Accept": DICOM})
                             for study in studies]
                searches = [client.get(f"{base}/studies", params={"PatientID": study.patient_id})
                            for study in studies]
                return list(await asyncio.gather(*retrieves, *searches))

        responses = asyncio.run(together())
    for study, response in zip(studies, responses[:4], strict=True):
        assert _sop_uids(response) == _instances(study)
    for study, response in zip(studies, responses[4:], strict=True):
        assert response.status_code == 200, response.text
        assert [item["0020000D"]["Value"][0] for item in response.json()] == [study.study_uid]


# --- C-ECHO ------------------------------------------------------------------------------------


def test_echo_works_when_verification_is_rejected_next_to_queries(
        tmp_path: Path, studies: list[SampleStudy]) -> None:
    with quirky_gateway(tmp_path, _files(studies),
                        quirks=Quirks(reject_echo_with_queries=True)) as setup:
        search = httpx.get(f"{setup.gateway.dicomweb()}/studies", timeout=30)  # pools one
        ready = [httpx.get(f"{setup.gateway.url}/readyz", timeout=30) for _ in range(2)]
        rejected = setup.pacs.echo_contexts_rejected
    assert search.status_code == 200
    assert [r.status_code for r in ready] == [200, 200], ready[0].text
    assert rejected >= 1  # the switch was hit: the pooled association has no Verification


# --- retrieve levels ---------------------------------------------------------------------------


def test_a_single_instance_comes_through_the_series_when_image_level_is_refused(
        tmp_path: Path, studies: list[SampleStudy]) -> None:
    study = studies[0]
    wanted = [pydicom.dcmread(path) for path in study.paths]
    quirks = Quirks(retrieve_levels=frozenset({"STUDY", "SERIES"}))
    with quirky_gateway(tmp_path, _files(studies), quirks=quirks) as setup:
        base = setup.gateway.dicomweb()
        responses = [_get(f"{base}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                          f"/instances/{ds.SOPInstanceUID}") for ds in wanted]
        levels = [str(identifier.QueryRetrieveLevel) for _, identifier in setup.pacs.retrieves]
    assert [_sop_uids(response) for response in responses] == [
        [str(ds.SOPInstanceUID)] for ds in wanted]
    assert levels == ["IMAGE", "SERIES", "SERIES"]  # refused once, then remembered
