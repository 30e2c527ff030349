"""Byte locations of element values in a Part 10 file, for WADO-RS bulk data.

The file is parsed with large values deferred, so pixel data is never read to
find it: pydicom records where each value starts (``value_tell``) and skips it.
What is served is the value exactly as the file holds it; for multi-byte VRs
in a big endian file that means big endian bytes (the gateway's cache is
little endian in practice, so this is noted rather than converted).
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from dicomweb_gw.errors import BadRequest, GatewayError, NotFound

__all__ = [
    "DEFER_SIZE",
    "BulkLocation",
    "MalformedFile",
    "encapsulated_items",
    "frame_fragments",
    "iter_pieces",
    "iter_range",
    "locate",
    "read_at",
    "read_range",
]

#: Values longer than this are skipped, not read, when a file is parsed.
DEFER_SIZE = 1024
UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_DEFLATED = "1.2.840.10008.1.2.1.99"
_EOI = b"\xff\xd9"  # JPEG EOI; also the JPEG 2000 EOC marker


class MalformedFile(GatewayError):
    """The cached instance is not well-formed DICOM (as the PACS sent it)."""

    status_code = 502


@dataclass(frozen=True)
class BulkLocation:
    """Where an element's value lies in the file: ``length`` bytes from ``offset``."""

    offset: int
    length: int


def encapsulated_items(fp: BinaryIO, offset: int) -> tuple[list[BulkLocation], int]:
    """The items of an encapsulated value starting at ``offset``, and the value's length.

    The first item is the Basic Offset Table, the rest are fragments. The
    length runs up to, not including, the Sequence Delimitation Item.
    Encapsulated syntaxes are all little endian (PS3.5 A.4).
    """
    fp.seek(offset)
    items: list[BulkLocation] = []
    while True:
        header = fp.read(8)
        if len(header) < 8:
            raise MalformedFile(f"encapsulated pixel data truncated at byte {fp.tell()}")
        group, element, length = struct.unpack("<HHL", header)
        tag = group << 16 | element
        if tag == _SEQUENCE_DELIMITER:
            return items, fp.tell() - 8 - offset
        if tag != _ITEM or length == UNDEFINED_LENGTH:
            at = fp.tell() - 8
            raise MalformedFile(f"unexpected item ({tag:08X}) in pixel data at byte {at}")
        items.append(BulkLocation(fp.tell(), length))
        fp.seek(length, 1)


def frame_fragments(
    fp: BinaryIO,
    offset: int,
    number_of_frames: int,
    extended_offsets: list[tuple[int, int]] | None = None,
) -> list[list[BulkLocation]]:
    """The fragments of each frame of the encapsulated value at ``offset``.

    Located once so that each frame request reads only its own fragments.
    Same rules, in the same order, as pydicom.encaps.get_frame: Extended
    Offset Table ((offset, length) pairs), Basic Offset Table, then guessing
    from fragment counts and JPEG EOI / JPEG 2000 EOC markers. A Basic Offset
    Table that is not ascending from 0 is ignored rather than trusted.
    """
    items, _ = encapsulated_items(fp, offset)
    if not items:
        raise MalformedFile("encapsulated pixel data without a Basic Offset Table item")
    table, fragments = items[0], items[1:]
    if not fragments:
        return []
    origin = fragments[0].offset - 8  # offsets count from the first fragment's item tag
    if extended_offsets:
        return [[BulkLocation(origin + start + 8, length)] for start, length in extended_offsets]
    basic = list(struct.unpack(f"<{table.length // 4}L", read_at(fp, table)))
    if basic and basic[0] == 0 and basic == sorted(basic):
        frames: list[list[BulkLocation]] = [[] for _ in basic]
        for fragment in fragments:
            frames[bisect_right(basic, fragment.offset - 8 - origin) - 1].append(fragment)
        return frames
    if len(fragments) == 1 or number_of_frames == 1:
        return [fragments]
    if len(fragments) == number_of_frames:
        return [[fragment] for fragment in fragments]
    # A frame ends with the fragment whose last bytes hold the end marker
    # (a pad byte may follow it).
    frames = []
    current: list[BulkLocation] = []
    for fragment in fragments:
        current.append(fragment)
        tail = min(fragment.length, 10)
        if _EOI in read_at(fp, BulkLocation(fragment.offset + fragment.length - tail, tail)):
            frames.append(current)
            current = []
    if current:
        frames.append(current)
    return frames


def read_at(fp: BinaryIO, location: BulkLocation) -> bytes:
    """The bytes at ``location`` in an open file; MalformedFile if it ends first."""
    fp.seek(location.offset)
    data = fp.read(location.length)
    if len(data) != location.length:
        raise MalformedFile("the file ends inside a value")
    return data


def locate(path: Path, tag_path: Sequence[int | str]) -> BulkLocation:
    """The location of the value at ``tag_path`` (tag, item index, tag, ...).

    Tags may be ints, 8-digit hex strings or keywords; item indexes are 0-based.
    For encapsulated pixel data the location covers the whole encapsulated
    value (offset table and fragment items). Raises NotFound when the element,
    sequence or item is absent.
    """
    tags, indexes = _split(tag_path)
    dataset: Dataset = dcmread(path, defer_size=DEFER_SIZE)
    if dataset.file_meta.get("TransferSyntaxUID") == _DEFLATED:
        # pydicom's offsets would point into the inflated stream, not the file.
        raise GatewayError("bulk data of a Deflated Explicit VR Little Endian file is unsupported")
    # value_tell is absolute for elements read straight from the file, but
    # relative to the value of the nearest enclosing defined-length sequence
    # (pydicom parses those from a copy of the sequence's bytes): track that base.
    base = 0
    for depth, (tag, index) in enumerate(zip(tags, indexes, strict=False)):
        raw = dataset.get_item(tag, keep_deferred=True)
        if raw is None:
            raise NotFound(f"no element {_trail(tags, indexes, depth)} in the instance")
        if isinstance(raw, RawDataElement) and raw.length != UNDEFINED_LENGTH:
            base += raw.value_tell
        value = dataset[tag].value
        if not isinstance(value, DicomSequence):
            raise NotFound(f"element {_trail(tags, indexes, depth)} is not a sequence")
        if index >= len(value):
            raise NotFound(
                f"sequence {_trail(tags, indexes, depth)} has {len(value)} items, no item {index}"
            )
        dataset = value[index]
    leaf = dataset.get_item(tags[-1], keep_deferred=True)
    where = _trail(tags, indexes, len(tags) - 1)
    if leaf is None:
        raise NotFound(f"no element {where} in the instance")
    if not isinstance(leaf, RawDataElement):
        # Only sequences are parsed eagerly; a sequence is not bulk data.
        raise NotFound(f"element {where} is a sequence, not bulk data")
    offset = base + leaf.value_tell
    if leaf.length != UNDEFINED_LENGTH:
        return BulkLocation(offset, leaf.length)
    with open(path, "rb") as fp:
        _, length = encapsulated_items(fp, offset)
    return BulkLocation(offset, length)


def read_range(path: Path, location: BulkLocation, start: int = 0, end: int | None = None) -> bytes:
    """``value[start:end]`` of the located value (end exclusive, clamped to the value)."""
    return b"".join(iter_range(path, location, start, end))


def iter_range(
    path: Path,
    location: BulkLocation,
    start: int = 0,
    end: int | None = None,
    chunk_size: int = 1 << 20,
) -> Iterator[bytes]:
    """``value[start:end]`` in chunks, so large values can be streamed."""
    if start < 0 or (end is not None and end < 0):
        raise ValueError("byte positions must not be negative")
    stop = location.length if end is None else min(end, location.length)
    position = min(start, stop)
    with open(path, "rb") as fp:
        fp.seek(location.offset + position)
        while position < stop:
            chunk = fp.read(min(chunk_size, stop - position))
            if not chunk:
                raise MalformedFile(f"{path.name} ends inside a value")
            position += len(chunk)
            yield chunk


def iter_pieces(path: Path, pieces: Sequence[BulkLocation], start: int = 0,
                end: int | None = None, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """Bytes ``start`` to ``end`` (exclusive) of several values laid end to end, in chunks.

    For a value stored in pieces: the fragments of a video stream, say.
    """
    if start < 0 or (end is not None and end < 0):
        raise ValueError("byte positions must not be negative")
    total = sum(piece.length for piece in pieces)
    stop = total if end is None else min(end, total)
    position = 0  # where the current piece starts in the joined value
    for piece in pieces:
        first, last = max(start, position), min(stop, position + piece.length)
        if first < last:
            yield from iter_range(path, piece, first - position, last - position, chunk_size)
        position += piece.length
        if position >= stop:
            return


def _split(tag_path: Sequence[int | str]) -> tuple[list[int], list[int]]:
    """(tags, item indexes) from an alternating tag path; BadRequest when malformed."""
    if len(tag_path) % 2 != 1:
        raise BadRequest("a bulk data path is tag, item index, tag, ... and ends with a tag")
    tags = [_as_tag(part) for part in tag_path[0::2]]
    indexes = [_as_index(part) for part in tag_path[1::2]]
    return tags, indexes


def _as_tag(part: int | str) -> int:
    if isinstance(part, int):
        tag = part
    elif len(part) == 8 and all(c in "0123456789abcdefABCDEF" for c in part):
        tag = int(part, 16)
    else:
        found = tag_for_keyword(part)
        if found is None:
            raise BadRequest(f"'{part}' is neither a tag nor a keyword")
        tag = found
    if not 0 <= tag <= 0xFFFFFFFF:
        raise BadRequest(f"tag {tag:#x} is out of range")
    return tag


def _as_index(part: int | str) -> int:
    if isinstance(part, str):
        if not (part.isascii() and part.isdigit()):
            raise BadRequest(f"item index '{part}' is not a number")
        part = int(part)
    if part < 0:
        raise BadRequest(f"item index {part} is negative")
    return part


def _trail(tags: list[int], indexes: list[int], depth: int) -> str:
    """The path down to ``tags[depth]``, formatted as in a BulkDataURI."""
    parts: list[str] = []
    for level in range(depth + 1):
        parts.append(f"{tags[level]:08X}")
        if level < depth:
            parts.append(str(indexes[level]))
    return "/".join(parts)
