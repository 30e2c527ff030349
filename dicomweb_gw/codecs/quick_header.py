"""The two pieces of DICOM encoding on the path of every retrieved instance, without pydicom.

Each instance a retrieve brings is filed in the cache: a File Meta Information
is written in front of the data set (``part10.part10_chunks``) and its study,
series and numbers are read (``cache/_files.header_of``). Through pydicom the
two took about 5 ms of CPU per instance (its element objects, validation and
tag lookups), more than pynetdicom's receive of a 0.5 MB CT slice, and under
the same GIL as that receive and the HTTP stream. Here they are done with
``struct`` in tens of microseconds.

Both are fast paths only: whatever they do not handle (a big endian or
deflated data set, a value that is not plain ASCII, anything malformed) gives
None, and the caller goes through pydicom as before. The tests check both
against pydicom's own output, byte for byte and value for value.
"""

from __future__ import annotations

import re
import struct

__all__ = ["Numbers", "file_meta", "scan_header"]

_UID = re.compile(rb"[0-9.]{1,64}\Z")
#: Explicit VR with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_STUDY_UID, _SERIES_UID, _SERIES_NUMBER, _INSTANCE_NUMBER = (
    0x0020000D, 0x0020000E, 0x00200011, 0x00200013)
#: Sequences nested deeper than this are left to pydicom.
_MAX_DEPTH = 16

#: (study UID, series UID, series number, instance number), as ``_files.Header`` has them.
Numbers = tuple[str, str, int | None, int | None]


class _Unhandled(Exception):
    """Something the fast path leaves to pydicom."""


def file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str,
              implementation_class_uid: str, implementation_version_name: str) -> bytes | None:
    """The File Meta Information (group 0002, Explicit VR Little Endian, with its group
    length and version) as pydicom's ``write_file_meta_info(enforce_standard=True)``
    writes it; None if a UID is not a plain UID or the name is not plain ASCII."""
    uids = [value.encode("ascii", "replace") for value in
            (sop_class_uid, sop_instance_uid, transfer_syntax_uid, implementation_class_uid)]
    name = implementation_version_name.encode("ascii", "replace")
    if not all(_UID.match(value) for value in uids) or b"?" in name or len(name) > 16:
        return None
    elements = [_short(0x0002, 0x0002, b"UI", _even(uids[0], b"\0")),
                _short(0x0002, 0x0003, b"UI", _even(uids[1], b"\0")),
                _short(0x0002, 0x0010, b"UI", _even(uids[2], b"\0")),
                _short(0x0002, 0x0012, b"UI", _even(uids[3], b"\0")),
                _short(0x0002, 0x0013, b"SH", _even(name, b" "))]
    version = struct.pack("<HH2sHI", 0x0002, 0x0001, b"OB", 0, 2) + b"\0\1"
    body = version + b"".join(elements)
    return _short(0x0002, 0x0000, b"UL", struct.pack("<I", len(body))) + body


def scan_header(data_set: bytes | memoryview, *, implicit_vr: bool) -> Numbers | None:
    """StudyInstanceUID, SeriesInstanceUID, SeriesNumber, InstanceNumber of a little
    endian data set, reading elements up to InstanceNumber; None when a value or the
    encoding is beyond this fast path (pydicom is then asked)."""
    view = memoryview(data_set)
    try:
        values, _ = _scan(view, 0, len(view), implicit_vr, 0, top=True)
    except (_Unhandled, struct.error, IndexError):
        return None
    study, series = _uid(values.get(_STUDY_UID)), _uid(values.get(_SERIES_UID))
    if study is None or series is None:
        return None
    try:
        return (study, series, _number(values.get(_SERIES_NUMBER)),
                _number(values.get(_INSTANCE_NUMBER)))
    except _Unhandled:
        return None


def _scan(view: memoryview, offset: int, end: int, implicit_vr: bool, depth: int, *,
          top: bool = False) -> tuple[dict[int, bytes], int]:
    """Elements from ``offset`` to ``end`` (or to an item delimiter inside a sequence):
    at the top level, the four wanted values (stopping after InstanceNumber); the
    offset reached."""
    if depth > _MAX_DEPTH:
        raise _Unhandled
    wanted: dict[int, bytes] = {}
    while offset < end:
        group, element = struct.unpack_from("<HH", view, offset)
        tag = group << 16 | element
        if tag == _ITEM_END:
            return wanted, offset + 8
        if top and tag > _INSTANCE_NUMBER:
            return wanted, offset
        if implicit_vr or group == 0xFFFE:
            vr = b""
            (length,) = struct.unpack_from("<I", view, offset + 4)
            offset += 8
        else:
            vr = bytes(view[offset + 4:offset + 6])
            if vr in _LONG_VRS:
                (length,) = struct.unpack_from("<I", view, offset + 8)
                offset += 12
            else:
                (length,) = struct.unpack_from("<H", view, offset + 6)
                offset += 8
        if length == _UNDEFINED:
            if vr not in (b"SQ", b"UN", b""):
                raise _Unhandled  # undefined-length pixel data (no wanted value lies beyond)
            offset = _skip_sequence(view, offset, end, implicit_vr or vr == b"UN", depth + 1)
            continue
        if offset + length > end:
            raise _Unhandled
        if top and tag in (_STUDY_UID, _SERIES_UID, _SERIES_NUMBER, _INSTANCE_NUMBER):
            wanted[tag] = bytes(view[offset:offset + length])
        offset += length
    return wanted, offset


def _skip_sequence(view: memoryview, offset: int, end: int, implicit_vr: bool,
                   depth: int) -> int:
    """Past a sequence of undefined length: its items, then its delimiter."""
    while offset < end:
        group, element = struct.unpack_from("<HH", view, offset)
        (length,) = struct.unpack_from("<I", view, offset + 4)
        tag = group << 16 | element
        offset += 8
        if tag == _SEQUENCE_END:
            return offset
        if tag != _ITEM:
            raise _Unhandled
        if length == _UNDEFINED:
            _, offset = _scan(view, offset, end, implicit_vr, depth)
        else:
            offset += length
    raise _Unhandled


def _short(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _even(value: bytes, pad: bytes) -> bytes:
    return value + pad if len(value) % 2 else value


def _uid(value: bytes | None) -> str | None:
    if value is None:
        return None
    text = value.rstrip(b"\0 ")
    if not text or not _UID.match(text):
        return None  # empty, multi-valued or odd: pydicom decides
    return text.decode("ascii")


def _number(value: bytes | None) -> int | None:
    """An IS value as ``_files._integer`` reads it (None when absent or malformed)."""
    if value is None:
        return None
    text = value.strip(b" \0")
    if not text:
        return None
    if not text.isascii():
        raise _Unhandled
    try:
        return int(text)
    except ValueError:
        raise _Unhandled from None  # "1.0", "1\\2", garbage: as pydicom reads them
