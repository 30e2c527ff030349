"""Which media type a frame is sent as, per transfer syntax (PS3.18 Table 8.7.3-4/-5).

Viewers decode each frame from its multipart part's Content-Type (OHIF reads
the ``transfer-syntax`` parameter first, then the type), so a wrong label
renders a black image with a 200: every syntax we cannot label is refused
(406) rather than guessed.
"""

from __future__ import annotations

from dicomweb_gw.errors import NotAcceptable

__all__ = [
    "MEDIA_TYPE_ALIASES",
    "NATIVE_FRAME_SYNTAX",
    "NATIVE_SYNTAXES",
    "frame_media_type",
    "is_native_syntax",
    "part_content_type",
]

#: Native frames leave FrameReader little endian whatever the file's encoding,
#: so they are always labelled Explicit VR Little Endian.
NATIVE_FRAME_SYNTAX = "1.2.840.10008.1.2.1"

OCTET_STREAM = "application/octet-stream"

#: Transfer syntaxes whose frames are uncompressed pixel bytes. Encapsulated
#: Uncompressed (1.2.840.10008.1.2.1.98) stores each frame in a fragment but
#: the bytes are plain little endian pixels, so it belongs here too.
NATIVE_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2",  # Implicit VR Little Endian
        "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
        "1.2.840.10008.1.2.1.98",  # Encapsulated Uncompressed Explicit VR Little Endian
        "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian (pixels are inflated)
        "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired; swapped on extraction)
    }
)

_COMPRESSED: dict[str, str] = {
    # JPEG baseline, extended, lossless (process 14) and lossless SV1
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    # JPEG-LS lossless and near-lossless
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    # JPEG 2000 Part 1; Part 2 multi-component is image/jpx in the standard's table
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    # High-Throughput JPEG 2000 (lossless, lossless RPCL, lossy)
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    # JPEG XL (lossless, JPEG recompression, lossy)
    "1.2.840.10008.1.2.4.110": "image/jxl",
    "1.2.840.10008.1.2.4.111": "image/jxl",
    "1.2.840.10008.1.2.4.112": "image/jxl",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}


#: Other names clients send for a standard frame media type, understood in
#: Accept: the older RLE type, and image/jhc, which cornerstone3D and
#: dicomweb-client (OHIF) ask HTJ2K frames with where PS3.18 Table 8.7.3-5
#: says image/jphc. Frames are always labelled with the standard name.
MEDIA_TYPE_ALIASES = {"image/x-dicom-rle": "image/dicom-rle", "image/jhc": "image/jphc"}


def is_native_syntax(transfer_syntax_uid: str) -> bool:
    """True when frames of this syntax are (or become) plain little endian pixel bytes."""
    return transfer_syntax_uid in NATIVE_SYNTAXES


def frame_media_type(transfer_syntax_uid: str) -> str:
    """The media type a frame stored in ``transfer_syntax_uid`` is sent as.

    Raises NotAcceptable for syntaxes without a single-frame media type
    (video, retired JPEG processes, unknown UIDs): the caller should transcode
    to native instead.
    """
    if transfer_syntax_uid in NATIVE_SYNTAXES:
        return OCTET_STREAM
    try:
        return _COMPRESSED[transfer_syntax_uid]
    except KeyError:
        raise NotAcceptable(
            f"frames in transfer syntax {transfer_syntax_uid} cannot be sent as stored"
        ) from None


def part_content_type(transfer_syntax_uid: str) -> str:
    """The Content-Type of one multipart part holding a frame in this syntax.

    Native frames are labelled with NATIVE_FRAME_SYNTAX: that is what they are
    after FrameReader extracted them, whatever the file's own encoding.
    """
    media_type = frame_media_type(transfer_syntax_uid)
    syntax = NATIVE_FRAME_SYNTAX if media_type == OCTET_STREAM else transfer_syntax_uid
    return f"{media_type}; transfer-syntax={syntax}"
