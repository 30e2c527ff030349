"""C-STORE responses encoded without pydicom (``pacs/store_response.py``): the same
bytes as pynetdicom's, the fast path taken for a plain status, pynetdicom's own
for anything else."""

from __future__ import annotations

from typing import Any

import pytest
from pydicom.uid import CTImageStorage
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE

from dicomweb_gw.pacs import associations as _installs  # noqa: F401 (installs the patch)
from dicomweb_gw.pacs import store_response


def _response(status: int, message_id: int, sop_uid: str, **extra: Any) -> C_STORE:
    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo = message_id
    primitive.AffectedSOPClassUID = CTImageStorage
    primitive.AffectedSOPInstanceUID = sop_uid
    primitive.Status = status
    for name, value in extra.items():
        setattr(primitive, name, value)
    return primitive


def _pynetdicoms(primitive: C_STORE) -> bytes:
    message = C_STORE_RSP()
    message.primitive_to_message(primitive)
    (pdata,) = message.encode_msg(1, 16384)
    ((_, pdv),) = pdata.presentation_data_value_list
    assert pdv[:1] == b"\x03"  # a command, its last fragment
    return bytes(pdv[1:])


@pytest.mark.parametrize(("status", "message_id", "sop_uid"), [
    (0x0000, 1, "1.2.3"), (0x0000, 65535, "1.2.34"), (0xA700, 7, "1." + "2" * 62),
    (0xB000, 300, "1.2.826.0.1.3680043.8.498.1"),
])
def test_the_bytes_are_pynetdicoms(status: int, message_id: int, sop_uid: str) -> None:
    primitive = _response(status, message_id, sop_uid)
    assert store_response.encode(primitive) == _pynetdicoms(primitive)


@pytest.mark.parametrize("extra", [{"ErrorComment": "disk full"},
                                   {"OffendingElement": [0x00100010]}])
def test_a_response_with_more_than_a_status_is_left_to_pynetdicom(extra: dict[str, Any]) -> None:
    assert store_response.encode(_response(0xA700, 1, "1.2.3", **extra)) is None


def test_a_request_is_left_to_pynetdicom() -> None:
    request = C_STORE()
    request.MessageID = 1
    request.AffectedSOPClassUID = CTImageStorage
    request.AffectedSOPInstanceUID = "1.2.3"
    assert store_response.encode(request) is None


def test_it_is_installed() -> None:
    assert store_response.installed()
