"""CORS for the listed origins only, and CORP on every response."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from dicomweb_gw.app import create_app
from dicomweb_gw.settings import SettingsError, load_settings

VIEWER = "https://viewer.example.org"


def _get(tmp_path: Path, env: dict[str, str], method: str, path: str,
         headers: dict[str, str]) -> httpx.Response:
    settings = load_settings(environ={"DICOMWEB_GW_CACHE_DIR": str(tmp_path), **env})
    app = create_app(settings)

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return await client.request(method, path, headers=headers)

    return asyncio.run(call())


def test_every_response_allows_cross_origin_embedding(tmp_path: Path) -> None:
    response = _get(tmp_path, {}, "GET", "/healthz", {})
    assert response.headers["cross-origin-resource-policy"] == "cross-origin"
    missing = _get(tmp_path, {}, "GET", "/no/such/route", {})
    assert missing.status_code == 404
    assert missing.headers["cross-origin-resource-policy"] == "cross-origin"


def test_no_origin_is_allowed_by_default(tmp_path: Path) -> None:
    response = _get(tmp_path, {}, "GET", "/healthz", {"Origin": VIEWER})
    assert "access-control-allow-origin" not in response.headers


def test_listed_origin_gets_preflight_with_authorization(tmp_path: Path) -> None:
    env = {"DICOMWEB_GW_CORS_ORIGINS": f"{VIEWER}, http://localhost:3000"}
    preflight = _get(tmp_path, env, "OPTIONS", "/dicom-web/studies", {
        "Origin": VIEWER, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == VIEWER
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    simple = _get(tmp_path, env, "GET", "/healthz", {"Origin": VIEWER})
    assert simple.headers["access-control-allow-origin"] == VIEWER
    other = _get(tmp_path, env, "GET", "/healthz", {"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in other.headers


def test_a_viewer_on_another_origin_can_revalidate_and_read_what_it_needs(
        tmp_path: Path) -> None:
    """A script that revalidates (``If-None-Match``) or passes a request id is
    preflighted; the answer's ETag, Accept-Ranges, Content-Range, Warning and request
    id are unreadable to it unless exposed (none of them is CORS-safelisted)."""
    env = {"DICOMWEB_GW_CORS_ORIGINS": VIEWER}
    preflight = _get(tmp_path, env, "OPTIONS", "/dicom-web/studies", {
        "Origin": VIEWER, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "if-none-match, x-request-id"})
    assert preflight.status_code == 200, preflight.text
    simple = _get(tmp_path, env, "GET", "/healthz", {"Origin": VIEWER})
    exposed = {h.strip().lower()
               for h in simple.headers["access-control-expose-headers"].split(",")}
    assert {"etag", "accept-ranges", "content-range", "warning", "x-request-id"} <= exposed


@pytest.mark.parametrize("value", ["viewer.example.org", "ftp://x", "https://x/path"])
def test_malformed_origins_are_refused_at_start(value: str) -> None:
    with pytest.raises(SettingsError, match="CORS_ORIGINS"):
        load_settings(environ={"DICOMWEB_GW_CORS_ORIGINS": value})
