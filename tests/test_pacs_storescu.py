"""C-STORE batches into real PACS (dcmqrscp, Orthanc) and into pynetdicom SCPs that misbehave."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from pydicom import uid
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # generated

from dicomweb_gw.errors import PacsFailure, PacsUnavailable
from dicomweb_gw.model import QueryLevel
from dicomweb_gw.pacs.dimse import DimsePacsClient
from dicomweb_gw.pacs.storescu import (
    PROCESSING_FAILURE,
    SOP_CLASS_NOT_SUPPORTED,
    StoreOutcome,
    StoreRequest,
    plan_contexts,
)
from dicomweb_gw.settings import PacsNode
from pacs_fixtures import GATEWAY_AE_TITLE, LOOPBACK, RunningPacs, free_port

CT = "1.2.840.10008.5.1.4.1.1.2"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
TIMEOUT = 10.0


def make_instances(tmp: Path, name: str, count: int, *, study_uid: str | None = None,
                   syntax: str | None = None) -> list[StoreRequest]:
    """``count`` copies of a pydicom test file with fresh UIDs, as Part 10 files in ``tmp``."""
    study_uid = study_uid or uid.generate_uid()
    series_uid = uid.generate_uid()
    requests = []
    for index in range(count):
        ds = pydicom.dcmread(get_testdata_file(name, download=False))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        # Their own patient: some test files share a name with the session corpus
        # (SC_rgb_jpeg_dcmtk is "Lestrade^G", as ct_small is), and these copies stay
        # in the session's PACS for the tests that run after this module.
        ds.PatientID, ds.PatientName = "STORESCU-TEST", "Storescu^Test"
        ds.InstanceNumber = index + 1
        if syntax is not None:
            ds.file_meta.TransferSyntaxUID = syntax
        path = tmp / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        requests.append(StoreRequest(path, str(ds.SOPClassUID), str(ds.SOPInstanceUID),
                                     str(ds.file_meta.TransferSyntaxUID)))
    return requests


def client_for(host: str, port: int, ae_title: str, timeout: float = TIMEOUT) -> DimsePacsClient:
    node = PacsNode(name="test-pacs", host=host, port=port, ae_title=ae_title,
                    retrieve="c-get", timeout=timeout)
    return DimsePacsClient(node, ae_title=GATEWAY_AE_TITLE)


def store(client: DimsePacsClient, requests: Sequence[StoreRequest]) -> list[StoreOutcome]:
    async def run() -> list[StoreOutcome]:
        try:
            return await client.store(requests)
        finally:
            await client.aclose()

    return asyncio.run(run())


def find_instances(pacs: RunningPacs, study_uid: str, series_uid: str) -> set[str]:
    query = Dataset()
    query.StudyInstanceUID = study_uid
    query.SeriesInstanceUID = series_uid
    query.SOPInstanceUID = ""

    async def run() -> set[str]:
        client = client_for(pacs.host, pacs.port, pacs.ae_title)
        try:
            return {str(ds.SOPInstanceUID) async for ds in client.find(QueryLevel.IMAGE, query)}
        finally:
            await client.aclose()

    return asyncio.run(run())


@pytest.fixture
def orthanc_cleanup(orthanc_pacs: RunningPacs) -> Iterator[list[str]]:
    """Study UIDs to delete from Orthanc afterwards: other tests count its studies."""
    studies: list[str] = []
    yield studies
    with httpx.Client(base_url=str(orthanc_pacs.http_url), timeout=30) as rest:
        for study_uid in studies:
            for found in rest.post("/tools/lookup", content=study_uid).json():
                if found["Type"] == "Study":
                    rest.delete(f"/studies/{found['ID']}")


# -- real PACS -------------------------------------------------------------------

@pytest.mark.pacs
def test_batch_into_dcmqrscp_is_found_again(dcmqrscp_pacs: RunningPacs, tmp_path: Path) -> None:
    requests = make_instances(tmp_path, "CT_small.dcm", 3)
    requests += make_instances(tmp_path, "MR_small.dcm", 1, syntax=uid.ImplicitVRLittleEndian)
    pacs = dcmqrscp_pacs
    outcomes = store(client_for(pacs.host, pacs.port, pacs.ae_title), requests)
    assert [o.status for o in outcomes] == [0x0000] * 4
    assert [o.sop_instance_uid for o in outcomes] == [r.sop_instance_uid for r in requests]
    assert all(o.stored for o in outcomes)
    first = pydicom.dcmread(requests[0].path, stop_before_pixels=True)
    assert find_instances(pacs, first.StudyInstanceUID, first.SeriesInstanceUID) == {
        r.sop_instance_uid for r in requests[:3]}


@pytest.mark.pacs
def test_jpeg_is_decompressed_for_dcmqrscp(dcmqrscp_pacs: RunningPacs, tmp_path: Path) -> None:
    [request] = make_instances(tmp_path, "SC_rgb_jpeg_dcmtk.dcm", 1)
    assert request.transfer_syntax_uid == uid.JPEGBaseline8Bit
    pacs = dcmqrscp_pacs
    [outcome] = store(client_for(pacs.host, pacs.port, pacs.ae_title), [request])
    assert outcome.status == 0x0000, outcome.message
    stored = [path for path in pacs.storage_dir.glob("*.dcm")
              if request.sop_instance_uid in str(pydicom.dcmread(
                  path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)]
    assert len(stored) == 1
    received = pydicom.dcmread(stored[0])
    assert not received.file_meta.TransferSyntaxUID.is_compressed
    original = pydicom.dcmread(request.path)
    assert received.SOPInstanceUID == original.SOPInstanceUID  # no new UID for the copy
    assert np.array_equal(received.pixel_array, original.pixel_array)


@pytest.mark.pacs
def test_orthanc_takes_jpeg_as_it_is(orthanc_pacs: RunningPacs, tmp_path: Path,
                                     orthanc_cleanup: list[str]) -> None:
    requests = make_instances(tmp_path, "SC_rgb_jpeg_dcmtk.dcm", 1)
    requests += make_instances(tmp_path, "CT_small.dcm", 2)
    orthanc_cleanup.extend(str(pydicom.dcmread(r.path, stop_before_pixels=True)
                               .StudyInstanceUID) for r in requests)
    pacs = orthanc_pacs
    outcomes = store(client_for(pacs.host, pacs.port, pacs.ae_title), requests)
    assert [o.status for o in outcomes] == [0x0000] * 3
    with httpx.Client(base_url=str(pacs.http_url), timeout=30) as rest:
        [found] = rest.post("/tools/lookup", content=requests[0].sop_instance_uid).json()
        header = rest.get(f"/instances/{found['ID']}/header").json()
    assert header["0002,0010"]["Value"] == uid.JPEGBaseline8Bit


def test_pacs_down_is_unavailable(tmp_path: Path) -> None:
    requests = make_instances(tmp_path, "CT_small.dcm", 1)
    with pytest.raises(PacsUnavailable):
        store(client_for(LOOPBACK, free_port(), "NOBODY"), requests)


# -- pynetdicom SCPs -------------------------------------------------------------

@contextmanager
def scp(contexts: Sequence[tuple[str, Sequence[str]]],
        on_store: Callable[[Any], int] | None = None) -> Iterator[int]:
    """A pynetdicom SCP on a free port supporting only ``contexts`` (and Verification)."""
    ae = AE(ae_title="TEST_SCP")
    ae.add_supported_context(Verification)
    for sop_class, syntaxes in contexts:
        ae.add_supported_context(sop_class, list(syntaxes))
    port = free_port()
    handlers = [(evt.EVT_C_STORE, on_store)] if on_store else []
    server = ae.start_server((LOOPBACK, port), block=False, evt_handlers=handlers)
    try:
        yield port
    finally:
        # shutdown() waits out pynetdicom's 0.5 s accept poll: let it do so off the test.
        threading.Thread(target=server.shutdown, daemon=True).start()


def test_pacs_accepting_no_context_fails_fast(tmp_path: Path) -> None:
    requests = make_instances(tmp_path, "CT_small.dcm", 5)
    with scp([]) as port:  # Verification only
        started = time.monotonic()
        outcomes = store(client_for(LOOPBACK, port, "TEST_SCP"), requests)
    assert time.monotonic() - started < 2.0 < TIMEOUT
    assert [(o.status, o.failure_reason) for o in outcomes] == [
        (None, SOP_CLASS_NOT_SUPPORTED)] * 5
    assert not any(o.stored for o in outcomes)


def test_statuses_are_passed_through_per_instance(tmp_path: Path) -> None:
    requests = make_instances(tmp_path, "CT_small.dcm", 4)
    requests += make_instances(tmp_path, "SC_rgb_jpeg_dcmtk.dcm", 1)  # class not supported
    answers = iter([0x0000, 0xB000, 0xA700, 0xC000])
    with scp([(CT, [uid.ExplicitVRLittleEndian])], lambda _event: next(answers)) as port:
        outcomes = store(client_for(LOOPBACK, port, "TEST_SCP"), requests)
    assert [o.status for o in outcomes] == [0x0000, 0xB000, 0xA700, 0xC000, None]
    assert [o.stored for o in outcomes] == [True, True, False, False, False]
    assert outcomes[1].warning
    assert outcomes[4].failure_reason == SOP_CLASS_NOT_SUPPORTED


def test_converted_to_the_only_syntax_the_scp_takes(tmp_path: Path) -> None:
    requests = make_instances(tmp_path, "SC_rgb_jpeg_dcmtk.dcm", 1)
    requests += make_instances(tmp_path, "CT_small.dcm", 1)  # Explicit VR LE
    received: list[tuple[str, Dataset]] = []

    def keep(event: Any) -> int:
        received.append((str(event.context.transfer_syntax), event.dataset))
        return 0x0000

    implicit_only = [(SECONDARY_CAPTURE, [uid.ImplicitVRLittleEndian]),
                     (CT, [uid.ImplicitVRLittleEndian])]
    with scp(implicit_only, keep) as port:
        outcomes = store(client_for(LOOPBACK, port, "TEST_SCP"), requests)
    assert [o.status for o in outcomes] == [0x0000, 0x0000]
    assert [syntax for syntax, _ in received] == [uid.ImplicitVRLittleEndian] * 2
    for request, (_, dataset) in zip(requests, received, strict=True):
        dataset.file_meta = pydicom.dcmread(request.path, stop_before_pixels=True).file_meta
        dataset.file_meta.TransferSyntaxUID = uid.ImplicitVRLittleEndian
        original = pydicom.dcmread(request.path)
        assert dataset.SOPInstanceUID == original.SOPInstanceUID
        assert np.array_equal(dataset.pixel_array, original.pixel_array)


def test_association_lost_mid_batch_reports_only_what_was_confirmed(tmp_path: Path) -> None:
    requests = make_instances(tmp_path, "CT_small.dcm", 4)
    calls = 0

    def abort_on_second(event: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            event.assoc.abort()
        return 0x0000

    with scp([(CT, [uid.ExplicitVRLittleEndian])], abort_on_second) as port:
        outcomes = store(client_for(LOOPBACK, port, "TEST_SCP"), requests)
    assert [o.stored for o in outcomes] == [True, False, False, False]
    assert [o.failure_reason for o in outcomes[1:]] == [PROCESSING_FAILURE] * 3


def test_association_lost_before_anything_stored_is_a_pacs_error(tmp_path: Path) -> None:
    requests = make_instances(tmp_path, "CT_small.dcm", 2)

    def abort(event: Any) -> int:
        event.assoc.abort()
        return 0x0000

    with scp([(CT, [uid.ExplicitVRLittleEndian])], abort) as port, \
            pytest.raises(PacsFailure):
        store(client_for(LOOPBACK, port, "TEST_SCP"), requests)


# -- planning ---------------------------------------------------------------------

def test_contexts_offer_each_syntax_present_and_an_uncompressed_fallback(tmp_path: Path) -> None:
    requests = [StoreRequest(tmp_path, CT, "1", uid.JPEGBaseline8Bit),
                StoreRequest(tmp_path, CT, "2", uid.ExplicitVRLittleEndian),
                StoreRequest(tmp_path, CT, "3", uid.JPEGBaseline8Bit),
                StoreRequest(tmp_path, SECONDARY_CAPTURE, "4", uid.RLELossless)]
    planned = [(str(cx.abstract_syntax), [str(s) for s in cx.transfer_syntax])
               for cx in plan_contexts(requests)]
    uncompressed = [uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian]
    assert planned == [(CT, uncompressed), (SECONDARY_CAPTURE, uncompressed),
                       (CT, [uid.JPEGBaseline8Bit]), (SECONDARY_CAPTURE, [uid.RLELossless]),
                       (CT, [uid.ExplicitVRLittleEndian])]


def test_contexts_stay_within_128_and_every_class_keeps_its_fallback(tmp_path: Path) -> None:
    requests = [StoreRequest(tmp_path, f"1.2.3.{n}", str(n), syntax)
                for n in range(60) for syntax in (uid.JPEGBaseline8Bit, uid.RLELossless)]
    planned = plan_contexts(requests)
    assert len(planned) == 128
    fallbacks = {str(cx.abstract_syntax) for cx in planned if len(cx.transfer_syntax) == 2}
    assert fallbacks == {f"1.2.3.{n}" for n in range(60)}
