"""QIDO-RS latency on the test corpus: the gateway vs Orthanc's own QIDO and DCMTK findscu.

Run with ``.venv/bin/python -m pytest bench/test_bench_qido.py -s -p no:cacheprovider``;
results in ``bench/results/qido.json``. Timings are reported, never asserted.
``test_bench_qido_mix.py`` does the same over 1,000 studies.
"""

from __future__ import annotations

import os
import subprocess

import httpx
import pytest
from record import comparison, save
from timing import browser_url, latency_ms, repeat_ms

from conftest import GatewayProcess
from corpus import Corpus
from pacs_fixtures import RunningPacs

RUNS = int(os.environ.get("BENCH_RUNS", "20"))
JSON = {"Accept": "application/dicom+json"}
OHIF_INCLUDEFIELD = "00081030,00080060,00080090,00100030"


def _findscu_ms(pacs: RunningPacs, patient_name: str) -> dict[str, float]:
    """A fresh findscu process per query: association set-up is part of a raw C-FIND."""
    env = dict(os.environ, TCP_NODELAY="1")
    command = ["findscu", "-S", "-aet", "BENCH_FINDSCU", "-aec", pacs.ae_title,
               "-k", "QueryRetrieveLevel=STUDY", "-k", f"PatientName={patient_name}",
               "-k", "StudyInstanceUID", "-k", "StudyDate", pacs.host, str(pacs.port)]
    return repeat_ms(lambda: subprocess.run(command, check=True, env=env, capture_output=True),
                     RUNS)


@pytest.mark.pacs
def test_qido_latency(gateway: GatewayProcess, corpus: Corpus, dcmqrscp_pacs: RunningPacs,
                      orthanc_pacs: RunningPacs) -> None:
    name = corpus.study("ct_small").patient_name.split("^")[0] + "*"
    one = {"PatientName": name, "limit": "101", "includefield": OHIF_INCLUDEFIELD}
    every = {"limit": "101", "includefield": OHIF_INCLUDEFIELD}

    def qido(url: str, query: dict[str, str]) -> dict[str, float]:
        return latency_ms(f"{url}/studies", JSON, RUNS, params=query)

    mine, theirs = gateway.dicomweb("orthanc"), orthanc_pacs.dicomweb_url
    studies = len(corpus.studies)
    # The same matches both ways, or the timings compare nothing.
    for query in (one, every):
        found = [httpx.get(browser_url(f"{root}/studies", query), headers=JSON).json()
                 for root in (mine, theirs)]
        assert len(found[0]) == len(found[1]) > 0, (query, [len(f) for f in found])
    save("qido", "QIDO-RS /studies on the test corpus (OHIF's includefield)", [
        comparison("qido.one_patient", f"one patient (PatientName={name})", "ms", {
            "gateway -> dcmqrscp": qido(gateway.dicomweb("dcmqrscp"), one),
            "findscu -> dcmqrscp": _findscu_ms(dcmqrscp_pacs, name),
            "gateway -> Orthanc": qido(mine, one),
            "findscu -> Orthanc": _findscu_ms(orthanc_pacs, name),
            "Orthanc's own QIDO": qido(theirs, one),
        }, reference="Orthanc's own QIDO"),
        comparison("qido.all_studies", f"every study ({studies} in Orthanc), limit=101", "ms", {
            "gateway -> Orthanc": qido(mine, every),
            "Orthanc's own QIDO": qido(theirs, every),
        }, reference="Orthanc's own QIDO"),
    ], notes=[f"Median (min-max) of {RUNS} runs after one warm-up; the gateway reuses its "
              "association, findscu is a new process and association every time."])
