"""Video pixel data (MPEG-2, MPEG-4 AVC/H.264, HEVC/H.265): its media type and its bytes.

A video instance's Pixel Data is one encapsulated stream (PS3.5 8.2.5-8.2.8: an
MPEG-2 program or transport stream, or an MP4 container), split over one or
more fragments after the Basic Offset Table. It has no frames of its own that a
client could decode one by one: the gateway serves the stream whole, as the
fragments' bytes one after the other, which is the file a browser's ``<video>``
plays.
"""

from __future__ import annotations

from pathlib import Path

from dicomweb_gw.codecs.bulkdata import BulkLocation, encapsulated_items, locate

__all__ = [
    "RENDERED_VIDEO_TYPES",
    "VIDEO_MEDIA_TYPES",
    "is_video_syntax",
    "video_pieces",
]

PIXEL_DATA = 0x7FE00010

_MPEG2 = "video/mpeg2"
_MP4 = "video/mp4"
_H265 = "video/H265"

#: PS3.18 Table 8.7.3-5, the bulk data media type of each video transfer syntax
#: (the fragmentable ``.1`` variants hold the same streams).
VIDEO_MEDIA_TYPES: dict[str, str] = {
    "1.2.840.10008.1.2.4.100": _MPEG2,  # MPEG2 Main Profile / Main Level
    "1.2.840.10008.1.2.4.100.1": _MPEG2,
    "1.2.840.10008.1.2.4.101": _MPEG2,  # MPEG2 Main Profile / High Level
    "1.2.840.10008.1.2.4.101.1": _MPEG2,
    "1.2.840.10008.1.2.4.102": _MP4,  # MPEG-4 AVC/H.264 High Profile / Level 4.1
    "1.2.840.10008.1.2.4.102.1": _MP4,
    "1.2.840.10008.1.2.4.103": _MP4,  # ... BD-compatible
    "1.2.840.10008.1.2.4.103.1": _MP4,
    "1.2.840.10008.1.2.4.104": _MP4,  # ... High Profile / Level 4.2 for 2D video
    "1.2.840.10008.1.2.4.104.1": _MP4,
    "1.2.840.10008.1.2.4.105": _MP4,  # ... for 3D video
    "1.2.840.10008.1.2.4.105.1": _MP4,
    "1.2.840.10008.1.2.4.106": _MP4,  # ... Stereo High Profile / Level 4.2
    "1.2.840.10008.1.2.4.106.1": _MP4,
    "1.2.840.10008.1.2.4.107": _H265,  # HEVC/H.265 Main Profile / Level 5.1
    "1.2.840.10008.1.2.4.108": _H265,  # HEVC/H.265 Main 10 Profile / Level 5.1
}

#: The rendered media type of each bulk data one (PS3.18 Table 8.7.4-1 names MPEG-2
#: ``video/mpeg``, the type browsers know; mp4 and H265 are the same in both tables).
RENDERED_VIDEO_TYPES: dict[str, str] = {_MPEG2: "video/mpeg", _MP4: _MP4, _H265: _H265}


def is_video_syntax(transfer_syntax_uid: str) -> bool:
    return transfer_syntax_uid in VIDEO_MEDIA_TYPES


def video_pieces(path: Path) -> tuple[BulkLocation, ...]:
    """Where the video stream lies in the file: its fragments, in order.

    The Basic Offset Table (the first item) is skipped: a stream split across
    fragments is their concatenation. Padding a fragment to even length may leave
    one zero byte at the end, which players ignore.
    """
    location = locate(path, [PIXEL_DATA])
    with open(path, "rb") as fp:
        items, _ = encapsulated_items(fp, location.offset)
    return tuple(items[1:])

