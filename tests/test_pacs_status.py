"""What a final DIMSE status becomes for the HTTP client."""

from __future__ import annotations

import pytest

from dicomweb_gw.errors import PacsFailure, PacsUnavailable
from dicomweb_gw.pacs.status import failure_for_status


def _failure(operation: str, status: int, received: int | None) -> Exception:
    return failure_for_status("X", operation, status, our_ae_title="GW",
                              store_address="127.0.0.1:11113", received=received)


def test_a_c_get_that_sent_nothing_says_why_and_is_not_retryable() -> None:
    error = _failure("C-GET", 0xA702, received=0)
    assert isinstance(error, PacsFailure)
    assert error.status_code == 502
    assert str(error) == (
        "PACS 'X': C-GET: could not send any instance: no presentation context it was offered "
        "carries the stored transfer syntax, or it cannot send nor transcode that syntax "
        "(see its log) (0xA702)")


def test_a_c_move_that_sent_nothing_points_at_the_storage_scp() -> None:
    error = _failure("C-MOVE", 0xA702, received=0)
    assert isinstance(error, PacsFailure)
    assert "could not send any instance" in str(error)
    assert "127.0.0.1:11113" in str(error)


@pytest.mark.parametrize(("status", "received"), [(0xA702, 3), (0xA702, None), (0xA700, 0),
                                                  (0xA701, 0)])
def test_other_shortages_stay_out_of_resources(status: int, received: int | None) -> None:
    error = _failure("C-GET", status, received)
    assert isinstance(error, PacsUnavailable)
    assert "out of resources" in str(error)
