"""Unit tests for dicomweb_gw.http.baseurl: the client's view of the gateway's URL."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from dicomweb_gw.http.baseurl import base_url

PREFIX = "/dicom-web"


def request(headers: dict[str, str] | None = None, *, host: str | None = "gw.internal:8080",
            scheme: str = "http", **scope: Any) -> Request:
    raw = [(name.lower().encode("latin-1"), value.encode("latin-1"))
           for name, value in (headers or {}).items()]
    if host is not None:
        raw.insert(0, (b"host", host.encode("latin-1")))
    full: dict[str, Any] = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": scheme,
        "server": ("10.1.2.3", 8080),
        "client": ("10.9.9.9", 50000),
        "path": "/dicom-web/studies",
        "raw_path": b"/dicom-web/studies",
        "root_path": "",
        "query_string": b"",
        "headers": raw,
    }
    full.update(scope)
    return Request(full)


def test_plain_request_uses_host_header_and_scheme() -> None:
    assert base_url(request(), PREFIX) == "http://gw.internal:8080/dicom-web"


def test_https_scheme_is_kept() -> None:
    assert base_url(request(scheme="https", host="gw.example.org"), PREFIX) == (
        "https://gw.example.org/dicom-web")


def test_without_host_header_the_server_address_is_used() -> None:
    assert base_url(request(host=None), PREFIX) == "http://10.1.2.3:8080/dicom-web"


def test_prefix_for_a_named_node() -> None:
    assert base_url(request(), "/pacs/research/dicom-web") == (
        "http://gw.internal:8080/pacs/research/dicom-web")


# -- Forwarded (RFC 7239) -----------------------------------------------------


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("proto=https;host=example.org", "https://example.org/dicom-web"),
        ("for=192.0.2.60;proto=https;host=example.org;by=203.0.113.43",
         "https://example.org/dicom-web"),
        ('proto=https;host="example.org:8443"', "https://example.org:8443/dicom-web"),
        ('host="[2001:db8::1]:8443";proto=https', "https://[2001:db8::1]:8443/dicom-web"),
        ("Proto=https;Host=example.org", "https://example.org/dicom-web"),
        ("proto=https; host=example.org", "https://example.org/dicom-web"),
        ("proto=https", "https://gw.internal:8080/dicom-web"),
        ("host=example.org", "http://example.org/dicom-web"),
        ("for=192.0.2.60", "http://gw.internal:8080/dicom-web"),
    ],
)
def test_forwarded(forwarded: str, expected: str) -> None:
    assert base_url(request({"Forwarded": forwarded}), PREFIX) == expected


def test_forwarded_uses_the_first_hop_only() -> None:
    forwarded = "proto=https;host=outer.example.org, proto=http;host=inner.proxy"
    assert base_url(request({"Forwarded": forwarded}), PREFIX) == (
        "https://outer.example.org/dicom-web")


def test_forwarded_wins_over_x_forwarded() -> None:
    headers = {"Forwarded": "proto=https;host=example.org",
               "X-Forwarded-Proto": "http", "X-Forwarded-Host": "other.example.org"}
    assert base_url(request(headers), PREFIX) == "https://example.org/dicom-web"


# -- X-Forwarded-* --------------------------------------------------------------


def test_x_forwarded_proto_and_host() -> None:
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "viewer.example.org"}
    assert base_url(request(headers), PREFIX) == "https://viewer.example.org/dicom-web"


def test_x_forwarded_lists_use_the_first_value() -> None:
    headers = {"X-Forwarded-Proto": "https, http",
               "X-Forwarded-Host": "viewer.example.org, proxy.internal"}
    assert base_url(request(headers), PREFIX) == "https://viewer.example.org/dicom-web"


def test_x_forwarded_proto_alone() -> None:
    headers = {"X-Forwarded-Proto": "https"}
    assert base_url(request(headers), PREFIX) == "https://gw.internal:8080/dicom-web"


@pytest.mark.parametrize(
    ("prefix_header", "expected"),
    [
        ("/gateway", "https://example.org/gateway/dicom-web"),
        ("gateway", "https://example.org/gateway/dicom-web"),
        ("/gateway/", "https://example.org/gateway/dicom-web"),
        ("/a/b", "https://example.org/a/b/dicom-web"),
        ("/", "https://example.org/dicom-web"),
    ],
)
def test_x_forwarded_prefix(prefix_header: str, expected: str) -> None:
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "example.org",
               "X-Forwarded-Prefix": prefix_header}
    assert base_url(request(headers), PREFIX) == expected


def test_x_forwarded_prefix_with_forwarded() -> None:
    headers = {"Forwarded": "proto=https;host=example.org", "X-Forwarded-Prefix": "/gw"}
    assert base_url(request(headers), PREFIX) == "https://example.org/gw/dicom-web"


# -- root_path ------------------------------------------------------------------


def test_root_path_is_included() -> None:
    req = request(root_path="/api", path="/api/dicom-web/studies")
    assert base_url(req, PREFIX) == "http://gw.internal:8080/api/dicom-web"


def test_app_root_path_wins_over_a_mount_extended_root_path() -> None:
    # inside a Starlette Mount, root_path grows by the mount's path; app_root_path
    # is what the server was started with
    req = request(root_path="/api/pacs/research", app_root_path="/api",
                  path="/api/pacs/research/dicom-web/studies")
    assert base_url(req, "/pacs/research/dicom-web") == (
        "http://gw.internal:8080/api/pacs/research/dicom-web")


def test_root_path_with_forwarded_headers() -> None:
    req = request({"X-Forwarded-Proto": "https", "X-Forwarded-Host": "example.org",
                   "X-Forwarded-Prefix": "/outer"}, root_path="/api",
                  path="/api/dicom-web/studies")
    assert base_url(req, PREFIX) == "https://example.org/outer/api/dicom-web"
