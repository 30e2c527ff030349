"""What a rendering asks for and how it can fail: the values the HTTP layer builds
(from PS3.18 8.3.5.1 query parameters) and the render pipeline reads.

No pixels here: the pipeline stages are ``stored_pixels``, ``grayscale``,
``colour`` and ``image_output``, put together by ``render``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dicomweb_gw.errors import GatewayError

__all__ = [
    "RENDERED_TYPES",
    "VOI_FUNCTIONS",
    "RenderFailed",
    "RenderParams",
    "Viewport",
    "Window",
]

RENDERED_TYPES = ("image/jpeg", "image/png", "image/gif")
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")  # PS3.3 C.11.2.1.3


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
