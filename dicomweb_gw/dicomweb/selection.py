"""What a client accepts, in the terms the services decide with.

The HTTP layer parses Accept headers into these; the services pick among
them once they know how an instance is stored: a syntax the gateway encodes
(``ENCODABLE``) can always be produced, any other only by sending an instance
already stored in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydicom import uid

from dicomweb_gw.codecs.mediatypes import NATIVE_FRAME_SYNTAX, part_content_type
from dicomweb_gw.codecs.transcode import ENCODABLE, can_decode, producible
from dicomweb_gw.errors import NotAcceptable

__all__ = [
    "FRAME_OFFER",
    "INSTANCE_OFFER",
    "FrameOption",
    "InstanceSelection",
    "PixelChoice",
    "PixelRequest",
    "choose_pixels",
    "producible_frames",
]

_OCTET = "application/octet-stream"
_ENCODED = [s for s in ENCODABLE if s != uid.ExplicitVRLittleEndian]
FRAME_OFFER = (
    'multipart/related; type="application/octet-stream" with transfer-syntax='
    f"{uid.ExplicitVRLittleEndian} (the default) or transfer-syntax=* (as stored), the "
    "stored compressed media type (image/jpeg, image/jls, image/jp2, image/jphc, "
    "image/dicom-rle), or a lossless encoding: "
    + ", ".join(f"{ENCODABLE[s]} with transfer-syntax={s}" for s in _ENCODED)
)
INSTANCE_OFFER = (
    'multipart/related; type="application/dicom" with transfer-syntax='
    f"{uid.ExplicitVRLittleEndian} (the default), transfer-syntax=* (as stored), the "
    "syntax an instance is stored in, or a lossless encoding: transfer-syntax="
    + " or ".join(_ENCODED)
)

#: PS3.18 Table 8.7.3-5: the syntax a frame media type means without a transfer-syntax.
_DEFAULT_SYNTAX = {
    "image/jpeg": uid.JPEGLosslessSV1,
    "image/jls": uid.JPEGLSLossless,
    "image/jp2": uid.JPEG2000Lossless,
    "image/jphc": uid.HTJ2KLossless,
    "image/jpx": uid.JPEG2000MCLossless,
    "image/dicom-rle": uid.RLELossless,
}


@dataclass(frozen=True, slots=True)
class InstanceSelection:
    """What the client accepts for each instance.

    ``transfer_syntax`` is the client's first choice the gateway can produce
    for any instance (None: as stored); if it accepts none such, its first
    choice, and the selection is ``provisional``. ``choices`` are all
    acceptable syntaxes in the client's order of preference, including ones
    producible only for instances stored in them; empty means just
    ``transfer_syntax``.
    """

    transfer_syntax: str | None = uid.ExplicitVRLittleEndian
    choices: tuple[str | None, ...] = ()

    @property
    def accepted(self) -> tuple[str | None, ...]:
        return self.choices or (self.transfer_syntax,)

    @property
    def provisional(self) -> bool:
        """True when no accepted syntax can be produced from every stored one
        (all are syntaxes the gateway does not encode, a lossy JPEG say):
        whether an instance can be sent is known only from its stored syntax."""
        return not any(c is None or c in ENCODABLE for c in self.accepted)

    def candidates(self, stored_syntax: str) -> list[str | None]:
        """Targets for an instance stored in ``stored_syntax``, best first; the
        later ones are fallbacks for when an encoder refuses the pixel data.
        Empty: the instance cannot be sent in any accepted syntax."""
        return [c for c in self.accepted if c is None or c == stored_syntax or c in ENCODABLE]

    def refusal(self, sop_instance_uid: str, stored_syntax: str) -> str:
        """Why an instance stored in ``stored_syntax`` cannot be sent (its candidates are empty)."""
        accepted = ", ".join(str(c) for c in self.accepted)
        offers = ", ".join(producible(stored_syntax))
        return (f"instance {sop_instance_uid} is stored as {uid.UID(stored_syntax).name} "
                f"({stored_syntax}); the accepted transfer syntaxes ({accepted}) can only be "
                "sent for instances stored in them, as the gateway does not encode them; ask "
                f"with transfer-syntax=* to get it as stored, or one of: {offers}")


@dataclass(frozen=True)
class FrameOption:
    """One acceptable form for frames or bulk data: a media type and a transfer syntax.

    ``transfer_syntax`` None means the media type's default (uncompressed for
    application/octet-stream), ``"*"`` means as stored.
    """

    media_type: str
    transfer_syntax: str | None


@dataclass(frozen=True)
class PixelRequest:
    options: tuple[FrameOption, ...]
    multipart: bool


@dataclass(frozen=True)
class PixelChoice:
    """How to send frames: as stored, decoded to native, or encoded in ``transfer_syntax``."""

    action: Literal["stored", "native", "encode"]
    #: The syntax of the bytes sent (native frames: Explicit VR Little Endian).
    transfer_syntax: str

    @property
    def as_stored(self) -> bool:
        return self.action == "stored"


def choose_pixels(request: PixelRequest, stored_syntax: str, stored_media_type: str | None,
                  *, encode: bool = True) -> PixelChoice:
    """The client's most preferred form the gateway can produce; 406 listing the others.

    ``stored_media_type`` None: stored frames have no media type (video), so
    they can only be decoded. ``encode`` False offers only stored and native.
    """
    native_stored = stored_media_type == _OCTET
    decodable = native_stored or can_decode(stored_syntax)
    for option in request.options:
        wanted = option.transfer_syntax
        if option.media_type == stored_media_type and wanted in (None, "*", stored_syntax):
            return PixelChoice("stored", stored_syntax)
        if option.media_type == _OCTET:
            if wanted in ("*", stored_syntax) and stored_media_type is not None:
                # OHIF's "transfer-syntax=*": any syntax, so the stored one;
                # or exactly the stored one (JPEG baseline, say, which the
                # gateway cannot encode). Labelled with its own media type.
                return PixelChoice("stored", stored_syntax)
            if native_stored and wanted == uid.ImplicitVRLittleEndian:
                return PixelChoice("stored", stored_syntax)  # both little endian: same bytes
            if decodable and wanted in (None, "*", uid.ExplicitVRLittleEndian):
                return PixelChoice("stored" if native_stored else "native", NATIVE_FRAME_SYNTAX)
            continue
        if wanted in (None, "*"):
            wanted = _DEFAULT_SYNTAX.get(option.media_type)
        if (encode and decodable and wanted in ENCODABLE
                and ENCODABLE[wanted] == option.media_type):
            return PixelChoice("encode", wanted)
    available = "; ".join(producible_frames(stored_syntax, stored_media_type, encode=encode))
    raise NotAcceptable(
        f"the pixel data is stored as {uid.UID(stored_syntax).name} and none of the accepted "
        f"media types can be produced from it; available: {available or 'none'}")


def producible_frames(stored_syntax: str, stored_media_type: str | None, *,
                      encode: bool = True) -> list[str]:
    """Part Content-Types frames of an instance stored in ``stored_syntax`` can be sent as."""
    offers: list[str] = []
    if stored_media_type is not None:
        offers.append(part_content_type(stored_syntax))
    if stored_media_type == _OCTET or can_decode(stored_syntax):
        for syntax in ENCODABLE if encode else [uid.ExplicitVRLittleEndian]:
            offer = part_content_type(syntax)
            if offer not in offers:
                offers.append(offer)
    return offers
