"""Benchmarks reuse the test suite's real-PACS fixtures and corpus.

The gateway runs in its own process here (unlike in the tests): a client in
the same Python process would share its GIL and slow it down, which would
not be a fair comparison with Orthanc, a separate C++ process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from pacs_fixtures import GATEWAY_AE_TITLE, RunningPacs, free_port

pytest_plugins = ["pacs_fixtures", "corpus"]


@dataclass(frozen=True)
class GatewayProcess:
    url: str

    def dicomweb(self, node: str) -> str:
        return f"{self.url}/pacs/{node}/dicom-web"


@pytest.fixture(scope="session")
def gateway(dcmqrscp_pacs: RunningPacs, orthanc_pacs: RunningPacs, gateway_store_port: int,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """``dicomweb-gw serve`` as a separate process, nodes as in the test suite."""
    folder = tmp_path_factory.mktemp("bench-gateway")
    config = folder / "gateway.toml"
    config.write_text(f"""
ae_title = "{GATEWAY_AE_TITLE}"
store_port = {gateway_store_port}
store_host = "127.0.0.1"
cache_dir = "{folder / 'cache'}"
default_pacs = "dcmqrscp"

[pacs.dcmqrscp]
host = "{dcmqrscp_pacs.host}"
port = {dcmqrscp_pacs.port}
ae_title = "{dcmqrscp_pacs.ae_title}"
retrieve = "c-move"

[pacs.orthanc]
host = "{orthanc_pacs.host}"
port = {orthanc_pacs.port}
ae_title = "{orthanc_pacs.ae_title}"
retrieve = "c-get"

[pacs.orthanc-move]
host = "{orthanc_pacs.host}"
port = {orthanc_pacs.port}
ae_title = "{orthanc_pacs.ae_title}"
retrieve = "c-move"
""")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMWEB_GW_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "dicomweb_gw", "-q", "serve", "--port", str(port),
         "--config", str(config)], env=env, stdout=subprocess.DEVNULL,
        stderr=(folder / "gateway.log").open("wb"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/healthz", timeout=1).raise_for_status()
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError((folder / "gateway.log").read_text()) from None
            time.sleep(0.1)
    try:
        yield GatewayProcess(url)
    finally:
        process.terminate()
        process.wait(timeout=10)
