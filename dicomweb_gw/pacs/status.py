"""What a DIMSE status (PS3.7 Annex C, PS3.4 C.4) means for our HTTP client."""

from __future__ import annotations

from dicomweb_gw.errors import PacsError, PacsFailure, PacsMisconfigured, PacsUnavailable

__all__ = ["CANCELLED", "PENDING", "SUCCESS", "WARNING_SUB_OPERATIONS", "failure_for_status",
           "status_words"]

SUCCESS = 0x0000
CANCELLED = 0xFE00
PENDING = frozenset({0xFF00, 0xFF01})
WARNING_SUB_OPERATIONS = 0xB000
MOVE_DESTINATION_UNKNOWN = 0xA801
_OUT_OF_RESOURCES = frozenset({0xA700, 0xA701, 0xA702})
#: Refused: Out of Resources - Unable to perform sub-operations (PS3.4 C.4.2.1.4, C.4.3.1.4).
SUB_OPERATIONS_IMPOSSIBLE = 0xA702
_MEANINGS = {
    0xA900: "identifier does not match SOP class",
    0xAA00: "none of the frames requested were found",
    0xC000: "unable to process",
}


def status_words(status: int) -> str:
    """A status code in words, for the status page (PS3.4 C.4, PS3.7 Annex C)."""
    if status == MOVE_DESTINATION_UNKNOWN:
        return "Move destination unknown"
    if status == SUB_OPERATIONS_IMPOSSIBLE:
        return "Out of resources: unable to perform sub-operations"
    if status in _OUT_OF_RESOURCES:
        return "Out of resources"
    if status == WARNING_SUB_OPERATIONS:
        return "Sub-operations completed with failures"
    if status == CANCELLED:
        return "Cancelled"
    meaning = _MEANINGS.get(status) or _MEANINGS.get(status & 0xF000) or "failed"
    return meaning[0].upper() + meaning[1:]


def failure_for_status(
    pacs: str, operation: str, status: int, *, our_ae_title: str, store_address: str,
    received: int | None = None,
) -> PacsError:
    """The error to raise for a final ``status`` that is neither success nor cancel.

    ``received`` is how many instances of the retrieve reached the gateway.
    """
    code = f"0x{status:04X}"
    if status == SUB_OPERATIONS_IMPOSSIBLE and received == 0:
        return _nothing_sent(pacs, operation, code, store_address)
    if status == MOVE_DESTINATION_UNKNOWN:
        return PacsMisconfigured(
            pacs,
            f"C-MOVE destination unknown ({code}): the PACS must know the gateway's AE "
            f"title '{our_ae_title}' as a move destination at {store_address}",
        )
    if status in _OUT_OF_RESOURCES:
        return PacsUnavailable(pacs, f"{operation} refused: out of resources ({code})")
    if status == WARNING_SUB_OPERATIONS:
        return PacsFailure(pacs, f"{operation}: some sub-operations failed ({code})")
    meaning = _MEANINGS.get(status) or _MEANINGS.get(status & 0xF000) or "failed"
    hint = ""
    if operation == "C-MOVE" and status & 0xF000 == 0xC000:
        # Orthanc answers an unknown destination with 0xC000 rather than 0xA801.
        hint = (f"; if the PACS does not know the gateway's AE title '{our_ae_title}' "
                f"({store_address}) as a move destination, register it there")
    return PacsFailure(pacs, f"{operation} {meaning} ({code}){hint}")


def _nothing_sent(pacs: str, operation: str, code: str, store_address: str) -> PacsError:
    """Every sub-operation failed: not a passing shortage, so a 502, not a 503 to retry.

    Over C-GET the usual cause is that no presentation context we proposed
    carries the syntax an instance is stored in (and the PACS cannot transcode
    it); over C-MOVE, that the gateway's storage SCP could not be reached or
    refused what the PACS proposed.
    """
    if operation == "C-GET":
        cause = ("no presentation context it was offered carries the stored transfer syntax, "
                 "or it cannot send nor transcode that syntax (see its log)")
    else:
        cause = (f"it could not store them on the gateway's storage SCP at {store_address} "
                 "(see the PACS's log)")
    return PacsFailure(pacs, f"{operation}: could not send any instance: {cause} ({code})")
