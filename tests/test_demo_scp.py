"""The demo PACS, driven by a real pynetdicom SCU (and storage SCP) over loopback.

Expectations come from reading the generated sample files with pydicom, not
from the demo PACS's own index, so a matching or counting bug shows up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)
from pynetdicom import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    build_context,
    build_role,
    evt,
)
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from dicomweb_gw.demo import DemoPacs, Fault, generate_sample_data
from dicomweb_gw.demo.scp import set_tcp_nodelay

SCU_AE = "TESTSCU"
STORE_AE = "TESTSTORE"
STUDY_FIND = StudyRootQueryRetrieveInformationModelFind
STUDY_GET = StudyRootQueryRetrieveInformationModelGet
STUDY_MOVE = StudyRootQueryRetrieveInformationModelMove
UNCOMPRESSED: list[str | UID] = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]

pytestmark = pytest.mark.timeout(60)


# --- the sample data, as pydicom reads it --------------------------------------------


@dataclass(frozen=True)
class SampleFile:
    path: Path
    slug: str  # the study's directory
    ds: Dataset  # without pixel data

    def __getattr__(self, keyword: str) -> Any:
        return self.ds.get(keyword)


@dataclass(frozen=True)
class Sample:
    root: Path
    files: list[SampleFile]

    def study_uid(self, slug: str) -> str:
        return str(next(f.StudyInstanceUID for f in self.files if f.slug == slug))

    def in_study(self, study_uid: str) -> list[SampleFile]:
        return [f for f in self.files if f.StudyInstanceUID == study_uid]

    def in_series(self, series_uid: str) -> list[SampleFile]:
        return [f for f in self.files if f.SeriesInstanceUID == series_uid]

    def for_patient(self, patient_id: str) -> list[SampleFile]:
        return [f for f in self.files if f.PatientID == patient_id]

    def by_sop(self, sop_uid: str) -> SampleFile:
        return next(f for f in self.files if f.SOPInstanceUID == sop_uid)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    root = tmp_path_factory.mktemp("demo-pacs")
    paths = generate_sample_data(root)
    files = [
        SampleFile(p, p.relative_to(root).parts[0], dcmread(p, stop_before_pixels=True))
        for p in paths
    ]
    return Sample(root, files)


# --- a storage SCP to C-MOVE to ------------------------------------------------------


@dataclass(frozen=True)
class Received:
    dataset: Dataset
    transfer_syntax: str
    originator_aet: str | None
    originator_id: int | None


@dataclass
class StoreScp:
    port: int = 0
    received: list[Received] = field(default_factory=list)
    aborted: threading.Event = field(default_factory=threading.Event)

    def reset(self) -> None:
        self.received.clear()
        self.aborted.clear()

    def sop_uids(self) -> list[str]:
        return [str(r.dataset.SOPInstanceUID) for r in self.received]


@pytest.fixture(scope="module")
def store_scp() -> Iterator[StoreScp]:
    scp = StoreScp()

    def on_store(event: Any) -> int:
        request = event.request
        scp.received.append(
            Received(
                event.dataset,
                str(event.context.transfer_syntax),
                request.MoveOriginatorApplicationEntityTitle,
                request.MoveOriginatorMessageID,
            )
        )
        return 0x0000

    ae = AE(STORE_AE)
    ae.maximum_pdu_size = 0
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(str(context.abstract_syntax), ALL_TRANSFER_SYNTAXES)
    handlers: list[Any] = [
        (evt.EVT_CONN_OPEN, set_tcp_nodelay),
        (evt.EVT_C_STORE, on_store),
        (evt.EVT_ABORTED, lambda event: scp.aborted.set()),
    ]
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    assert server is not None
    scp.port = int(server.server_address[1])
    yield scp
    ae.shutdown()


@pytest.fixture
def store(store_scp: StoreScp) -> StoreScp:
    store_scp.reset()
    return store_scp


# --- the demo PACS and an SCU ---------------------------------------------------------


@pytest.fixture(scope="module")
def make_pacs(sample: Sample, store_scp: StoreScp) -> Iterator[Callable[..., DemoPacs]]:
    started: list[DemoPacs] = []

    def make(fault: Fault | None = None, storage_dir: Path | None = None) -> DemoPacs:
        pacs = DemoPacs(
            storage_dir or sample.root,
            move_destinations={STORE_AE: ("127.0.0.1", store_scp.port)},
            fault=fault,
        )
        pacs.start()
        started.append(pacs)
        return pacs

    yield make
    for pacs in started:
        pacs.stop()


@pytest.fixture(scope="module")
def pacs(make_pacs: Callable[..., DemoPacs]) -> DemoPacs:
    return make_pacs()


def storage_contexts(files: Sequence[SampleFile]) -> list[PresentationContext]:
    """Per SOP class: a context per stored transfer syntax, plus an uncompressed one."""
    contexts = []
    for sop_class in sorted({str(f.SOPClassUID) for f in files}):
        stored = {
            str(f.ds.file_meta.TransferSyntaxUID) for f in files if f.SOPClassUID == sop_class
        }
        contexts += [build_context(sop_class, [ts]) for ts in sorted(stored)]
        contexts.append(build_context(sop_class, UNCOMPRESSED))
    return contexts


@contextmanager
def scu(
    port: int,
    *,
    storage: Sequence[PresentationContext] = (),
    on_store: Callable[[Any], int] | None = None,
) -> Iterator[Association]:
    """An association from a test SCU; storage contexts are offered in the SCP role (C-GET)."""
    ae = AE(SCU_AE)
    for model in (
        Verification,
        STUDY_FIND,
        STUDY_GET,
        STUDY_MOVE,
        PatientRootQueryRetrieveInformationModelFind,
        PatientRootQueryRetrieveInformationModelGet,
    ):
        ae.add_requested_context(model)
    contexts = list(ae.requested_contexts) + list(storage)
    roles: list[Any] = [
        build_role(str(uid), scu_role=True, scp_role=True)
        for uid in {cx.abstract_syntax for cx in storage}
    ]
    handlers: list[Any] = [(evt.EVT_CONN_OPEN, set_tcp_nodelay)]
    if on_store is not None:
        handlers.append((evt.EVT_C_STORE, on_store))
    assoc = ae.associate(
        "127.0.0.1",
        port,
        contexts=contexts,
        ae_title="DEMOPACS",
        ext_neg=roles,
        evt_handlers=handlers,
        max_pdu=0,
    )
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


def query(**keys: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def find(
    pacs: DemoPacs, identifier: Dataset, model: UID = STUDY_FIND
) -> tuple[list[int], list[Dataset]]:
    """(every status, the pending identifiers) of one C-FIND."""
    with scu(pacs.port) as assoc:
        assert assoc.is_established
        responses = list(assoc.send_c_find(identifier, model))
    statuses = [int(status.Status) for status, _ in responses]
    pending = [ident for status, ident in responses if status.Status == 0xFF00]
    return statuses, [ident for ident in pending if ident is not None]


def eventually(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    """pynetdicom flags an abort from its reactor thread, a moment after the SCU sees it."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def study_uids(responses: Sequence[Dataset]) -> set[str]:
    return {str(r.StudyInstanceUID) for r in responses}


def collect_store(into: list[Dataset]) -> Callable[[Any], int]:
    def on_store(event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        into.append(ds)
        return 0x0000

    return on_store


# --- C-ECHO and C-FIND -----------------------------------------------------------------


def test_echo(pacs: DemoPacs) -> None:
    with scu(pacs.port) as assoc:
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000


def test_find_study_level_computes_counts_and_modalities(pacs: DemoPacs, sample: Sample) -> None:
    statuses, responses = find(
        pacs,
        query(
            QueryRetrieveLevel="STUDY",
            StudyInstanceUID="",
            NumberOfStudyRelatedSeries="",
            NumberOfStudyRelatedInstances="",
            ModalitiesInStudy="",
        ),
    )
    assert statuses[-1] == 0x0000
    expected_studies = {str(f.StudyInstanceUID) for f in sample.files}
    assert study_uids(responses) == expected_studies
    assert len(responses) == len(expected_studies)  # one response per study
    for rsp in responses:
        files = sample.in_study(rsp.StudyInstanceUID)
        assert rsp.NumberOfStudyRelatedSeries == len({f.SeriesInstanceUID for f in files})
        assert rsp.NumberOfStudyRelatedInstances == len(files)
        modalities = rsp.ModalitiesInStudy
        modalities = [modalities] if isinstance(modalities, str) else list(modalities)
        assert sorted(modalities) == sorted({f.Modality for f in files})
        assert rsp.QueryRetrieveLevel == "STUDY"
        assert rsp.RetrieveAETitle == "DEMOPACS"


def test_find_returns_only_the_requested_keys(pacs: DemoPacs, sample: Sample) -> None:
    _, responses = find(pacs, query(QueryRetrieveLevel="STUDY", PatientName="", StudyDate=""))
    assert len(responses) == 4
    for rsp in responses:
        keywords = {elem.keyword for elem in rsp}
        file = sample.in_study(rsp.StudyInstanceUID)[0]
        assert keywords - {"SpecificCharacterSet"} == {
            "PatientName",
            "StudyDate",
            "StudyInstanceUID",  # the unique key always comes back
            "QueryRetrieveLevel",
            "RetrieveAETitle",
        }
        assert ("SpecificCharacterSet" in rsp) == bool(file.SpecificCharacterSet)
        assert str(rsp.PatientName) == str(file.PatientName)
        assert rsp.StudyDate == file.StudyDate


@pytest.mark.parametrize(
    ("keys", "slugs"),
    [
        ({"PatientName": "SMITH*"}, {"mr-brain", "us-echo"}),
        ({"PatientName": "*OE^J?NE"}, {"ct-chest"}),
        ({"PatientName": "smith^john"}, {"mr-brain", "us-echo"}),  # PN: case-insensitive
        ({"PatientName": "MÜLLER*"}, {"xc-photo"}),  # UTF-8 file, Latin-1 query
        ({"PatientName": "SMITH"}, set()),  # no wildcard: the whole value must match
        ({"PatientID": "DEMO-000?"}, {"ct-chest", "mr-brain", "us-echo", "xc-photo"}),
        ({"StudyDescription": "*brain*"}, set()),  # LO: case-sensitive
        ({"StudyDescription": "*BRAIN*"}, {"mr-brain"}),
        ({"AccessionNumber": "ACC-1004"}, {"xc-photo"}),
    ],
)
def test_find_wildcards(
    pacs: DemoPacs, sample: Sample, keys: dict[str, str], slugs: set[str]
) -> None:
    identifier = query(QueryRetrieveLevel="STUDY", StudyInstanceUID="", **keys)
    if any(ord(ch) > 127 for value in keys.values() for ch in value):
        identifier.SpecificCharacterSet = "ISO_IR 100"
    _, responses = find(pacs, identifier)
    assert study_uids(responses) == {sample.study_uid(slug) for slug in slugs}


@pytest.mark.parametrize(
    ("dates", "slugs"),
    [
        ("20240301-20240430", {"ct-chest", "mr-brain"}),
        ("20240418-", {"mr-brain", "us-echo"}),
        ("-20240301", {"xc-photo"}),
        ("20240312", {"ct-chest"}),
        ("20250101-", set()),
    ],
)
def test_find_date_ranges(pacs: DemoPacs, sample: Sample, dates: str, slugs: set[str]) -> None:
    _, responses = find(pacs, query(QueryRetrieveLevel="STUDY", StudyDate=dates))
    assert study_uids(responses) == {sample.study_uid(slug) for slug in slugs}
    for rsp in responses:
        assert rsp.StudyDate == sample.in_study(rsp.StudyInstanceUID)[0].StudyDate


def test_find_time_range(pacs: DemoPacs, sample: Sample) -> None:
    # Study times: 09:15, 14:30, 10:10, 11:05. The upper bound "11" means up to 11:59:59.
    _, responses = find(pacs, query(QueryRetrieveLevel="STUDY", StudyTime="1000-11"))
    assert study_uids(responses) == {sample.study_uid("us-echo"), sample.study_uid("xc-photo")}


def test_find_uid_list(pacs: DemoPacs, sample: Sample) -> None:
    wanted = [sample.study_uid("ct-chest"), sample.study_uid("xc-photo")]
    _, responses = find(pacs, query(QueryRetrieveLevel="STUDY", StudyInstanceUID=wanted))
    assert study_uids(responses) == set(wanted)


@pytest.mark.parametrize(
    ("modalities", "slugs"),
    [("MR", {"mr-brain"}), (["US", "XC"], {"us-echo", "xc-photo"}), ("NM", set())],
)
def test_find_matches_modalities_in_study(
    pacs: DemoPacs, sample: Sample, modalities: str | list[str], slugs: set[str]
) -> None:
    _, responses = find(pacs, query(QueryRetrieveLevel="STUDY", ModalitiesInStudy=modalities))
    assert study_uids(responses) == {sample.study_uid(slug) for slug in slugs}


def test_find_series_level(pacs: DemoPacs, sample: Sample) -> None:
    study = sample.study_uid("mr-brain")
    _, responses = find(
        pacs,
        query(
            QueryRetrieveLevel="SERIES",
            StudyInstanceUID=study,
            SeriesInstanceUID="",
            SeriesDescription="",
            Modality="",
            NumberOfSeriesRelatedInstances="",
        ),
    )
    expected = {f.SeriesInstanceUID for f in sample.in_study(study)}
    assert {r.SeriesInstanceUID for r in responses} == expected
    assert len(responses) == len(expected) == 2
    for rsp in responses:
        files = sample.in_series(rsp.SeriesInstanceUID)
        assert rsp.NumberOfSeriesRelatedInstances == len(files)
        assert rsp.SeriesDescription == files[0].SeriesDescription
        assert rsp.StudyInstanceUID == study
        assert rsp.QueryRetrieveLevel == "SERIES"


def test_find_image_level(pacs: DemoPacs, sample: Sample) -> None:
    series = sample.in_study(sample.study_uid("ct-chest"))[0].SeriesInstanceUID
    _, responses = find(
        pacs,
        query(
            QueryRetrieveLevel="IMAGE",
            SeriesInstanceUID=series,
            SOPInstanceUID="",
            InstanceNumber="",
            SOPClassUID="",
        ),
    )
    files = sample.in_series(series)
    assert sorted(r.SOPInstanceUID for r in responses) == sorted(f.SOPInstanceUID for f in files)
    for rsp in responses:
        file = sample.by_sop(rsp.SOPInstanceUID)
        assert rsp.InstanceNumber == file.InstanceNumber
        assert rsp.SOPClassUID == file.SOPClassUID
    # Ordered by instance number, like a PACS lists a series.
    assert [r.InstanceNumber for r in responses] == sorted(r.InstanceNumber for r in responses)


def test_find_fills_a_sequence_key_from_the_file(pacs: DemoPacs, sample: Sample) -> None:
    # Sequences are not kept in the index: the response must come from the file.
    us = sample.in_study(sample.study_uid("us-echo"))[0]
    _, responses = find(
        pacs,
        query(
            QueryRetrieveLevel="IMAGE",
            SOPInstanceUID=us.SOPInstanceUID,
            SequenceOfUltrasoundRegions=[],
            NumberOfFrames="",
        ),
    )
    assert len(responses) == 1
    regions = responses[0].SequenceOfUltrasoundRegions
    assert len(regions) == len(us.SequenceOfUltrasoundRegions) > 0
    assert regions[0].RegionLocationMaxX1 == us.SequenceOfUltrasoundRegions[0].RegionLocationMaxX1
    assert responses[0].NumberOfFrames == us.NumberOfFrames == 30


def test_find_patient_level_in_patient_root(pacs: DemoPacs, sample: Sample) -> None:
    _, responses = find(
        pacs,
        query(
            QueryRetrieveLevel="PATIENT",
            PatientID="",
            PatientName="",
            NumberOfPatientRelatedStudies="",
            NumberOfPatientRelatedSeries="",
            NumberOfPatientRelatedInstances="",
        ),
        model=PatientRootQueryRetrieveInformationModelFind,
    )
    assert sorted(r.PatientID for r in responses) == sorted({f.PatientID for f in sample.files})
    for rsp in responses:
        files = sample.for_patient(rsp.PatientID)
        assert rsp.NumberOfPatientRelatedStudies == len({f.StudyInstanceUID for f in files})
        assert rsp.NumberOfPatientRelatedSeries == len({f.SeriesInstanceUID for f in files})
        assert rsp.NumberOfPatientRelatedInstances == len(files)
    smith = next(r for r in responses if r.PatientID == "DEMO-0002")
    assert smith.NumberOfPatientRelatedStudies == 2


def test_find_patient_level_in_study_root_is_refused(pacs: DemoPacs) -> None:
    statuses, responses = find(pacs, query(QueryRetrieveLevel="PATIENT", PatientID=""))
    assert statuses == [0xA900]
    assert responses == []


# --- C-GET -----------------------------------------------------------------------------------


def test_get_study_returns_every_instance_byte_identical(pacs: DemoPacs, sample: Sample) -> None:
    study = sample.study_uid("ct-chest")
    files = sample.in_study(study)
    received: list[Dataset] = []
    with scu(pacs.port, storage=storage_contexts(files), on_store=collect_store(received)) as assoc:
        responses = list(
            assoc.send_c_get(query(QueryRetrieveLevel="STUDY", StudyInstanceUID=study), STUDY_GET)
        )
    final = responses[-1][0]
    assert final.Status == 0x0000
    assert final.NumberOfCompletedSuboperations == len(files) == 10
    # Pending responses count down the remaining sub-operations.
    remaining = [int(s.NumberOfRemainingSuboperations) for s, _ in responses[:-1]]
    assert remaining == list(range(len(files) - 1, -1, -1))
    assert sorted(str(ds.SOPInstanceUID) for ds in received) == sorted(
        f.SOPInstanceUID for f in files
    )
    for ds in received:
        original = dcmread(sample.by_sop(ds.SOPInstanceUID).path)
        assert ds.PixelData == original.PixelData


def test_get_converts_to_an_accepted_uncompressed_syntax(pacs: DemoPacs, sample: Sample) -> None:
    # The MR study holds an Explicit VR LE and an RLE instance; offer Implicit VR LE only.
    study = sample.study_uid("mr-brain")
    files = sample.in_study(study)
    mr_storage = str(files[0].SOPClassUID)
    received: list[Dataset] = []
    with scu(
        pacs.port,
        storage=[build_context(mr_storage, [ImplicitVRLittleEndian])],
        on_store=collect_store(received),
    ) as assoc:
        responses = list(
            assoc.send_c_get(query(QueryRetrieveLevel="STUDY", StudyInstanceUID=study), STUDY_GET)
        )
    final = responses[-1][0]
    rle = next(f for f in files if f.ds.file_meta.TransferSyntaxUID.is_compressed)
    explicit = next(f for f in files if f is not rle)
    # The explicit one is converted; the RLE one cannot be and fails.
    assert [str(ds.SOPInstanceUID) for ds in received] == [explicit.SOPInstanceUID]
    assert received[0].file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert received[0].PixelData == dcmread(explicit.path).PixelData
    assert final.Status == 0xB000
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (1, 1)
    failed = responses[-1][1]
    assert failed is not None
    assert failed.FailedSOPInstanceUIDList == rle.SOPInstanceUID


def test_get_patient_root_keeps_stored_transfer_syntaxes(pacs: DemoPacs, sample: Sample) -> None:
    files = sample.for_patient("DEMO-0002")  # MR explicit, MR RLE, US JPEG multi-frame
    received: list[Dataset] = []
    with scu(pacs.port, storage=storage_contexts(files), on_store=collect_store(received)) as assoc:
        responses = list(
            assoc.send_c_get(
                query(QueryRetrieveLevel="PATIENT", PatientID="DEMO-0002"),
                PatientRootQueryRetrieveInformationModelGet,
            )
        )
    assert responses[-1][0].Status == 0x0000
    assert len(received) == len(files) == 3
    for ds in received:
        original = dcmread(sample.by_sop(ds.SOPInstanceUID).path)
        assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert ds.PixelData == original.PixelData


def test_get_honours_c_cancel(pacs: DemoPacs, sample: Sample) -> None:
    study = sample.study_uid("ct-chest")
    received: list[Dataset] = []
    store = collect_store(received)

    def cancel_on_first(event: Any) -> int:
        # Sent before our C-STORE response, so the PACS has it before its next sub-operation.
        if not received:
            event.assoc.send_c_cancel(7, query_model=STUDY_GET)
        return store(event)

    storage = storage_contexts(sample.in_study(study))
    with scu(pacs.port, storage=storage, on_store=cancel_on_first) as assoc:
        identifier = query(QueryRetrieveLevel="STUDY", StudyInstanceUID=study)
        responses = list(assoc.send_c_get(identifier, STUDY_GET, msg_id=7))
    final = responses[-1][0]
    assert final.Status == 0xFE00
    assert len(received) == 1
    assert final.NumberOfRemainingSuboperations == 9


# --- C-MOVE ----------------------------------------------------------------------------------


def move(
    pacs: DemoPacs, identifier: Dataset, destination: str = STORE_AE, msg_id: int = 42
) -> tuple[list[tuple[Dataset, Dataset | None]], Association]:
    with scu(pacs.port) as assoc:
        assert assoc.is_established
        responses = list(assoc.send_c_move(identifier, destination, STUDY_MOVE, msg_id=msg_id))
    return responses, assoc


def test_move_study_sets_move_originator(pacs: DemoPacs, sample: Sample, store: StoreScp) -> None:
    study = sample.study_uid("ct-chest")
    responses, _ = move(pacs, query(QueryRetrieveLevel="STUDY", StudyInstanceUID=study))
    final = responses[-1][0]
    assert final.Status == 0x0000
    assert final.NumberOfCompletedSuboperations == 10
    assert sorted(store.sop_uids()) == sorted(f.SOPInstanceUID for f in sample.in_study(study))
    for item in store.received:
        assert item.originator_id == 42
        assert item.originator_aet == SCU_AE  # the AE that asked for the move
        original = dcmread(sample.by_sop(item.dataset.SOPInstanceUID).path)
        assert item.dataset.PixelData == original.PixelData


def test_move_sends_compressed_instances_as_stored(
    pacs: DemoPacs, sample: Sample, store: StoreScp
) -> None:
    files = sample.for_patient("DEMO-0002")
    identifier = query(
        QueryRetrieveLevel="STUDY", StudyInstanceUID=[f.StudyInstanceUID for f in files]
    )
    responses, _ = move(pacs, identifier)
    assert responses[-1][0].Status == 0x0000
    assert len(store.received) == len(files) == 3
    for item in store.received:
        original = sample.by_sop(item.dataset.SOPInstanceUID)
        assert item.transfer_syntax == original.ds.file_meta.TransferSyntaxUID


def test_move_to_unknown_destination(pacs: DemoPacs, sample: Sample, store: StoreScp) -> None:
    study = sample.study_uid("ct-chest")
    responses, _ = move(pacs, query(QueryRetrieveLevel="STUDY", StudyInstanceUID=study), "NOBODY")
    assert [int(s.Status) for s, _ in responses] == [0xA801]
    assert store.received == []


def test_move_refused_identifier_answers_identifier_mismatch(
    pacs: DemoPacs, store: StoreScp,
) -> None:
    """A refused C-MOVE says why (0xA900), not 0xC515: with nothing to send, the
    sub-association still needs a context to propose before pynetdicom sends the status."""
    responses, _ = move(pacs, query(QueryRetrieveLevel="FRAME", StudyInstanceUID="1.2.3"))
    assert [int(s.Status) for s, _ in responses] == [0xA900]
    assert store.received == []


# --- C-STORE ---------------------------------------------------------------------------------


def test_store_is_kept_indexed_and_found_after_restart(
    make_pacs: Callable[..., DemoPacs], sample: Sample, tmp_path: Path
) -> None:
    ct = sample.in_study(sample.study_uid("ct-chest"))
    pacs = make_pacs(storage_dir=tmp_path)
    assert pacs.add_files([ct[0].path, ct[1].path, sample.root / "not-there.txt"]) == 2

    upload = dcmread(ct[2].path)
    upload.StudyInstanceUID = generate_uid()
    upload.SOPInstanceUID = upload.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    with scu(pacs.port, storage=storage_contexts(ct)) as assoc:
        assert assoc.send_c_store(upload).Status == 0x0000

    identifier = query(QueryRetrieveLevel="IMAGE", StudyInstanceUID="", SOPInstanceUID="")
    _, before = find(pacs, identifier)
    expected = {ct[0].SOPInstanceUID, ct[1].SOPInstanceUID, upload.SOPInstanceUID}
    assert {r.SOPInstanceUID for r in before} == expected
    stored = [p for p in tmp_path.rglob("*.dcm")]
    assert len(stored) == 3
    pacs.stop()

    again = make_pacs(storage_dir=tmp_path)  # indexes what is on disk
    _, after = find(again, identifier)
    assert {r.SOPInstanceUID for r in after} == expected


# --- faults ----------------------------------------------------------------------------------


def test_fault_refuse_association(make_pacs: Callable[..., DemoPacs]) -> None:
    pacs = make_pacs(Fault(refuse_association=True))
    with scu(pacs.port) as assoc:
        assert assoc.is_rejected
        assert not assoc.is_established


def test_fault_abort_during_get(make_pacs: Callable[..., DemoPacs], sample: Sample) -> None:
    pacs = make_pacs(Fault(abort_after_instances=3))
    study = sample.study_uid("ct-chest")
    received: list[Dataset] = []
    storage = storage_contexts(sample.in_study(study))
    with scu(pacs.port, storage=storage, on_store=collect_store(received)) as assoc:
        identifier = query(QueryRetrieveLevel="STUDY", StudyInstanceUID=study)
        responses = list(assoc.send_c_get(identifier, STUDY_GET))
        assert eventually(lambda: assoc.is_aborted)
    assert len(received) == 3
    assert all(status.get("Status") != 0x0000 for status, _ in responses)


def test_fault_abort_during_move(
    make_pacs: Callable[..., DemoPacs], sample: Sample, store: StoreScp
) -> None:
    pacs = make_pacs(Fault(abort_after_instances=3))
    study = sample.study_uid("ct-chest")
    responses, assoc = move(pacs, query(QueryRetrieveLevel="STUDY", StudyInstanceUID=study))
    assert eventually(lambda: assoc.is_aborted)
    assert all(status.get("Status") != 0x0000 for status, _ in responses)
    assert len(store.received) == 3
    assert store.aborted.wait(2), "the destination should see the sub-association aborted"


def test_fault_stall(make_pacs: Callable[..., DemoPacs], sample: Sample) -> None:
    pacs = make_pacs(Fault(stall_seconds=0.5))
    started = time.monotonic()
    _, responses = find(pacs, query(QueryRetrieveLevel="STUDY", PatientID="DEMO-0001"))
    assert time.monotonic() - started >= 0.5
    assert study_uids(responses) == {sample.study_uid("ct-chest")}


def test_fault_stall_then_c_cancel_answers_cancel(make_pacs: Callable[..., DemoPacs]) -> None:
    pacs = make_pacs(Fault(stall_seconds=0.4))
    with scu(pacs.port) as assoc:
        timer = threading.Timer(0.1, assoc.send_c_cancel, (9,), {"query_model": STUDY_FIND})
        timer.start()
        responses = list(assoc.send_c_find(query(QueryRetrieveLevel="STUDY"), STUDY_FIND, msg_id=9))
        timer.join()
    assert [int(s.Status) for s, _ in responses] == [0xFE00]


def test_fault_omit_move_originator(
    make_pacs: Callable[..., DemoPacs], sample: Sample, store: StoreScp
) -> None:
    pacs = make_pacs(Fault(omit_move_originator=True))
    study = sample.study_uid("mr-brain")
    responses, _ = move(pacs, query(QueryRetrieveLevel="STUDY", StudyInstanceUID=study))
    assert responses[-1][0].Status == 0x0000
    assert len(store.received) == 2
    assert all(r.originator_id is None and r.originator_aet is None for r in store.received)


def test_fault_find_failure_status(make_pacs: Callable[..., DemoPacs]) -> None:
    pacs = make_pacs(Fault(find_failure_status=0xC000))
    statuses, responses = find(pacs, query(QueryRetrieveLevel="STUDY", StudyInstanceUID=""))
    assert statuses == [0xC000]
    assert responses == []


def test_fault_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="abort_after_instances"):
        Fault(abort_after_instances=-1)
