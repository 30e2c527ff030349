"""Time to first image in the real OHIF viewer: the gateway vs OHIF on Orthanc's own DICOMweb.

Run with ``bench/run -k test_bench_ohif``; results in ``bench/results/ohif.json``
(times) and ``bench/results/ohif_traffic.json`` (requests and bytes before the
first image). Timings are reported, never asserted.

The real OHIF (``@ohif/app``, prebuilt, as the e2e tests fetch and serve it:
``tests/ohif_fixtures.py``) in headless Chromium opens a study at its viewer URL
(``/viewer?StudyInstanceUIDs=...``). The time is from that navigation to the
first viewport canvas with a non-black pixel, measured in the page
(``bench/ohif_probe.py``): OHIF's start-up, its QIDO, every series' metadata
(OHIF waits for all of them) and the first frame. For

* two studies: the corpus's 100-instance CT (``big_ct``) and a 7-series MR
  generated here (256x256 slices) and loaded into Orthanc;
* cold (the gateway's cache purged right before) and warm (opened again right
  after); Orthanc has the files locally either way, so its "cold" and "warm"
  are its first and second opening;
* three paths (``bench/ohif_paths.py``): the gateway's C-MOVE and C-GET nodes
  on Orthanc, and OHIF on Orthanc's own DICOMweb plugin, the reference;
* on loopback and over the simulated 10 ms link (``tests/link_proxy.py``).

Every opening is a fresh browser context (no HTTP cache) and waits until OHIF
is quiet before the next one starts. Each run starts with another path, so a
slow spell on the shared machine does not always hit the same one.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from ohif_paths import GATEWAY_PATHS, LINK_DELAY_MS, NETWORKS, REFERENCE, viewer_paths
from ohif_probe import POLL_MS, Opening, open_study
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from record import Comparison, comparison, save
from timing import stats

from corpus import Corpus, StudyInfo, _stack, _StudySpec, _StudyWriter
from ohif_fixtures import OHIF_VERSION, ensure_ohif_dist, launched_chromium
from pacs_fixtures import RunningPacs, _load_into_orthanc

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
STATES = ("cold", "warm")
PATHS = (*GATEWAY_PATHS, REFERENCE)
# A brain MR as a scanner sends it: a localizer and six sequences.
MR_LABEL = "mr_7series"
MR_SERIES = (("Localizer", 3), ("T1 SE axial", 24), ("T2 TSE axial", 24),
             ("FLAIR axial", 24), ("DWI b1000", 30), ("ADC map", 30),
             ("T1 SE axial post-contrast", 24))
MR_INSTANCES = sum(count for _, count in MR_SERIES)
MR_SIZE = 256
STUDY_NAMES = {"big_ct": "100-instance CT", MR_LABEL: f"7-series MR ({MR_INSTANCES} instances)"}
WHERE = {"loopback": "loopback", "link": f"over the {LINK_DELAY_MS} ms link"}
# Warm-up (untimed, per path and network): a small study, so the browser has
# compiled OHIF and the gateway has run its DIMSE and metadata code once.
WARMUP_STUDY = "ct_small"
# (study, "cold" | "warm", network, path) -> one Opening per run.
Openings = dict[tuple[str, str, str, str], list[Opening]]
OPENINGS = len(NETWORKS) * (len(PATHS) + RUNS * len(STUDY_NAMES) * len(PATHS) * len(STATES))


def _upscaled(ds: Dataset, index: int) -> None:
    """MR_small's 64x64 slice as a 256x256 one (each slice shifted: its own pixels)."""
    pixels = ds.pixel_array
    scale = MR_SIZE // int(ds.Rows)
    big = np.roll(np.kron(pixels, np.ones((scale, scale), dtype=pixels.dtype)), index * 2, axis=1)
    ds.Rows = ds.Columns = MR_SIZE
    ds.PixelSpacing = [f"{float(v) / scale:.6f}" for v in ds.PixelSpacing]
    ds.PixelData = big.astype("<i2").tobytes()


@pytest.fixture(scope="module")
def mr_study(orthanc_pacs: RunningPacs, tmp_path_factory: pytest.TempPathFactory) -> StudyInfo:
    """The 7-series MR, loaded into Orthanc for this benchmark."""
    writer = _StudyWriter(tmp_path_factory.mktemp("bench-ohif-mr"),
                          _StudySpec(MR_LABEL, "Bench^SevenSeries", "GW-BENCHMR7", "20250202",
                                     "ACC-BMR7", "MR brain, 7 series"))
    for description, count in MR_SERIES:
        writer.add_series("MR", description, _stack("MR_small.dcm", count, _upscaled),
                          ExplicitVRLittleEndian)
    study = writer.finish()
    _load_into_orthanc(orthanc_pacs, study.instances)
    return study


def _slug(*parts: str) -> str:
    return "-".join("".join(ch if ch.isalnum() else "_" for ch in part) for part in parts)


def _times(openings: Openings) -> list[Comparison]:
    return [comparison(f"ohif.{study}.{state}.{network}",
                       f"{name}, {state}, {WHERE[network]}: time to first image", "s",
                       {path: stats([opening.first_image_s
                                     for opening in openings[study, state, network, path]])
                        for path in PATHS}, reference=REFERENCE)
            for study, name in STUDY_NAMES.items() for state in STATES for network in NETWORKS]


def _traffic(openings: Openings) -> list[Comparison]:
    """Requests and bytes before the first image, from the cold openings on loopback."""
    comparisons = []
    for study, name in STUDY_NAMES.items():
        cold = {path: openings[study, "cold", "loopback", path] for path in PATHS}
        comparisons += [
            comparison(f"ohif_traffic.{study}.requests", f"{name}: DICOMweb requests before the "
                       "first image (cold, loopback)", "requests",
                       {path: stats([o.requests for o in runs]) for path, runs in cold.items()},
                       reference=REFERENCE),
            comparison(f"ohif_traffic.{study}.mb", f"{name}: MB of DICOMweb responses before "
                       "the first image (cold, loopback)", "MB",
                       {path: stats([o.mb for o in runs]) for path, runs in cold.items()},
                       reference=REFERENCE),
        ]
    return comparisons


@pytest.mark.pacs
@pytest.mark.timeout(600 + 60 * OPENINGS)
def test_ohif_time_to_first_image(corpus: Corpus, orthanc_pacs: RunningPacs,
                                  mr_study: StudyInfo,
                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    dist = ensure_ohif_dist()
    studies = {"big_ct": corpus.study("big_ct"), MR_LABEL: mr_study}
    warmup = corpus.study(WARMUP_STUDY)
    folder: Path = tmp_path_factory.mktemp("bench-ohif")
    openings: Openings = defaultdict(list)
    with launched_chromium() as browser:
        for network in NETWORKS:
            with viewer_paths(network, orthanc_pacs, dist, folder) as paths:
                for path in paths:
                    open_study(browser, path, warmup.study_uid, cold=True,
                               name=_slug("bench-ohif-warmup", network, path.label))
                for run in range(RUNS):
                    order = paths[run % len(paths):] + paths[:run % len(paths)]
                    for label, study in studies.items():
                        for path in order:
                            for state in STATES:
                                openings[label, state, network, path.label].append(open_study(
                                    browser, path, study.study_uid, cold=state == "cold",
                                    name=_slug("bench-ohif", network, label, state, path.label)))
    title = f"in the real OHIF {OHIF_VERSION}: the gateway (Orthanc nodes) vs Orthanc's DICOMweb"
    method = (f"Median (min-max) of {RUNS} runs after one untimed warm-up per path (a small "
              "study); headless Chromium with software rendering, on the same cores as "
              "everything else.")
    # Two results, so each chart stays a readable size: the times (the targets), the traffic.
    save("ohif", f"Time to first image {title}", _times(openings), notes=[
        method,
        "Time from the navigation to the study's viewer URL to the first viewport canvas "
        f"with a non-black pixel, measured in the page (polled every {POLL_MS} ms): OHIF's "
        "start-up, QIDO, every series' metadata (OHIF waits for all of them) and the first "
        "frame.",
        "Cold: the gateway's cache purged (DELETE /pacs/{node}/cache/studies/{study}) right "
        "before; warm: the same study opened again right after. Orthanc has the files locally "
        "either way: its cold and warm are its first and second opening. Every opening is a "
        "fresh browser context (no HTTP cache).",
        "OHIF is served on loopback by a small server in the benchmark process that forwards "
        "the DICOMweb root to the gateway or to Orthanc (one origin, no CORS), alike for every "
        "path.",
        f"Link: {LINK_DELAY_MS} ms each way (tests/link_proxy.py) between the viewer's side and "
        "the PACS: in front of Orthanc's DIMSE port and of the gateway's storage SCP (the "
        "C-MOVE back-channel) for the gateway paths, in front of Orthanc's HTTP port for the "
        "reference."],
        raw={f"{study}.{state}.{network}.{path}": [asdict(o) for o in runs]
             for (study, state, network, path), runs in openings.items()})
    save("ohif_traffic", f"What OHIF fetched before the first image {title}",
         _traffic(openings), notes=[
             method,
             "Requests and MB: the page's Resource Timing entries under the DICOMweb root that "
             "ended before the first image, in the cold openings on loopback. The raw results "
             "of the ohif benchmark also hold the totals once OHIF was quiet (its prefetch of "
             "the rest of the series included) and Playwright's count of responses."])
