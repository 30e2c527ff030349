"""Who the probe is: our AE title, where C-MOVE must reach us, and what to tell the
PACS administrator to register."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from dataclasses import dataclass

from dicomweb_gw.pacs.storescp import MoveReceiver

__all__ = ["WILDCARDS", "ProbeTarget", "local_addresses"]

WILDCARDS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class ProbeTarget:
    #: Our AE title: calling AE of every probe association and the C-MOVE destination.
    ae_title: str
    store_host: str
    store_port: int
    #: The running gateway's storage SCP, if there is one; otherwise the probe starts
    #: one of its own on ``store_host:store_port`` for the sample C-MOVE (if it can).
    receiver: MoveReceiver | None = None

    def register(self, local_host: str | None = None) -> str:
        """The move destination to register on the PACS, in one line; ``local_host``
        is our end of a connection to it (the address it sees us at)."""
        if self.store_host not in WILDCARDS:
            addresses = self.store_host
        elif local_host:
            addresses = local_host
        else:
            addresses = ", ".join(local_addresses()) or socket.getfqdn()
        return (f"AE title '{self.ae_title}', host {addresses}, port {self.store_port} "
                "(in Kubernetes: the Service's address, not a pod's)")


def local_addresses() -> list[str]:
    """This host's non-loopback addresses, best guesses first.

    Without a third-party package there is no portable list of interfaces; the
    source address of the default route (a UDP ``connect`` sends nothing) and
    what the host name resolves to cover what a PACS can reach in practice.
    """
    found: list[str] = []
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))
            found.append(str(sock.getsockname()[0]))
    with contextlib.suppress(OSError):
        for *_, sockaddr in socket.getaddrinfo(socket.gethostname(), None):
            found.append(str(sockaddr[0]))
    usable: list[str] = []
    for text in dict.fromkeys(found):
        try:
            ip = ipaddress.ip_address(text.split("%")[0])
        except ValueError:
            continue
        if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified):
            usable.append(text)
    return usable
