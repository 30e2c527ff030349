"""Accept header parsing (RFC 9110 12.5.1) and the choices PS3.18 8.7 allows.

Quoted and unquoted parameter values are equivalent, and ``transfer-syntax``
may sit either on the multipart range or inside its quoted ``type``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydicom import uid

from dicomweb_gw.codecs.transcode import ENCODABLE
from dicomweb_gw.dicomweb.selection import (
    FRAME_OFFER,
    INSTANCE_OFFER,
    FrameOption,
    InstanceSelection,
    PixelRequest,
)
from dicomweb_gw.errors import BadRequest, NotAcceptable

__all__ = [
    "MediaRange",
    "negotiate_instances",
    "negotiate_metadata",
    "negotiate_pixels",
    "negotiate_search",
    "parse_accept",
]

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(rf'\s*;\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s"]*)')
_TYPE = re.compile(rf"\s*({_TOKEN})/({_TOKEN})")


@dataclass(frozen=True)
class MediaRange:
    type: str
    subtype: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    @property
    def essence(self) -> str:
        return f"{self.type}/{self.subtype}"


def parse_accept(header: str) -> list[MediaRange]:
    """Media ranges in order of preference (q descending, then as written)."""
    ranges: list[MediaRange] = []
    position = 0
    while position < len(header):
        while position < len(header) and header[position] in " ,\t":
            position += 1
        if position >= len(header):
            break
        type_match = _TYPE.match(header, position)
        if type_match is None:
            raise BadRequest(f"malformed Accept header near '{header[position:position + 30]}'")
        position = type_match.end()
        params: dict[str, str] = {}
        while (param := _PARAM.match(header, position)) is not None:
            name, value = param.group(1).lower(), param.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[name] = value
            position = param.end()
        rest = re.match(r"\s*(,|$)", header[position:])
        if rest is None:
            raise BadRequest(f"malformed Accept header near '{header[position:position + 30]}'")
        position += rest.end()
        q = _quality(params.pop("q", "1"))
        ranges.append(MediaRange(type_match.group(1).lower(), type_match.group(2).lower(),
                                 params, q))
    ranges = [r for r in ranges if r.q > 0]
    return sorted(ranges, key=lambda r: -r.q)  # sorted() is stable: ties keep header order


def _quality(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"malformed q value '{text}' in Accept header") from None
    if not 0 <= value <= 1:
        raise BadRequest(f"q value '{text}' in Accept header is outside 0..1")
    return value


def negotiate_instances(accept: str | None) -> InstanceSelection:
    """Choose how to send instances, or 406 listing what we can produce.

    A syntax the gateway cannot encode (a lossy one, say) is kept as a
    preference for instances stored in it, but the request needs one choice
    the gateway can produce for every instance: a study's response is
    committed before its instances are known.
    """
    if not accept or not accept.strip():
        return InstanceSelection()
    choices: list[str | None] = []
    for media in parse_accept(accept):
        choices += [c for c in _instances_choice(media) if c not in choices]
    fallbacks = [c for c in choices if c is None or c in ENCODABLE]
    if not fallbacks:
        raise NotAcceptable(f"cannot produce any media type in Accept '{accept}' for every "
                            f"instance; available: {INSTANCE_OFFER}")
    if choices == fallbacks[:1]:
        return InstanceSelection(fallbacks[0])
    return InstanceSelection(fallbacks[0], tuple(choices))


def _instances_choice(media: MediaRange) -> list[str | None]:
    """The transfer syntax one media range asks for (None: as stored); [] if not DICOM."""
    if media.essence in ("*/*", "multipart/*"):
        return [uid.ExplicitVRLittleEndian]
    if media.essence != "multipart/related":
        return []
    inner = parse_accept(media.params.get("type", "application/dicom"))
    if len(inner) != 1 or inner[0].essence != "application/dicom":
        return []
    syntax = media.params.get("transfer-syntax") or inner[0].params.get("transfer-syntax")
    if syntax is None:
        return [uid.ExplicitVRLittleEndian]
    return [None if syntax == "*" else syntax]


def negotiate_search(accept: str | None) -> None:
    """QIDO-RS answers in DICOM JSON; 406 if the client accepts nothing like it."""
    negotiate_metadata(accept)


def negotiate_metadata(accept: str | None) -> None:
    """Metadata and search results are DICOM JSON; XML is not offered."""
    if not accept or not accept.strip():
        return
    for media in parse_accept(accept):
        if media.essence in ("application/dicom+json", "application/json", "*/*",
                             "application/*"):
            return
    raise NotAcceptable(f"cannot produce any media type in Accept '{accept}'; "
                        "available: application/dicom+json")


_OCTET = "application/octet-stream"
_PIXEL_TYPES = frozenset({_OCTET, "image/jpeg", "image/jls", "image/jp2", "image/jphc",
                          "image/jpx", "image/dicom-rle", "image/x-dicom-rle"})


def negotiate_pixels(accept: str | None) -> PixelRequest:
    """Parse what a frames or bulkdata request accepts (PS3.18 8.7.3.3-8.7.3.5).

    Which option wins depends on how the instance is stored, so the choice
    itself is made once the instance is at hand (``choose``).
    """
    if not accept or not accept.strip():
        return PixelRequest((FrameOption(_OCTET, None),), multipart=True)
    options: list[FrameOption] = []
    multipart = True
    for media in parse_accept(accept):
        if media.essence in ("*/*", "multipart/*"):
            options.append(FrameOption(_OCTET, None))
            continue
        if media.essence == "multipart/related":
            inner = parse_accept(media.params.get("type", _OCTET))
            if len(inner) != 1 or inner[0].essence not in _PIXEL_TYPES:
                continue
            syntax = media.params.get("transfer-syntax") or inner[0].params.get("transfer-syntax")
            options.append(FrameOption(_normal(inner[0].essence), syntax))
        elif media.essence in _PIXEL_TYPES:
            if not options:
                multipart = False  # the client's first choice is a single-part body
            options.append(FrameOption(_normal(media.essence), media.params.get("transfer-syntax")))
    if not options:
        raise NotAcceptable(f"cannot produce any media type in Accept '{accept}'; "
                            f"available: {FRAME_OFFER}")
    return PixelRequest(tuple(options), multipart)


def _normal(media_type: str) -> str:
    return "image/dicom-rle" if media_type == "image/x-dicom-rle" else media_type
