"""The ``PacsError`` a DIMSE operation that went wrong ends in.

It goes wrong in one of two ways: the PACS answers with a failure status (what
each status means is in ``status.py``), or no final answer comes at all, because
our DIMSE timeout fired or the PACS aborted the association.
"""

from __future__ import annotations

import time

from dicomweb_gw.errors import PacsError, PacsFailure, PacsTimeout
from dicomweb_gw.pacs.status import failure_for_status
from dicomweb_gw.pacs.storescp import MoveReceiver
from dicomweb_gw.settings import PacsNode

__all__ = ["Failures"]


class Failures:
    """Builds the errors of one PACS node's operations."""

    def __init__(
        self, node: PacsNode, *, ae_title: str, receiver: MoveReceiver | None = None,
    ) -> None:
        self._node = node
        self._ae_title = ae_title
        self._receiver = receiver

    def for_status(
        self, operation: str, code: int, *, received: int = 0, failed: object = None,
    ) -> PacsError:
        """A final ``code`` that is neither success nor cancel; ``received`` and ``failed``
        are the instances of a retrieve that reached the gateway and that the PACS
        counted as failed."""
        error = failure_for_status(
            self._node.name, operation, code, our_ae_title=self._ae_title,
            store_address=self._receiver.address if self._receiver else "(no storage SCP)",
            received=received,
        )
        if received or failed:
            error.message += f" after {received} instance(s)"
            if failed:
                error.message += f", {failed} failed"
            error.args = (error.message,)
        return error

    def no_response(
        self, operation: str, last_activity: float, *, received: int = 0,
    ) -> PacsError:
        """No final response: our DIMSE timeout fired (nothing was heard for about as long
        as it), or else the PACS aborted."""
        after = f" after {received} instance(s)" if received else ""
        timeout = self._node.timeout
        if time.monotonic() - last_activity >= timeout * 0.9:
            return PacsTimeout(
                self._node.name, f"{operation} got no response within {timeout:g} s{after}")
        return PacsFailure(self._node.name, f"aborted the association during {operation}{after}")
