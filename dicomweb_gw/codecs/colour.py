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


def display_palette(indices: Pixels, header: Dataset) -> Pixels:
    """A PALETTE COLOR frame as 8-bit (rows, columns, 3), through the header's LUTs."""
    rgb = apply_color_lut(stored_values(indices, header), header)
    return (rgb >> 8).astype(np.uint8) if rgb.dtype.itemsize > 1 else rgb.astype(np.uint8)


def display_colour(samples: Pixels, info: FrameInfo, header: Dataset) -> Pixels:
    """A three-sample (rows, columns, 3) frame as 8-bit RGB."""
    if info.photometric_interpretation in ("YBR_FULL", "YBR_FULL_422"):
        samples = convert_color_space(samples, "YBR_FULL", "RGB")  # uncompressed YBR only
    bits = int(header.get("BitsStored") or info.bits_allocated)
    # No VOI for colour: deeper samples are just scaled down.
    return (samples >> (bits - 8)).astype(np.uint8) if bits > 8 else samples.astype(np.uint8)
