"""CSRF tokens of the status page's actions: bound to the credential, shared by replicas
through the configuration, limited in time, compared in constant time."""

from __future__ import annotations

import asyncio
import hmac
from pathlib import Path
from typing import Any

import httpx
import pytest

from dicomweb_gw.app import create_app
from dicomweb_gw.http import csrf
from dicomweb_gw.http.auth import binding
from dicomweb_gw.http.csrf import CsrfTokens, from_another_site
from dicomweb_gw.settings import Settings, load_settings

ADMIN_KEY = "adm1n-0123456789abcdef"
OTHER_ADMIN = "adm1n-fedcba9876543210"
NOW = 1_800_000_000.0


def _settings(**extra: Any) -> Settings:
    return Settings(nodes=(), default_pacs="x", **extra)


def _tokens(settings: Settings, now: float = NOW) -> CsrfTokens:
    tokens = CsrfTokens.for_settings(settings)
    tokens._clock = lambda: now  # type: ignore[method-assign]
    return tokens


def test_a_token_passes_for_its_credential_only() -> None:
    tokens = _tokens(_settings(api_keys=(ADMIN_KEY,)))
    token = tokens.issue(binding(ADMIN_KEY))
    assert tokens.valid(token, binding(ADMIN_KEY))
    assert not tokens.valid(token, binding(OTHER_ADMIN))
    assert not tokens.valid(token, "")


@pytest.mark.parametrize("bad", [None, "", "garbage", "123", "abc.def", "1800000000.x"])
def test_malformed_tokens_fail(bad: str | None) -> None:
    tokens = _tokens(_settings(api_keys=(ADMIN_KEY,)))
    assert not tokens.valid(bad, binding(ADMIN_KEY))


def test_a_tampered_token_fails() -> None:
    tokens = _tokens(_settings(api_keys=(ADMIN_KEY,)))
    issued, _, mac = tokens.issue(binding(ADMIN_KEY)).partition(".")
    assert not tokens.valid(f"{int(issued) + 1}.{mac}", binding(ADMIN_KEY))
    assert not tokens.valid(f"{issued}.{mac[:-1]}A", binding(ADMIN_KEY))


def test_a_token_expires() -> None:
    settings = _settings(api_keys=(ADMIN_KEY,))
    token = _tokens(settings).issue(binding(ADMIN_KEY))
    assert _tokens(settings, NOW + csrf.MAX_AGE - 1).valid(token, binding(ADMIN_KEY))
    assert not _tokens(settings, NOW + csrf.MAX_AGE + 1).valid(token, binding(ADMIN_KEY))
    assert not _tokens(settings, NOW - 3600).valid(token, binding(ADMIN_KEY))  # from the future


def test_replicas_with_the_same_configuration_accept_each_others_tokens() -> None:
    # Two processes: nothing shared but the settings, as behind a load balancer.
    replica_a = _tokens(_settings(api_keys=(ADMIN_KEY, OTHER_ADMIN)))
    replica_b = _tokens(_settings(api_keys=(ADMIN_KEY, OTHER_ADMIN)))
    assert replica_b.valid(replica_a.issue(binding(ADMIN_KEY)), binding(ADMIN_KEY))
    # A gateway configured with other keys does not.
    stranger = _tokens(_settings(api_keys=(OTHER_ADMIN,)))
    assert not stranger.valid(replica_a.issue(binding(ADMIN_KEY)), binding(ADMIN_KEY))


def test_without_auth_the_secret_is_per_process() -> None:
    one, two = _tokens(_settings()), _tokens(_settings())
    assert one.valid(one.issue(""), "")
    assert not two.valid(one.issue(""), "")


def test_tokens_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = _tokens(_settings(api_keys=(ADMIN_KEY,)))
    token = tokens.issue(binding(ADMIN_KEY))
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(csrf.hmac, "compare_digest", spy)
    assert tokens.valid(token, binding(ADMIN_KEY))
    assert len(calls) == 1


# --- through the app ---------------------------------------------------------------------

def _exchange(app: Any, requests: list[tuple[str, str, dict[str, str], bytes | None]],
              ) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return [await client.request(method, path, headers=headers, content=body)
                    for method, path, headers, body in requests]

    return asyncio.run(run())


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return create_app(load_settings(environ={
        "DICOMWEB_GW_CACHE_DIR": str(tmp_path), "DICOMWEB_GW_API_KEYS": f"{ADMIN_KEY} admin"}))


PURGE = "/admin/cache/studies/1.2.3.4/purge"


@pytest.mark.parametrize("token", [None, "", "1800000000.forged"])
def test_an_action_without_a_valid_token_is_403(app: Any, token: str | None) -> None:
    headers = {"X-API-Key": ADMIN_KEY, "Accept": "application/json"}
    if token is not None:
        headers["X-CSRF-Token"] = token
    [response] = _exchange(app, [("POST", PURGE, headers, None)])
    assert response.status_code == 403
    assert response.json() == {"ok": False, "message": csrf.CSRF_MESSAGE}


def test_the_snapshots_token_passes_as_header_and_as_form_field(app: Any) -> None:
    key = {"X-API-Key": ADMIN_KEY}
    [status] = _exchange(app, [("GET", "/admin/status", key, None)])
    token = status.json()["csrf_token"]
    as_header, as_form = _exchange(app, [
        ("POST", PURGE, {**key, "X-CSRF-Token": token, "Accept": "application/json"}, None),
        ("POST", PURGE, {**key, "Content-Type": "application/x-www-form-urlencoded",
                         "Accept": "text/html"}, f"csrf_token={token}".encode())])
    assert as_header.status_code == 200
    assert as_header.json()["ok"] is True
    # A plain form post goes back to the page.
    assert as_form.status_code == 303
    assert as_form.headers["location"] == "../../../../status"


@pytest.mark.parametrize(("headers", "expected"), [
    ({}, False),  # a script: neither header
    ({"sec-fetch-site": "same-origin"}, False),
    ({"sec-fetch-site": "none"}, False),  # typed into the address bar
    ({"sec-fetch-site": "same-site"}, True),  # another port or subdomain is another origin
    ({"sec-fetch-site": "cross-site", "origin": "http://gw:8080", "host": "gw:8080"}, True),
    ({"origin": "http://gw:8080", "host": "gw:8080"}, False),
    ({"origin": "https://evil.example", "host": "gw:8080"}, True),
    ({"origin": "null", "host": "gw:8080"}, True),
    ({"origin": "https://pacs.example", "host": "gw:8080",
      "x-forwarded-host": "pacs.example"}, False),
])
def test_from_another_site(headers: dict[str, str], expected: bool) -> None:
    assert from_another_site(headers) is expected
