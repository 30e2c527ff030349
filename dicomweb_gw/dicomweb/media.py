"""Instances whose content is a file of its own: videos and encapsulated documents.

A video's Pixel Data is an MP4 or MPEG stream, an Encapsulated PDF or CDA's
Encapsulated Document (0042,0011) a PDF or an XML file. Cut into frames or
rendered as images they mean nothing; served as they are, with their own media
type, a browser plays or shows them. So they are answered whole (with byte
ranges, for seeking) at

- their bulk data URI (``.../bulkdata/7FE00010``, ``.../bulkdata/00420011``);
- the instance's frames resource (a video: the frames are inside the stream);
- the instance's rendered resource. PS3.18 8.7.4 lists video/mpeg, video/mp4
  and video/H265 among the Rendered Media Types for video, and text/xml and
  application/pdf for text, and notes: "Some of the same non-DICOM Media Types
  are also used as Bulk Data Media Types, that is, for encoding Bulk Data
  extracted from Encapsulated Pixel Data (used with compressed Transfer
  Syntaxes), without applying a rendering process." The rendering of a video
  or a document is the stream or document itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import anyio
from pydicom import dcmread

from dicomweb_gw.cache.protocol import CachedInstance
from dicomweb_gw.codecs.bulkdata import BulkLocation, iter_pieces, locate
from dicomweb_gw.codecs.video import RENDERED_VIDEO_TYPES, VIDEO_MEDIA_TYPES, video_pieces
from dicomweb_gw.dicomweb.pixels import PixelService, evicted_as_503
from dicomweb_gw.model import RetrieveKeys
from dicomweb_gw.pacs.protocol import PacsClient

__all__ = [
    "ENCAPSULATED_DOCUMENT",
    "MediaBody",
    "bulk_media",
    "instance_media",
    "iter_media",
    "read_media",
]

PIXEL_DATA = 0x7FE00010
ENCAPSULATED_DOCUMENT = 0x00420011
#: Encapsulated PDF, CDA, STL, OBJ, MTL: 1.2.840.10008.5.1.4.1.1.104.x
_ENCAPSULATED_CLASSES = "1.2.840.10008.5.1.4.1.1.104."
_OCTET = "application/octet-stream"


@dataclass(frozen=True)
class MediaBody:
    """A video stream or a document, where it lies in the cached file."""

    path: Path
    pieces: tuple[BulkLocation, ...]
    #: Its bulk data media type: video/mp4, video/mpeg2, video/H265, application/pdf, text/xml...
    media_type: str
    #: Its rendered media type (MPEG-2 is video/mpeg there); the same for documents.
    rendered_type: str
    #: The video's transfer syntax (labels multipart parts); None for a document.
    transfer_syntax_uid: str | None
    #: Frames in a video (the frame list of a frames request is checked against it).
    number_of_frames: int
    keep: CachedInstance  # keeps the cache entry referenced while serving

    @property
    def size(self) -> int:
        return sum(piece.length for piece in self.pieces)

    @property
    def is_video(self) -> bool:
        return self.transfer_syntax_uid is not None

    def describe(self) -> str:
        what = "video" if self.is_video else "document"
        return f"{what} ({self.media_type}) of instance {self.keep.sop_instance_uid}"


async def bulk_media(pixels: PixelService, pacs: PacsClient, keys: RetrieveKeys,
                     tag_path: Sequence[int | str]) -> MediaBody | None:
    """The video or document a bulk data URI points at; None for any other bulk data.

    Only Pixel Data and Encapsulated Document are looked at, so other bulk data
    requests cost nothing more.
    """
    if list(tag_path) not in ([PIXEL_DATA], [ENCAPSULATED_DOCUMENT]):
        return None
    media = await instance_media(pixels, pacs, keys)
    if media is None:
        return None
    return media if (tag_path[0] == PIXEL_DATA) == media.is_video else None


async def instance_media(pixels: PixelService, pacs: PacsClient,
                         keys: RetrieveKeys) -> MediaBody | None:
    """The instance's video stream or encapsulated document; None for anything else."""
    handle = await pixels.instance(pacs, keys)
    if not isinstance(handle, CachedInstance):
        return None  # not kept by the cache: served as before, or refused, by the caller
    video = VIDEO_MEDIA_TYPES.get(handle.transfer_syntax_uid)
    is_document = handle.sop_class_uid.startswith(_ENCAPSULATED_CLASSES)
    if video is None and not is_document:
        return None
    with evicted_as_503():
        if video is not None:
            pieces, frames = await anyio.to_thread.run_sync(_video, handle.path)
            return MediaBody(handle.path, pieces, video, RENDERED_VIDEO_TYPES[video],
                             handle.transfer_syntax_uid, frames, handle)
        piece, media_type = await anyio.to_thread.run_sync(_document, handle.path)
    return MediaBody(handle.path, (piece,), media_type, media_type, None, 1, handle)


def read_media(media: MediaBody, start: int = 0, end: int | None = None) -> bytes:
    """``media[start:end]`` (worker thread)."""
    return b"".join(iter_media(media, start, end))


def iter_media(media: MediaBody, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    with evicted_as_503():
        yield from iter_pieces(media.path, media.pieces, start, end)


def _video(path: Path) -> tuple[tuple[BulkLocation, ...], int]:
    return video_pieces(path), _header(path, path.stat().st_mtime_ns).number_of_frames


def _document(path: Path) -> tuple[BulkLocation, str]:
    """The document's bytes (without the pad byte of an odd length) and its media type."""
    location = locate(path, [ENCAPSULATED_DOCUMENT])
    header = _header(path, path.stat().st_mtime_ns)
    length = header.document_length
    if length is not None and 0 < length <= location.length:
        location = BulkLocation(location.offset, length)
    return location, header.mime_type


@dataclass(frozen=True)
class _Header:
    number_of_frames: int
    mime_type: str
    document_length: int | None


@lru_cache(maxsize=1024)
def _header(path: Path, mtime_ns: int) -> _Header:
    """What serving needs from the header, read once per cache file."""
    ds = dcmread(path, stop_before_pixels=True, defer_size=256, specific_tags=[
        "NumberOfFrames", "MIMETypeOfEncapsulatedDocument", "EncapsulatedDocumentLength"])
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        frames = 1
    # PS3.3 C.24.2.1 writes "text/XML" for CDA: media types compare case-insensitively.
    mime = str(ds.get("MIMETypeOfEncapsulatedDocument") or _OCTET).strip().lower() or _OCTET
    length = ds.get("EncapsulatedDocumentLength")
    return _Header(frames, mime, int(length) if length is not None else None)
