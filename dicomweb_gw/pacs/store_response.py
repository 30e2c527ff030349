"""C-STORE responses encoded without pydicom.

The gateway answers every instance a retrieve brings with a C-STORE-RSP (on a
C-GET association, or on its storage SCP for a C-MOVE). pynetdicom builds each
one as a pydicom Dataset, validates every element and encodes it: about a
sixth of the receive path's CPU on a retrieve, under the GIL that the receive
of the next instance and the HTTP stream wait for. The response is seven
fixed elements (PS3.7 Table 9.3-2), so ``install`` has
``DIMSEServiceProvider.send_msg`` write a plain one (a status, no error
comment or offending element) with ``struct``. Anything else, or an
association with a handler watching what it sends, goes through pynetdicom as
before. The tests compare the bytes with pynetdicom's own.
"""

from __future__ import annotations

import logging
import re
import struct
from typing import Any

from pynetdicom import evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

from dicomweb_gw.pacs.patching import PynetdicomPatch

__all__ = ["encode", "install", "installed"]

log = logging.getLogger(__name__)

_UID = re.compile(r"[0-9.]{1,64}\Z")
_C_STORE_RSP = 0x8001
_NO_DATA_SET = 0x0101
#: Message Control Header: a command, its last (here only) fragment (PS3.8 E.2).
_LAST_COMMAND_FRAGMENT = b"\x03"



def encode(primitive: Any) -> bytes | None:
    """The Command Set of a plain C-STORE-RSP (Implicit VR Little Endian, as PS3.7
    6.3.1 wants), or None if ``primitive`` is something else."""
    if type(primitive) is not C_STORE or primitive.MessageIDBeingRespondedTo is None:
        return None
    if (primitive.ErrorComment is not None or primitive.OffendingElement is not None
            or primitive.Status is None):
        return None
    if primitive.AffectedSOPClassUID is None or primitive.AffectedSOPInstanceUID is None:
        return None
    class_uid = str(primitive.AffectedSOPClassUID)
    instance_uid = str(primitive.AffectedSOPInstanceUID)
    if not (_UID.match(class_uid) and _UID.match(instance_uid)):
        return None
    body = b"".join((
        _element(0x0002, _padded(class_uid)),
        _element(0x0100, struct.pack("<H", _C_STORE_RSP)),
        _element(0x0120, struct.pack("<H", int(primitive.MessageIDBeingRespondedTo))),
        _element(0x0800, struct.pack("<H", _NO_DATA_SET)),
        _element(0x0900, struct.pack("<H", int(primitive.Status))),
        _element(0x1000, _padded(instance_uid)),
    ))
    return _element(0x0000, struct.pack("<I", len(body))) + body


def _apply() -> None:
    """Plain C-STORE responses are written with ``encode``."""
    original = DIMSEServiceProvider.send_msg

    def send_msg(self: Any, primitive: Any, context_id: int) -> None:
        command = encode(primitive)
        limit = self.maximum_pdu_size
        if (command is None or (limit and len(command) + 6 > limit)
                or self.assoc.get_handlers(evt.EVT_DIMSE_SENT)):
            original(self, primitive, context_id)
            return
        pdata = P_DATA()
        pdata.presentation_data_value_list.append(
            (context_id, _LAST_COMMAND_FRAGMENT + command))
        self.dul.send_pdu(pdata)

    DIMSEServiceProvider.send_msg = send_msg  # type: ignore[method-assign]


_PATCH = PynetdicomPatch("the plain C-STORE response", _apply)
#: Patch pynetdicom (once); False if its version is not one this was written for.
install = _PATCH.install
installed = _PATCH.installed


def _element(element: int, value: bytes) -> bytes:
    """A group 0000 element, Implicit VR Little Endian."""
    return struct.pack("<HHI", 0x0000, element, len(value)) + value


def _padded(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw
