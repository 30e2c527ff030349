"""Which library decodes a frame of each transfer syntax: one table, measured.

imagecodecs (CharLS, libjpeg-turbo, liblj92, OpenJPH) decoded the pydicom test
frames faster than pydicom's plugins (pylibjpeg, pyjpegls, pylibjpeg-openjpeg):
JPEG-LS 12-17x, JPEG baseline 9-16x, JPEG lossless 2.3-3.4x, HTJ2K lossless
2.5-3x (bench/test_bench_htj2k.py measures it again). JPEG 2000 stays with
pylibjpeg-openjpeg: imagecodecs' OpenJPEG was 1.2-1.8x faster on a quiet
machine but slower on a loaded one (its own threads compete with the codec
threads), and pydicom knows JPEG 2000's precision and sign quirks.

The table takes the frames whose decoding has nothing to interpret: one
sample per pixel, samples as wide as the codestream says, signed or not.
Colour (YBR conversions, JPEG's APP14 and chroma upsampling) and lossy HTJ2K
(OpenJPH does not clamp what a lossy decode overshoots) stay with pydicom's
decoders, which FrameReader.native() runs; so does any frame imagecodecs
cannot read or reads to another shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dicomweb_gw.codecs.encoders import SampleFormat
from dicomweb_gw.codecs.frames import FrameInfo

__all__ = ["FAST_DECODERS", "decode_fast"]

_Array = np.ndarray[Any, Any]



def _table() -> dict[str, Callable[[bytes], _Array]]:
    try:
        import imagecodecs
    except ImportError:  # pydicom's decoders do it all
        return {}
    jpegls, jpeg8, ljpeg, htj2k = (imagecodecs.jpegls_decode, imagecodecs.jpeg8_decode,
                                   imagecodecs.ljpeg_decode, imagecodecs.htj2k_decode)
    return {
        "1.2.840.10008.1.2.4.80": jpegls,  # JPEG-LS Lossless
        "1.2.840.10008.1.2.4.81": jpegls,  # JPEG-LS Near-Lossless
        "1.2.840.10008.1.2.4.50": jpeg8,  # JPEG Baseline
        "1.2.840.10008.1.2.4.51": jpeg8,  # JPEG Extended (12-bit too, which pylibjpeg refuses)
        "1.2.840.10008.1.2.4.57": ljpeg,  # JPEG Lossless
        "1.2.840.10008.1.2.4.70": ljpeg,  # JPEG Lossless SV1
        # HTJ2K lossless only: OpenJPH does not clamp what a lossy (.203) decode
        # overshoots, so .203 stays with OpenJPEG. A Part 1 codestream labelled
        # HTJ2K fails here and goes to OpenJPEG too.
        "1.2.840.10008.1.2.4.201": htj2k,  # HTJ2K Lossless
        "1.2.840.10008.1.2.4.202": htj2k,  # HTJ2K Lossless RPCL
    }


#: Transfer syntax -> imagecodecs decoder; a syntax not here is pydicom's.
FAST_DECODERS: dict[str, Callable[[bytes], _Array]] = _table()
#: Syntaxes whose codestream says whether samples are signed (the SIZ marker).
_SIGNED_IN_CODESTREAM = frozenset({"1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202"})


def decode_fast(transfer_syntax_uid: str, frame: bytes, info: FrameInfo,
                sample: SampleFormat) -> bytes | None:
    """``frame`` decoded to little endian native pixels, or None for pydicom to do it.

    For the lossless syntaxes the bytes are exactly what FrameReader.native()
    returns. Lossy JPEG and JPEG 2000 leave the inverse transform's rounding to
    the decoder: libjpeg-turbo and pylibjpeg's libjpeg differ by at most one
    level on some samples, both conforming decodes. JPEG Extended 12-bit, which
    pylibjpeg refuses, is decoded here.
    """
    decode = FAST_DECODERS.get(transfer_syntax_uid)
    if decode is None or info.samples_per_pixel != 1 or info.bits_allocated not in (8, 16):
        return None
    try:
        array = decode(frame)
    except Exception:  # any failure: pydicom's decoder says why, or succeeds
        return None
    width = info.bits_allocated // 8
    if array.shape != (info.rows, info.columns) or array.dtype.itemsize > width:
        return None
    if not sample.pixel_representation:
        if array.dtype.kind != "u":
            return None
        # 8-bit samples of a 16-bit frame are widened, as FrameReader does.
        return np.ascontiguousarray(array, dtype=f"<u{width}").tobytes()
    if array.dtype.kind == "u":
        if transfer_syntax_uid in _SIGNED_IN_CODESTREAM:
            return None  # an unsigned HTJ2K codestream of signed pixels: pydicom's rules
        # JPEG-LS and JPEG carry the two's complement bits of Bits Stored: extend the sign.
        bits = min(max(sample.bits_stored, 1), array.dtype.itemsize * 8)
        values = array.astype(np.int64)
        values -= (values >> (bits - 1) & 1) << bits
        return np.ascontiguousarray(values, dtype=f"<i{width}").tobytes()
    return np.ascontiguousarray(array, dtype=f"<i{width}").tobytes()
