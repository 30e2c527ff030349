"""Patches of pynetdicom's internals, each applied once and only where it fits.

A patch copies or replaces private pynetdicom code (``reactor.py``,
``store_response.py``), so it is applied only to the pynetdicom versions it was
written against; on any other version pynetdicom is left as it is, slower but
correct, and the log says so once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pynetdicom

__all__ = ["PYNETDICOM_VERSIONS", "PynetdicomPatch"]

log = logging.getLogger(__name__)

#: The pynetdicom versions (prefixes) whose internals the patches were written against.
PYNETDICOM_VERSIONS = ("3.0.",)


class PynetdicomPatch:
    """``apply`` run at most once, by the first ``install`` on a supported pynetdicom."""

    def __init__(self, what: str, apply: Callable[[], None]) -> None:
        self._what = what
        self._apply = apply
        self._lock = threading.Lock()
        self._installed = False

    def installed(self) -> bool:
        return self._installed

    def install(self) -> bool:
        """Apply the patch (once); False if this pynetdicom is not one it was written for."""
        with self._lock:
            if self._installed:
                return True
            if not pynetdicom.__version__.startswith(PYNETDICOM_VERSIONS):
                log.info("pynetdicom %s: %s is left out (written for %s)",
                         pynetdicom.__version__, self._what, ", ".join(PYNETDICOM_VERSIONS))
                return False
            self._apply()
            self._installed = True
            return True
