"""Extra PACS processes for benchmarks that must not touch the session's PACS.

The test suite's fixtures (``tests/pacs_fixtures.py``) start one dcmqrscp and
one Orthanc per session with the corpus. Some benchmarks need more: a move
destination the session PACS do not know (storescp for the movescu
reference), 1,000 studies (dcmqrscp keeps at most 500 per storage area and
silently deletes the oldest beyond that, which would take the corpus with
it), or a gigabyte study that must be deleted afterwards. These helpers start
such PACS with the same binaries, start-up checks and teardown as the tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from pacs_fixtures import (
    DCMQRSCP_AE_TITLE,
    FIXTURE_AE_TITLE,
    GATEWAY_AE_TITLE,
    LOOPBACK,
    ORTHANC_AE_TITLE,
    ORTHANC_DICOMWEB_PLUGIN,
    UNKNOWN_AE_TITLE,
    RunningPacs,
    _render,
    _require_binary,
    _start,
    _wait_for_dicom,
    free_port,
    stop_process,
    wait_for_orthanc,
)

#: dcmqrscp's compiled-in ceiling (DB_UpperMaxStudies in DCMTK's dcmqrdb).
DCMQRSCP_MAX_STUDIES = 500


def _dcmqrscp_config(path: Path, *, port: int, storage_dir: Path,
                     destinations: Mapping[str, int], max_studies: int) -> Path:
    hosts = "\n".join(f"dest{i} = ({ae}, {LOOPBACK}, {dest_port})"
                      for i, (ae, dest_port) in enumerate(destinations.items()))
    vendors = "\n".join(f'"bench destination {i}" = dest{i}' for i in range(len(destinations)))
    # As tests/configs/dcmqrscp.cfg.template (16 KB PDUs like a legacy PACS), but
    # with our own move destinations and study quota.
    path.write_text(f"""NetworkTCPPort  = {port}
MaxPDUSize      = 16384
MaxAssociations = 16
HostTable BEGIN
{hosts}
HostTable END
VendorTable BEGIN
{vendors}
VendorTable END
AETable BEGIN
{DCMQRSCP_AE_TITLE} {storage_dir} RW ({max_studies}, 1024mb) ANY
AETable END
""")
    return path


@contextmanager
def dcmqrscp(workdir: Path, *, destinations: Mapping[str, int],
             storage_dir: Path | None = None,
             max_studies: int = DCMQRSCP_MAX_STUDIES) -> Iterator[RunningPacs]:
    """A dcmqrscp that can C-MOVE to ``destinations`` (AE title -> loopback port).

    ``storage_dir`` may be the session dcmqrscp's: the index is file-locked,
    so a second dcmqrscp can serve the same studies (read-only here) to
    destinations the first one does not know.
    """
    binary = _require_binary("dcmqrscp", "dcmtk")
    workdir.mkdir(parents=True, exist_ok=True)
    if storage_dir is None:
        storage_dir = workdir / "storage"
        storage_dir.mkdir()
    port = free_port()
    config = _dcmqrscp_config(workdir / "dcmqrscp.cfg", port=port, storage_dir=storage_dir,
                              destinations=destinations, max_studies=max_studies)
    log_path = workdir / "dcmqrscp.log"
    pacs = RunningPacs(name="dcmqrscp", host=LOOPBACK, port=port, ae_title=DCMQRSCP_AE_TITLE,
                       http_url=None, storage_dir=storage_dir, log_path=log_path)
    process = _start([binary, "-dhl", "-c", str(config)], log_path, workdir)
    try:
        _wait_for_dicom(pacs.name, pacs.host, pacs.port, pacs.ae_title, process, log_path)
        yield pacs
    finally:
        stop_process(process)


@contextmanager
def orthanc(workdir: Path, *, gateway_port: int) -> Iterator[RunningPacs]:
    """An empty Orthanc configured like the session's (tests/configs/orthanc.json.template)."""
    binary = _require_binary("Orthanc", "orthanc", extra_dirs=["/usr/sbin"])
    workdir.mkdir(parents=True, exist_ok=True)
    storage_dir = workdir / "storage"
    storage_dir.mkdir()
    dicom_port, http_port = free_port(), free_port()
    config = _render("orthanc.json.template", workdir / "orthanc.json", {
        "storage_dir": json.dumps(str(storage_dir)),
        "dicomweb_plugin": json.dumps(str(ORTHANC_DICOMWEB_PLUGIN)),
        "ae_title": json.dumps(ORTHANC_AE_TITLE),
        "gateway_ae_title": json.dumps(GATEWAY_AE_TITLE),
        "unknown_ae_title": json.dumps(UNKNOWN_AE_TITLE),
        "http_port": http_port, "dicom_port": dicom_port, "gateway_port": gateway_port,
    })
    log_path = workdir / "orthanc.log"
    http_url = f"http://{LOOPBACK}:{http_port}"
    pacs = RunningPacs(name="orthanc", host=LOOPBACK, port=dicom_port,
                       ae_title=ORTHANC_AE_TITLE, http_url=http_url, storage_dir=storage_dir,
                       log_path=log_path)
    process = _start([binary, str(config)], log_path, workdir)
    try:
        wait_for_orthanc(pacs, process)
        yield pacs
    finally:
        stop_process(process)


def add_orthanc_destination(pacs: RunningPacs, ae_title: str, port: int) -> None:
    """Let Orthanc C-MOVE to ``ae_title`` at a loopback port (kept in memory only)."""
    assert pacs.http_url is not None
    httpx.put(f"{pacs.http_url}/modalities/{ae_title.lower()}", timeout=10,
              json={"AET": ae_title, "Host": LOOPBACK, "Port": port}).raise_for_status()


def storescu(pacs: RunningPacs, paths: Sequence[Path]) -> float:
    """Send ``paths`` to ``pacs`` in one association (DCMTK storescu); seconds taken."""
    env = dict(os.environ, TCP_NODELAY="1")
    started = time.perf_counter()
    subprocess.run(["storescu", "-aet", FIXTURE_AE_TITLE, "-aec", pacs.ae_title,
                    "-to", "10", "-ta", "10", "-td", "60", pacs.host, str(pacs.port),
                    *map(str, paths)], check=True, env=env, capture_output=True)
    return time.perf_counter() - started


@contextmanager
def storescp(folder: Path, ae_title: str) -> Iterator[int]:
    """DCMTK storescp writing every received instance into ``folder``; yields its port."""
    binary = _require_binary("storescp", "dcmtk")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = folder.parent / f"{folder.name}.log"
    process = _start([binary, "-dhl", "-aet", ae_title, "-od", str(folder), str(port)],
                     log_path, folder.parent)
    try:
        _wait_for_dicom("storescp", LOOPBACK, port, ae_title, process, log_path)
        yield port
    finally:
        stop_process(process)
