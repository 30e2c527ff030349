"""Query parameters and media type of WADO-RS rendered and thumbnail requests.

PS3.18 8.3.5.1: ``accept``, ``viewport``, ``window`` and ``quality`` are
understood; ``annotation``, ``charset``, ``iccprofile`` and unknown
parameters are ignored, as PS3.18 lets an origin server do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from dicomweb_gw.codecs.render import RENDERED_TYPES, RenderParams, Viewport, Window
from dicomweb_gw.errors import BadRequest, NotAcceptable
from dicomweb_gw.http.negotiation import parse_accept

__all__ = [
    "RENDERED_TYPES",
    "RenderParams",
    "Viewport",
    "Window",
    "negotiate_rendered",
    "parse_render_params",
]

MAX_VIEWPORT = 8192  # pixels per side: a bigger output is a memory hazard, not an image
_WINDOW_FUNCTIONS = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT",
                     "linear_exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}
_WILDCARDS = ("*/*", "image/*")


def parse_render_params(
    query: Mapping[str, str], accept_header: str | None, *,
    default_viewport: tuple[int, int] | None = None,
) -> RenderParams:
    """The rendering a request asks for; BadRequest (400) or NotAcceptable (406) if unusable.

    The ``accept`` query parameter overrides the Accept header (PS3.18 8.3.3.1).
    ``default_viewport`` (vw, vh) applies when ``viewport`` is absent (thumbnails).
    """
    accept = query.get("accept")
    media_type = negotiate_rendered(accept if accept is not None else accept_header)
    viewport_text = query.get("viewport")
    if viewport_text is not None:
        viewport: Viewport | None = _viewport(viewport_text)
    elif default_viewport is not None:
        viewport = Viewport(*default_viewport)
    else:
        viewport = None
    window_text = query.get("window")
    window = _window(window_text) if window_text is not None else None
    quality_text = query.get("quality")
    quality = _quality(quality_text) if quality_text is not None else RenderParams.quality
    return RenderParams(media_type, viewport, window, quality)


def negotiate_rendered(accept: str | None) -> str:
    """The rendered media type to send: the client's most preferred that we can make."""
    if accept is None or not accept.strip():
        return "image/jpeg"
    for media in parse_accept(accept):
        if media.essence in _WILDCARDS:
            return "image/jpeg"
        if media.essence in RENDERED_TYPES:
            return media.essence
    raise NotAcceptable(f"cannot produce any media type in '{accept}'; "
                        f"available: {', '.join(RENDERED_TYPES)}")


def _viewport(text: str) -> Viewport:
    """``vw,vh[,sx,sy,sw,sh]``; empty source fields take their defaults."""
    parts = [part.strip() for part in text.split(",")]
    if not 2 <= len(parts) <= 6:
        raise BadRequest(f"viewport '{text}' is not vw,vh[,sx,sy,sw,sh]")
    values = [_integer(part, "viewport", text) if part else None for part in parts]
    values += [None] * (6 - len(values))
    vw, vh, sx, sy, sw, sh = values
    if vw is None or vh is None or not (0 < vw <= MAX_VIEWPORT and 0 < vh <= MAX_VIEWPORT):
        raise BadRequest(f"viewport '{text}': vw and vh must be whole numbers from 1 to "
                         f"{MAX_VIEWPORT}")
    if (sx is not None and sx < 0) or (sy is not None and sy < 0):
        raise BadRequest(f"viewport '{text}': sx and sy must not be negative")
    if sw == 0 or sh == 0:
        raise BadRequest(f"viewport '{text}': sw and sh must not be 0")
    return Viewport(vw, vh, sx or 0, sy or 0, sw, sh)


def _window(text: str) -> Window:
    """``center,width[,function]``, function linear (default), linear-exact or sigmoid."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (2, 3):
        raise BadRequest(f"window '{text}' is not center,width,function")
    center, width = (_decimal(part, text) for part in parts[:2])
    name = parts[2].lower() if len(parts) == 3 and parts[2] else "linear"
    function = _WINDOW_FUNCTIONS.get(name)
    if function is None:
        raise BadRequest(f"window '{text}': the function must be linear, linear-exact or "
                         "sigmoid")
    # PS3.3 C.11.2.1.2: LINEAR needs width >= 1; the others any positive width.
    linear = function == "LINEAR"
    if (linear and width < 1) or width <= 0:
        bound = ">= 1" if linear else "> 0"
        raise BadRequest(f"window '{text}': the width must be {bound} for {name}")
    return Window(center, width, function)


def _quality(text: str) -> int:
    quality = _integer(text.strip(), "quality", text)
    if not 1 <= quality <= 100:
        raise BadRequest(f"quality '{text}' must be from 1 to 100")
    return quality


def _integer(part: str, name: str, text: str) -> int:
    sign, digits = (part[0], part[1:]) if part[:1] in ("+", "-") else ("", part)
    if not (digits.isascii() and digits.isdigit()):
        raise BadRequest(f"{name} '{text}': '{part}' is not a whole number")
    return int(sign + digits)


def _decimal(part: str, text: str) -> float:
    try:
        value = float(part)
    except ValueError:
        raise BadRequest(f"window '{text}': '{part}' is not a number") from None
    if not math.isfinite(value):
        raise BadRequest(f"window '{text}': '{part}' is not a finite number")
    return value
