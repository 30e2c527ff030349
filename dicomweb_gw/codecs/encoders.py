"""Encoding one native frame into another transfer syntax.

The frame is the little endian pixel bytes FrameReader.native() returns; the
encoders are pydicom's (its own RLE, pylibjpeg-rle, pylibjpeg-openjpeg and
pyjpegls) and imagecodecs' OpenJPH for HTJ2K (``codecs/htj2k.py``), asked for
one frame at a time so a 500-frame instance never costs more than the frame a
viewer asked for. Every target is lossless but HTJ2K (.203), which a client
gets only by naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread, uid
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.encoders.base import get_encoder

from dicomweb_gw.codecs.frames import FrameInfo
from dicomweb_gw.codecs.htj2k import HTJ2K_SYNTAXES, encode_htj2k
from dicomweb_gw.codecs.htj2k import available as htj2k_available
from dicomweb_gw.codecs.mediatypes import NATIVE_SYNTAXES, OCTET_STREAM
from dicomweb_gw.errors import NotAcceptable

__all__ = [
    "ENCODABLE",
    "LOSSY_TARGETS",
    "SampleFormat",
    "TranscodeError",
    "can_decode",
    "encode_frame",
    "sample_format",
]

#: Targets (all lossless but HTJ2K .203) and the media type a frame in each is
#: sent as. Explicit VR Little Endian is the identity on native frames.
_CANDIDATES: dict[str, str] = {
    uid.ExplicitVRLittleEndian: OCTET_STREAM,
    uid.RLELossless: "image/dicom-rle",
    uid.JPEGLSLossless: "image/jls",
    uid.JPEG2000Lossless: "image/jp2",
    # HTJ2K: encoded by imagecodecs (OpenJPH), not pydicom (codecs/htj2k.py).
    uid.HTJ2KLossless: "image/jphc",
    uid.HTJ2KLosslessRPCL: "image/jphc",
    uid.HTJ2K: "image/jphc",
}


def _encodable() -> dict[str, str]:
    """The candidates whose encoder has an installed plugin (pyjpegls is optional)."""
    found: dict[str, str] = {uid.ExplicitVRLittleEndian: OCTET_STREAM}
    for syntax, media_type in _CANDIDATES.items():
        if syntax in HTJ2K_SYNTAXES:
            if htj2k_available():
                found[syntax] = media_type
            continue
        try:
            if get_encoder(syntax).is_available:
                found[syntax] = media_type
        except NotImplementedError:  # pydicom has no encoder class for it at all
            continue
    return found


ENCODABLE: dict[str, str] = _encodable()

#: The encodable syntaxes whose frames do not decode back exactly: produced
#: only for a client that names them, never as a fallback.
LOSSY_TARGETS = frozenset({uid.HTJ2K})


class TranscodeError(NotAcceptable):
    """Pixel data cannot be produced in the requested transfer syntax (406:
    the client can ask for another one, or for the data as stored)."""


@dataclass(frozen=True)
class SampleFormat:
    """The Image Pixel attributes an encoder needs beyond FrameInfo."""

    bits_stored: int
    pixel_representation: int  # 0 unsigned, 1 two's complement


@cache
def can_decode(transfer_syntax_uid: str) -> bool:
    """Whether frames stored in this syntax can be turned into native pixels."""
    if transfer_syntax_uid in NATIVE_SYNTAXES:
        return True
    try:
        return get_decoder(transfer_syntax_uid).is_available
    except NotImplementedError:
        return False


def sample_format(path: Path) -> SampleFormat:
    """Bits Stored and Pixel Representation of a Part 10 file (header only)."""
    dataset = dcmread(path, stop_before_pixels=True,
                      specific_tags=["BitsAllocated", "BitsStored", "PixelRepresentation"])
    allocated = int(dataset.get("BitsAllocated") or 16)
    return SampleFormat(int(dataset.get("BitsStored") or allocated),
                        int(dataset.get("PixelRepresentation") or 0))


def encode_frame(native: bytes, info: FrameInfo, transfer_syntax_uid: str,
                 sample: SampleFormat | None = None) -> bytes:
    """One native frame (laid out as ``info`` says) encoded in ``transfer_syntax_uid``.

    Lossless (every target but HTJ2K .203): decoding the result gives back
    exactly ``native``. ``sample`` defaults to unsigned samples using every
    allocated bit, which is exact but loses the sign for JPEG 2000 (whose
    codestream records it).
    """
    name = uid.UID(transfer_syntax_uid).name
    if transfer_syntax_uid == uid.ExplicitVRLittleEndian:
        return native
    if transfer_syntax_uid not in ENCODABLE:
        raise TranscodeError(f"the gateway cannot encode {name}; it can encode "
                             f"{', '.join(uid.UID(s).name for s in ENCODABLE)}")
    if info.photometric_interpretation == "YBR_FULL_422":
        raise TranscodeError(f"chroma-subsampled YBR_FULL_422 pixels cannot be encoded as {name}")
    if info.bits_allocated not in (8, 16, 32):
        raise TranscodeError(f"{info.bits_allocated}-bit pixels cannot be encoded as {name}")
    sample = sample or SampleFormat(info.bits_allocated, 0)
    array = _as_array(native, info, sample.pixel_representation)
    if transfer_syntax_uid in HTJ2K_SYNTAXES:
        return _encode_htj2k(array, transfer_syntax_uid)
    options: dict[str, Any] = {
        "rows": info.rows,
        "columns": info.columns,
        "samples_per_pixel": info.samples_per_pixel,
        "bits_allocated": info.bits_allocated,
        "bits_stored": _precision(array, sample, info.bits_allocated),
        "pixel_representation": sample.pixel_representation,
        "photometric_interpretation": info.photometric_interpretation,
        "number_of_frames": 1,
        # The array is interleaved whatever the source's layout: RLE stores
        # one segment per sample regardless, and JPEG-LS/JPEG 2000 instances
        # must say Planar Configuration 0 (PS3.5 8.2.3, 8.2.4).
        "planar_configuration": 0,
    }
    try:
        return bytes(get_encoder(transfer_syntax_uid).encode(array, **options))
    except (ValueError, RuntimeError) as exc:
        # ValueError: the pixel module is outside the syntax's profile
        # (PS3.5 8.2); RuntimeError: every plugin failed. pydicom's message
        # says which, worded for a DICOM reader.
        reason = " ".join(str(exc).split())
        raise TranscodeError(f"pixel data could not be encoded as {name}: {reason}") from exc


def _encode_htj2k(array: np.ndarray[Any, Any], transfer_syntax_uid: str) -> bytes:
    name = uid.UID(transfer_syntax_uid).name
    try:
        return encode_htj2k(array, transfer_syntax_uid)
    except (ValueError, RuntimeError) as exc:  # Htj2kError is a RuntimeError
        reason = " ".join(str(exc).split())
        raise TranscodeError(f"pixel data could not be encoded as {name}: {reason}") from exc


def _as_array(native: bytes, info: FrameInfo, pixel_representation: int) -> np.ndarray[Any, Any]:
    """The frame as an interleaved (rows, columns[, samples]) array of its real sample type."""
    kind = "i" if pixel_representation else "u"
    dtype = np.dtype(f"<{kind}{info.bits_allocated // 8}")
    expected = info.rows * info.columns * info.samples_per_pixel * dtype.itemsize
    if len(native) < expected:
        raise TranscodeError(f"the frame holds {len(native)} bytes, {expected} expected")
    flat = np.frombuffer(native, dtype=dtype, count=expected // dtype.itemsize)
    if info.samples_per_pixel == 1:
        return flat.reshape(info.rows, info.columns)
    if info.planar_configuration == 1:
        planes = flat.reshape(info.samples_per_pixel, info.rows, info.columns)
        return np.ascontiguousarray(planes.transpose(1, 2, 0))
    return flat.reshape(info.rows, info.columns, info.samples_per_pixel)


def _precision(array: np.ndarray[Any, Any], sample: SampleFormat, allocated: int) -> int:
    """Bits Stored, unless the values use more bits (overlays in the high bits,
    unextended signs): then every allocated bit, so the frame stays exact."""
    stored = min(sample.bits_stored, allocated)
    if sample.pixel_representation:
        low, high = -(1 << (stored - 1)), (1 << (stored - 1)) - 1
    else:
        low, high = 0, (1 << stored) - 1
    if array.size and (int(array.min()) < low or int(array.max()) > high):
        return allocated
    return stored
