"""How many associations a PACS takes from us at once: configured, or learned from a refusal.

``max_associations`` is what the administrator believes. Many PACS count
associations per calling AE title and refuse the next one with a transient
A-ASSOCIATE-RJ (knopkem/dicomweb-proxy#23); the gateway then keeps to the
number it had open, says once which setting to change, and later requests
wait for a free association instead of failing. A PACS can also refuse
because others were busy on it: the learned limit therefore lapses after a
while and the configured one is tried again.
"""

from __future__ import annotations

import logging
import threading
import time

from dicomweb_gw.settings import PacsNode

__all__ = ["LEARNED_LIMIT_SECONDS", "AssociationLimit"]

log = logging.getLogger(__name__)

#: How long a limit learned from a refusal holds before ``max_associations`` is tried again.
LEARNED_LIMIT_SECONDS = 600.0


class AssociationLimit:
    """The number of associations to hold open to one PACS node now."""

    def __init__(self, node: PacsNode) -> None:
        self._node = node
        self._lock = threading.Lock()
        self._learned: int | None = None
        self._learned_at = 0.0
        self._told = False

    @property
    def value(self) -> int:
        with self._lock:
            if self._learned is not None and (
                    time.monotonic() - self._learned_at >= LEARNED_LIMIT_SECONDS):
                self._learned = None
            return self._node.max_associations if self._learned is None else self._learned

    @property
    def learned(self) -> int | None:
        """The limit a refusal taught us, while it holds."""
        _ = self.value  # lets a lapsed one go
        with self._lock:
            return self._learned

    def refused_beyond(self, open_now: int) -> None:
        """The PACS refused one more association (transient) while we held ``open_now``."""
        if open_now < 1:
            return  # someone else holds its associations: nothing to learn about ours
        with self._lock:
            if self._learned is not None and self._learned <= open_now:
                self._learned_at = time.monotonic()
                return
            self._learned = min(open_now, self._node.max_associations)
            self._learned_at = time.monotonic()
            told, self._told = self._told, True
        if not told:
            log.warning(
                "PACS '%s' refused an association beyond %d open (A-ASSOCIATE-RJ, transient): "
                "the gateway now keeps to %d at a time and requests wait for a free one. "
                "Set max_associations = %d in [pacs.%s] (DICOMWEB_GW_PACS_MAX_ASSOCIATIONS "
                "for the default node) if that is its limit",
                self._node.name, open_now, open_now, open_now, self._node.name)
