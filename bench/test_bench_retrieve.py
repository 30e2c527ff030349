"""Study retrieve: the gateway (cold and warm) vs DCMTK getscu, movescu -> storescp, Orthanc.

Run with ``.venv/bin/python -m pytest bench/test_bench_retrieve.py -s -p no:cacheprovider``;
results in ``bench/results/retrieve.json``, a py-spy profile of the cold C-MOVE
path in ``bench/results/profiles/``. Timings are reported, never asserted:
these machines are noisy.

References, for the 100-instance CT study:

* ``getscu``: one C-GET association, instances written to a folder; the
  fastest DIMSE retrieve there is (C++, no second association).
* ``movescu -> storescp``: the same with C-MOVE, as the gateway does it
  against dcmqrscp: the PACS opens a second association to a storescp that
  is already listening. The PACS must know storescp's AE title: a second
  dcmqrscp serves the session dcmqrscp's storage with storescp in its host
  table, and Orthanc learns it through its REST API.

"First" is when the first instance is usable: the first multipart part for
HTTP, the first file in the output folder for the DCMTK tools.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from extra_pacs import add_orthanc_destination, dcmqrscp, storescp
from profiling import profiled
from record import comparison, save
from timing import Transfer, TransferStats, stream_get, tool_transfer, transfer_stats

from conftest import GatewayProcess
from corpus import Corpus
from pacs_fixtures import RunningPacs

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
STORESCP_AE_TITLE = "BENCH_STORESCP"
STUDY_INSTANCES = 100


@dataclass(frozen=True)
class References:
    getscu_folder: Path
    storescp_folder: Path
    # A second dcmqrscp on the session dcmqrscp's storage that knows storescp.
    dcmqrscp_for_movescu: RunningPacs


@pytest.fixture(scope="module")
def references(dcmqrscp_pacs: RunningPacs, orthanc_pacs: RunningPacs,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[References]:
    folder = tmp_path_factory.mktemp("bench-retrieve-references")
    (folder / "getscu").mkdir()
    with (storescp(folder / "storescp", STORESCP_AE_TITLE) as port,
          dcmqrscp(folder / "dcmqrscp", destinations={STORESCP_AE_TITLE: port},
                   storage_dir=dcmqrscp_pacs.storage_dir) as second):
        add_orthanc_destination(orthanc_pacs, STORESCP_AE_TITLE, port)
        yield References(folder / "getscu", folder / "storescp", second)


def _study_keys(study_uid: str) -> list[str]:
    return ["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}"]


def _getscu(pacs: RunningPacs, study_uid: str, folder: Path) -> Callable[[], Transfer]:
    command = ["getscu", "-aet", "BENCH_GETSCU", "-aec", pacs.ae_title, *_study_keys(study_uid),
               "-od", str(folder), pacs.host, str(pacs.port)]
    return lambda: tool_transfer(command, folder, STUDY_INSTANCES)


def _movescu(pacs: RunningPacs, study_uid: str, folder: Path) -> Callable[[], Transfer]:
    command = ["movescu", "-aet", "BENCH_MOVESCU", "-aec", pacs.ae_title,
               "-aem", STORESCP_AE_TITLE, *_study_keys(study_uid), pacs.host, str(pacs.port)]
    return lambda: tool_transfer(command, folder, STUDY_INSTANCES)


@pytest.mark.pacs
def test_study_retrieve(gateway: GatewayProcess, corpus: Corpus, dcmqrscp_pacs: RunningPacs,
                        orthanc_pacs: RunningPacs, references: References) -> None:
    uid = corpus.study("big_ct").study_uid

    def cold(node: str) -> Callable[[], Transfer]:
        return lambda: stream_get(f"{gateway.dicomweb(node)}/studies/{uid}",
                                  purge=f"{gateway.url}/pacs/{node}/cache/studies/{uid}")

    getscu_dir, storescp_dir = references.getscu_folder, references.storescp_folder
    runs: dict[str, dict[str, TransferStats]] = {
        "dcmqrscp": {
            "gateway, C-MOVE": transfer_stats(cold("dcmqrscp"), RUNS),
            "movescu -> storescp": transfer_stats(
                _movescu(references.dcmqrscp_for_movescu, uid, storescp_dir), RUNS),
            "getscu": transfer_stats(_getscu(dcmqrscp_pacs, uid, getscu_dir), RUNS),
        },
        "Orthanc": {
            "gateway, C-GET": transfer_stats(cold("orthanc"), RUNS),
            "gateway, C-MOVE": transfer_stats(cold("orthanc-move"), RUNS),
            "movescu -> storescp": transfer_stats(
                _movescu(orthanc_pacs, uid, storescp_dir), RUNS),
            "getscu": transfer_stats(_getscu(orthanc_pacs, uid, getscu_dir), RUNS),
        },
        "warm": {
            "gateway, from its cache": transfer_stats(
                lambda: stream_get(f"{gateway.dicomweb('orthanc')}/studies/{uid}"), RUNS),
            "Orthanc's own DICOMweb": transfer_stats(
                lambda: stream_get(f"{orthanc_pacs.dicomweb_url}/studies/{uid}"), RUNS),
        },
    }
    # Extra, untimed looks at where the cold C-MOVE and the warm path spend their time.
    with profiled(gateway.pid, "retrieve-cold-dcmqrscp"):
        for _ in range(3):
            cold("dcmqrscp")()
    with profiled(gateway.pid, "retrieve-warm"):
        for _ in range(10):
            stream_get(f"{gateway.dicomweb('orthanc')}/studies/{uid}")

    size_mb = runs["dcmqrscp"]["getscu"]["bytes"] / 1e6
    comparisons = []
    for group, reference in (("dcmqrscp", "getscu"), ("Orthanc", "getscu"),
                             ("warm", "Orthanc's own DICOMweb")):
        rows = runs[group]
        where = f"cold, from {group}" if group != "warm" else "warm (gateway cache vs Orthanc)"
        key = f"retrieve.{group.lower()}"
        comparisons += [
            comparison(f"{key}.throughput", f"{where}: throughput", "MB/s",
                       {label: row["mb_per_s"] for label, row in rows.items()},
                       better="higher", reference=reference),
            comparison(f"{key}.first", f"{where}: time to the first instance", "s",
                       {label: row["first_s"] for label, row in rows.items()},
                       reference=reference),
        ]
    save("retrieve", f"Study retrieve: {STUDY_INSTANCES}-instance 512x512 CT, {size_mb:.1f} MB, "
         "transfer-syntax=*", comparisons,
         notes=[f"Median (min-max) of {RUNS} runs after one warm-up.",
                "Cold runs purge the gateway's cache first, so the study comes from the PACS "
                "over DIMSE and is written to the cache on the way.",
                "The DCMTK tools are timed from process start to exit, the first instance as "
                "the first file in their output folder."],
         raw=runs)
