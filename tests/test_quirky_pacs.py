"""The quirky PACS double (tests/quirky_pacs.py), driven by a plain pynetdicom SCU.

Each switch is checked against what a DICOM peer really receives (statuses,
raw bytes, A-ASSOCIATE-RJ reasons), and against the same PACS without the
switch, so a gateway test that passes against a switch passes against the
behaviour it stands for.
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
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, AllStoragePresentationContexts, build_context, build_role, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from quirky_pacs import (
    CHINESE_DESCRIPTION,
    CHINESE_NAME,
    LATIN1_DESCRIPTION,
    LATIN1_NAME,
    Quirks,
    QuirkyPacs,
    SampleStudy,
    chinese_study,
    latin1_study,
    quirky_pacs,
    sample_studies,
)

pytestmark = pytest.mark.timeout(60)

SCU_AE = "QUIRKSCU"
STORE_AE = "QUIRKSTORE"
STUDY_FIND = StudyRootQueryRetrieveInformationModelFind
STUDY_GET = StudyRootQueryRetrieveInformationModelGet
STUDY_MOVE = StudyRootQueryRetrieveInformationModelMove
PATIENT_FIND = PatientRootQueryRetrieveInformationModelFind
PATIENT_MOVE = PatientRootQueryRetrieveInformationModelMove
QR_MODELS = (STUDY_FIND, STUDY_GET, STUDY_MOVE, PATIENT_FIND,
             PatientRootQueryRetrieveInformationModelGet, PATIENT_MOVE)
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
PENDING = 0xFF00


# --- data and peers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> list[SampleStudy]:
    return sample_studies(tmp_path_factory.mktemp("quirky-data"), 4)


@pytest.fixture(scope="module")
def latin1(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return latin1_study(tmp_path_factory.mktemp("quirky-latin1"))


def all_files(studies: Sequence[SampleStudy]) -> list[Path]:
    return [path for study in studies for path in study.paths]


@dataclass
class Wire:
    """What the SCU's DIMSE layer received: (Status, Command Data Set Type, data set bytes)."""

    messages: list[tuple[int | None, int, bytes]] = field(default_factory=list)

    def on_recv(self, event: Any) -> None:
        command = event.message.command_set
        data = event.message.data_set
        self.messages.append((int(command.Status) if "Status" in command else None,
                              int(command.CommandDataSetType),
                              data.getvalue() if data is not None else b""))


@contextmanager
def scu(port: int, *, ae_title: str = SCU_AE, models: Sequence[str] = (Verification, *QR_MODELS),
        syntaxes: Sequence[str] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian),
        storage: bool = False, on_store: Callable[[Any], int] | None = None,
        wire: Wire | None = None) -> Iterator[Association]:
    """An association to the quirky PACS; ``storage`` offers CT storage in the SCP role (C-GET)."""
    ae = AE(ae_title)
    contexts: list[PresentationContext] = [build_context(m, list(syntaxes)) for m in models]
    roles: list[Any] = []
    if storage:
        contexts.append(build_context(CT_IMAGE, [ExplicitVRLittleEndian]))
        roles.append(build_role(CT_IMAGE, scu_role=True, scp_role=True))
    handlers: list[Any] = []
    if on_store is not None:
        handlers.append((evt.EVT_C_STORE, on_store))
    if wire is not None:
        handlers.append((evt.EVT_DIMSE_RECV, wire.on_recv))
    assoc = ae.associate("127.0.0.1", port, contexts=contexts, ae_title="QUIRKYPACS",
                         ext_neg=roles, evt_handlers=handlers)
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


def find(pacs: QuirkyPacs, identifier: Dataset, model: UID = STUDY_FIND,
         ) -> tuple[list[int], list[Dataset | None]]:
    """(every status, the identifier of every Pending response) of one C-FIND."""
    with scu(pacs.port) as assoc:
        assert assoc.is_established
        responses = list(assoc.send_c_find(identifier, model))
    statuses = [int(status.Status) for status, _ in responses]
    return statuses, [ident for status, ident in responses if status.Status == PENDING]


def study_level(**keys: Any) -> Dataset:
    return query(QueryRetrieveLevel="STUDY", StudyInstanceUID="", **keys)


def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@dataclass
class StoreScp:
    port: int
    received: list[str]


@pytest.fixture
def store_scp() -> Iterator[StoreScp]:
    """A C-MOVE destination that records the SOP Instance UIDs it was sent."""
    received: list[str] = []

    def on_store(event: Any) -> int:
        received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    ae = AE(STORE_AE)
    ae.add_supported_context(Verification)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(str(context.abstract_syntax),
                                 [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    server = ae.start_server(("127.0.0.1", 0), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert server is not None
    yield StoreScp(int(server.server_address[1]), received)
    ae.shutdown()


# --- the double without quirks ---------------------------------------------------------------


def test_without_quirks_it_is_the_demo_pacs(tmp_path: Path, studies: list[SampleStudy]) -> None:
    with quirky_pacs(tmp_path, all_files(studies)) as pacs:
        statuses, matches = find(pacs, study_level(StudyDescription="Chest"))
        series_statuses, _ = find(pacs, query(QueryRetrieveLevel="SERIES", SeriesInstanceUID=""))
        with scu(pacs.port) as assoc:
            echo = assoc.send_c_echo().Status
    assert statuses == [PENDING, PENDING, 0x0000]
    assert {str(m.StudyInstanceUID) for m in matches if m is not None} == {
        s.study_uid for s in studies if s.description == "Chest"}
    assert series_statuses == [PENDING] * 8 + [0x0000]  # relational: no parent UID needed
    assert echo == 0x0000
    assert [str(i.QueryRetrieveLevel) for i in pacs.finds] == ["STUDY", "SERIES"]


def test_quirks_reject_nonsense() -> None:
    for bad in ({"match_limit": -1}, {"pending_every": 0}, {"name_encoding": "no-such-codec"},
                {"max_associations_per_ae": 0}, {"retrieve_levels": frozenset({"FRAME"})},
                {"first_store_delay": -1.0}):
        with pytest.raises((ValueError, LookupError)):
            Quirks(**bad)


# --- no_c_get --------------------------------------------------------------------------------


def test_no_c_get_accepts_no_get_context_but_move(tmp_path: Path,
                                                  studies: list[SampleStudy]) -> None:
    with quirky_pacs(tmp_path, all_files(studies), quirks=Quirks(no_c_get=True)) as pacs, \
            scu(pacs.port, storage=True) as assoc:
        accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
    assert STUDY_GET not in accepted
    assert PatientRootQueryRetrieveInformationModelGet not in accepted
    assert {STUDY_FIND, STUDY_MOVE} <= accepted


# --- match_limit -----------------------------------------------------------------------------


@pytest.mark.parametrize(("how", "final"), [("refused", 0xA700), ("truncated", 0x0000)])
def test_match_limit(tmp_path: Path, studies: list[SampleStudy], how: str, final: int) -> None:
    quirks = Quirks(match_limit=2, match_limit_status=how)  # type: ignore[arg-type]
    with quirky_pacs(tmp_path, all_files(studies), quirks=quirks) as pacs:
        statuses, _ = find(pacs, study_level())
        narrow, _ = find(pacs, study_level(StudyDescription="Chest"))
    assert statuses == [PENDING, PENDING, final]
    assert narrow == [PENDING, PENDING, 0x0000]  # not more than the limit: no refusal


# --- pending_without_identifier --------------------------------------------------------------


def test_pending_without_identifier_on_the_wire(tmp_path: Path,
                                                studies: list[SampleStudy]) -> None:
    wire = Wire()
    quirks = Quirks(pending_without_identifier=True)
    with quirky_pacs(tmp_path, all_files(studies), quirks=quirks) as pacs, \
            scu(pacs.port, wire=wire) as assoc:
        responses = list(assoc.send_c_find(study_level(), STUDY_FIND))
    # Command Data Set Type 0x0101: no data set follows the command.
    assert [(status, kind) for status, kind, _ in wire.messages] == \
        [(PENDING, 0x0101), (PENDING, 0x0001)] * 4 + [(0x0000, 0x0101)]
    assert all(data == b"" for _, kind, data in wire.messages if kind == 0x0101)
    # What a pynetdicom client (the gateway) makes of it: an empty Dataset, not None.
    identifiers = [ident for status, ident in responses if status.Status == PENDING]
    assert len(identifiers) == 8
    assert [len(ident) if ident is not None else None for ident in identifiers[::2]] == [0] * 4
    assert all("StudyInstanceUID" in ident for ident in identifiers[1::2] if ident is not None)


# --- name_encoding / declared_charset --------------------------------------------------------


@pytest.fixture(scope="module")
def chinese(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return chinese_study(tmp_path_factory.mktemp("quirky-chinese"))


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize(("study", "encoding", "declared"), [
    ("latin1", "latin_1", None), ("latin1", "latin_1", "ISO_IR 6"),
    ("latin1", "latin_1", "ISO_IR 192"), ("chinese", "gbk", None), ("chinese", "gbk", "ISO_IR 100"),
])
def test_name_encoding_sends_raw_foreign_bytes(tmp_path: Path, request: pytest.FixtureRequest,
                                               syntax: str, study: str, encoding: str,
                                               declared: str | None) -> None:
    files = request.getfixturevalue(study)
    name, description = {"latin1": (LATIN1_NAME, LATIN1_DESCRIPTION),
                         "chinese": (CHINESE_NAME, CHINESE_DESCRIPTION)}[study]
    wire = Wire()
    quirks = Quirks(name_encoding=encoding, declared_charset=declared)
    with quirky_pacs(tmp_path, files, quirks=quirks) as pacs, \
            scu(pacs.port, wire=wire, syntaxes=[syntax]) as assoc:
        identifier = study_level(PatientName="", StudyDescription="", PatientID="")
        responses = list(assoc.send_c_find(identifier, STUDY_FIND))
    assert [int(status.Status) for status, _ in responses] == [PENDING, 0x0000]
    data = [data for status, _, data in wire.messages if status == PENDING]
    assert len(data) == 1
    assert name.encode(encoding) in data[0]
    assert description.encode(encoding) in data[0]
    assert name.encode() not in data[0]  # not UTF-8
    assert b"\x1b" not in data[0]  # no ISO 2022 escapes
    received = responses[0][1]
    assert received is not None
    assert received.get("SpecificCharacterSet") == declared
    assert received.PatientID == {"latin1": "LATIN1-1", "chinese": "GBK-1"}[study]


def test_without_name_encoding_the_file_charset_is_sent(tmp_path: Path,
                                                        latin1: list[Path]) -> None:
    with quirky_pacs(tmp_path, latin1) as pacs:
        _, matches = find(pacs, study_level(PatientName=""))
    assert matches[0] is not None
    assert matches[0].SpecificCharacterSet == "ISO_IR 100"
    assert str(matches[0].PatientName) == "Müller^Jürgen"


# --- hierarchical_only -----------------------------------------------------------------------


@pytest.mark.parametrize("status", [0xA900, 0xC000])
def test_hierarchical_only_refuses_relational_queries(tmp_path: Path, studies: list[SampleStudy],
                                                      status: int) -> None:
    study = studies[0]
    quirks = Quirks(hierarchical_only=True, hierarchical_status=status)
    with quirky_pacs(tmp_path, all_files(studies), quirks=quirks) as pacs:
        no_parent, _ = find(pacs, query(QueryRetrieveLevel="SERIES", SeriesInstanceUID=""))
        empty_parent, _ = find(pacs, query(QueryRetrieveLevel="SERIES", StudyInstanceUID="",
                                           SeriesInstanceUID="", Modality="CT"))
        list_parent, _ = find(pacs, query(
            QueryRetrieveLevel="SERIES", SeriesInstanceUID="",
            StudyInstanceUID=[study.study_uid, studies[1].study_uid]))
        image_no_series, _ = find(pacs, query(QueryRetrieveLevel="IMAGE", SOPInstanceUID="",
                                              StudyInstanceUID=study.study_uid))
        hierarchical, series = find(pacs, query(QueryRetrieveLevel="SERIES", SeriesInstanceUID="",
                                                StudyInstanceUID=study.study_uid))
        images, _ = find(pacs, query(QueryRetrieveLevel="IMAGE", SOPInstanceUID="",
                                     StudyInstanceUID=study.study_uid,
                                     SeriesInstanceUID=study.series_uids[0]))
        studies_found, _ = find(pacs, study_level())
        patient_root_study, _ = find(pacs, study_level(), PATIENT_FIND)
    assert no_parent == empty_parent == list_parent == image_no_series == [status]
    assert patient_root_study == [status]  # Patient Root STUDY level wants the PatientID
    assert hierarchical == [PENDING, PENDING, 0x0000]
    assert {str(s.SeriesInstanceUID) for s in series if s is not None} == set(study.series_uids)
    assert images == [PENDING, 0x0000]
    assert studies_found == [PENDING] * 4 + [0x0000]


def test_hierarchical_only_refuses_relational_retrieves(tmp_path: Path,
                                                        studies: list[SampleStudy]) -> None:
    study = studies[0]
    received: list[Dataset] = []

    def on_store(event: Any) -> int:
        received.append(event.dataset)
        return 0x0000

    with quirky_pacs(tmp_path, all_files(studies), quirks=Quirks(hierarchical_only=True)) as pacs, \
            scu(pacs.port, storage=True, on_store=on_store) as assoc:
        refused = list(assoc.send_c_get(
            query(QueryRetrieveLevel="SERIES", SeriesInstanceUID=study.series_uids[0]), STUDY_GET))
        allowed = list(assoc.send_c_get(
            query(QueryRetrieveLevel="SERIES", StudyInstanceUID=study.study_uid,
                  SeriesInstanceUID=study.series_uids[0]), STUDY_GET))
    assert int(refused[-1][0].Status) == 0xA900
    assert int(allowed[-1][0].Status) == 0x0000
    assert len(received) == 1


# --- ignored_keys ----------------------------------------------------------------------------


def test_ignored_keys_return_every_candidate_with_its_real_value(
        tmp_path: Path, studies: list[SampleStudy]) -> None:
    quirks = Quirks(ignored_keys=("StudyDescription", "ModalitiesInStudy"))
    with quirky_pacs(tmp_path, all_files(studies), quirks=quirks) as pacs:
        _, by_description = find(pacs, study_level(StudyDescription="Chest"))
        _, by_modality = find(pacs, study_level(ModalitiesInStudy="MR"))
        _, by_patient = find(pacs, study_level(PatientID="QUIRKY-1", StudyDescription=""))
    assert len(by_description) == len(by_modality) == 4
    assert sorted(str(m.StudyDescription) for m in by_description if m is not None) == \
        sorted(s.description for s in studies)
    assert sorted(str(m.ModalitiesInStudy) for m in by_modality if m is not None) == \
        sorted(s.modality for s in studies)
    assert [str(m.StudyDescription) for m in by_patient if m is not None] == ["Head"]
    assert str(pacs.finds[0].StudyDescription) == "Chest"  # recorded as received


# --- patient_root_only -----------------------------------------------------------------------


def test_patient_root_only(tmp_path: Path, studies: list[SampleStudy],
                           store_scp: StoreScp) -> None:
    study = studies[0]
    quirks = Quirks(patient_root_only=True, registered_destinations={
        STORE_AE: ("127.0.0.1", store_scp.port)})
    with quirky_pacs(tmp_path, all_files(studies), quirks=quirks) as pacs:
        with scu(pacs.port) as assoc:
            accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
            without_id = list(assoc.send_c_move(
                query(QueryRetrieveLevel="STUDY", StudyInstanceUID=study.study_uid),
                STORE_AE, PATIENT_MOVE))
            with_id = list(assoc.send_c_move(
                query(QueryRetrieveLevel="STUDY", StudyInstanceUID=study.study_uid,
                      PatientID=study.patient_id), STORE_AE, PATIENT_MOVE))
        find_without_id, _ = find(pacs, study_level(), PATIENT_FIND)
    assert STUDY_FIND not in accepted
    assert STUDY_MOVE not in accepted
    assert PATIENT_FIND in accepted
    assert int(without_id[-1][0].Status) == 0xA900
    assert int(with_id[-1][0].Status) == 0x0000
    assert find_without_id == [0xA900]
    assert len(store_scp.received) == 2


# --- ignore_cancel ---------------------------------------------------------------------------


def _find_and_cancel(pacs: QuirkyPacs) -> list[int]:
    with scu(pacs.port) as assoc:
        statuses = []
        for status, _ in assoc.send_c_find(study_level(), STUDY_FIND, msg_id=9):
            statuses.append(int(status.Status))
            if len(statuses) == 1:
                assoc.send_c_cancel(9, query_model=STUDY_FIND)
    return statuses


@pytest.mark.parametrize("ignore", [False, True])
def test_ignore_cancel_for_c_find(tmp_path: Path, studies: list[SampleStudy],
                                  ignore: bool) -> None:
    # find_match_delay: the C-CANCEL is in before the second match is due.
    quirks = Quirks(ignore_cancel=ignore, find_match_delay=0.3)
    with quirky_pacs(tmp_path, all_files(studies), quirks=quirks) as pacs:
        statuses = _find_and_cancel(pacs)
        assert eventually(lambda: pacs.cancels_received == 1)
    assert statuses == ([PENDING] * 4 + [0x0000] if ignore else [PENDING, 0xFE00])


@pytest.mark.parametrize("ignore", [False, True])
def test_ignore_cancel_for_c_get(tmp_path: Path, studies: list[SampleStudy],
                                 ignore: bool) -> None:
    received: list[str] = []

    def on_store(event: Any) -> int:
        if not received:  # before our C-STORE response: in before the next sub-operation
            event.assoc.send_c_cancel(5, query_model=STUDY_GET)
        received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    with quirky_pacs(tmp_path, all_files(studies), quirks=Quirks(ignore_cancel=ignore)) as pacs:
        with scu(pacs.port, storage=True, on_store=on_store) as assoc:
            responses = list(assoc.send_c_get(
                query(QueryRetrieveLevel="PATIENT", PatientID=""),
                PatientRootQueryRetrieveInformationModelGet, msg_id=5))
        assert eventually(lambda: pacs.cancels_received == 1)
    final = int(responses[-1][0].Status)
    assert (final, len(received)) == ((0x0000, 8) if ignore else (0xFE00, 1))


@pytest.mark.parametrize("ignore", [False, True])
def test_ignore_cancel_for_c_move_during_the_first_store_delay(
        tmp_path: Path, studies: list[SampleStudy], store_scp: StoreScp, ignore: bool) -> None:
    quirks = Quirks(ignore_cancel=ignore, first_store_delay=1.0, pending_every=0.1,
                    registered_destinations={STORE_AE: ("127.0.0.1", store_scp.port)})
    with quirky_pacs(tmp_path, all_files(studies), quirks=quirks) as pacs:
        with scu(pacs.port) as assoc:
            statuses = []
            for status, _ in assoc.send_c_move(query(QueryRetrieveLevel="STUDY",
                                                     StudyInstanceUID=studies[0].study_uid),
                                               STORE_AE, STUDY_MOVE, msg_id=3):
                statuses.append(int(status.Status))
                if len(statuses) == 1:
                    assoc.send_c_cancel(3, query_model=STUDY_MOVE)
        assert eventually(lambda: pacs.cancels_received == 1)
    assert statuses[-1] == (0x0000 if ignore else 0xFE00)
    assert len(store_scp.received) == (2 if ignore else 0)


# --- first_store_delay / pending_every -------------------------------------------------------


@pytest.mark.parametrize("pending_every", [None, 0.1])
def test_first_store_delay_with_and_without_pending(
        tmp_path: Path, studies: list[SampleStudy], pending_every: float | None) -> None:
    events: list[str] = []

    def on_store(event: Any) -> int:
        events.append("store")
        return 0x0000

    quirks = Quirks(first_store_delay=0.5, pending_every=pending_every)
    with quirky_pacs(tmp_path, all_files(studies), quirks=quirks) as pacs, \
            scu(pacs.port, storage=True, on_store=on_store) as assoc:
        for status, _ in assoc.send_c_get(
                query(QueryRetrieveLevel="STUDY", StudyInstanceUID=studies[0].study_uid),
                STUDY_GET):
            if int(status.Status) == PENDING:
                events.append(f"pending {int(status.NumberOfCompletedSuboperations)}"
                              f"/{int(status.NumberOfRemainingSuboperations)}")
            else:
                events.append(f"final {int(status.Status):#06x}")
    before_first_store = events[:events.index("store")]
    if pending_every is None:
        assert before_first_store == []
    else:
        assert len(before_first_store) >= 2
        assert set(before_first_store) == {"pending 0/2"}
    assert events.count("store") == 2
    assert events[-1] == "final 0x0000"


def test_first_store_delay_for_c_move_opens_no_sub_association_before_the_stores(
        tmp_path: Path, studies: list[SampleStudy], store_scp: StoreScp) -> None:
    quirks = Quirks(first_store_delay=0.4, pending_every=0.1,
                    registered_destinations={STORE_AE: ("127.0.0.1", store_scp.port)})
    seen_by_first_pending: list[int] = []
    with quirky_pacs(tmp_path, all_files(studies), quirks=quirks) as pacs, \
            scu(pacs.port) as assoc:
        responses: list[Dataset] = []
        for status, _ in assoc.send_c_move(query(QueryRetrieveLevel="STUDY",
                                                 StudyInstanceUID=studies[0].study_uid),
                                           STORE_AE, STUDY_MOVE):
            if not responses:
                seen_by_first_pending.append(len(store_scp.received))
            responses.append(status)
    assert int(responses[0].Status) == PENDING
    assert int(responses[0].NumberOfRemainingSuboperations) == 2
    assert int(responses[0].NumberOfCompletedSuboperations) == 0
    assert seen_by_first_pending == [0]
    assert int(responses[-1].Status) == 0x0000
    assert len(store_scp.received) == 2


# --- registered_destinations -----------------------------------------------------------------


def test_registered_destinations(tmp_path: Path, studies: list[SampleStudy],
                                 store_scp: StoreScp) -> None:
    quirks = Quirks(registered_destinations={"REGISTERED": ("127.0.0.1", store_scp.port)})
    identifier = query(QueryRetrieveLevel="STUDY", StudyInstanceUID=studies[0].study_uid)
    # The PACS is told another destination list: the quirk's registration wins.
    with quirky_pacs(tmp_path, all_files(studies), quirks=quirks,
                     move_destinations={STORE_AE: ("127.0.0.1", store_scp.port)}) as pacs, \
            scu(pacs.port) as assoc:
        unknown = list(assoc.send_c_move(identifier, STORE_AE, STUDY_MOVE))
        registered = list(assoc.send_c_move(identifier, "REGISTERED", STUDY_MOVE))
    assert int(unknown[-1][0].Status) == 0xA801
    assert int(registered[-1][0].Status) == 0x0000
    assert len(store_scp.received) == 2


# --- max_associations_per_ae -----------------------------------------------------------------


def test_max_associations_per_ae_rejects_with_local_limit_exceeded(
        tmp_path: Path, studies: list[SampleStudy]) -> None:
    quirks = Quirks(max_associations_per_ae=2)
    with quirky_pacs(tmp_path, all_files(studies), quirks=quirks) as pacs:
        with scu(pacs.port) as first, scu(pacs.port) as second:
            assert first.is_established
            assert second.is_established
            with scu(pacs.port) as third:
                assert third.is_rejected
                rejection = third.acceptor.primitive
                assert rejection is not None
                assert (rejection.result, rejection.result_source, rejection.diagnostic) == \
                    (0x02, 0x03, 0x02)
            with scu(pacs.port, ae_title="OTHERSCU") as other:
                assert other.is_established
        assert pacs.associations_rejected == 1
        # Released associations no longer count.
        assert eventually(lambda: pacs.open_associations(SCU_AE) == 0)
        with scu(pacs.port) as again:
            assert again.is_established


# --- reject_echo_with_queries ----------------------------------------------------------------


def test_reject_echo_with_queries(tmp_path: Path, studies: list[SampleStudy]) -> None:
    quirks = Quirks(reject_echo_with_queries=True)
    with quirky_pacs(tmp_path, all_files(studies), quirks=quirks) as pacs:
        with scu(pacs.port) as mixed:
            accepted = {str(cx.abstract_syntax) for cx in mixed.accepted_contexts}
            rejected = {str(cx.abstract_syntax) for cx in mixed.rejected_contexts}
            with pytest.raises(ValueError, match="No presentation context"):
                mixed.send_c_echo()  # pynetdicom refuses: no Verification context accepted
        with scu(pacs.port, models=[Verification]) as echo_only:
            echo_status = int(echo_only.send_c_echo().Status)
    assert Verification not in accepted
    assert Verification in rejected
    assert STUDY_FIND in accepted
    assert echo_status == 0x0000
    assert pacs.echo_contexts_rejected == 1


# --- retrieve_levels -------------------------------------------------------------------------


def test_retrieve_levels_refuse_image_level(tmp_path: Path, studies: list[SampleStudy],
                                            store_scp: StoreScp) -> None:
    study = studies[0]
    quirks = Quirks(retrieve_levels=frozenset({"STUDY", "SERIES"}),
                    registered_destinations={STORE_AE: ("127.0.0.1", store_scp.port)})
    received: list[Dataset] = []

    def on_store(event: Any) -> int:
        received.append(event.dataset)
        return 0x0000

    image = query(QueryRetrieveLevel="IMAGE", StudyInstanceUID=study.study_uid,
                  SeriesInstanceUID=study.series_uids[0], SOPInstanceUID="")
    with quirky_pacs(tmp_path, all_files(studies), quirks=quirks) as pacs, \
            scu(pacs.port, storage=True, on_store=on_store) as assoc:
        get_image = list(assoc.send_c_get(image, STUDY_GET))
        move_image = list(assoc.send_c_move(image, STORE_AE, STUDY_MOVE))
        get_study = list(assoc.send_c_get(
            query(QueryRetrieveLevel="STUDY", StudyInstanceUID=study.study_uid), STUDY_GET))
    assert int(get_image[-1][0].Status) == 0xA900
    assert int(move_image[-1][0].Status) == 0xA900
    assert int(get_study[-1][0].Status) == 0x0000
    assert len(received) == 2
    assert store_scp.received == []
    assert [kind for kind, _ in pacs.retrieves] == ["C-GET", "C-MOVE", "C-GET"]


# --- counters --------------------------------------------------------------------------------


def test_counters_are_safe_to_read_while_serving(tmp_path: Path,
                                                 studies: list[SampleStudy]) -> None:
    with quirky_pacs(tmp_path, all_files(studies)) as pacs:
        threads = [threading.Thread(target=find, args=(pacs, study_level())) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(pacs.finds) == 4
