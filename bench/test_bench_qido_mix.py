"""QIDO-RS over 1,000 studies: the gateway vs Orthanc's own QIDO vs a raw C-FIND.

Run with ``.venv/bin/python -m pytest bench/test_bench_qido_mix.py -s -p no:cacheprovider``;
results in ``bench/results/qido_mix.json``, a py-spy profile of the gateway
answering the mix in ``bench/results/profiles/qido-mix.txt``.

1,000 one-instance studies (a downsized CT_small as Secondary Capture, with
fresh UIDs, 400 patients, study dates over ten years, eight modalities) go
into a fresh Orthanc, and the first 500 into a fresh dcmqrscp: 500 studies is
dcmqrscp's compiled-in maximum per storage area (beyond it, it deletes the
oldest). Both are loaded by DCMTK storescu, every file in one association,
and both are stopped and deleted afterwards; the session PACS are untouched.
A gateway process of its own sits in front of them.

The raw C-FIND is pynetdicom on one association held open for all runs, like
the gateway's pooled association: the PACS's own query time plus the DIMSE
round trip, with no HTTP and no JSON. Timings are reported, never asserted.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial
from pathlib import Path

import httpx
import pydicom
import pytest
from extra_pacs import DCMQRSCP_MAX_STUDIES, dcmqrscp, orthanc, storescu
from profiling import profiled
from pydicom.dataset import Dataset
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated
    StudyRootQueryRetrieveInformationModelFind,
)
from record import Comparison, comparison, save
from timing import browser_url, latency_ms, repeat_ms

from conftest import GatewayProcess, run_gateway
from corpus import _testdata
from dicomweb_gw.pacs.sockets import NODELAY_HANDLER
from pacs_fixtures import RunningPacs, free_port

STUDIES = int(os.environ.get("BENCH_QIDO_STUDIES", "1000"))
RUNS = int(os.environ.get("BENCH_QIDO_RUNS", "10"))
JSON = {"Accept": "application/dicom+json"}
# What OHIF's study list asks for.
OHIF_INCLUDEFIELD = "00081030,00080060,00080090,00100030"

PATIENTS = 400
SURNAMES = ["Abbott", "Barker", "Carver", "Dalton", "Ellery", "Fawkes", "Gideon", "Harlow",
            "Ingram", "Jarvis", "Kendal", "Lowell", "Mercer", "Norbury", "Oakley", "Prewitt",
            "Quill", "Radley", "Sutton", "Tiller", "Umber", "Vance", "Winslow", "Yardley",
            "Zeller", "Ashby", "Bramley", "Colby", "Denton", "Eastwood", "Fenwick", "Garland",
            "Hadley", "Irwin", "Jessop", "Kirby", "Langley", "Morley", "Nash", "Osgood"]
GIVEN = ["Ann", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun"]
MODALITIES = ["CT", "MR", "CR", "US", "DX", "MG", "PT", "NM"]
FIRST_DAY, DAYS = date(2015, 1, 1), 3653


@dataclass(frozen=True)
class Query:
    key: str
    title: str
    params: dict[str, str]
    # The same match as C-FIND identifier keys; limit: cancel the C-FIND after this many.
    find_keys: dict[str, str]
    limit: int | None = None


def _study(index: int) -> tuple[str, str, str, str]:
    """(PatientName, PatientID, StudyDate, Modality) of study ``index``: spread, not random."""
    patient = index % PATIENTS
    # 7919 is prime to DAYS, so the dates are a permutation: every window gets its share.
    day = FIRST_DAY + timedelta(days=index * 7919 % DAYS)
    return (f"{SURNAMES[patient % len(SURNAMES)]}^{GIVEN[patient // len(SURNAMES)]}",
            f"QM-{patient:04d}", day.strftime("%Y%m%d"), MODALITIES[index % len(MODALITIES)])


QUERIES = [
    Query("patient_id", "PatientID, one patient", {"PatientID": "QM-0042"},
          {"PatientID": "QM-0042"}),
    Query("patient_name", "PatientName wildcard (Mercer*)", {"PatientName": "Mercer*"},
          {"PatientName": "Mercer*"}),
    Query("study_date", "StudyDate range, one quarter", {"StudyDate": "20200101-20200331"},
          {"StudyDate": "20200101-20200331"}),
    Query("modality", "ModalitiesInStudy=MR", {"ModalitiesInStudy": "MR"},
          {"ModalitiesInStudy": "MR"}),
    Query("list", "every study, limit=100", {"limit": "100"}, {}, limit=100),
]


def _write_studies(folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    ds = pydicom.dcmread(_testdata("CT_small.dcm"))
    # Tiny pixels (16x16) keep the load fast; QIDO never looks at them.
    ds.PixelData = ds.pixel_array[::8, ::8].copy().tobytes()
    ds.Rows, ds.Columns = 16, 16
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    paths = []
    for index in range(STUDIES):
        name, patient_id, study_date, modality = _study(index)
        ds.PatientName, ds.PatientID, ds.StudyDate, ds.Modality = (name, patient_id,
                                                                   study_date, modality)
        ds.SeriesDate = ds.ContentDate = study_date
        ds.AccessionNumber, ds.StudyID = f"QMA{index:05d}", str(index)
        ds.StudyDescription = f"{modality} study {index}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        path = folder / f"{index:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@dataclass(frozen=True)
class MixPacs:
    gateway: GatewayProcess
    dcmqrscp: RunningPacs
    orthanc: RunningPacs
    load_seconds: dict[str, float]


@pytest.fixture(scope="module")
def mix_pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MixPacs]:
    folder = tmp_path_factory.mktemp("bench-qido-mix")
    store_port = free_port()  # the gateway's; nothing is moved here
    try:
        with (dcmqrscp(folder / "dcmqrscp", destinations={}) as small,
              orthanc(folder / "orthanc", gateway_port=store_port) as big):
            started = time.perf_counter()
            paths = _write_studies(folder / "studies")
            load = {"generate": time.perf_counter() - started,
                    "storescu to dcmqrscp": storescu(small, paths[:DCMQRSCP_MAX_STUDIES]),
                    "storescu to Orthanc": storescu(big, paths)}
            assert big.http_url is not None
            count = httpx.get(f"{big.http_url}/statistics").json()["CountStudies"]
            assert count == STUDIES, f"Orthanc holds {count} studies"
            with run_gateway(folder / "gateway", {"dcmqrscp": (small, "c-move"),
                                                  "orthanc": (big, "c-get")},
                             store_port) as gateway:
                yield MixPacs(gateway, small, big, load)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _get(url: str, params: Mapping[str, str]) -> httpx.Response:
    """One untimed GET that must work, e.g. to count what a path finds."""
    for _ in range(3):  # see the ModalitiesInStudy note in test_qido_mix
        response = httpx.get(browser_url(url, params), headers=JSON, timeout=120)
        if response.status_code != 504:
            break
    return response.raise_for_status()


class RawFind:
    """Study-level C-FINDs on one held association; counts the matches."""

    # The attributes QIDO-RS returns for a study (PS3.18 table 10.6.3-3), as return keys.
    RETURN_KEYS = ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber",
                   "ModalitiesInStudy", "ReferringPhysicianName", "PatientName", "PatientID",
                   "PatientBirthDate", "PatientSex", "StudyID", "StudyDescription",
                   "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")

    def __init__(self, pacs: RunningPacs) -> None:
        self._pacs = pacs
        self._ae = AE(ae_title="BENCH_CFIND")
        self._ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        self._assoc: Association | None = None
        self._message_id = 0

    def _association(self) -> Association:
        # The PACS may close it while it idles during the HTTP timings (Orthanc
        # after 60 s): open a new one then, as the gateway's pool does. The
        # warm-up call of every timing absorbs that.
        if self._assoc is None or not self._assoc.is_established:
            # TCP_NODELAY as the gateway sets it: with Nagle every C-FIND waits
            # ~40 ms for a delayed ACK, and this "floor" would be slower than the gateway.
            self._assoc = self._ae.associate(self._pacs.host, self._pacs.port,
                                             ae_title=self._pacs.ae_title,
                                             evt_handlers=[NODELAY_HANDLER])
            assert self._assoc.is_established, f"no association with {self._pacs.name}"
        return self._assoc

    def count(self, keys: Mapping[str, str], limit: int | None) -> int:
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        for keyword in self.RETURN_KEYS:
            setattr(identifier, keyword, "")
        for keyword, value in keys.items():
            setattr(identifier, keyword, value)
        self._message_id += 1
        found = 0
        model = StudyRootQueryRetrieveInformationModelFind
        assoc = self._association()
        for status, _ in assoc.send_c_find(identifier, model, msg_id=self._message_id):
            if status and status.Status in (0xFF00, 0xFF01):
                found += 1
                if found == limit:  # what the gateway does for a page: cancel the rest
                    assoc.send_c_cancel(self._message_id, query_model=model)
        return min(found, limit) if limit else found

    def release(self) -> None:
        if self._assoc is not None and self._assoc.is_established:
            self._assoc.release()


@pytest.mark.pacs
@pytest.mark.timeout(900)
def test_qido_mix(mix_pacs: MixPacs) -> None:
    gateway = mix_pacs.gateway
    finders = {"dcmqrscp": RawFind(mix_pacs.dcmqrscp), "Orthanc": RawFind(mix_pacs.orthanc)}
    urls = {"gateway -> dcmqrscp": f"{gateway.dicomweb('dcmqrscp')}/studies",
            "gateway -> Orthanc": f"{gateway.dicomweb('orthanc')}/studies",
            "Orthanc's own QIDO": f"{mix_pacs.orthanc.dicomweb_url}/studies"}
    comparisons: list[Comparison] = []
    counts: dict[str, dict[str, int]] = {}
    errors: dict[str, list[str]] = {}
    try:
        for query in QUERIES:
            params = {**query.params, "includefield": OHIF_INCLUDEFIELD}
            # Untimed: how many studies each path found (they must agree per PACS).
            found = {label: len(_get(url, params).json()) for label, url in urls.items()}
            found |= {f"C-FIND -> {pacs}": finder.count(query.find_keys, query.limit)
                      for pacs, finder in finders.items()}
            counts[query.key] = found
            failed: list[str] = []
            rows = {
                # Errors tolerated here only: the gateway derives ModalitiesInStudy,
                # which dcmqrscp ignores, with one series C-FIND per study, and one
                # of those sometimes gets no answer (504 after 30 s).
                "gateway -> dcmqrscp": latency_ms(urls["gateway -> dcmqrscp"], JSON, RUNS,
                                                  params=params, errors=failed),
                "C-FIND -> dcmqrscp": repeat_ms(
                    partial(finders["dcmqrscp"].count, query.find_keys, query.limit), RUNS),
                "gateway -> Orthanc": latency_ms(urls["gateway -> Orthanc"], JSON, RUNS,
                                                 params=params),
                "C-FIND -> Orthanc": repeat_ms(
                    partial(finders["Orthanc"].count, query.find_keys, query.limit), RUNS),
                "Orthanc's own QIDO": latency_ms(urls["Orthanc's own QIDO"], JSON, RUNS,
                                                 params=params),
            }
            matches = f"{found['gateway -> Orthanc']} of {STUDIES} in Orthanc, " \
                      f"{found['gateway -> dcmqrscp']} of {DCMQRSCP_MAX_STUDIES} in dcmqrscp"
            if found["C-FIND -> dcmqrscp"] != found["gateway -> dcmqrscp"]:
                matches += (f"; dcmqrscp ignores the key (its C-FIND returns "
                            f"{found['C-FIND -> dcmqrscp']}), the gateway derives it")
            if failed:
                errors[query.key] = failed
                matches += f"; gateway -> dcmqrscp failed {len(failed)} of {RUNS + 1} times"
            comparisons.append(comparison(f"qido_mix.{query.key}",
                                          f"{query.title}: {matches}", "ms", rows,
                                          reference="Orthanc's own QIDO"))
        # An extra, untimed look at where the gateway spends its time on the mix.
        # One profile per PACS: dcmqrscp's derived ModalitiesInStudy would swamp the rest.
        for node in ("orthanc", "dcmqrscp"):
            with profiled(gateway.pid, f"qido-mix-{node}"), httpx.Client(timeout=120) as client:
                for _ in range(5):
                    for query in QUERIES:
                        client.get(browser_url(f"{gateway.dicomweb(node)}/studies", {
                            **query.params, "includefield": OHIF_INCLUDEFIELD}), headers=JSON)
    finally:
        for finder in finders.values():
            finder.release()
    save("qido_mix", f"QIDO-RS /studies over {STUDIES:,} studies (OHIF's includefield)",
         comparisons,
         notes=[f"Median (min-max) ms of {RUNS} runs after one warm-up, one connection or "
                "association each.",
                f"dcmqrscp holds the first {DCMQRSCP_MAX_STUDIES} studies (its maximum per "
                f"storage area), Orthanc all {STUDIES:,}.",
                "Loading: " + ", ".join(f"{k} {v:.1f} s"
                                        for k, v in mix_pacs.load_seconds.items())],
         raw={"counts": counts, "errors": errors, "load_seconds": mix_pacs.load_seconds})
    for query_key, found in counts.items():
        # Same matches through the gateway as directly: otherwise the timings compare nothing.
        assert found["gateway -> Orthanc"] == found["Orthanc's own QIDO"], (query_key, found)
