"""Benchmarks reuse the test suite's real-PACS fixtures and corpus.

The gateway runs in its own process here (unlike in the tests): a client in
the same Python process would share its GIL and slow it down, which would
not be a fair comparison with Orthanc, a separate C++ process.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import httpx
import psutil
import pytest
from record import RESULTS

from pacs_fixtures import GATEWAY_AE_TITLE, RunningPacs, free_port

# tests/ is on sys.path (``pythonpath`` in pyproject.toml), as for tests/conftest.py.
pytest_plugins = ["pacs_fixtures", "corpus"]

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class GatewayProcess:
    url: str
    pid: int

    def dicomweb(self, node: str) -> str:
        return f"{self.url}/pacs/{node}/dicom-web"


@contextmanager
def run_gateway(folder: Path, nodes: Mapping[str, tuple[RunningPacs, str]], store_port: int,
                *, cache_max_bytes: str = "10GB", ae_title: str = GATEWAY_AE_TITLE,
                node_settings: Mapping[str, Mapping[str, object]] | None = None,
                ) -> Iterator[GatewayProcess]:
    """``dicomweb-gw serve`` as a separate process; ``nodes``: name -> (PACS, retrieve),
    ``node_settings``: name -> more of its ``[pacs.NAME]`` settings (numbers, strings).

    The first node is the default one. Its cache lives in ``folder/cache``.
    A second gateway needs its own ``ae_title`` when a PACS must C-MOVE to it
    at another port than to the first (Orthanc finds destinations by AE title).
    """
    folder.mkdir(parents=True, exist_ok=True)
    tables = "".join(f"""
[pacs.{name}]
host = "{pacs.host}"
port = {pacs.port}
ae_title = "{pacs.ae_title}"
retrieve = "{retrieve}"
{_toml_lines((node_settings or {}).get(name, {}))}""" for name, (pacs, retrieve) in nodes.items())
    config = folder / "gateway.toml"
    config.write_text(f"""
ae_title = "{ae_title}"
store_port = {store_port}
store_host = "127.0.0.1"
cache_dir = "{folder / 'cache'}"
cache_max_bytes = "{cache_max_bytes}"
default_pacs = "{next(iter(nodes))}"
{tables}""")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMWEB_GW_")}
    log = folder / "gateway.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "dicomweb_gw", "-q", "serve", "--port", str(port),
             "--config", str(config)], env=env, stdout=subprocess.DEVNULL, stderr=log_file)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(log.read_text()) from None
                time.sleep(0.1)
        yield GatewayProcess(url, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _toml_lines(settings: Mapping[str, object]) -> str:
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())


@pytest.fixture(scope="session")
def gateway(dcmqrscp_pacs: RunningPacs, orthanc_pacs: RunningPacs, gateway_store_port: int,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The gateway in front of the session's PACS, nodes as in the test suite."""
    with run_gateway(tmp_path_factory.mktemp("bench-gateway"), {
        "dcmqrscp": (dcmqrscp_pacs, "c-move"),
        "orthanc": (orthanc_pacs, "c-get"),
        "orthanc-move": (orthanc_pacs, "c-move"),
    }, gateway_store_port) as process:
        yield process


def _first_line(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError:
        return "not installed"
    return (result.stdout or result.stderr).strip().splitlines()[0]


def _package(name: str) -> str:
    result = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", name],
                            capture_output=True, text=True, check=False)
    return result.stdout.strip() or "not installed"


@pytest.fixture(scope="session", autouse=True)
def environment() -> Iterator[None]:
    """Record what the run ran on (``bench/results/environment.json``) for the report."""
    started = time.time()
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                            capture_output=True, text=True, check=False).stdout.strip()
    info: dict[str, object] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        # BENCH_COMMIT: for a copy of the sources outside a git checkout.
        "commit": commit or os.environ.get("BENCH_COMMIT", "unknown"),
        "cpus": os.cpu_count(),
        "cpu_model": next((line.split(":", 1)[1].strip()
                           for line in Path("/proc/cpuinfo").read_text().splitlines()
                           if line.startswith("model name")), platform.machine()),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "packages": {name: version(name) for name in (
            "dicomweb-gw", "pydicom", "pynetdicom", "starlette", "uvicorn", "httpx")},
        "dcmtk": _package("dcmtk"),
        "orthanc": _package("orthanc"),
        "orthanc-dicomweb": _package("orthanc-dicomweb"),
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
    }
    yield
    info["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    info["minutes"] = round((time.time() - started) / 60, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "environment.json").write_text(json.dumps(info, indent=2) + "\n")
