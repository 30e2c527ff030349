"""Several real gateway processes sharing one Redis and one shared store.

Each replica is ``python -m dicomweb_gw serve`` in its own process (as on
Kubernetes, several pods), configured through the environment only.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from pacs_fixtures import GATEWAY_AE_TITLE, free_port, wait_until

__all__ = ["RedisServer", "Replica", "running_replicas"]

_START_TIMEOUT = 30.0


class RedisServer:
    """redis-server (Debian's) on a free loopback port, no persistence."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server not found: install the Debian package redis-server "
                        "(bash .ci/test does)")
        self._binary = binary
        self._workdir = workdir
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log_path = self._workdir / "redis.log"
        with log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [self._binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self._workdir)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        try:
            wait_until(answers, name="redis-server", what=f"PING on port {self.port}",
                       process=self._process, log_path=log_path, timeout=10)
        finally:
            client.close()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Replica:
    name: str
    url: str
    store_port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def kill(self) -> None:
        """SIGKILL, as when a node dies: no clean shutdown."""
        with suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def metric(self, name: str, labels: str = "") -> float:
        """One sample of /metrics, e.g. ``metric("dicomweb_gw_cluster_flights_total",
        'role="owned"')``; 0 when absent."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return 0.0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def running_replicas(count: int, tmp: Path, env: Mapping[str, str]) -> Iterator[list[Replica]]:
    """``count`` gateway processes with ``env`` (DICOMWEB_GW_*) plus their own port,
    storage SCP port and local cache folder."""
    replicas: list[Replica] = []
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        for index in range(count):
            name = f"replica{index}"
            port, store_port = free_port(), free_port()
            log_path = tmp / f"{name}.log"
            replica_env = {
                **os.environ,
                "DICOMWEB_GW_AE_TITLE": GATEWAY_AE_TITLE,
                "DICOMWEB_GW_STORE_PORT": str(store_port),
                "DICOMWEB_GW_CACHE_DIR": str(tmp / name / "cache"),
                **env,
            }
            with log_path.open("ab") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "dicomweb_gw", "serve", "--host", "127.0.0.1",
                     "--port", str(port)],
                    env=replica_env, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL)
            replicas.append(Replica(name, f"http://127.0.0.1:{port}", store_port, process,
                                    log_path))
        for replica in replicas:
            _wait_healthy(replica)
        yield replicas
    finally:
        for replica in replicas:
            if replica.process.poll() is None:
                replica.process.terminate()
                try:
                    replica.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    replica.kill()


def _wait_healthy(replica: Replica) -> None:
    def healthy() -> bool:
        try:
            return httpx.get(f"{replica.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, name=replica.name, what="200 from /healthz", process=replica.process,
               log_path=replica.log_path, timeout=_START_TIMEOUT)
