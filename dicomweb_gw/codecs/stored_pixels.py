"""A native frame's bytes as a numpy array of its stored values (PS3.5 8.1, 8.2).

The first stage of rendering, shared by the grayscale and colour stages: the
array keeps the frame's own sample layout, and ``stored_values`` drops what
the bits above Bits Stored hold.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from dicomweb_gw.codecs.frames import FrameInfo

__all__ = ["Pixels", "frame_array", "stored_values"]

Pixels = np.ndarray[Any, Any]


def frame_array(data: bytes, info: FrameInfo, header: Dataset) -> Pixels:
    """The frame as (rows, columns) or (rows, columns, samples), bits above BitsStored kept."""
    rows, columns, samples = info.rows, info.columns, info.samples_per_pixel
    if info.bits_allocated == 1:
        bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
        return bits[: rows * columns].reshape(rows, columns)
    signed = int(header.get("PixelRepresentation") or 0) == 1
    if "PixelRepresentation" not in header and info.bits_allocated in (32, 64):
        dtype = np.dtype(f"<f{info.bits_allocated // 8}")  # Float / Double Float Pixel Data
    else:
        dtype = np.dtype(f"<{'i' if signed else 'u'}{info.bits_allocated // 8}")
    array = np.frombuffer(data, dtype)
    if info.photometric_interpretation == "YBR_FULL_422":
        # Only uncompressed frames stay subsampled: Y1 Y2 Cb Cr per pair of pixels.
        pairs = array[: rows * columns * 2].reshape(rows, columns // 2, 4)
        full = np.empty((rows, columns, 3), dtype)
        full[:, :, 0] = pairs[:, :, :2].reshape(rows, columns)
        full[:, :, 1] = np.repeat(pairs[:, :, 2], 2, axis=1)
        full[:, :, 2] = np.repeat(pairs[:, :, 3], 2, axis=1)
        return full
    array = array[: rows * columns * samples]
    if samples > 1:
        if info.planar_configuration == 1:
            return array.reshape(samples, rows, columns).transpose(1, 2, 0)
        return array.reshape(rows, columns, samples)
    return array.reshape(rows, columns)


def stored_values(raw: Pixels, header: Dataset) -> Pixels:
    """Bits above BitsStored may hold anything (overlays, garbage): drop them,
    sign-extending signed values. Decoded frames come out unchanged."""
    bits_stored = int(header.get("BitsStored") or 0)
    width = raw.dtype.itemsize * 8
    if raw.dtype.kind not in "iu" or not 0 < bits_stored < width:
        return raw
    shift = width - bits_stored
    if raw.dtype.kind == "i":
        extended: Pixels = (raw << shift) >> shift
        return extended
    masked: Pixels = raw & ((1 << bits_stored) - 1)
    return masked
