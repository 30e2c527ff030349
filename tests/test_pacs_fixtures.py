"""The real-PACS fixtures work: both PACS answer, hold the corpus, and know the gateway."""

from __future__ import annotations

from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

from corpus import Corpus, StudyInfo
from pacs_fixtures import (
    FIXTURE_AE_TITLE,
    UNKNOWN_AE_TITLE,
    RunningPacs,
    c_echo,
)

PENDING = (0xFF00, 0xFF01)


# Tests taking this fixture carry an explicit @pytest.mark.pacs: getfixturevalue()
# hides the PACS fixtures from the marking hook in pacs_fixtures.
@pytest.fixture(params=["dcmqrscp_pacs", "orthanc_pacs"])
def pacs(request: pytest.FixtureRequest) -> RunningPacs:
    pacs: RunningPacs = request.getfixturevalue(request.param)
    return pacs


def expected_studies(pacs: RunningPacs, corpus: Corpus) -> list[StudyInfo]:
    """dcmqrscp only holds the uncompressed studies; Orthanc holds all of them."""
    return corpus.uncompressed_studies if pacs.name == "dcmqrscp" else corpus.studies


def c_find(pacs: RunningPacs, query: Dataset) -> list[Dataset]:
    ae = AE(ae_title=FIXTURE_AE_TITLE)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate(pacs.host, pacs.port, ae_title=pacs.ae_title)
    assert assoc.is_established, f"no association with {pacs.name}:\n{pacs.log_tail()}"
    matches: list[Dataset] = []
    try:
        for status, identifier in assoc.send_c_find(
            query, StudyRootQueryRetrieveInformationModelFind
        ):
            assert "Status" in status, f"{pacs.name}: C-FIND got no response"
            if status.Status in PENDING:
                assert identifier is not None
                matches.append(identifier)
            else:
                assert status.Status == 0x0000, f"{pacs.name}: C-FIND 0x{status.Status:04X}"
    finally:
        assoc.release()
    return matches


def study_query(**keys: str) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    for keyword in ("StudyInstanceUID", "PatientID", "StudyDate", "AccessionNumber"):
        setattr(query, keyword, keys.get(keyword, ""))
    return query


@pytest.mark.pacs
def test_c_echo(pacs: RunningPacs) -> None:
    assert c_echo(pacs.host, pacs.port, pacs.ae_title) == 0x0000


@pytest.mark.pacs
def test_study_level_find_returns_the_corpus(pacs: RunningPacs, corpus: Corpus) -> None:
    found = {str(ds.StudyInstanceUID): ds for ds in c_find(pacs, study_query())}
    expected = expected_studies(pacs, corpus)
    # <=: STOW tests add studies of their own to the same session PACS.
    assert {study.study_uid for study in expected} <= set(found)
    for study in expected:
        answer = found[study.study_uid]
        assert answer.PatientID == study.patient_id
        assert answer.StudyDate == study.study_date
        assert answer.AccessionNumber == study.accession


@pytest.mark.pacs
def test_study_level_find_matches_on_patient_id(pacs: RunningPacs, corpus: Corpus) -> None:
    study = corpus.study("ct_small")
    found = c_find(pacs, study_query(PatientID=study.patient_id))
    assert [str(ds.StudyInstanceUID) for ds in found] == [study.study_uid]


@pytest.mark.pacs
def test_image_level_find_counts_every_instance(pacs: RunningPacs, corpus: Corpus) -> None:
    # dcmqrscp refuses IMAGE level without SeriesInstanceUID, so go series by series.
    for study in expected_studies(pacs, corpus):
        for series in study.series:
            query = Dataset()
            query.QueryRetrieveLevel = "IMAGE"
            query.StudyInstanceUID = study.study_uid
            query.SeriesInstanceUID = series.series_uid
            query.SOPInstanceUID = ""
            found = {str(ds.SOPInstanceUID) for ds in c_find(pacs, query)}
            assert found == {inst.sop_instance_uid for inst in series.instances}, study.label


def test_orthanc_rest_holds_the_whole_corpus(orthanc_pacs: RunningPacs, corpus: Corpus) -> None:
    assert orthanc_pacs.http_url is not None
    with httpx.Client(base_url=orthanc_pacs.http_url, timeout=10.0) as client:
        instances = client.get("/instances").json()
        assert len(instances) >= len(corpus.instances)  # STOW tests add their own
        # The DICOMweb plugin is loaded: Orthanc can serve as a reference server.
        studies = client.get(
            "/dicom-web/studies", headers={"Accept": "application/dicom+json"}
        ).json()
    assert {s.study_uid for s in corpus.studies} <= {s["0020000D"]["Value"][0] for s in studies}


def test_dcmqrscp_keeps_implicit_vr(dcmqrscp_pacs: RunningPacs, corpus: Corpus) -> None:
    """storescu must not convert the Implicit VR study on the way in."""
    wanted = {inst.sop_instance_uid for inst in corpus.study("mr_implicit").instances}
    syntaxes = {}
    for path in dcmqrscp_pacs.storage_dir.iterdir():
        if path.name == "index.dat":
            continue
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.SOPInstanceUID in wanted:
            syntaxes[str(ds.SOPInstanceUID)] = ds.file_meta.TransferSyntaxUID
    assert syntaxes == dict.fromkeys(wanted, ImplicitVRLittleEndian)


def test_corpus_files_match_their_records(corpus: Corpus) -> None:
    for inst in corpus.instances:
        ds = pydicom.dcmread(inst.path, stop_before_pixels=True)
        assert ds.SOPInstanceUID == inst.sop_instance_uid
        assert ds.SOPClassUID == inst.sop_class_uid
        assert ds.file_meta.TransferSyntaxUID == inst.transfer_syntax_uid
        assert int(ds.get("NumberOfFrames") or 1) == inst.number_of_frames
    big = corpus.study("big_ct")
    assert len(big.instances) == 100
    assert 50_000_000 < big.total_bytes < 56_000_000
    assert corpus.study("charset").patient_name == "Müller^Hans"
    assert len({s.study_date for s in corpus.studies}) == len(corpus.studies)
    assert len({s.patient_id for s in corpus.studies}) == len(corpus.studies)


def c_move(pacs: RunningPacs, study_uid: str, destination: str) -> list[int]:
    ae = AE(ae_title=FIXTURE_AE_TITLE)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate(pacs.host, pacs.port, ae_title=pacs.ae_title)
    assert assoc.is_established, f"no association with {pacs.name}:\n{pacs.log_tail()}"
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    try:
        return [
            int(status.Status)
            for status, _ in assoc.send_c_move(
                query, destination, StudyRootQueryRetrieveInformationModelMove
            )
            if "Status" in status
        ]
    finally:
        assoc.release()


@pytest.mark.pacs
def test_pacs_refuses_an_unknown_move_destination(pacs: RunningPacs, corpus: Corpus) -> None:
    statuses = c_move(pacs, corpus.study("ct_small").study_uid, UNKNOWN_AE_TITLE)
    # dcmqrscp: 0xA801 (Move Destination unknown); Orthanc 1.10: 0xC000.
    assert statuses[-1] in (0xA801, 0xC000), statuses


@pytest.mark.pacs
def test_storage_dirs_are_per_session(pacs: RunningPacs, tmp_path: Path) -> None:
    # Both PACS store under pytest's tmp tree, never in the repo or system dirs.
    assert pacs.storage_dir.is_relative_to(tmp_path.parent)
    assert pacs.log_path.is_file()
