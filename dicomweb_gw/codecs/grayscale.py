"""The PS3.4 N.2 grayscale pipeline of one frame, to 8-bit display values.

Modality LUT (Rescale or a Modality LUT Sequence, PS3.3 C.11.1), VOI (an
explicit window, the header's window with its LINEAR, LINEAR_EXACT or SIGMOID
function, a VOI LUT Sequence, or the frame's own range, PS3.3 C.11.2), then
MONOCHROME1 inversion. Enhanced multi-frame instances give these attributes
per frame in their functional groups (PS3.3 C.7.6.16).
"""

from __future__ import annotations

import math

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

from dicomweb_gw.codecs.rendering import VOI_FUNCTIONS, Window
from dicomweb_gw.codecs.stored_pixels import Pixels, stored_values

__all__ = ["display_grey"]

_FRAME_GROUPS = {  # functional group sequence -> the attributes it carries for a frame
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept"),
    "FrameVOILUTSequence": ("WindowCenter", "WindowWidth", "VOILUTFunction"),
}
_TOP_LEVEL = ("RescaleSlope", "RescaleIntercept", "ModalityLUTSequence", "WindowCenter",
              "WindowWidth", "VOILUTFunction", "VOILUTSequence")


def display_grey(raw: Pixels, header: Dataset, number: int, window: Window | None, *,
                 invert: bool) -> Pixels:
    """Frame ``number`` (1-based) of a single-sample image as 8-bit (rows, columns).

    ``window`` overrides the header's; ``invert`` is for MONOCHROME1.
    """
    return _grey(raw, _frame_attributes(header, number), header, window, invert=invert)


def _grey(raw: Pixels, attrs: Dataset, header: Dataset, window: Window | None, *,
          invert: bool) -> Pixels:
    """Modality LUT, VOI and MONOCHROME1 inversion, to 0..255 (PS3.3 C.11.1, C.11.2)."""
    index: Pixels | None = None
    if raw.dtype.kind in "iu" and raw.dtype.itemsize <= 2:
        # Map every possible bit pattern once, then index: one pass over the
        # frame instead of several in floating point (3x faster on 512x512 CT).
        index = raw.view(np.dtype(f"u{raw.dtype.itemsize}"))
        domain = np.arange(1 << (8 * raw.dtype.itemsize), dtype=index.dtype).view(raw.dtype)
        domain = stored_values(domain, header)
    else:
        domain = stored_values(raw, header)
    values = _modality(domain, attrs)
    chosen = window or _header_window(attrs)
    if chosen is None and "VOILUTSequence" in attrs:
        grey = _voi_lut_sequence(values, attrs)
    else:
        if chosen is None:
            stored = domain if index is None else domain[index]
            chosen = _min_max_window(stored, attrs, header)
        grey = _apply_window(values, chosen)
    if invert:
        grey = 255 - grey
    return grey if index is None else grey[index]


def _modality(stored: Pixels, attrs: Dataset) -> Pixels:
    """Stored values to modality values (Rescale, or the Modality LUT)."""
    if "ModalityLUTSequence" in attrs:
        mapped: Pixels = apply_modality_lut(stored, attrs)
        return mapped.astype(np.float32)
    slope = _number(attrs.get("RescaleSlope"), 1.0)
    intercept = _number(attrs.get("RescaleIntercept"), 0.0)
    values = stored.astype(np.float32)
    if (slope, intercept) != (1.0, 0.0):
        values = values * np.float32(slope) + np.float32(intercept)
    return values


def _apply_window(values: Pixels, window: Window) -> Pixels:
    """PS3.3 C.11.2.1.2 (LINEAR, LINEAR_EXACT) and C.11.2.1.3.1 (SIGMOID), to 0..255."""
    center, width = window.center, window.width
    if window.function == "SIGMOID":
        # Clipped exponent: far from the center exp() would overflow to inf (y is 0 or 255).
        out = 255.0 / (1.0 + np.exp(np.clip(-4.0 * (values - center) / width, -80, 80)))
    elif window.function == "LINEAR_EXACT":
        out = ((values - center) / width + 0.5) * 255.0
    elif width <= 1:  # LINEAR of width 1 is a step at center - 0.5
        return np.where(values > center - 0.5, 255, 0).astype(np.uint8)
    else:
        out = ((values - (center - 0.5)) / (width - 1) + 0.5) * 255.0
    # The piecewise ends of the standard's formulas are exactly this clip.
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _header_window(attrs: Dataset) -> Window | None:
    """The first window the header (or the frame's functional groups) gives, if usable."""
    center = _number(_first(attrs.get("WindowCenter")), math.nan)
    width = _number(_first(attrs.get("WindowWidth")), math.nan)
    function = str(_first(attrs.get("VOILUTFunction")) or "LINEAR").strip().upper()
    if function not in VOI_FUNCTIONS:
        function = "LINEAR"
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
        return None  # absent or malformed: fall back to the frame's range
    return Window(center, max(width, 1.0) if function == "LINEAR" else width, function)


def _min_max_window(stored: Pixels, attrs: Dataset, header: Dataset) -> Window:
    """A window spanning the frame's modality values, padding excluded (C.7.5.1.1.2)."""
    padding = header.get("PixelPaddingValue")
    if isinstance(padding, int) and not isinstance(padding, bool):
        kept = stored[stored != padding]
        stored = kept if kept.size else stored
    ends = np.array([stored.min(), stored.max()])
    if "ModalityLUTSequence" in attrs:  # a LUT need not be monotonic
        ends = np.arange(ends[0], ends[1] + 1)
    values = _modality(ends, attrs)
    low, high = float(values.min()), float(values.max())
    return Window((low + high) / 2, max(high - low, 1e-6), "LINEAR_EXACT")


def _voi_lut_sequence(values: Pixels, attrs: Dataset) -> Pixels:
    """The first VOI LUT: its output spans 0..2^n-1, n from the LUT Descriptor."""
    lut = attrs.VOILUTSequence[0]
    bits = int(lut.LUTDescriptor[2]) or 16
    mapped: Pixels = apply_voi_lut(values.astype(np.int64), attrs, prefer_lut=True)
    scaled: Pixels = np.clip(mapped * (255.0 / (2**bits - 1)) + 0.5, 0, 255)
    return scaled.astype(np.uint8)


def _frame_attributes(header: Dataset, number: int) -> Dataset:
    """Rescale and VOI attributes for one frame: top level, then the shared, then the
    per-frame functional groups of enhanced multi-frame instances (C.7.6.16)."""
    attrs = Dataset()
    for keyword in _TOP_LEVEL:
        if keyword in header:
            attrs[keyword] = header[keyword]
    groups = [header.get("SharedFunctionalGroupsSequence")]
    per_frame = header.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and 0 < number <= len(per_frame):
        groups.append([per_frame[number - 1]])
    for sequence in groups:
        if not sequence:
            continue
        for group, keywords in _FRAME_GROUPS.items():
            items = sequence[0].get(group)
            if not items:
                continue
            if group == "FrameVOILUTSequence":
                attrs.pop("VOILUTSequence", None)  # a frame's window overrides the LUT
            for keyword in keywords:
                if keyword in items[0]:
                    attrs[keyword] = items[0][keyword]
    return attrs


def _first(value: object) -> object:
    """The first of a multi-valued attribute (several windows: the first is the default)."""
    if isinstance(value, (MultiValue, list, tuple)):
        return value[0] if len(value) else None
    return value


def _number(value: object, default: float) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default
