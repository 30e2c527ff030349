"""What a DIMSE status (PS3.7 Annex C, PS3.4 C.4) means for our HTTP client."""

from __future__ import annotations

from dicomweb_gw.errors import PacsError, PacsFailure, PacsMisconfigured, PacsUnavailable

__all__ = ["CANCELLED", "PENDING", "SUCCESS", "WARNING_SUB_OPERATIONS", "failure_for_status"]

SUCCESS = 0x0000
CANCELLED = 0xFE00
PENDING = frozenset({0xFF00, 0xFF01})
WARNING_SUB_OPERATIONS = 0xB000
MOVE_DESTINATION_UNKNOWN = 0xA801
_OUT_OF_RESOURCES = frozenset({0xA700, 0xA701, 0xA702})
_MEANINGS = {
    0xA900: "identifier does not match SOP class",
    0xAA00: "none of the frames requested were found",
    0xC000: "unable to process",
}


def failure_for_status(
    pacs: str, operation: str, status: int, *, our_ae_title: str, store_address: str
) -> PacsError:
    """The error to raise for a final ``status`` that is neither success nor cancel."""
    code = f"0x{status:04X}"
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
