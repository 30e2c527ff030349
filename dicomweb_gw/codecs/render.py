"""One frame rendered for display: DICOM pixels in, JPEG, PNG or GIF bytes out.

The pipeline, one module per stage: the frame's stored values
(``stored_pixels``), the PS3.4 N.2 grayscale pipeline (``grayscale``: Modality
LUT, VOI LUT, MONOCHROME1 inversion) or the colour one (``colour``: YBR to RGB,
palette lookup), then the source region and viewport of PS3.18 8.3.5.1.3 and
the encoding (``image_output``). What a rendering asks for is in
``rendering``, re-exported here. Pure and CPU-bound: callers run it in a
worker thread.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from dicomweb_gw.codecs.colour import display_colour, display_palette
from dicomweb_gw.codecs.frames import FrameInfo, FrameReader
from dicomweb_gw.codecs.grayscale import display_grey
from dicomweb_gw.codecs.image_output import encode_image, fit_viewport
from dicomweb_gw.codecs.rendering import (
    RENDERED_TYPES,
    RenderFailed,
    RenderParams,
    Viewport,
    Window,
)
from dicomweb_gw.codecs.stored_pixels import Pixels, frame_array
from dicomweb_gw.errors import GatewayError

__all__ = [
    "RENDERED_TYPES",
    "RenderFailed",
    "RenderParams",
    "Viewport",
    "Window",
    "render_frame",
]


def render_frame(reader: FrameReader, number: int, header: Dataset,
                 params: RenderParams) -> bytes:
    """Frame ``number`` (1-based) of ``reader`` encoded as ``params.media_type``.

    ``header`` is the instance without its pixel data: it supplies the
    rescale, VOI, photometric and palette attributes.
    """
    info = reader.native_info()
    data = reader.native(number)  # FrameNotFound / FrameDecodeError pass through
    try:
        pixels = _display_pixels(frame_array(data, info, header), info, header, number,
                                 params.window)
        return encode_image(fit_viewport(pixels, params.viewport), params)
    except GatewayError:
        raise
    except Exception as exc:  # numpy, pydicom and Pillow raise many types on odd data
        raise RenderFailed(f"frame {number} could not be rendered: {exc}") from exc


def _display_pixels(array: Pixels, info: FrameInfo, header: Dataset, number: int,
                    window: Window | None) -> Pixels:
    """8-bit grayscale (rows, columns) or RGB (rows, columns, 3)."""
    photometric = info.photometric_interpretation
    if photometric == "PALETTE COLOR":
        return display_palette(array, header)
    if array.ndim == 3:
        return display_colour(array, info, header)
    return display_grey(array, header, number, window, invert=photometric == "MONOCHROME1")
