"""Unit tests for dicomweb_gw.codecs.mediatypes: frame media types per transfer syntax."""

from __future__ import annotations

import pytest

from dicomweb_gw.codecs.mediatypes import (
    NATIVE_FRAME_SYNTAX,
    frame_media_type,
    part_content_type,
)
from dicomweb_gw.errors import NotAcceptable


@pytest.mark.parametrize(
    ("syntax", "media_type"),
    [
        ("1.2.840.10008.1.2.4.50", "image/jpeg"),
        ("1.2.840.10008.1.2.4.51", "image/jpeg"),
        ("1.2.840.10008.1.2.4.57", "image/jpeg"),
        ("1.2.840.10008.1.2.4.70", "image/jpeg"),
        ("1.2.840.10008.1.2.4.80", "image/jls"),
        ("1.2.840.10008.1.2.4.81", "image/jls"),
        ("1.2.840.10008.1.2.4.90", "image/jp2"),
        ("1.2.840.10008.1.2.4.91", "image/jp2"),
        ("1.2.840.10008.1.2.4.92", "image/jpx"),
        ("1.2.840.10008.1.2.4.93", "image/jpx"),
        ("1.2.840.10008.1.2.4.201", "image/jphc"),
        ("1.2.840.10008.1.2.4.202", "image/jphc"),
        ("1.2.840.10008.1.2.4.203", "image/jphc"),
        ("1.2.840.10008.1.2.4.110", "image/jxl"),
        ("1.2.840.10008.1.2.5", "image/dicom-rle"),
        ("1.2.840.10008.1.2", "application/octet-stream"),
        ("1.2.840.10008.1.2.1", "application/octet-stream"),
        ("1.2.840.10008.1.2.1.98", "application/octet-stream"),
        ("1.2.840.10008.1.2.1.99", "application/octet-stream"),
        ("1.2.840.10008.1.2.2", "application/octet-stream"),
    ],
)
def test_frame_media_type(syntax: str, media_type: str) -> None:
    assert frame_media_type(syntax) == media_type


def test_compressed_part_names_its_own_syntax() -> None:
    assert (
        part_content_type("1.2.840.10008.1.2.4.50")
        == "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50"
    )
    assert (
        part_content_type("1.2.840.10008.1.2.4.201")
        == "image/jphc; transfer-syntax=1.2.840.10008.1.2.4.201"
    )


@pytest.mark.parametrize(
    "syntax",
    ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"],
)
def test_native_parts_are_labelled_explicit_little_endian(syntax: str) -> None:
    # Frames come out of FrameReader little endian whatever the file's encoding.
    assert NATIVE_FRAME_SYNTAX == "1.2.840.10008.1.2.1"
    assert part_content_type(syntax) == (
        "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    )


@pytest.mark.parametrize(
    "syntax",
    [
        "1.2.840.10008.1.2.4.100",  # MPEG2: video, no single-frame media type
        "1.2.840.10008.1.2.4.53",  # retired JPEG process
        "1.2.3.4",
        "",
    ],
)
def test_unlabellable_syntax_is_not_acceptable(syntax: str) -> None:
    with pytest.raises(NotAcceptable) as raised:
        frame_media_type(syntax)
    assert raised.value.status_code == 406
    with pytest.raises(NotAcceptable):
        part_content_type(syntax)
