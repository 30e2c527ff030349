"""Unit tests for dicomweb_gw.http.negotiation: Accept parsing and WADO/QIDO media choices."""

from __future__ import annotations

import pytest

from dicomweb_gw.dicomweb.selection import FrameOption, PixelChoice, choose_pixels
from dicomweb_gw.errors import BadRequest, NotAcceptable
from dicomweb_gw.http.negotiation import (
    negotiate_instances,
    negotiate_pixels,
    negotiate_search,
    parse_accept,
)

EXPLICIT_LE = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


# -- parse_accept ---------------------------------------------------------------


def test_single_range_with_parameters() -> None:
    [media] = parse_accept('multipart/related; type="application/dicom"; transfer-syntax=*')
    assert (media.type, media.subtype, media.essence) == ("multipart", "related",
                                                          "multipart/related")
    assert media.params == {"type": "application/dicom", "transfer-syntax": "*"}
    assert media.q == 1.0


def test_ordering_by_q_value_then_header_order() -> None:
    ranges = parse_accept(
        "application/json;q=0.5, text/html, application/dicom+json;q=0.9, image/png, */*;q=0.1")
    assert [r.essence for r in ranges] == [
        "text/html", "image/png", "application/dicom+json", "application/json", "*/*"]
    assert [r.q for r in ranges] == [1.0, 1.0, 0.9, 0.5, 0.1]


def test_q_is_not_kept_as_a_parameter() -> None:
    [media] = parse_accept("application/dicom+json; q=0.8; charset=utf-8")
    assert media.q == 0.8
    assert media.params == {"charset": "utf-8"}


def test_q_zero_ranges_are_dropped() -> None:
    assert [r.essence for r in parse_accept("image/png;q=0, application/json")] == [
        "application/json"]
    assert parse_accept("image/png;q=0.0") == []


def test_types_and_parameter_names_are_lowercased_values_kept() -> None:
    [media] = parse_accept('Multipart/Related; Type="Application/DICOM"; Boundary=AbC')
    assert media.essence == "multipart/related"
    assert media.params == {"type": "Application/DICOM", "boundary": "AbC"}


def test_quoted_and_unquoted_values_are_equivalent() -> None:
    [quoted] = parse_accept('multipart/related; type="application/dicom"')
    [unquoted] = parse_accept("multipart/related; type=application/dicom")
    assert quoted == unquoted


def test_quoted_value_may_contain_separators() -> None:
    [media, other] = parse_accept(
        'multipart/related; type="application/dicom; transfer-syntax=*", text/plain')
    assert media.params == {"type": "application/dicom; transfer-syntax=*"}
    assert other.essence == "text/plain"


def test_escaped_quotes_in_quoted_value() -> None:
    [media] = parse_accept(r'text/plain; title="say \"hi\" \\ bye"')
    assert media.params["title"] == 'say "hi" \\ bye'


def test_whitespace_and_empty_elements_are_tolerated() -> None:
    ranges = parse_accept(" ,application/json ,\t, text/plain ;  q = 0.5 ,")
    assert [(r.essence, r.q) for r in ranges] == [("application/json", 1.0),
                                                  ("text/plain", 0.5)]


def test_empty_header_gives_no_ranges() -> None:
    assert parse_accept("") == []
    assert parse_accept("  ") == []


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        "application",
        "/json",
        "application/json junk",
        "application/json; q=abc",
        "application/json; q=2",
        "application/json; q=-0.5",
        "application/json;; charset=utf-8",
        "application/json; =x",
    ],
)
def test_malformed_headers_are_bad_requests(header: str) -> None:
    with pytest.raises(BadRequest):
        parse_accept(header)


@pytest.mark.parametrize(
    "header",
    [
        "toto, application/dicom+json",
        "application/dicom+json, toto",
        "application/json junk, application/dicom+json",
        "application/dicom+json;; x=y, application/dicom+json",
        "application/dicom+json; q=2, application/dicom+json; q=0.5",
    ],
)
def test_junk_ranges_beside_a_valid_one_are_skipped(header: str) -> None:
    ranges = parse_accept(header)
    assert [r.essence for r in ranges] == ["application/dicom+json"]
    negotiate_search(header)  # no BadRequest: the valid range is served


def test_unterminated_quote_swallows_the_rest_of_the_header() -> None:
    # Where the quote was meant to end is unknown: what follows it is not trusted.
    with pytest.raises(BadRequest):
        parse_accept('application/dicom+json; a="x, application/json')


def test_unterminated_quote_is_a_bad_request() -> None:
    with pytest.raises(BadRequest):
        parse_accept('multipart/related; type="application/dicom')


# -- negotiate_instances --------------------------------------------------------


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "",
        "   ",
        "*/*",
        "multipart/*",
        "multipart/related",
        'multipart/related; type="application/dicom"',
        "multipart/related; type=application/dicom",
        "multipart/related;type=application/dicom",
        'Multipart/Related; Type="Application/DICOM"',
        f'multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT_LE}',
        f"multipart/related; type=application/dicom; transfer-syntax={EXPLICIT_LE}",
        f'multipart/related; type="application/dicom; transfer-syntax={EXPLICIT_LE}"',
        f'multipart/related; type="application/dicom"; transfer-syntax="{EXPLICIT_LE}"',
        "text/html, */*;q=0.1",
    ],
)
def test_instances_default_to_explicit_vr_little_endian(accept: str | None) -> None:
    assert negotiate_instances(accept).transfer_syntax == EXPLICIT_LE


@pytest.mark.parametrize(
    "accept",
    [
        'multipart/related; type="application/dicom"; transfer-syntax=*',
        "multipart/related; type=application/dicom; transfer-syntax=*",
        'multipart/related; type="application/dicom"; transfer-syntax="*"',
        'multipart/related; type="application/dicom; transfer-syntax=*"',
        "multipart/related; transfer-syntax=*",
        'multipart/related; type="application/dicom"; transfer-syntax=*, */*;q=0.5',
    ],
)
def test_instances_as_stored(accept: str) -> None:
    assert negotiate_instances(accept).transfer_syntax is None


@pytest.mark.parametrize(
    "accept",
    [
        "image/png",
        "image/jpeg, application/dicom+json",
        'multipart/related; type="application/dicom"; transfer-syntax=garbage',
        'multipart/related; type="application/octet-stream"',
        'multipart/related; type="image/jpeg"',
        'multipart/related; type="application/dicom"; q=0',
        "*/*;q=0",
    ],
)
def test_instances_not_acceptable(accept: str) -> None:
    with pytest.raises(NotAcceptable) as caught:
        negotiate_instances(accept)
    assert caught.value.status_code == 406
    # the 406 tells the client what it could have asked for
    assert "application/dicom" in caught.value.message
    assert EXPLICIT_LE in caught.value.message


@pytest.mark.parametrize(
    "accept",
    [
        f'multipart/related; type="application/dicom"; transfer-syntax={JPEG_BASELINE}',
        f'multipart/related; type="application/dicom; transfer-syntax={JPEG_BASELINE}"',
        f"multipart/related; type=application/dicom; transfer-syntax={JPEG_BASELINE}, toto",
    ],
)
def test_instances_syntax_the_gateway_cannot_encode_is_accepted_provisionally(
        accept: str) -> None:
    """Only an instance stored in it can be sent: decided once each instance is known."""
    selection = negotiate_instances(accept)
    assert selection.provisional
    assert selection.candidates(JPEG_BASELINE) == [JPEG_BASELINE]
    assert selection.candidates(EXPLICIT_LE) == []
    refusal = selection.refusal("1.2.3", EXPLICIT_LE)
    assert JPEG_BASELINE in refusal
    assert "transfer-syntax=*" in refusal


def test_instances_with_an_encodable_fallback_are_not_provisional() -> None:
    accept = (f'multipart/related; type="application/dicom"; transfer-syntax={JPEG_BASELINE}, '
              'multipart/related; type="application/dicom"; q=0.5')
    selection = negotiate_instances(accept)
    assert not selection.provisional
    assert selection.candidates(JPEG_BASELINE) == [JPEG_BASELINE, EXPLICIT_LE]
    assert selection.candidates(EXPLICIT_LE) == [EXPLICIT_LE]


def test_instances_fall_through_to_a_later_acceptable_range() -> None:
    accept = (f'multipart/related; type="application/dicom"; transfer-syntax={JPEG_BASELINE}, '
              'multipart/related; type="application/dicom"; transfer-syntax=*;q=0.5')
    assert negotiate_instances(accept).transfer_syntax is None


def test_instances_unacceptable_first_then_default() -> None:
    accept = 'image/png, multipart/related; type="application/dicom"'
    assert negotiate_instances(accept).transfer_syntax == EXPLICIT_LE


def test_instances_preference_follows_q_not_order() -> None:
    accept = ('multipart/related; type="application/dicom"; q=0.5, '
              'multipart/related; type="application/dicom"; transfer-syntax=*')
    assert negotiate_instances(accept).transfer_syntax is None
    accept = ('multipart/related; type="application/dicom"; transfer-syntax=*; q=0.5, '
              'multipart/related; type="application/dicom"')
    assert negotiate_instances(accept).transfer_syntax == EXPLICIT_LE


def test_instances_malformed_accept_is_bad_request_not_406() -> None:
    with pytest.raises(BadRequest):
        negotiate_instances("multipart/related; q=high")


# -- negotiate_search -----------------------------------------------------------


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "",
        "application/dicom+json",
        "application/json",
        "*/*",
        "application/*",
        "Application/DICOM+JSON; charset=utf-8",
        "text/html, application/dicom+json;q=0.1",
        "image/png, */*;q=0.01",
    ],
)
def test_search_acceptable(accept: str | None) -> None:
    negotiate_search(accept)  # no NotAcceptable


@pytest.mark.parametrize(
    "accept",
    [
        "image/png",
        "application/dicom+xml",
        "text/*",
        "application/dicom+json;q=0",
    ],
)
def test_search_not_acceptable(accept: str) -> None:
    with pytest.raises(NotAcceptable, match=r"application/dicom\+json"):
        negotiate_search(accept)


def test_search_malformed_accept_is_bad_request() -> None:
    with pytest.raises(BadRequest):
        negotiate_search("application/dicom+json; q=x")


# -- negotiate_pixels -------------------------------------------------------------


def test_pixels_multipart_of_any_type_is_octet_stream() -> None:
    """dicomweb-client asks frames with ``multipart/related; type="*/*"``."""
    request = negotiate_pixels('multipart/related; type="*/*"')
    assert request.multipart
    assert request.options == (FrameOption("application/octet-stream", None),)


def test_pixels_junk_type_is_skipped_not_a_bad_request() -> None:
    request = negotiate_pixels('multipart/related; type="x y", multipart/related; type=image/jls')
    assert request.options == (FrameOption("image/jls", None),)


# -- HTJ2K (image/jphc, and image/jhc as cornerstone3D and OHIF ask) -----------------

HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K_LOSSY = "1.2.840.10008.1.2.4.203"
JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"


@pytest.mark.parametrize("media_type", ["image/jphc", "image/jhc"])
def test_pixels_htj2k_single_part_is_encoded_from_any_decodable_syntax(media_type: str) -> None:
    """cornerstone3D's progressive loading: ``accept=image/jhc`` and a bare body."""
    request = negotiate_pixels(media_type)
    assert not request.multipart
    assert request.options == (FrameOption("image/jphc", None),)
    for stored in (EXPLICIT_LE, JPEG2000_LOSSLESS):
        stored_type = "application/octet-stream" if stored == EXPLICIT_LE else "image/jp2"
        assert choose_pixels(request, stored, stored_type) == PixelChoice("encode",
                                                                          HTJ2K_LOSSLESS)


@pytest.mark.parametrize("syntax", [HTJ2K_LOSSLESS, HTJ2K_RPCL, HTJ2K_LOSSY])
def test_pixels_htj2k_multipart_with_each_syntax(syntax: str) -> None:
    """dicomweb-client (OHIF) writes ``type="image/jhc"`` with .201 and .202."""
    request = negotiate_pixels(f'multipart/related; type="image/jhc"; transfer-syntax={syntax}')
    assert request.multipart
    assert choose_pixels(request, EXPLICIT_LE, "application/octet-stream") == PixelChoice(
        "encode", syntax)


def test_pixels_htj2k_stored_is_sent_as_stored() -> None:
    request = negotiate_pixels("image/jphc")
    assert choose_pixels(request, HTJ2K_RPCL, "image/jphc") == PixelChoice("stored", HTJ2K_RPCL)


def test_instances_htj2k_is_encodable_not_provisional() -> None:
    for syntax in (HTJ2K_LOSSLESS, HTJ2K_RPCL, HTJ2K_LOSSY):
        selection = negotiate_instances(
            f'multipart/related; type="application/dicom"; transfer-syntax={syntax}')
        assert selection.transfer_syntax == syntax
        assert not selection.provisional
