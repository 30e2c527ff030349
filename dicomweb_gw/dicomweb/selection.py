"""What a client accepts, in the terms the services decide with.

The HTTP layer parses Accept headers into these; the services pick among
them once they know how an instance is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom import uid

from dicomweb_gw.errors import NotAcceptable

__all__ = ["FRAME_OFFER", "FrameOption", "InstanceSelection", "PixelRequest", "choose_pixels"]

_OCTET = "application/octet-stream"
FRAME_OFFER = (
    'multipart/related; type="application/octet-stream" with transfer-syntax='
    f"{uid.ExplicitVRLittleEndian} (the default) or transfer-syntax=* (as stored), or the "
    "stored compressed media type (image/jpeg, image/jls, image/jp2, image/jphc, image/dicom-rle)"
)


@dataclass(frozen=True, slots=True)
class InstanceSelection:
    """What the client accepts for each instance: a transfer syntax, or None for as stored."""

    transfer_syntax: str | None = uid.ExplicitVRLittleEndian


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



def choose_pixels(request: PixelRequest, stored_syntax: str, stored_media_type: str
                  ) -> tuple[bool, FrameOption]:
    """(send as stored?, option) for an instance stored in ``stored_syntax``; 406 if none fits."""
    native_stored = stored_media_type == _OCTET
    for option in request.options:
        if option.media_type == _OCTET:
            if option.transfer_syntax == "*":
                return True, option
            if option.transfer_syntax in (None, uid.ExplicitVRLittleEndian):
                return native_stored, option
            if native_stored and option.transfer_syntax in (uid.ImplicitVRLittleEndian,):
                return True, option
        elif option.media_type == stored_media_type and option.transfer_syntax in (
            None, "*", stored_syntax
        ):
            return True, option
    raise NotAcceptable(
        f"the pixel data is stored as {uid.UID(stored_syntax).name} and transcoding to the "
        f"requested media type is not supported; available: {FRAME_OFFER}")


