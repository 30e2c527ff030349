"""The ``PacsError`` a DIMSE operation that went wrong ends in.

It goes wrong in one of two ways: the PACS answers with a failure status (what
each status means is in ``status.py``), or no final answer comes at all, because
our DIMSE timeout fired or the PACS aborted the association.
"""

from __future__ import annotations

import time

from dicomweb_gw.errors import PacsError, PacsFailure, PacsMisconfigured, PacsTimeout
from dicomweb_gw.pacs.status import (
    MOVE_DESTINATION_UNKNOWN,
    SUB_OPERATIONS_IMPOSSIBLE,
    WARNING_SUB_OPERATIONS,
    failure_for_status,
)
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
        local_host: str | None = None,
    ) -> PacsError:
        """A final ``code`` that is neither success nor cancel; ``received`` and ``failed``
        are the instances of a retrieve that reached the gateway and that the PACS
        counted as failed; ``local_host`` our end of the association (``store_address``)."""
        error = failure_for_status(
            self._node.name, operation, code, our_ae_title=self._ae_title,
            store_address=self.store_address(local_host),
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

    def silent(self, operation: str, last_activity: float, *, received: int = 0) -> PacsError:
        """No final response, judged against the node's idle timeout (``idle_timeout``,
        which every DIMSE message, a Pending response too, starts again): a timeout
        that names the setting, or else the PACS aborted."""
        after = f" after {received} instance(s)" if received else ""
        idle = self._node.dimse_idle_timeout
        if time.monotonic() - last_activity >= idle * 0.9:
            return PacsTimeout(
                self._node.name,
                f"{operation} got no response within {idle:g} s{after} "
                f"(idle_timeout = {idle:g})")
        return PacsFailure(self._node.name, f"aborted the association during {operation}{after}")

    def over_total(self, operation: str, *, received: int = 0) -> PacsError:
        """The operation ran longer than the node's ``total_timeout`` and was stopped."""
        after = f" after {received} instance(s)" if received else ""
        total = self._node.total_timeout
        return PacsTimeout(
            self._node.name,
            f"{operation} ran longer than {total:g} s{after} and was cancelled "
            f"(total_timeout = {total:g})")

    # -- retrieves: C-MOVE destination, no C-GET ------------------------------
    def store_address(self, local_host: str | None = None) -> str:
        """The host:port the PACS must know our AE title at (``MoveReceiver.address_for``);
        ``local_host`` is our end of an association to it."""
        if self._receiver is None:
            return "(no storage SCP)"
        return self._receiver.address_for(local_host)

    def move_failed(
        self, code: int, *, received: int, failed: object, local_host: str | None,
        reached: bool | None,
    ) -> PacsError:
        """A C-MOVE's final failure ``code``. ``reached``: whether the PACS opened any
        association to our storage SCP meanwhile (None: cannot tell).

        A PACS answers 0xA801 for an AE title it does not know, and also when it
        knows it at a host or port where nothing answers (pynetdicom does; GE
        Centricity moves only to the registered port, pynetdicom#417); others count
        the sub-operations as failed (0xA702, 0xB000). Either way the fix is the
        registration, with the address the PACS sees us at and our store port.
        """
        address = self.store_address(local_host)
        register = (f"register AE title '{self._ae_title}' at {address} on the PACS "
                    "(that host and port exactly)")
        if code == MOVE_DESTINATION_UNKNOWN:
            return PacsMisconfigured(
                self._node.name,
                f"C-MOVE destination unknown (0xA801): the PACS does not know the gateway's "
                f"AE title '{self._ae_title}' as a move destination, or could not connect to "
                f"it where it has it registered: {register}")
        sub_operations_failed = (code in (SUB_OPERATIONS_IMPOSSIBLE, WARNING_SUB_OPERATIONS)
                                 or bool(failed))
        if received == 0 and reached is False and sub_operations_failed:
            return PacsMisconfigured(
                self._node.name,
                f"C-MOVE: the PACS could not connect back to the gateway's storage SCP "
                f"(0x{code:04X}, {failed or 'all'} sub-operation(s) failed, no association "
                f"reached port {self._port()}): it has AE title '{self._ae_title}' registered "
                f"at another host or port; {register}")
        return self.for_status("C-MOVE", code, received=received, failed=failed,
                               local_host=local_host)

    def no_c_get(self, local_host: str | None, why: str) -> PacsError:
        """The PACS accepted no C-GET context, and C-MOVE cannot be used instead (``why``)."""
        return PacsMisconfigured(
            self._node.name,
            f"accepts no C-GET (no C-GET context accepted at association), and {why}: set "
            f"retrieve = \"c-move\" in [pacs.{self._node.name}] (DICOMWEB_GW_RETRIEVE=c-move "
            f"for the default node) and register AE title '{self._ae_title}' at "
            f"{self.store_address(local_host)} on the PACS")

    def after_no_c_get(self, error: PacsError) -> PacsError:
        """``error`` of the C-MOVE that stood in for a C-GET the PACS does not offer:
        the same error, saying both."""
        prefix = f"PACS '{self._node.name}': "
        if error.message.startswith(prefix + "has no C-GET"):
            return error
        detail = error.message.removeprefix(prefix)
        combined = type(error).__new__(type(error))  # the same class: the same HTTP status
        combined.__dict__.update(vars(error))
        combined.message = (f"{prefix}has no C-GET (no C-GET context accepted), so the "
                            f"gateway retrieved by C-MOVE, which failed: {detail}")
        combined.args = (combined.message,)
        return combined

    def _port(self) -> int | str:
        return self._receiver.port if self._receiver is not None else "(none)"
