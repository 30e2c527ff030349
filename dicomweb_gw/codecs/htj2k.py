"""High-Throughput JPEG 2000 encoding (PS3.5 A.4.11) with imagecodecs' OpenJPH.

pydicom has no HTJ2K encoder and pylibjpeg-openjpeg only decodes it; OpenJPH
encodes a 512x512 12-bit frame some ten times faster than OpenJPEG encodes
JPEG 2000 (bench/test_bench_htj2k.py). Every codestream is written in RPCL
order, OpenJPH's default, so a byte prefix of any of them decodes to a lower
resolution image: what cornerstone3D's progressive loading asks for with
``Range``. The encoder is deterministic, so the same frame always gives the
same bytes and ranges of it can be served from separate requests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["HTJ2K_SYNTAXES", "available", "encode_htj2k"]

HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K_LOSSY = "1.2.840.10008.1.2.4.203"
HTJ2K_SYNTAXES = frozenset({HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, HTJ2K_LOSSY})

#: .203 is encoded irreversibly with a quantization step of this fraction of
#: the values' spread in the frame (1/1024: about 4 levels of a CT spanning
#: 4096), and never under 1.5 levels (an 8-bit image): visually lossless, and
#: smaller than lossless. The spread, not Bits Stored: a CT stored in 16 bits
#: spans 12 or so, and 1/1024 of 16 bits would be 64 HU.
_LOSSY_STEP_OF_SPREAD = 1 / 1024
_LOSSY_STEP_LEVELS = 1.5
_DEFAULT_DECOMPOSITIONS = 5
_BASE_RESOLUTION = 64  # PS3.5 10.18: the base resolution's width and height are <= 64
_MAX_DECOMPOSITIONS = 32  # ITU-T T.800 A.6.1
#: Below this, imagecodecs treats the step as 0, i.e. reversible coding.
_SMALLEST_STEP = 2e-5

try:
    import imagecodecs as _imagecodecs

    _ENCODE: Any = getattr(_imagecodecs, "htj2k_encode", None)
    _TILEPART_RESOLUTIONS: Any = _imagecodecs.HTJ2K.TILEPART.RESOLUTIONS if _ENCODE else None
except ImportError:  # the gateway still runs, without HTJ2K encoding
    _ENCODE = None
    _TILEPART_RESOLUTIONS = None


def available() -> bool:
    """Whether an HTJ2K encoder is installed (imagecodecs built with OpenJPH)."""
    return _ENCODE is not None


def encode_htj2k(array: np.ndarray[Any, Any], transfer_syntax_uid: str) -> bytes:
    """One frame, (rows, columns) or interleaved (rows, columns, samples), as HTJ2K.

    The codestream's precision is the array's item size and its signedness
    the array's, so the lossless syntaxes decode back to exactly ``array``.
    Colour is coded without the multi-component transform: the pixels keep
    the Photometric Interpretation they had (RGB stays RGB, PS3.5 8.2.4).
    """
    if _ENCODE is None:
        raise RuntimeError("imagecodecs with HTJ2K support is not installed")
    options: dict[str, Any] = {"rgb": False}
    if array.ndim == 3:
        options["planar"] = False  # interleaved samples, whatever the image's width
    if transfer_syntax_uid == HTJ2K_LOSSLESS_RPCL:
        # PS3.5 10.18: RPCL order (OpenJPH's default); a TLM marker segment,
        # with one tile-part per resolution, so a client finds each resolution's
        # bytes without parsing packets; and enough decompositions for the
        # lowest resolution to be at most 64 pixels across (a thumbnail).
        options.update(tlm=True, tilepart=_TILEPART_RESOLUTIONS,
                       resolutions=_decompositions(array.shape[0], array.shape[1]))
    if transfer_syntax_uid == HTJ2K_LOSSY:
        options.update(reversible=False, level=_lossy_step(array))
    else:
        options["reversible"] = True
    return bytes(_ENCODE(np.ascontiguousarray(array), **options))


def _decompositions(rows: int, columns: int) -> int:
    """OpenJPH's default 5, or more until the largest side is at most 64 at the base."""
    levels = _DEFAULT_DECOMPOSITIONS
    while max(rows, columns) > _BASE_RESOLUTION << levels and levels < _MAX_DECOMPOSITIONS:
        levels += 1
    return levels


def _lossy_step(array: np.ndarray[Any, Any]) -> float:
    """OpenJPH's base step is relative to the full range of the codestream's
    precision (the item size): the step wanted, in levels, scaled to it."""
    spread = float(array.max()) - float(array.min()) + 1 if array.size else 1.0
    levels = max(spread * _LOSSY_STEP_OF_SPREAD, _LOSSY_STEP_LEVELS)
    step: float = levels / 2.0 ** (array.dtype.itemsize * 8)
    return max(step, _SMALLEST_STEP)
