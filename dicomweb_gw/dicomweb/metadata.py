"""WADO-RS metadata: an instance's DICOM JSON (PS3.18 F.2) with bulk data as URIs.

Built from the cached Part 10 file with large values deferred: pixel data
and other big binary values are never read, only their length and VR are
needed to replace them with a BulkDataURI that the bulkdata route serves
(see dicomweb_gw.codecs.bulkdata.locate, which follows the same tag paths).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from dicomweb_gw.codecs.mediatypes import is_native_syntax
from dicomweb_gw.codecs.photometric import native_photometric
from dicomweb_gw.codecs.video import is_video_syntax
from dicomweb_gw.dicomweb.dicomjson import to_dicom_json
from dicomweb_gw.dicomweb.raw_json import plain_vr
from dicomweb_gw.errors import BadRequest

__all__ = ["BULK_THRESHOLD", "bulk_uri_path", "instance_metadata", "tag_path_from_uri"]

#: Binary values longer than this many bytes become BulkDataURIs.
BULK_THRESHOLD = 1024
_BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
#: Pixel Data, Float Pixel Data, Double Float Pixel Data: always bulk, whatever their size.
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
#: Encapsulated Document (0042,0011) of an encapsulated PDF or CDA: bulk data whatever its
#: size, as a viewer fetches the document from its BulkDataURI with its own media type
#: (a one-page PDF can be under 1 KB).
_ENCAPSULATED_DOCUMENT = 0x00420011

TagPath = list[int | str]


def instance_metadata(path: Path, instance_path: str) -> dict[str, Any]:
    """The DICOM JSON object of the instance in ``path``, File Meta excluded.

    ``instance_path`` is relative ("studies/1.2/series/3.4/instances/5.6"):
    each BulkDataURI is "<instance_path>/bulkdata/<tag path>" and the caller
    prefixes the client's base URL.
    """
    # Values over the threshold are skipped at parse time; those that turn out
    # not to be bulk (long text, sequences) are read back when converted.
    dataset = dcmread(path, defer_size=BULK_THRESHOLD)
    _correct_photometric(dataset)
    bulk: list[tuple[TagPath, str]] = []
    _take_bulk(dataset, [], bulk)
    stored = dataset.file_meta.get("TransferSyntaxUID")
    if is_video_syntax(stored or "") and "AvailableTransferSyntaxUID" not in dataset:
        # (0008,3002): a video's syntax, which only the File Meta left out here says.
        # OHIF tells a video (MPEG-4, HEVC) from a multi-frame image by it.
        dataset.AvailableTransferSyntaxUID = stored
    result = to_dicom_json(dataset)
    for tag_path, vr in bulk:
        uri = f"{instance_path}/bulkdata/{bulk_uri_path(tag_path)}"
        _insert(result, tag_path, {"vr": vr, "BulkDataURI": uri})
    return result


def _correct_photometric(dataset: Dataset) -> None:
    """Uncompressed YBR_FULL_422 over full-size samples is RGB, as the frames resource
    and the renderer read it (dicomweb_gw/codecs/photometric.py); the pixel data's
    length is read from the undecoded element, the value never."""
    syntax = str(dataset.file_meta.get("TransferSyntaxUID", ""))
    item = dataset.get_item(0x7FE00010, keep_deferred=True)
    if item is None or not is_native_syntax(syntax) or "PhotometricInterpretation" not in dataset:
        return
    length = item.length if isinstance(item, RawDataElement) else len(item.value or b"")
    try:
        label = native_photometric(
            str(dataset.PhotometricInterpretation), int(dataset.get("SamplesPerPixel") or 1),
            int(dataset.BitsAllocated), int(dataset.Rows) * int(dataset.Columns),
            int(dataset.get("NumberOfFrames") or 1),
            None if length == 0xFFFFFFFF else length)
    except (AttributeError, TypeError, ValueError):
        return  # a malformed pixel module: reported by the frames, not here
    dataset.PhotometricInterpretation = label


def bulk_uri_path(tag_path: TagPath) -> str:
    """[0x00540016, 0, 0x00181072] -> "00540016/0/00181072"."""
    return "/".join(
        f"{part:08X}" if position % 2 == 0 else str(part)
        for position, part in enumerate(tag_path)
    )


def tag_path_from_uri(segment: str) -> list[int | str]:
    """"00540016/0/00181072" -> [0x00540016, 0, 0x00181072]; BadRequest when malformed."""
    parts = segment.split("/")
    if len(parts) % 2 != 1:
        raise BadRequest(f"bulk data path '{segment}' must be tag[/item/tag]...")
    result: list[int | str] = []
    for position, part in enumerate(parts):
        if position % 2 == 0:
            if len(part) != 8 or not all(c in "0123456789abcdefABCDEF" for c in part):
                raise BadRequest(f"'{part}' in bulk data path is not an 8-digit hex tag")
            result.append(int(part, 16))
        else:
            if not (part.isascii() and part.isdigit()):
                raise BadRequest(f"'{part}' in bulk data path is not an item index")
            result.append(int(part))
    return result


def _take_bulk(dataset: Dataset, prefix: TagPath, bulk: list[tuple[TagPath, str]]) -> None:
    """Remove bulk elements from ``dataset`` (recursively), recording (tag path, VR)."""
    for tag in list(dataset.keys()):
        if tag & 0xFFFF == 0:
            # Group lengths describe one encoding of the file, not the instance.
            del dataset[tag]
            continue
        raw = dataset.get_item(tag, keep_deferred=True)
        if isinstance(raw, RawDataElement) and raw.value is not None and plain_vr(raw):
            continue  # text or numbers, read whole: neither bulk nor a sequence (not decoded)
        try:
            vr = _bulk_vr(dataset, tag)
            if vr is None and not prefix and tag == _ENCAPSULATED_DOCUMENT:
                vr = str(dataset[tag].VR) if not dataset[tag].is_empty else None
            element = None if vr else dataset[tag]
        except Exception:
            # A value pydicom cannot convert: left for to_dicom_json, which
            # drops it (with a warning) rather than failing the whole response.
            continue
        if vr is not None:
            del dataset[tag]
            bulk.append(([*prefix, int(tag)], vr))
        elif element is not None and element.VR == "SQ" and isinstance(
            element.value, DicomSequence
        ):
            for index, item in enumerate(element.value):
                _take_bulk(item, [*prefix, int(tag), index], bulk)


def _bulk_vr(dataset: Dataset, tag: int) -> str | None:
    """The VR to report when the element is bulk data, else None.

    Decided from the undecoded element where possible, so a deferred pixel
    data value is never read just to learn that it is large.
    """
    item = dataset.get_item(tag, keep_deferred=True)
    if isinstance(item, RawDataElement) and item.value is None and item.length:
        # Deferred: longer than the threshold, or of undefined length
        # (encapsulated pixel data); only its VR is still needed.
        vr = item.VR or _implicit_vr(tag)
        if vr in _BULK_VRS and not (vr == "UN" and _known(tag)):
            return vr
        if tag in _PIXEL_TAGS:
            return vr if vr in _BULK_VRS else "OW"
        # An unknown VR, a UN the dictionary knows better, or a non-binary
        # VR: let pydicom convert it (this reads the value) and look again.
    element = dataset[tag]
    return _converted_bulk_vr(element)


def _converted_bulk_vr(element: DataElement) -> str | None:
    if element.VR not in _BULK_VRS or element.is_empty:
        return None
    value = element.value
    length = len(value) if isinstance(value, bytes | bytearray) else 0
    if element.tag in _PIXEL_TAGS or length > BULK_THRESHOLD:
        return str(element.VR)
    return None


def _implicit_vr(tag: int) -> str:
    """The VR of an element read without one (Implicit VR), as pydicom would choose."""
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "UN"
    # "OB or OW" (pixel, overlay data): Implicit VR Little Endian encodes them as OW (PS3.5 A.1).
    return "OW" if vr == "OB or OW" else vr


def _known(tag: int) -> bool:
    try:
        dictionary_VR(tag)
    except KeyError:
        return False
    return True


def _insert(node: dict[str, Any], tag_path: TagPath, entry: dict[str, Any]) -> None:
    """Put ``entry`` at ``tag_path`` in a DICOM JSON object, keeping keys in tag order."""
    for position in range(0, len(tag_path) - 1, 2):
        sequence = node.get(f"{tag_path[position]:08X}")
        if sequence is None:
            return  # pydicom left out an invalid sequence, and its contents with it
        node = sequence["Value"][tag_path[position + 1]]
    node[f"{tag_path[-1]:08X}"] = entry
    ordered = sorted(node.items())
    node.clear()
    node.update(ordered)
