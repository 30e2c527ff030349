"""A real S3-compatible server for the test suite: moto's, on a free loopback port.

Loaded as a pytest plugin (tests/conftest.py). Session fixture ``s3_server``:
``moto_server`` started once per session with one bucket, stopped at the end.
Tests isolate themselves with a fresh key prefix (``S3Server.store()`` picks
one), not a bucket each.

Credentials are dummies given to obstore through its config, not through
``os.environ``, so nothing leaks into other tests.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from dicomweb_gw.cache.blobs_s3 import S3BlobStore
from pacs_fixtures import LOOPBACK, free_port, stop_process, wait_until

if TYPE_CHECKING:
    from obstore.store import RetryConfig, S3Config

BUCKET = "dicomweb-gw-tests"
REGION = "us-east-1"
CREDENTIALS: S3Config = {"access_key_id": "testing", "secret_access_key": "testing"}
#: For stores meant to fail: one quick retry, not obstore's patience.
FAST_RETRY: RetryConfig = {"max_retries": 1, "retry_timeout": timedelta(seconds=2),
                           "backoff": {"init_backoff": timedelta(milliseconds=10),
                                       "max_backoff": timedelta(milliseconds=50), "base": 2}}
STARTUP_TIMEOUT = 30.0


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:<port>
    bucket: str
    log_path: Path

    @property
    def url(self) -> str:
        """The bucket as a shared-store URL (append ``/<prefix>``)."""
        return f"s3://{self.bucket}"

    def store(self, prefix: str | None = None, **options: Any) -> S3BlobStore:
        """A store under ``prefix`` (default: a fresh one, so tests do not meet)."""
        return S3BlobStore(self.bucket, prefix or f"t-{uuid.uuid4().hex[:12]}",
                           endpoint=self.endpoint, region=REGION, config=CREDENTIALS, **options)

    def pending_uploads(self, prefix: str) -> int:
        """Multipart uploads under ``prefix`` begun and neither completed nor aborted."""
        answer = httpx.get(f"{self.endpoint}/{self.bucket}",
                           params={"uploads": "", "prefix": prefix}, timeout=10)
        answer.raise_for_status()
        return answer.text.count("<Upload>")


def unreachable_s3_store() -> S3BlobStore:
    """A store whose endpoint is a loopback port nobody listens on: every call fails fast."""
    return S3BlobStore(BUCKET, "down", endpoint=f"http://{LOOPBACK}:{free_port()}",
                       region=REGION, config=CREDENTIALS, retry_config=FAST_RETRY)


def _answers(endpoint: str) -> bool:
    try:
        return httpx.get(endpoint, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    port = free_port()
    endpoint = f"http://{LOOPBACK}:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)  # its own group: _stop reaches any child it forks
    try:
        wait_until(lambda: _answers(endpoint), name="moto server",
                   what=f"S3 answer from {endpoint}", process=process, log_path=log_path,
                   timeout=STARTUP_TIMEOUT)
        # moto checks no signature: a plain PUT creates the bucket.
        httpx.put(f"{endpoint}/{BUCKET}", timeout=10).raise_for_status()
        yield S3Server(endpoint, BUCKET, log_path)
    finally:
        stop_process(process)
