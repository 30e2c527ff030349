"""What every test of ``dicomweb_gw.cli.main`` needs: a clean environment, and
logging put back as it was (main() configures root logging for a terminal).

Import both names into a test module: autouse fixtures apply to the module
that holds them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

__all__ = ["clean_environment", "restore_logging"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DICOMWEB_GW_* variable from the developer's shell may leak into a test."""
    for name in list(os.environ):
        if name.startswith("DICOMWEB_GW_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in ("pynetdicom", "pydicom")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)
