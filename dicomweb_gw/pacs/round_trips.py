"""How far away a PACS is: the round trips of the associations the gateway releases.

An A-RELEASE-RQ is answered by an A-RELEASE-RP with next to no work on the
PACS, so the time between them is one round trip of the link (an
A-ASSOCIATE is not: some PACS take tens of ms to negotiate one even on
loopback). ``associations.py`` times every association it releases and keeps
the last few; the shortest is the estimate of the node's round trip,
unspoilt by a busy moment on either side. ``parallel.py`` splits a retrieve
across several associations only when that says the link, not the gateway's
CPU, bounds it.
"""

from __future__ import annotations

import threading
from collections import deque

__all__ = ["KEPT", "RoundTrips"]

#: Round trips remembered per node.
KEPT = 8


class RoundTrips:
    """The last ``KEPT`` round trips (A-RELEASE-RQ to -RP) to one PACS node, in seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: deque[float] = deque(maxlen=KEPT)

    def add(self, seconds: float) -> None:
        if seconds >= 0:
            with self._lock:
                self._times.append(seconds)

    @property
    def best(self) -> float | None:
        """The shortest round trip remembered; None before the first."""
        with self._lock:
            return min(self._times) if self._times else None
