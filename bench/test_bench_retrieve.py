"""Study retrieve: the gateway (cold and warm) vs DCMTK getscu, movescu -> storescp, Orthanc.

Run with ``.venv/bin/python -m pytest bench/test_bench_retrieve.py -s -p no:cacheprovider``;
results in ``bench/results/retrieve.json``, a py-spy profile of the cold C-MOVE
path in ``bench/results/profiles/``. Timings are reported, never asserted:
these machines are noisy.

References, for the 100-instance CT study:

* ``getscu``: one C-GET association, instances written to a folder; the
  fastest DIMSE retrieve there is (C++, no second association).
* ``plain pynetdicom C-GET``: a stock pynetdicom C-GET in its own process
  (``plain_pynetdicom.py``), every instance kept in memory and nothing else
  done: the floor of a Python DIMSE receive, under the gateway's cold figures.
* ``movescu -> storescp``: the same with C-MOVE, as the gateway does it
  against dcmqrscp: the PACS opens a second association to a storescp that
  is already listening. The PACS must know storescp's AE title: a second
  dcmqrscp serves the session dcmqrscp's storage with storescp in its host
  table, and Orthanc learns it through its REST API.

"First" is when the first instance is usable: the first multipart part for
HTTP, the first file in the output folder for the DCMTK tools.

The "link" variant (``test_study_retrieve_link``) runs the same cold
retrieves over a simulated network link (``tests/link_proxy.py``): 10 ms
each way, unlimited rate, in front of the PACS's DIMSE port for every client
and in front of the storage SCP (the gateway's or storescp's) for the C-MOVE
back-channel. A second gateway process talks to the PACS through it. Warm
retrieves are left out: they never reach the PACS, so never cross the link.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from extra_pacs import add_orthanc_destination, dcmqrscp, storescp
from profiling import profiled
from record import Comparison, comparison, save
from timing import Transfer, TransferStats, stream_get, tool_transfer, transfer_stats

from conftest import GatewayProcess, run_gateway
from corpus import Corpus
from link_proxy import LinkProxy
from pacs_fixtures import LOOPBACK, RunningPacs, free_port

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
STORESCP_AE_TITLE = "BENCH_STORESCP"
PLAIN = "plain pynetdicom C-GET (nothing kept)"
STUDY_INSTANCES = 100
LINK_DELAY_MS = 10
# Move destinations behind the link: AE titles of their own, since Orthanc finds a
# destination by AE title and the loopback ones must stay as they are.
LINK_GATEWAY_AE_TITLE = "DICOMWEB_GW_LINK"
LINK_STORESCP_AE_TITLE = "BENCH_SCP_LINK"


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


def _movescu(pacs: RunningPacs, study_uid: str, folder: Path,
             destination: str = STORESCP_AE_TITLE) -> Callable[[], Transfer]:
    command = ["movescu", "-aet", "BENCH_MOVESCU", "-aec", pacs.ae_title,
               "-aem", destination, *_study_keys(study_uid), pacs.host, str(pacs.port)]
    return lambda: tool_transfer(command, folder, STUDY_INSTANCES)


def _plain_pynetdicom(pacs: RunningPacs, study_uid: str) -> Callable[[], Transfer]:
    """A stock pynetdicom C-GET in its own process, timed inside it (plain_pynetdicom.py)."""
    command = [sys.executable, str(Path(__file__).with_name("plain_pynetdicom.py")),
               pacs.host, str(pacs.port), pacs.ae_title, study_uid]

    def run() -> Transfer:
        done = subprocess.run(command, check=True, capture_output=True, text=True,
                              env=dict(os.environ, TCP_NODELAY="1"))
        timed = json.loads(done.stdout)
        assert timed["instances"] == STUDY_INSTANCES, timed
        return Transfer(timed["first_s"], timed["total_s"], timed["bytes"])

    return run


def _cold(gateway: GatewayProcess, node: str, study_uid: str) -> Callable[[], Transfer]:
    return lambda: stream_get(f"{gateway.dicomweb(node)}/studies/{study_uid}",
                              purge=f"{gateway.url}/pacs/{node}/cache/studies/{study_uid}")


@pytest.mark.pacs
def test_study_retrieve(gateway: GatewayProcess, corpus: Corpus, dcmqrscp_pacs: RunningPacs,
                        orthanc_pacs: RunningPacs, references: References) -> None:
    uid = corpus.study("big_ct").study_uid

    def cold(node: str) -> Callable[[], Transfer]:
        return _cold(gateway, node, uid)

    getscu_dir, storescp_dir = references.getscu_folder, references.storescp_folder
    runs: dict[str, dict[str, TransferStats]] = {
        "dcmqrscp": {
            "gateway, C-MOVE": transfer_stats(cold("dcmqrscp"), RUNS),
            "movescu -> storescp": transfer_stats(
                _movescu(references.dcmqrscp_for_movescu, uid, storescp_dir), RUNS),
            "getscu": transfer_stats(_getscu(dcmqrscp_pacs, uid, getscu_dir), RUNS),
            PLAIN: transfer_stats(_plain_pynetdicom(dcmqrscp_pacs, uid), RUNS),
        },
        "Orthanc": {
            "gateway, C-GET": transfer_stats(cold("orthanc"), RUNS),
            "gateway, C-MOVE": transfer_stats(cold("orthanc-move"), RUNS),
            "movescu -> storescp": transfer_stats(
                _movescu(orthanc_pacs, uid, storescp_dir), RUNS),
            "getscu": transfer_stats(_getscu(orthanc_pacs, uid, getscu_dir), RUNS),
            PLAIN: transfer_stats(_plain_pynetdicom(orthanc_pacs, uid), RUNS),
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
                "the first file in their output folder.",
                f"{PLAIN}: stock pynetdicom in its own process, timed from the association "
                "request to its release (not the interpreter's start), the instances kept in "
                "memory; its bytes are the data sets without the Part 10 header."],
         raw=runs)


@dataclass(frozen=True)
class Link:
    """Everything behind the simulated link, as the clients see it (ports of the proxies)."""

    gateway: GatewayProcess
    dcmqrscp: RunningPacs
    orthanc: RunningPacs
    getscu_folder: Path
    storescp_folder: Path


@pytest.fixture
def link(dcmqrscp_pacs: RunningPacs, orthanc_pacs: RunningPacs,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Link]:
    """The PACS behind the link, move destinations behind it too, and a gateway using it.

    A dcmqrscp of its own on the session dcmqrscp's storage moves to the link's
    gateway and storescp through their back-channel links; Orthanc learns them
    through its REST API. Function scope: the second gateway goes with the test.
    """
    folder = tmp_path_factory.mktemp("bench-retrieve-link")
    (folder / "getscu").mkdir()
    store_port = free_port()

    def link_to(port: int) -> LinkProxy:
        return LinkProxy(LOOPBACK, port, delay_ms=LINK_DELAY_MS)

    with (storescp(folder / "storescp", LINK_STORESCP_AE_TITLE) as storescp_port,
          link_to(storescp_port) as to_storescp, link_to(store_port) as to_gateway,
          dcmqrscp(folder / "dcmqrscp", storage_dir=dcmqrscp_pacs.storage_dir,
                   destinations={LINK_GATEWAY_AE_TITLE: to_gateway.port,
                                 LINK_STORESCP_AE_TITLE: to_storescp.port}) as near_dcmqrscp,
          link_to(near_dcmqrscp.port) as to_dcmqrscp, link_to(orthanc_pacs.port) as to_orthanc):
        add_orthanc_destination(orthanc_pacs, LINK_GATEWAY_AE_TITLE, to_gateway.port)
        add_orthanc_destination(orthanc_pacs, LINK_STORESCP_AE_TITLE, to_storescp.port)
        far_dcmqrscp = replace(near_dcmqrscp, port=to_dcmqrscp.port)
        far_orthanc = replace(orthanc_pacs, port=to_orthanc.port)
        with run_gateway(folder / "gateway", {
            "dcmqrscp": (far_dcmqrscp, "c-move"),
            "dcmqrscp-get": (far_dcmqrscp, "c-get"),
            "orthanc": (far_orthanc, "c-get"),
            "orthanc-move": (far_orthanc, "c-move"),
        }, store_port, ae_title=LINK_GATEWAY_AE_TITLE) as gateway:
            yield Link(gateway, far_dcmqrscp, far_orthanc, folder / "getscu",
                       folder / "storescp")


@pytest.mark.pacs
def test_study_retrieve_link(link: Link, corpus: Corpus) -> None:
    uid = corpus.study("big_ct").study_uid
    runs: dict[str, dict[str, TransferStats]] = {}
    for group, pacs, get_node, move_node in (("dcmqrscp", link.dcmqrscp, "dcmqrscp-get",
                                               "dcmqrscp"),
                                              ("Orthanc", link.orthanc, "orthanc",
                                               "orthanc-move")):
        runs[group] = {
            "gateway, C-GET": transfer_stats(_cold(link.gateway, get_node, uid), RUNS),
            "getscu": transfer_stats(_getscu(pacs, uid, link.getscu_folder), RUNS),
            "gateway, C-MOVE": transfer_stats(_cold(link.gateway, move_node, uid), RUNS),
            "movescu -> storescp": transfer_stats(
                _movescu(pacs, uid, link.storescp_folder, LINK_STORESCP_AE_TITLE), RUNS),
        }

    # One comparison per gateway path and its DCMTK counterpart: the ratio is
    # gateway / getscu for C-GET and gateway / movescu -> storescp for C-MOVE.
    comparisons: list[Comparison] = []
    for group, rows in runs.items():
        for method, reference in (("C-GET", "getscu"), ("C-MOVE", "movescu -> storescp")):
            label = f"gateway, {method}"
            key = f"retrieve_link.{group.lower()}.{method.lower()}"
            where = f"over the link, from {group}, {method}"
            pair = {label: rows[label], reference: rows[reference]}
            comparisons += [
                comparison(f"{key}.time", f"{where}: time for the study", "s",
                           {name: row["total_s"] for name, row in pair.items()},
                           reference=reference),
                comparison(f"{key}.first", f"{where}: time to the first instance", "s",
                           {name: row["first_s"] for name, row in pair.items()},
                           reference=reference),
            ]
    size_mb = runs["dcmqrscp"]["getscu"]["bytes"] / 1e6
    save("retrieve_link", f"Study retrieve over a simulated {LINK_DELAY_MS} ms link: "
         f"{STUDY_INSTANCES}-instance 512x512 CT, {size_mb:.1f} MB, cold", comparisons,
         notes=[f"Median (min-max) of {RUNS} runs after one warm-up.",
                f"A TCP proxy (tests/link_proxy.py) delays every chunk by {LINK_DELAY_MS} ms "
                "in each direction, pipelined, with no rate cap; a new connection costs one "
                "round trip more, as a TCP handshake does. It sits in front of the PACS's "
                "DIMSE port for every client, and in front of the gateway's or storescp's "
                "storage port for the C-MOVE back-channel.",
                "Each gateway path is compared with the DCMTK tool doing the same: C-GET "
                "with getscu, C-MOVE with movescu -> storescp. Cold runs purge the "
                "gateway's cache first.",
                "The proxy runs in a thread of the benchmark's process (the HTTP client's "
                "too); the gateway runs in its own."],
         raw=runs)
