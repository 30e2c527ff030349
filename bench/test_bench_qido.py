"""QIDO-RS latency: the gateway vs Orthanc's own QIDO and a raw C-FIND (DCMTK findscu).

Run with ``.venv/bin/python -m pytest bench/test_bench_qido.py -s -p no:cacheprovider``;
results in ``bench/results/qido.json``. Timings are reported, never asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from timing import latency_ms, stats

from conftest import GatewayProcess
from corpus import Corpus
from pacs_fixtures import RunningPacs

RUNS = int(os.environ.get("BENCH_RUNS", "20"))
RESULTS = Path(__file__).resolve().parent / "results"
JSON = {"Accept": "application/dicom+json"}


def _findscu_ms(pacs: RunningPacs, patient_name: str) -> dict[str, float]:
    """A fresh findscu process per query: association set-up is part of a raw C-FIND."""
    env = dict(os.environ, TCP_NODELAY="1")
    command = ["findscu", "-S", "-aet", "BENCH_FINDSCU", "-aec", pacs.ae_title,
               "-k", "QueryRetrieveLevel=STUDY", "-k", f"PatientName={patient_name}",
               "-k", "StudyInstanceUID", "-k", "StudyDate", pacs.host, str(pacs.port)]
    subprocess.run(command, check=True, env=env, capture_output=True)
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(command, check=True, env=env, capture_output=True)
        times.append((time.perf_counter() - started) * 1000)
    return stats(times)


@pytest.mark.pacs
def test_qido_latency(gateway: GatewayProcess, corpus: Corpus, dcmqrscp_pacs: RunningPacs,
                      orthanc_pacs: RunningPacs) -> None:
    name = corpus.study("ct_small").patient_name.split("^")[0] + "*"
    params = {"PatientName": name, "limit": "101",
              "includefield": "00081030,00080060,00080090,00100030"}
    def qido(url: str, query: dict[str, str]) -> dict[str, float]:
        return latency_ms(url, JSON, RUNS, params=query)

    mine, theirs = gateway.dicomweb("orthanc"), orthanc_pacs.dicomweb_url
    results = {
        "gateway -> dcmqrscp": qido(f"{gateway.dicomweb('dcmqrscp')}/studies", params),
        "findscu -> dcmqrscp": _findscu_ms(dcmqrscp_pacs, name),
        "gateway -> Orthanc": qido(f"{mine}/studies", params),
        "findscu -> Orthanc": _findscu_ms(orthanc_pacs, name),
        "Orthanc's own QIDO": qido(f"{theirs}/studies", params),
        "gateway -> Orthanc, all studies": qido(f"{mine}/studies", {"limit": "101"}),
        "Orthanc's own QIDO, all studies": qido(f"{theirs}/studies", {"limit": "101"}),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "qido.json").write_text(json.dumps(results, indent=2))
    print(f"\nQIDO /studies?PatientName={name} (OHIF's includefield), median (min-max) ms of "
          f"{RUNS}")
    for label, row in results.items():
        print(f"  {label:34} {row['median']:7.1f} ({row['min']:.1f}-{row['max']:.1f})")
