"""Unit tests for dicomweb_gw.http.render_params: rendered media type and query parameters."""

from __future__ import annotations

import pytest
from starlette.datastructures import QueryParams

from dicomweb_gw.errors import BadRequest, NotAcceptable
from dicomweb_gw.http.render_params import (
    RenderParams,
    Viewport,
    Window,
    parse_render_params,
)


def parse(query: str = "", accept: str | None = None,
          default_viewport: tuple[int, int] | None = None) -> RenderParams:
    return parse_render_params(QueryParams(query), accept, default_viewport=default_viewport)


def test_defaults() -> None:
    assert parse() == RenderParams("image/jpeg", None, None, 90)


def test_ohif_thumbnail_and_rendered_requests() -> None:
    thumbnail = parse("viewport=256,256", "image/jpeg", default_viewport=(128, 128))
    assert thumbnail == RenderParams("image/jpeg", Viewport(256, 256), None, 90)
    assert parse("accept=image/jpeg").media_type == "image/jpeg"
    assert parse("accept=image%2Fpng").media_type == "image/png"  # URL-encoded


def test_default_viewport_only_when_absent() -> None:
    assert parse("", "image/png", default_viewport=(128, 128)).viewport == Viewport(128, 128)
    assert parse("viewport=64,32", default_viewport=(128, 128)).viewport == Viewport(64, 32)


@pytest.mark.parametrize(
    ("query", "accept", "media_type"),
    [
        ("", "image/png", "image/png"),
        ("", "*/*", "image/jpeg"),
        ("", "image/*", "image/jpeg"),
        ("", "image/gif", "image/gif"),
        ("", "image/png;q=0.5, image/gif", "image/gif"),
        ("", "image/webp, image/png;q=0.9, */*;q=0.1", "image/png"),
        # A browser's <img> Accept: nothing we make by name, then image/*.
        ("", "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8", "image/jpeg"),
        ("accept=image/png", "image/jpeg", "image/png"),  # the parameter wins (8.3.3.1)
        ("accept=image/gif,image/png", "application/dicom", "image/gif"),
    ],
)
def test_media_type(query: str, accept: str, media_type: str) -> None:
    assert parse(query, accept).media_type == media_type


@pytest.mark.parametrize(
    ("query", "accept"),
    [
        ("", "application/dicom+json"),
        ("", "image/webp"),
        ("", "image/png;q=0"),
        ("accept=application/dicom", "image/jpeg"),  # the header is not consulted
    ],
)
def test_unsupported_media_type_is_406_listing_what_we_make(query: str, accept: str) -> None:
    with pytest.raises(NotAcceptable) as caught:
        parse(query, accept)
    assert caught.value.status_code == 406
    for offered in ("image/jpeg", "image/png", "image/gif"):
        assert offered in caught.value.message


def test_malformed_accept_is_400() -> None:
    with pytest.raises(BadRequest):
        parse("", "image/png;q=2")


@pytest.mark.parametrize(
    ("text", "viewport"),
    [
        ("256,256", Viewport(256, 256)),
        (" 512 , 256 ", Viewport(512, 256)),
        ("256,256,10,20,-30,40", Viewport(256, 256, 10, 20, -30, 40)),
        ("256,256,,,100,", Viewport(256, 256, 0, 0, 100, None)),
        ("256,256,5,6", Viewport(256, 256, 5, 6)),
    ],
)
def test_viewport(text: str, viewport: Viewport) -> None:
    assert parse(f"viewport={text}").viewport == viewport


@pytest.mark.parametrize(
    "text",
    ["", "256", "0,256", "256,-1", "abc,256", "256,256.5", "256,256,1,2,3,4,5",
     "256,256,-1,0,10,10", "256,256,0,0,0,10", "9000,100", ",256"],
)
def test_bad_viewport_is_400(text: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse(f"viewport={text}")
    assert "viewport" in caught.value.message


@pytest.mark.parametrize(
    ("text", "window"),
    [
        ("40,400", Window(40, 400, "LINEAR")),
        ("40,400,linear", Window(40, 400, "LINEAR")),
        ("-600.5,1500,LINEAR-EXACT", Window(-600.5, 1500, "LINEAR_EXACT")),
        ("40,0.5,sigmoid", Window(40, 0.5, "SIGMOID")),
        ("40,1,linear", Window(40, 1, "LINEAR")),
    ],
)
def test_window(text: str, window: Window) -> None:
    assert parse(f"window={text}").window == window


@pytest.mark.parametrize(
    "text",
    ["40", "40,abc", "40,400,cubic", "40,0.5,linear", "40,0,sigmoid", "40,-1,linear-exact",
     "nan,400", "40,inf", "1,2,linear,4"],
)
def test_bad_window_is_400(text: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse(f"window={text}")
    assert "window" in caught.value.message


def test_quality() -> None:
    assert parse("quality=50").quality == 50
    assert parse("quality=100&accept=image/png").quality == 100


@pytest.mark.parametrize("text", ["0", "101", "abc", "5.5", "", "-5"])
def test_bad_quality_is_400(text: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse(f"quality={text}")
    assert "quality" in caught.value.message


def test_unknown_and_unsupported_parameters_are_ignored() -> None:
    assert parse("annotation=patient&charset=utf-8&iccprofile=no&foo=bar") == parse()
