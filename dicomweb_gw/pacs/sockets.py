"""TCP_NODELAY on every DIMSE socket.

pynetdicom never sets it; with Nagle on, every request/response exchange
waits for a delayed ACK (~45 ms): a one-match C-FIND took 54 ms instead of
10 ms on this project's test machine.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from pynetdicom import evt

__all__ = ["FAST_POLL_HANDLER", "NODELAY_HANDLER", "poll_fast", "set_nodelay"]

log = logging.getLogger(__name__)


def set_nodelay(event: Any) -> None:
    """``evt.EVT_CONN_OPEN`` handler: disable Nagle on the association's socket."""
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if isinstance(sock, socket.socket):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # the peer may already have closed it
            log.debug("could not set TCP_NODELAY: %s", exc)


NODELAY_HANDLER = (evt.EVT_CONN_OPEN, set_nodelay)

#: pynetdicom's reactor sleeps this long whenever it finds nothing to do. Its
#: default of 1 ms adds up over the several hand-offs of every C-STORE: 600
#: small instances took 2.1 s with it and 1.5 s with 0.1 ms. The shorter sleep
#: costs CPU while an association idles, so only transfer associations get it.
TRANSFER_POLL_SECONDS = 0.0001


def poll_fast(event: Any) -> None:
    """``evt.EVT_CONN_OPEN`` handler for associations that carry instances."""
    dul = event.assoc.dul
    if hasattr(dul, "_run_loop_delay"):  # a private attribute: skip if pynetdicom drops it
        dul._run_loop_delay = TRANSFER_POLL_SECONDS


FAST_POLL_HANDLER = (evt.EVT_CONN_OPEN, poll_fast)
