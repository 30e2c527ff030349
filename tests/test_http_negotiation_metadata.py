"""Unit tests for dicomweb_gw.http.negotiation: DICOM JSON or DICOM XML for metadata and QIDO.

PS3.18 10.4.4 and 10.6.3: application/dicom+json is the default and
multipart/related; type="application/dicom+xml" is required; a single part
application/dicom+xml is only for a resource that is a single item.
"""

from __future__ import annotations

import pytest

from dicomweb_gw.errors import NotAcceptable
from dicomweb_gw.http.negotiation import MetadataFormat, negotiate_metadata, negotiate_search

JSON, XML_MULTIPART, XML = MetadataFormat.JSON, MetadataFormat.XML_MULTIPART, MetadataFormat.XML


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON),
        ("", JSON),
        ("application/dicom+json", JSON),
        ("*/*", JSON),
        ('multipart/related; type="application/dicom+xml"', XML_MULTIPART),
        ("multipart/related; type=application/dicom+xml", XML_MULTIPART),
        ('Multipart/Related; Type="Application/DICOM+XML"; boundary=x', XML_MULTIPART),
        ('multipart/related; type="application/dicom+xml; transfer-syntax=1.2.840.10008.1.2.1"',
         XML_MULTIPART),
        ("multipart/*", XML_MULTIPART),
        # The client's order of preference decides.
        ("application/dicom+json, multipart/related; type=application/dicom+xml", JSON),
        ("multipart/related; type=application/dicom+xml, application/dicom+json", XML_MULTIPART),
        ("application/dicom+json;q=0.5, multipart/related; type=application/dicom+xml",
         XML_MULTIPART),
        # A browser's Accept still gets JSON: application/xml is not DICOM XML.
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", JSON),
    ],
)
def test_metadata_and_search_choice(accept: str | None, expected: MetadataFormat) -> None:
    assert negotiate_metadata(accept) is expected
    assert negotiate_metadata(accept, single=True) is expected
    assert negotiate_search(accept) is expected


def test_bare_dicom_xml_is_for_one_instance_only() -> None:
    """PS3.18 10.4.4: a single part type is ignored for a resource of several items."""
    assert negotiate_metadata("application/dicom+xml", single=True) is XML
    with pytest.raises(NotAcceptable, match="multipart/related"):
        negotiate_metadata("application/dicom+xml")
    with pytest.raises(NotAcceptable):
        negotiate_search("application/dicom+xml")
    # Ignored, not fatal: what follows it still counts.
    assert negotiate_metadata("application/dicom+xml, application/dicom+json") is JSON


@pytest.mark.parametrize(
    "accept",
    [
        "multipart/related; type=application/dicom",
        "multipart/related; type=application/octet-stream",
        "multipart/related",
        "application/xml",
        "text/xml",
        "multipart/related; type=application/dicom+xml;q=0",
    ],
)
def test_not_acceptable_names_both_offers(accept: str) -> None:
    with pytest.raises(NotAcceptable) as raised:
        negotiate_metadata(accept, single=True)
    assert "application/dicom+json" in raised.value.message
    assert 'multipart/related; type="application/dicom+xml"' in raised.value.message
