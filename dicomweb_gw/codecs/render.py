"""One frame rendered for display: DICOM pixels in, JPEG, PNG or GIF bytes out.

The PS3.4 N.2 grayscale pipeline (Modality LUT, VOI LUT, MONOCHROME1
inversion) or the colour one (YBR to RGB, palette lookup), then the source
region and viewport of PS3.18 8.3.5.1.3. Pure and CPU-bound: callers run it
in a worker thread.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.processing import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi_lut,
    convert_color_space,
)

from dicomweb_gw.codecs.frames import FrameInfo, FrameReader
from dicomweb_gw.errors import BadRequest, GatewayError

__all__ = [
    "RENDERED_TYPES",
    "RenderFailed",
    "RenderParams",
    "Viewport",
    "Window",
    "render_frame",
]

RENDERED_TYPES = ("image/jpeg", "image/png", "image/gif")
_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF"}
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")  # PS3.3 C.11.2.1.3

Pixels = np.ndarray[Any, Any]


class RenderFailed(GatewayError):
    """The frame decoded but could not be rendered (malformed attributes, say)."""

    status_code = 500


@dataclass(frozen=True)
class Window:
    """An explicit VOI window; ``function`` is a PS3.3 VOI LUT Function term."""

    center: float
    width: float
    function: str = "LINEAR"


@dataclass(frozen=True)
class Viewport:
    """PS3.18 8.3.5.1.3: fit the source region within ``vw`` x ``vh``, keeping its aspect.

    The region starts at (``sx``, ``sy``) and spans ``|sw|`` x ``|sh|`` pixels
    (None: to the image's edge); a negative ``sw`` / ``sh`` flips it
    horizontally / vertically.
    """

    vw: int
    vh: int
    sx: int = 0
    sy: int = 0
    sw: int | None = None
    sh: int | None = None


@dataclass(frozen=True)
class RenderParams:
    media_type: str = "image/jpeg"
    viewport: Viewport | None = None
    window: Window | None = None
    quality: int = 90  # JPEG only; PNG and GIF are lossless


def render_frame(reader: FrameReader, number: int, header: Dataset,
                 params: RenderParams) -> bytes:
    """Frame ``number`` (1-based) of ``reader`` encoded as ``params.media_type``.

    ``header`` is the instance without its pixel data: it supplies the
    rescale, VOI, photometric and palette attributes.
    """
    info = reader.native_info()
    data = reader.native(number)  # FrameNotFound / FrameDecodeError pass through
    try:
        pixels = _display_pixels(_as_array(data, info, header), info, header, number,
                                 params.window)
        return _encode(_viewport(pixels, params.viewport), params)
    except GatewayError:
        raise
    except Exception as exc:  # numpy, pydicom and Pillow raise many types on odd data
        raise RenderFailed(f"frame {number} could not be rendered: {exc}") from exc


# -- stored pixels ---------------------------------------------------------------


def _as_array(data: bytes, info: FrameInfo, header: Dataset) -> Pixels:
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


def _stored_values(raw: Pixels, header: Dataset) -> Pixels:
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


# -- the display pipeline --------------------------------------------------------


def _display_pixels(array: Pixels, info: FrameInfo, header: Dataset, number: int,
                    window: Window | None) -> Pixels:
    """8-bit grayscale (rows, columns) or RGB (rows, columns, 3)."""
    photometric = info.photometric_interpretation
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(_stored_values(array, header), header)
        return (rgb >> 8).astype(np.uint8) if rgb.dtype.itemsize > 1 else rgb.astype(np.uint8)
    if array.ndim == 3:
        if photometric in ("YBR_FULL", "YBR_FULL_422"):
            array = convert_color_space(array, "YBR_FULL", "RGB")  # uncompressed YBR only
        bits = int(header.get("BitsStored") or info.bits_allocated)
        # Colour images have no VOI (PS3.4 N.2): deeper samples are just scaled down.
        return (array >> (bits - 8)).astype(np.uint8) if bits > 8 else array.astype(np.uint8)
    attrs = _frame_attributes(header, number)
    return _grey(array, attrs, header, window, invert=photometric == "MONOCHROME1")


def _grey(raw: Pixels, attrs: Dataset, header: Dataset, window: Window | None, *,
          invert: bool) -> Pixels:
    """Modality LUT, VOI and MONOCHROME1 inversion, to 0..255 (PS3.3 C.11.1, C.11.2)."""
    index: Pixels | None = None
    if raw.dtype.kind in "iu" and raw.dtype.itemsize <= 2:
        # Map every possible bit pattern once, then index: one pass over the
        # frame instead of several in floating point (3x faster on 512x512 CT).
        index = raw.view(np.dtype(f"u{raw.dtype.itemsize}"))
        domain = np.arange(1 << (8 * raw.dtype.itemsize), dtype=index.dtype).view(raw.dtype)
        domain = _stored_values(domain, header)
    else:
        domain = _stored_values(raw, header)
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


_FRAME_GROUPS = {  # functional group sequence -> the attributes it carries for a frame
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept"),
    "FrameVOILUTSequence": ("WindowCenter", "WindowWidth", "VOILUTFunction"),
}
_TOP_LEVEL = ("RescaleSlope", "RescaleIntercept", "ModalityLUTSequence", "WindowCenter",
              "WindowWidth", "VOILUTFunction", "VOILUTSequence")


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


# -- region, viewport and encoding -----------------------------------------------


def _viewport(pixels: Pixels, viewport: Viewport | None) -> Image.Image:
    if viewport is None:
        return Image.fromarray(pixels)
    rows, columns = pixels.shape[:2]
    x0, x1 = _span(viewport.sx, viewport.sw, columns, "sx", "sw")
    y0, y1 = _span(viewport.sy, viewport.sh, rows, "sy", "sh")
    region = pixels[y0:y1, x0:x1]
    if viewport.sw is not None and viewport.sw < 0:
        region = region[:, ::-1]
    if viewport.sh is not None and viewport.sh < 0:
        region = region[::-1, :]
    image = Image.fromarray(np.ascontiguousarray(region))
    scale = min(viewport.vw / image.width, viewport.vh / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size == image.size:
        return image
    # reducing_gap: a fast box reduction first when shrinking a lot (thumbnails).
    return image.resize(size, Image.Resampling.LANCZOS,
                        reducing_gap=3.0 if scale < 1 else None)


def _span(start: int, extent: int | None, size: int, start_name: str,
          extent_name: str) -> tuple[int, int]:
    """The source region along one axis, clipped to the image."""
    stop = size if extent is None else start + abs(extent)
    stop = min(stop, size)
    if start >= size or stop <= start:
        raise BadRequest(f"viewport source region {start_name}={start}, {extent_name}="
                         f"{extent} lies outside the {size}-pixel image")
    return start, stop


def _encode(image: Image.Image, params: RenderParams) -> bytes:
    output = io.BytesIO()
    image_format = _FORMATS[params.media_type]
    if image_format == "JPEG":
        image.save(output, image_format, quality=params.quality)
    elif image_format == "PNG":
        # Level 1 is ~5x faster than the default 6 for ~15% more bytes.
        image.save(output, image_format, compress_level=1)
    else:
        image.save(output, image_format)
    return output.getvalue()
