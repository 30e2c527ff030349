"""Colour frames to 8-bit RGB: palette lookup, YBR to RGB, deeper samples scaled down.

Colour images have no Modality LUT or VOI (PS3.4 N.2): what is left is the
colour space and the sample depth.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, convert_color_space

from dicomweb_gw.codecs.frames import FrameInfo
from dicomweb_gw.codecs.stored_pixels import Pixels, stored_values

__all__ = ["display_colour", "display_palette"]

_DESCRIPTOR = "RedPaletteColorLookupTableDescriptor"


def display_palette(indices: Pixels, header: Dataset) -> Pixels:
    """A PALETTE COLOR frame as 8-bit (rows, columns, 3), through the header's LUTs."""
    rgb = apply_color_lut(stored_values(indices, header), header)
    shift = _palette_entry_bits(header) - 8
    return (rgb >> shift).astype(np.uint8) if shift > 0 else rgb.astype(np.uint8)


def _palette_entry_bits(header: Dataset) -> int:
    """Bits per LUT entry: the descriptor's third value (PS3.3 C.7.6.3.1.5), 8 or 16.

    pydicom hands 8-bit entries back in 16-bit words, so the array's type
    cannot tell (shifting those by 8 gave a black image). Some devices write 16
    over entries that never exceed 255: those are 8-bit too, or the image
    would be all but black.
    """
    descriptor = header.get(_DESCRIPTOR)
    bits = int(descriptor[2]) if descriptor is not None and len(descriptor) > 2 else 16
    if bits != 16:
        return 8
    first, entries = int(descriptor[1]), int(descriptor[0]) or 65536
    every_entry = np.arange(first, first + entries, dtype=np.int64)
    try:
        lut = apply_color_lut(every_entry.astype(np.uint16 if first >= 0 else np.int32),
                              header)
    except (ValueError, TypeError):
        return 16  # the frame's own lookup reports what is wrong with the LUTs
    return 8 if int(lut.max()) <= 0xFF else 16


def display_colour(samples: Pixels, info: FrameInfo, header: Dataset) -> Pixels:
    """A three-sample (rows, columns, 3) frame as 8-bit RGB."""
    samples = stored_values(samples, header)  # bits above BitsStored may hold anything
    bits = int(header.get("BitsStored") or info.bits_allocated)
    # No VOI for colour: deeper samples are just scaled down, before the colour
    # conversion, which pydicom does for 8-bit samples only (and whose chroma
    # offset, 2^(bits-1), scales down to 128 with them).
    eight = (samples >> (bits - 8)).astype(np.uint8) if bits > 8 else samples.astype(np.uint8)
    if info.photometric_interpretation in ("YBR_FULL", "YBR_FULL_422"):
        # Uncompressed YBR, or a YBR_FULL codestream decoded as stored (photometric.py).
        return convert_color_space(eight, "YBR_FULL", "RGB")
    return eight
