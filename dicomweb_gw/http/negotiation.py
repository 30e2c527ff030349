"""Accept header parsing (RFC 9110 12.5.1) and the choices PS3.18 8.7 allows.

Quoted and unquoted parameter values are equivalent, and ``transfer-syntax``
may sit either on the multipart range or inside its quoted ``type``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from pydicom import uid

from dicomweb_gw.codecs.mediatypes import MEDIA_TYPE_ALIASES
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
    "MetadataFormat",
    "negotiate_instances",
    "negotiate_metadata",
    "negotiate_pixels",
    "negotiate_search",
    "parse_accept",
    "parse_media_type",
]

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM_TEXT = rf'\s*;\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s"]*)'
_PARAM = re.compile(_PARAM_TEXT)
_RANGE = re.compile(rf"({_TOKEN})/({_TOKEN})((?:{_PARAM_TEXT})*)\s*")


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
    """Media ranges in order of preference (q descending, then as written).

    A range that cannot be parsed is skipped, as PS3.18 8.7.7 has the origin
    server ignore values that are not valid: ``toto, application/dicom+json``
    is the JSON range. Only a header with nothing usable left is a bad request.
    """
    ranges: list[MediaRange] = []
    junk: list[str] = []
    for element in _elements(header):
        media = parse_media_type(element)
        if media is None:
            junk.append(element)
        else:
            ranges.append(media)
    if junk and not ranges:
        raise BadRequest(f"malformed Accept header near '{junk[0][:30]}'")
    ranges = [r for r in ranges if r.q > 0]
    return sorted(ranges, key=lambda r: -r.q)  # sorted() is stable: ties keep header order


def parse_media_type(text: str) -> MediaRange | None:
    """One media range (``type/subtype`` and parameters), or None if it is malformed."""
    whole = _RANGE.fullmatch(text.strip())
    if whole is None:
        return None
    params: dict[str, str] = {}
    for param in _PARAM.finditer(whole.group(3)):
        name, value = param.group(1).lower(), param.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[name] = value
    q = _quality(params.pop("q", "1"))
    if q is None:
        return None
    return MediaRange(whole.group(1).lower(), whole.group(2).lower(), params, q)


def _elements(header: str) -> list[str]:
    """The comma-separated elements of a header, commas inside quoted strings kept.

    An unterminated quote runs to the end of the header: that element is junk.
    """
    elements: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in header:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            elements.append("".join(current))
            current = []
            continue
        current.append(char)
    elements.append("".join(current))
    return [element.strip() for element in elements if element.strip()]


def _quality(text: str) -> float | None:
    """The q value, or None if it is not a number in 0..1 (RFC 9110 12.4.2)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 <= value <= 1 else None


def negotiate_instances(accept: str | None) -> InstanceSelection:
    """Choose how to send instances, or 406 listing what we can produce.

    Two steps: the client's first choice the gateway can produce from any
    stored syntax; failing that, a syntax it cannot encode (a lossy one, say)
    is accepted provisionally, to be sent as stored by instances stored in it
    (WadoService decides once it knows how each instance is stored). 406 here
    only when the client accepts no DICOM at all.
    """
    if not accept or not accept.strip():
        return InstanceSelection()
    choices: list[str | None] = []
    for media in parse_accept(accept):
        choices += [c for c in _instances_choice(media) if c not in choices]
    if not choices:
        raise NotAcceptable(f"cannot produce any media type in Accept '{accept}'; "
                            f"available: {INSTANCE_OFFER}")
    fallbacks = [c for c in choices if c is None or c in ENCODABLE]
    first = fallbacks[0] if fallbacks else choices[0]
    if choices == [first]:
        return InstanceSelection(first)
    return InstanceSelection(first, tuple(choices))


def _instances_choice(media: MediaRange) -> list[str | None]:
    """The transfer syntax one media range asks for (None: as stored); [] if not DICOM
    or not a transfer syntax UID."""
    if media.essence in ("*/*", "multipart/*"):
        return [uid.ExplicitVRLittleEndian]
    if media.essence != "multipart/related":
        return []
    inner = parse_media_type(media.params.get("type", "application/dicom"))
    if inner is None or inner.essence != "application/dicom":
        return []
    syntax = media.params.get("transfer-syntax") or inner.params.get("transfer-syntax")
    if syntax is None:
        return [uid.ExplicitVRLittleEndian]
    if syntax == "*":
        return [None]
    return [syntax] if uid.RE_VALID_UID.match(syntax) else []


class MetadataFormat(Enum):
    """How metadata and search results are sent (PS3.18 8.7.3.2, 10.4.4, 10.6.3)."""

    JSON = "application/dicom+json"
    #: One Native DICOM Model document (PS3.19 A.1) per instance or match.
    XML_MULTIPART = 'multipart/related; type="application/dicom+xml"'
    #: A bare document: only for one instance's metadata (see negotiate_metadata).
    XML = "application/dicom+xml"


_METADATA_OFFER = 'application/dicom+json, multipart/related; type="application/dicom+xml"'


def negotiate_search(accept: str | None) -> MetadataFormat:
    """QIDO-RS answers in DICOM JSON by default, or DICOM XML parts; 406 for anything else."""
    return negotiate_metadata(accept)


def negotiate_metadata(accept: str | None, *, single: bool = False) -> MetadataFormat:
    """DICOM JSON (the default) or DICOM XML, whichever the client prefers; else 406.

    ``single``: the resource is one instance. PS3.18 10.4.4 allows a single
    part media type only for a resource that is a single item and has the
    server ignore it otherwise, so a bare ``application/dicom+xml`` counts for
    instance metadata only (a study's or a search's XML is one part per data set).
    """
    if not accept or not accept.strip():
        return MetadataFormat.JSON
    for media in parse_accept(accept):
        chosen = _metadata_choice(media, single)
        if chosen is not None:
            return chosen
    raise NotAcceptable(f"cannot produce any media type in Accept '{accept}'; "
                        f"available: {_METADATA_OFFER}")


def _metadata_choice(media: MediaRange, single: bool) -> MetadataFormat | None:
    if media.essence in ("application/dicom+json", "application/json", "*/*",
                         "application/*"):
        return MetadataFormat.JSON
    if media.essence == "multipart/*":
        return MetadataFormat.XML_MULTIPART  # the only multipart form metadata comes in
    if media.essence == "multipart/related":
        inner = parse_accept(media.params.get("type", ""))
        if len(inner) == 1 and inner[0].essence == "application/dicom+xml":
            return MetadataFormat.XML_MULTIPART
    if media.essence == "application/dicom+xml" and single:
        return MetadataFormat.XML
    return None


_OCTET = "application/octet-stream"
_PIXEL_TYPES = frozenset({_OCTET, "image/jpeg", "image/jls", "image/jp2", "image/jphc",
                          "image/jpx", "image/dicom-rle", *MEDIA_TYPE_ALIASES})


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
            inner = parse_media_type(media.params.get("type", _OCTET))
            if inner is None or inner.essence not in (*_PIXEL_TYPES, "*/*"):
                continue
            syntax = media.params.get("transfer-syntax") or inner.params.get("transfer-syntax")
            # type="*/*" (dicomweb-client's default) means the default part type (8.7.7).
            part_type = _OCTET if inner.essence == "*/*" else _normal(inner.essence)
            options.append(FrameOption(part_type, syntax))
        elif media.essence in _PIXEL_TYPES:
            if not options:
                multipart = False  # the client's first choice is a single-part body
            options.append(FrameOption(_normal(media.essence), media.params.get("transfer-syntax")))
    if not options:
        raise NotAcceptable(f"cannot produce any media type in Accept '{accept}'; "
                            f"available: {FRAME_OFFER}")
    return PixelRequest(tuple(options), multipart)


def _normal(media_type: str) -> str:
    return MEDIA_TYPE_ALIASES.get(media_type, media_type)
