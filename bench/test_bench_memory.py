"""Peak memory of the gateway while it streams a study of more than a gigabyte.

Run with ``.venv/bin/python -m pytest bench/test_bench_memory.py -s -p no:cacheprovider``;
results in ``bench/results/memory.json``. Reported, never asserted.

About 1,950 uncompressed 512x512 CT instances (~1.0 GB; ``BENCH_MEMORY_MB``)
go into a dcmqrscp of their own by storescu, in one association; one
gateway process of its own (C-MOVE, a 4 GB cache) streams the study to a
client that reads and discards it, first cold (from the PACS, written to the
cache on the way), then warm (from the cache), then cold again through a
second node whose retrieves are split over 4 associations (as over a slow
link; on loopback the gateway would retrieve in one request). psutil samples the gateway's
resident memory, children included, every 50 ms. Only dcmqrscp: the
question is the gateway's memory, not the PACS's. Everything (PACS
storage, cache, generated files) is deleted afterwards.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from extra_pacs import dcmqrscp, storescu
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from record import comparison, save
from timing import PeakRss, idle_rss, stream_get

from conftest import GatewayProcess, run_gateway
from corpus import _testdata
from pacs_fixtures import GATEWAY_AE_TITLE, RunningPacs, free_port

TARGET_MB = int(os.environ.get("BENCH_MEMORY_MB", "1000"))
SPLIT = {"retrieve_associations": 4, "max_associations": 5, "retrieve_split_above": 0}
SIZE = 512
MB = 1e6


@dataclass(frozen=True)
class BigStudy:
    gateway: GatewayProcess
    pacs: RunningPacs
    study_uid: str
    instances: int
    size: int
    load_seconds: float


def _write_study(folder: Path) -> tuple[str, list[Path]]:
    """Instances of 512x512 16-bit CT, enough for ``TARGET_MB`` (dcmqrscp's cap is 1 GiB)."""
    folder.mkdir(parents=True)
    ds = pydicom.dcmread(_testdata("CT_small.dcm"))
    ds.Rows = ds.Columns = SIZE
    # Same pixels in every slice: memory does not depend on what they show.
    ds.PixelData = (np.arange(SIZE * SIZE, dtype="<i2") % 2000).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for keyword in ("SmallestImagePixelValue", "LargestImagePixelValue"):
        if keyword in ds:
            del ds[keyword]
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID = "Bench^Gigabyte", "GW-BENCH-GB"
    paths: list[Path] = []
    count = 1
    while len(paths) < count:
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = len(paths) + 1
        path = folder / f"{len(paths):05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
        if len(paths) == 1:
            count = math.ceil(TARGET_MB * MB / path.stat().st_size)
    return str(ds.StudyInstanceUID), paths


@pytest.fixture(scope="module")
def big_study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigStudy]:
    folder = tmp_path_factory.mktemp("bench-memory")
    store_port = free_port()
    try:
        with dcmqrscp(folder / "dcmqrscp", destinations={GATEWAY_AE_TITLE: store_port}) as pacs:
            study_uid, paths = _write_study(folder / "study")
            size = sum(p.stat().st_size for p in paths)
            seconds = storescu(pacs, paths)
            shutil.rmtree(folder / "study")  # dcmqrscp has its own copy now
            stored = len([p for p in pacs.storage_dir.iterdir() if p.name != "index.dat"])
            assert stored == len(paths), f"dcmqrscp holds {stored} of {len(paths)} instances"
            # "dcmqrscp-split": the same PACS, each retrieve split over 4 associations
            # as over a slow link (on loopback the gateway would make it one request).
            with run_gateway(folder / "gateway", {"dcmqrscp": (pacs, "c-move"),
                                                  "dcmqrscp-split": (pacs, "c-move")},
                             store_port, cache_max_bytes="4GB",
                             node_settings={"dcmqrscp-split": SPLIT}) as gateway:
                yield BigStudy(gateway, pacs, study_uid, len(paths), size, seconds)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.pacs
@pytest.mark.timeout(900)
def test_peak_rss_streaming_a_gigabyte(big_study: BigStudy) -> None:
    gateway, uid = big_study.gateway, big_study.study_uid
    url = f"{gateway.dicomweb('dcmqrscp')}/studies/{uid}"
    # Idle after one small request (imports done, association pool set up).
    httpx.get(f"{gateway.dicomweb('dcmqrscp')}/studies", params={"PatientID": "GW-BENCH-GB"},
              timeout=30).raise_for_status()
    baseline = idle_rss(gateway.pid)
    runs = {}
    split_url = f"{gateway.dicomweb('dcmqrscp-split')}/studies/{uid}"
    for label, purge in (("cold", f"{gateway.url}/pacs/dcmqrscp/cache/studies/{uid}"),
                         ("warm", None),
                         ("cold, split", f"{gateway.url}/pacs/dcmqrscp-split/cache/studies/{uid}")):
        with PeakRss(gateway.pid) as sampler:
            transfer = stream_get(split_url if label == "cold, split" else url, purge=purge)
        assert transfer.size >= big_study.size, f"{label}: {transfer.size} bytes"
        runs[label] = {"peak_mb": sampler.peak / MB, "seconds": transfer.total_s,
                       "first_part_s": transfer.first_s,
                       "mb_per_s": transfer.size / MB / transfer.total_s,
                       "samples": len(sampler.samples)}
    after = idle_rss(gateway.pid)
    size_gb = big_study.size / 1e9
    save("memory", f"Gateway memory streaming a {size_gb:.2f} GB study "
         f"({big_study.instances:,} x 512x512 CT)", [
             comparison("memory.rss", "resident memory of the gateway process (RSS)", "MB", {
                 "idle, before": baseline / MB,
                 "peak, cold (C-MOVE from dcmqrscp)": runs["cold"]["peak_mb"],
                 "peak, cold, 4 associations": runs["cold, split"]["peak_mb"],
                 "peak, warm (from the cache)": runs["warm"]["peak_mb"],
                 "idle, after": after / MB,
             }),
             comparison("memory.throughput", "streaming throughput while sampled", "MB/s", {
                 "cold (C-MOVE from dcmqrscp)": runs["cold"]["mb_per_s"],
                 "cold, 4 associations": runs["cold, split"]["mb_per_s"],
                 "warm (from the cache)": runs["warm"]["mb_per_s"],
             }, better="higher"),
         ],
         notes=[f"psutil RSS of the gateway and its children every 50 ms; the client reads "
                f"and discards. Loaded by storescu in {big_study.load_seconds:.0f} s."],
         raw={"instances": big_study.instances, "bytes": big_study.size, "runs": runs,
              "baseline_bytes": baseline, "after_bytes": after})
