"""Concurrency soak: 64 viewers at once against a warm gateway, then against Orthanc.

Run with ``.venv/bin/python -m pytest bench/test_bench_soak.py -s -p no:cacheprovider``;
results in ``bench/results/soak.json``. ``BENCH_SOAK_SECONDS`` (default 60)
and ``BENCH_SOAK_CLIENTS`` (default 64) shorten or widen it.

Every client opens studies back to back the way OHIF does: the study list
(QIDO /studies with OHIF's includefield), the study's series (QIDO), each
series' metadata, then single frames of up to ``FRAMES_PER_STUDY`` instances.
Half the opens are the 100-instance CT, the rest the corpus's small
uncompressed studies. The gateway is warmed first (every series' metadata
and frames cached), so this measures serving, not retrieving; QIDO always
goes to the PACS (C-FIND), as it does in production. The same sessions run
against Orthanc's own DICOMweb for the ratio. Every client is one coroutine
of one httpx client in this process, which shares the 2 cores with the
gateway and both PACS: the figures are what this machine sustains in total.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import pytest
from profiling import profiled
from record import comparison, save
from timing import Call, CpuUse, SoakSummary, browser_url, per_second, soak

from conftest import GatewayProcess
from corpus import Corpus, StudyInfo
from pacs_fixtures import RunningPacs

SECONDS = float(os.environ.get("BENCH_SOAK_SECONDS", "60"))
CLIENTS = int(os.environ.get("BENCH_SOAK_CLIENTS", "64"))
FRAMES_PER_STUDY = 20
JSON = {"Accept": "application/dicom+json"}
FRAME = {"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"}
STUDY_LIST = {"limit": "25", "includefield": "00081030,00080060,00080090,00100030"}
SMALL_STUDIES = ("ct_small", "mr_implicit", "charset", "cr_monochrome1", "mr_multiframe")


def _viewer_sessions(root: str, studies: list[StudyInfo]
                     ) -> Callable[[random.Random], list[Call]]:
    big, small = studies[0], studies[1:]

    def session(rng: random.Random) -> list[Call]:
        study = big if rng.random() < 0.5 else rng.choice(small)
        name = study.patient_name.split("^")[0]
        calls = [Call("QIDO studies", browser_url(f"{root}/studies",
                                                  {"PatientName": f"{name}*", **STUDY_LIST}),
                      JSON),
                 Call("QIDO series", f"{root}/studies/{study.study_uid}/series", JSON)]
        calls += [Call("series metadata", f"{root}/studies/{study.study_uid}/series/"
                       f"{series.series_uid}/metadata", JSON) for series in study.series]
        picks = [(series, instance) for series in study.series for instance in series.instances]
        for series, instance in rng.sample(picks, min(FRAMES_PER_STUDY, len(picks))):
            calls.append(Call("frame", f"{root}/studies/{study.study_uid}/series/"
                              f"{series.series_uid}/instances/{instance.sop_instance_uid}"
                              "/frames/1", FRAME))
        return calls
    return session


@pytest.mark.pacs
@pytest.mark.timeout(int(2 * SECONDS) + 600)
def test_soak(gateway: GatewayProcess, corpus: Corpus, orthanc_pacs: RunningPacs) -> None:
    studies = [corpus.study("big_ct"), *(corpus.study(label) for label in SMALL_STUDIES)]
    mine, theirs = gateway.dicomweb("orthanc"), orthanc_pacs.dicomweb_url
    # Warm-up, untimed: every series' metadata and every instance into the cache.
    warm = [f"{mine}/studies/{s.study_uid}/series/{series.series_uid}/metadata"
            for s in studies for series in s.series]
    per_second(warm, JSON)
    per_second([f"{mine}/studies/{s.study_uid}/series/{series.series_uid}/instances/"
                f"{i.sop_instance_uid}/frames/1" for s in studies for series in s.series
                for i in series.instances], FRAME)

    summaries: dict[str, SoakSummary] = {}
    cores: dict[str, float] = {}
    for label, root in (("gateway (warm)", mine), ("Orthanc's own DICOMweb", theirs)):
        with CpuUse(os.getpid()) as client, CpuUse(gateway.pid) as server:
            summaries[label] = soak(_viewer_sessions(root, studies), clients=CLIENTS,
                                    seconds=SECONDS).summary()
        cores[f"client, against {label}"] = client.cores
        if label.startswith("gateway"):
            cores["gateway"] = server.cores
    # An extra, untimed look at where a loaded gateway spends its time.
    with profiled(gateway.pid, "soak"):
        soak(_viewer_sessions(mine, studies), clients=CLIENTS, seconds=min(SECONDS, 15))
    gw, ref = summaries["gateway (warm)"], summaries["Orthanc's own DICOMweb"]
    kinds = list(gw["kinds"])
    comparisons = [comparison("soak.throughput", "requests per second, all kinds", "req/s",
                              {label: s["requests_per_s"] for label, s in summaries.items()},
                              better="higher", reference="Orthanc's own DICOMweb")]
    for percentile in ("p50", "p99"):
        for kind in kinds:
            comparisons.append(comparison(
                f"soak.{percentile}.{kind.replace(' ', '_').lower()}",
                f"{kind}, {percentile} latency", "ms",
                {label: s["kinds"][kind]["p50_ms" if percentile == "p50" else "p99_ms"]
                 for label, s in summaries.items()},
                reference="Orthanc's own DICOMweb"))
    comparisons.append(comparison("soak.errors", "errors (non-2xx or transport)", "errors",
                                  {label: s["errors"] for label, s in summaries.items()}))
    save("soak", f"Soak: {CLIENTS} concurrent OHIF-like clients for {SECONDS:.0f} s each",
         comparisons,
         notes=[f"Each client opens a study (QIDO studies, QIDO series, series metadata, "
                f"frames of up to {FRAMES_PER_STUDY} instances) and then the next.",
                f"gateway: {gw['requests']} requests, {gw['errors']} errors; Orthanc: "
                f"{ref['requests']} requests, {ref['errors']} errors"
                + "".join(f" ({sample})" for sample in ref["error_samples"]) + ".",
                "CPU used (cores of the machine's 2): " + ", ".join(
                    f"{who} {value:.2f}" for who, value in cores.items()) + "."],
         raw={"runs": summaries, "cpu_cores": cores})
