"""A retrieve is recorded as complete only when it certainly is (issue #15.2).

dcmqrscp answers a C-MOVE of a study it does not hold with an empty, successful
retrieve. The gateway used to record that as "study complete, no instances"
and answer 404 from its cache for the whole TTL, although the study arrived
at the PACS a moment later (a modality still sending, a route not yet run).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from corpus import Corpus, InstanceInfo
from gateway_fixtures import RunningGateway
from pacs_fixtures import RunningPacs, _require_binary, load_with_storescu

pytestmark = pytest.mark.pacs


def _new_study(corpus: Corpus, folder: Path) -> tuple[str, InstanceInfo]:
    """One instance of a study no PACS holds yet (a copy of a corpus CT, new UIDs)."""
    source = corpus.study("ct_small").series[0].instances[0]
    dataset = pydicom.dcmread(source.path)
    study_uid = generate_uid()
    dataset.StudyInstanceUID = study_uid
    # A patient of its own: the copy must not turn up in other tests' searches.
    dataset.PatientName, dataset.PatientID = "Late^Arrival", f"LATE{study_uid[-8:]}"
    dataset.SeriesInstanceUID = generate_uid()
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = folder / "late.dcm"
    dataset.save_as(path, enforce_file_format=True)
    return study_uid, InstanceInfo(str(dataset.SOPInstanceUID), str(dataset.SOPClassUID), path,
                                   str(dataset.file_meta.TransferSyntaxUID), 1)


@pytest.mark.skipif(shutil.which("storescu") is None, reason="needs DCMTK's storescu")
def test_a_study_that_arrives_after_an_empty_retrieve_is_served_at_once(
    gateway: RunningGateway, dcmqrscp_pacs: RunningPacs, corpus: Corpus, tmp_path: Path
) -> None:
    study_uid, instance = _new_study(corpus, tmp_path)
    url = f"{gateway.dicomweb('dcmqrscp')}/studies/{study_uid}/metadata"
    with httpx.Client(timeout=60) as client:
        before = client.get(url)
        assert before.status_code == 404, before.text
        load_with_storescu(dcmqrscp_pacs, [instance], _require_binary("storescu", "dcmtk"))
        after = client.get(url)
        assert after.status_code == 200, after.text
        (document,) = after.json()
        assert document["00080018"]["Value"] == [instance.sop_instance_uid]
        # Now it is complete: a second look comes from the cache, not the PACS.
        flights = gateway.flights_started("dcmqrscp")
        assert client.get(url).status_code == 200
        assert gateway.flights_started("dcmqrscp") == flights
