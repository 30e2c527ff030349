"""Authentication: API keys and OIDC tokens against a real local JWKS server.

No PACS: every request either stops at the auth middleware or reaches a route
that answers without one (capabilities), or is refused by an empty STOW body.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from dicomweb_gw.app import create_app
from dicomweb_gw.http import auth
from dicomweb_gw.http.auth_oidc import JwksCache
from dicomweb_gw.settings import Settings, SettingsError, load_settings

KEY = "k3y-0123456789abcdef"
OTHER_KEY = "another-key-fedcba9876543210"
ISSUER = "https://idp.example.org/realms/pacs"
AUDIENCE = "dicomweb-gw"
READ = "/dicom-web/capabilities"
VIEWER = "https://viewer.example.org"


def _call(app: Any, method: str, path: str, headers: dict[str, str] | None = None,
          content: bytes | None = None) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return await client.request(method, path, headers=headers or {}, content=content)

    return asyncio.run(call())


def _app(tmp_path: Path, env: dict[str, str]) -> Any:
    return create_app(load_settings(environ={"DICOMWEB_GW_CACHE_DIR": str(tmp_path), **env}))


# --- API keys ---------------------------------------------------------------------------

@pytest.fixture
def key_app(tmp_path: Path) -> Any:
    return _app(tmp_path, {"DICOMWEB_GW_API_KEYS": f"{KEY}, {OTHER_KEY}",
                           "DICOMWEB_GW_CORS_ORIGINS": VIEWER})


def test_auth_is_off_by_default(tmp_path: Path) -> None:
    settings = load_settings(environ={"DICOMWEB_GW_CACHE_DIR": str(tmp_path)})
    assert not settings.auth_enabled
    assert _call(create_app(settings), "GET", READ).status_code == 200


def test_missing_key_is_401_with_challenge(key_app: Any) -> None:
    response = _call(key_app, "GET", READ)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="dicomweb-gw"'
    assert response.json() == {"status": 401, "message": "authentication required"}
    # The refusal still carries the headers every response has.
    assert response.headers["cross-origin-resource-policy"] == "cross-origin"
    assert "x-request-id" in response.headers


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer wrong-key-0123456789"},
                                     {"X-API-Key": "wrong-key-0123456789"},
                                     {"Authorization": f"Bearer {KEY}x"}])
def test_wrong_key_is_401_invalid_token(key_app: Any, headers: dict[str, str]) -> None:
    response = _call(key_app, "GET", READ, headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == \
        'Bearer realm="dicomweb-gw", error="invalid_token"'


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {KEY}"},
                                     {"authorization": f"bearer {OTHER_KEY}"},
                                     {"X-API-Key": KEY}])
def test_right_key_on_either_header_is_let_in(key_app: Any, headers: dict[str, str]) -> None:
    assert _call(key_app, "GET", READ, headers).status_code == 200


def test_key_grants_write(key_app: Any) -> None:
    # Past auth, the empty STOW body is the app's to refuse (400/415), not auth's.
    response = _call(key_app, "POST", "/dicom-web/studies", {"X-API-Key": KEY}, b"")
    assert response.status_code not in {401, 403}


def test_subject_is_the_key_id_never_the_key(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["auth"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    settings = Settings(nodes=(), default_pacs="x", api_keys=(KEY,))
    app = auth.Authentication(inner, settings)
    assert _call(app, "DELETE", "/cache/studies/1", {"X-API-Key": KEY}).status_code == 204
    assert seen == [{"subject": hashlib.sha256(KEY.encode()).hexdigest()[:8],
                     "scopes": ["dicomweb.read", "dicomweb.write"], "method": "api-key"}]


def test_keys_are_compared_in_constant_time(key_app: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert _call(key_app, "GET", READ, {"X-API-Key": KEY}).status_code == 200
    # Every key is compared (no early exit), as equal-length digests.
    assert len(calls) == 2
    assert all(len(a) == len(b) == 32 for a, b in calls)


def test_open_paths_need_no_key(key_app: Any) -> None:
    for path in ("/healthz", "/metrics", "/openapi.json"):
        assert _call(key_app, "GET", path).status_code == 200, path
    # A prefix opens its sub-paths, not every path that merely starts alike.
    assert _call(key_app, "GET", "/healthzx").status_code == 401


def test_open_paths_are_configurable(tmp_path: Path) -> None:
    app = _app(tmp_path, {"DICOMWEB_GW_API_KEYS": KEY,
                          "DICOMWEB_GW_AUTH_OPEN_PATHS": "/healthz"})
    assert _call(app, "GET", "/healthz").status_code == 200
    assert _call(app, "GET", "/metrics").status_code == 401


def test_preflight_passes_without_credentials(key_app: Any) -> None:
    preflight = _call(key_app, "OPTIONS", "/dicom-web/studies", {
        "Origin": VIEWER, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 200
    refused = _call(key_app, "GET", READ, {"Origin": VIEWER})
    assert refused.status_code == 401
    # A browser viewer can read the 401 (and so prompt for a login).
    assert refused.headers["access-control-allow-origin"] == VIEWER


def test_key_file_with_comments(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# viewer\n{KEY}\n\n{OTHER_KEY}  # research\n")
    for value in (str(keys), f"@{keys}"):
        settings = load_settings(environ={"DICOMWEB_GW_API_KEYS": value})
        assert settings.api_keys == (KEY, OTHER_KEY)
    app = _app(tmp_path, {"DICOMWEB_GW_API_KEYS": str(keys)})
    assert _call(app, "GET", READ, {"X-API-Key": OTHER_KEY}).status_code == 200


def test_key_settings_errors_never_show_the_key(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="API_KEYS") as short:
        load_settings(environ={"DICOMWEB_GW_API_KEYS": "tooshort"})
    assert "tooshort" not in str(short.value)
    with pytest.raises(SettingsError, match="cannot read key file"):
        load_settings(environ={"DICOMWEB_GW_API_KEYS": str(tmp_path / "missing")})
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n")
    with pytest.raises(SettingsError, match="holds no key"):
        load_settings(environ={"DICOMWEB_GW_API_KEYS": str(empty)})


def test_keys_from_toml(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(f'api_keys = ["{KEY}"]\nauth_open_paths = ["/healthz"]\n')
    settings = load_settings(environ={}, config_file=config)
    assert settings.api_keys == (KEY,)
    assert settings.auth_open_paths == ("/healthz",)


# --- OIDC -------------------------------------------------------------------------------

class Jwks:
    """A JWKS endpoint on 127.0.0.1 whose keys and health the test controls."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.requests = 0
        self.down = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                if outer.down:
                    self.send_response(503)
                    self.end_headers()
                    return
                body = json.dumps(outer.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def publish(self, kid: str, public_key: Any, alg: str | None = None) -> None:
        jwk = (RSAAlgorithm.to_jwk(public_key, as_dict=True)
               if isinstance(public_key, rsa.RSAPublicKey)
               else ECAlgorithm.to_jwk(public_key, as_dict=True))
        jwk.update({"kid": kid, "use": "sig", **({"alg": alg} if alg else {})})
        self.document["keys"].append(jwk)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def jwks(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> Iterator[Jwks]:
    server = Jwks()
    server.publish("rsa1", rsa_key.public_key(), "RS256")
    server.publish("ec1", ec_key.public_key())
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def oidc_app(tmp_path: Path, jwks: Jwks) -> Any:
    return _app(tmp_path, {"DICOMWEB_GW_OIDC_ISSUER": ISSUER,
                           "DICOMWEB_GW_OIDC_AUDIENCE": AUDIENCE,
                           "DICOMWEB_GW_OIDC_JWKS_URL": jwks.url,
                           "DICOMWEB_GW_CORS_ORIGINS": VIEWER})


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "dr-who", "iat": now, "exp": now + 300,
              "scope": "openid dicomweb.read dicomweb.write"}
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def _token(key: Any, kid: str = "rsa1", alg: str = "RS256", **claims: Any) -> str:
    return jwt.encode(_claims(**claims), key, algorithm=alg, headers={"kid": kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_valid_rsa_and_ec_tokens_are_let_in(oidc_app: Any, rsa_key: Any, ec_key: Any,
                                            jwks: Jwks) -> None:
    assert _call(oidc_app, "GET", READ, _bearer(_token(rsa_key))).status_code == 200
    ec_token = _token(ec_key, kid="ec1", alg="ES256")
    assert _call(oidc_app, "GET", READ, _bearer(ec_token)).status_code == 200
    assert jwks.requests == 1  # the keys are cached


# Times are taken when the test runs, not when it is collected: in a suite of 20+
# minutes, an nbf 600 s after collection had passed by the time the test ran.
@pytest.mark.parametrize("claims", [
    lambda now: {"exp": now - 120},           # expired beyond the leeway
    lambda now: {"nbf": now + 600},           # not yet valid
    lambda now: {"aud": "some-other-service"},
    lambda now: {"iss": "https://evil.example.org"},
    lambda now: {"exp": None},                # exp is required
], ids=["expired", "not-yet-valid", "audience", "issuer", "no-exp"])
def test_bad_claims_are_401(oidc_app: Any, rsa_key: Any,
                            claims: Callable[[int], dict[str, Any]]) -> None:
    token = _token(rsa_key, **claims(int(time.time())))
    response = _call(oidc_app, "GET", READ, _bearer(token))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_small_clock_skew_is_tolerated(oidc_app: Any, rsa_key: Any) -> None:
    token = _token(rsa_key, exp=int(time.time()) - 10)
    assert _call(oidc_app, "GET", READ, _bearer(token)).status_code == 200


def test_alg_none_is_401(oidc_app: Any) -> None:
    header = _b64(json.dumps({"alg": "none", "kid": "rsa1", "typ": "JWT"}).encode())
    token = f"{header}.{_b64(json.dumps(_claims()).encode())}."
    assert _call(oidc_app, "GET", READ, _bearer(token)).status_code == 401


def test_hs256_signed_with_the_public_key_is_401(oidc_app: Any, rsa_key: Any) -> None:
    # The classic key-confusion forgery: the public key, which anyone has, as HMAC secret.
    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    header = _b64(json.dumps({"alg": "HS256", "kid": "rsa1", "typ": "JWT"}).encode())
    signing_input = f"{header}.{_b64(json.dumps(_claims()).encode())}"
    signature = _b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())
    token = f"{signing_input}.{signature}"
    assert _call(oidc_app, "GET", READ, _bearer(token)).status_code == 401


def test_token_signed_by_another_key_is_401(oidc_app: Any) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert _call(oidc_app, "GET", READ, _bearer(_token(stranger))).status_code == 401


def test_algorithm_must_fit_the_key(oidc_app: Any, rsa_key: Any) -> None:
    # rsa1 is published with alg RS256; a PS256 signature by the same key is refused.
    token = _token(rsa_key, alg="PS256")
    assert _call(oidc_app, "GET", READ, _bearer(token)).status_code == 401


def test_unknown_kid_refetches_once_then_is_rate_limited(oidc_app: Any, jwks: Jwks,
                                                         rsa_key: Any) -> None:
    assert _call(oidc_app, "GET", READ, _bearer(_token(rsa_key))).status_code == 200
    assert jwks.requests == 1
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks.publish("rsa2", rotated.public_key())
    # A new kid (key rotation at the IdP): fetched again, and accepted.
    assert _call(oidc_app, "GET", READ, _bearer(_token(rotated, kid="rsa2"))).status_code == 200
    assert jwks.requests == 2
    # Made-up kids right after: no further fetches (no JWKS amplification).
    for kid in ("bogus1", "bogus2"):
        assert _call(oidc_app, "GET", READ, _bearer(_token(rsa_key, kid=kid))).status_code == 401
    assert jwks.requests == 2


def test_jwks_down_is_401_with_a_log_line(oidc_app: Any, jwks: Jwks, rsa_key: Any,
                                          caplog: pytest.LogCaptureFixture) -> None:
    jwks.down = True
    token = _token(rsa_key)
    with caplog.at_level(logging.WARNING):
        response = _call(oidc_app, "GET", READ, _bearer(token))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert any("cannot fetch the OIDC signing keys" in r.getMessage() for r in caplog.records)
    assert token not in caplog.text
    # Back up: the next request fetches again.
    jwks.down = False
    assert _call(oidc_app, "GET", READ, _bearer(token)).status_code == 200


def test_jwks_unreachable_is_401(tmp_path: Path, rsa_key: Any) -> None:
    app = _app(tmp_path, {"DICOMWEB_GW_OIDC_ISSUER": ISSUER,
                          "DICOMWEB_GW_OIDC_AUDIENCE": AUDIENCE,
                          "DICOMWEB_GW_OIDC_JWKS_URL": "http://127.0.0.1:9/jwks"})
    assert _call(app, "GET", READ, _bearer(_token(rsa_key))).status_code == 401


def test_kept_keys_survive_a_failed_refresh(oidc_app: Any, jwks: Jwks, rsa_key: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert _call(oidc_app, "GET", READ, _bearer(_token(rsa_key))).status_code == 200
    monkeypatch.setattr(JwksCache, "ttl", 0.0)
    jwks.down = True
    assert _call(oidc_app, "GET", READ, _bearer(_token(rsa_key))).status_code == 200


def test_read_only_token_cannot_write(oidc_app: Any, rsa_key: Any) -> None:
    token = _token(rsa_key, scope="openid dicomweb.read")
    assert _call(oidc_app, "GET", READ, _bearer(token)).status_code == 200
    stow = _call(oidc_app, "POST", "/dicom-web/studies", _bearer(token), b"")
    assert stow.status_code == 403
    assert stow.headers["www-authenticate"] == \
        'Bearer realm="dicomweb-gw", error="insufficient_scope", scope="dicomweb.write"'
    purge = _call(oidc_app, "DELETE", "/cache/studies/1.2.3", _bearer(token))
    assert purge.status_code == 403


def test_write_scope_alone_cannot_read(oidc_app: Any, rsa_key: Any) -> None:
    token = _token(rsa_key, scope=None, scp=["dicomweb.write"])
    assert _call(oidc_app, "GET", READ, _bearer(token)).status_code == 403
    stow = _call(oidc_app, "POST", "/dicom-web/studies", _bearer(token), b"")
    assert stow.status_code not in {401, 403}


def test_scope_names_are_configurable(tmp_path: Path, jwks: Jwks, rsa_key: Any) -> None:
    app = _app(tmp_path, {"DICOMWEB_GW_OIDC_ISSUER": ISSUER,
                          "DICOMWEB_GW_OIDC_AUDIENCE": AUDIENCE,
                          "DICOMWEB_GW_OIDC_JWKS_URL": jwks.url,
                          "DICOMWEB_GW_OIDC_READ_SCOPE": "pacs:read"})
    token = _token(rsa_key, scope=None, scopes=["pacs:read"])
    assert _call(app, "GET", READ, _bearer(token)).status_code == 200
    assert _call(app, "GET", READ, _bearer(_token(rsa_key))).status_code == 403


def test_preflight_passes_with_oidc(oidc_app: Any) -> None:
    preflight = _call(oidc_app, "OPTIONS", "/dicom-web/studies", {
        "Origin": VIEWER, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 200


def test_api_keys_and_oidc_together(tmp_path: Path, jwks: Jwks, rsa_key: Any) -> None:
    app = _app(tmp_path, {"DICOMWEB_GW_API_KEYS": KEY, "DICOMWEB_GW_OIDC_ISSUER": ISSUER,
                          "DICOMWEB_GW_OIDC_AUDIENCE": AUDIENCE,
                          "DICOMWEB_GW_OIDC_JWKS_URL": jwks.url})
    assert _call(app, "GET", READ, _bearer(KEY)).status_code == 200
    assert _call(app, "GET", READ, _bearer(_token(rsa_key))).status_code == 200
    assert _call(app, "GET", READ, _bearer("not-a-key-nor-a-token")).status_code == 401


def test_oidc_settings_are_all_or_nothing() -> None:
    with pytest.raises(SettingsError, match=r"OIDC_AUDIENCE.*OIDC_JWKS_URL"):
        load_settings(environ={"DICOMWEB_GW_OIDC_ISSUER": ISSUER})
    with pytest.raises(SettingsError, match="OIDC_ISSUER"):
        load_settings(environ={"DICOMWEB_GW_OIDC_AUDIENCE": AUDIENCE,
                               "DICOMWEB_GW_OIDC_JWKS_URL": "https://idp.example.org/jwks"})


@pytest.mark.parametrize("url", ["http://idp.example.org/jwks", "ftp://127.0.0.1/jwks",
                                 "https:///jwks"])
def test_jwks_url_must_be_https_unless_loopback(url: str) -> None:
    with pytest.raises(SettingsError, match="OIDC_JWKS_URL"):
        load_settings(environ={"DICOMWEB_GW_OIDC_ISSUER": ISSUER,
                               "DICOMWEB_GW_OIDC_AUDIENCE": AUDIENCE,
                               "DICOMWEB_GW_OIDC_JWKS_URL": url})


def test_loopback_http_jwks_is_allowed() -> None:
    settings = load_settings(environ={"DICOMWEB_GW_OIDC_ISSUER": ISSUER,
                                      "DICOMWEB_GW_OIDC_AUDIENCE": AUDIENCE,
                                      "DICOMWEB_GW_OIDC_JWKS_URL": "http://localhost:8080/k"})
    assert settings.auth_enabled


# --- the admin scope: the status page and /admin/* (issue #20) ---------------------------

ADMIN_KEY = "adm1n-0123456789abcdef"
STATUS = "/admin/status"
#: An action past auth without a CSRF token: refused by the CSRF check, not by auth.
ACTION = "/admin/pacs/default/echo"


@pytest.fixture
def admin_key_app(tmp_path: Path) -> Any:
    return _app(tmp_path, {"DICOMWEB_GW_API_KEYS": f"{KEY}, {ADMIN_KEY} admin"})


def _basic(password: str, user: str = "admin") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_admin_key_opens_the_status_json(admin_key_app: Any) -> None:
    response = _call(admin_key_app, "GET", STATUS, {"X-API-Key": ADMIN_KEY})
    assert response.status_code == 200
    assert response.json()["auth"]["enabled"] is True


@pytest.mark.parametrize("path", ["/", "/status", "/status/assets/page.js", STATUS])
def test_non_admin_key_is_403_on_admin_paths(admin_key_app: Any, path: str) -> None:
    response = _call(admin_key_app, "GET", path, {"X-API-Key": KEY})
    assert response.status_code == 403
    assert response.json()["message"] == "needs the admin scope (dicomweb.admin)"
    # ... and the same key still reads the API.
    assert _call(admin_key_app, "GET", READ, {"X-API-Key": KEY}).status_code == 200


def test_admin_paths_offer_basic_as_well_as_bearer(admin_key_app: Any) -> None:
    response = _call(admin_key_app, "GET", "/status")
    assert response.status_code == 401
    assert response.headers.get_list("www-authenticate") == [
        'Bearer realm="dicomweb-gw"', 'Basic realm="dicomweb-gw"']
    # The API's challenge is as it was.
    assert _call(admin_key_app, "GET", READ).headers.get_list("www-authenticate") == [
        'Bearer realm="dicomweb-gw"']


def test_basic_auth_with_the_admin_key_as_password(admin_key_app: Any) -> None:
    assert _call(admin_key_app, "GET", STATUS, _basic(ADMIN_KEY)).status_code == 200
    assert _call(admin_key_app, "GET", STATUS, _basic(ADMIN_KEY, user="")).status_code == 200
    assert _call(admin_key_app, "GET", STATUS, _basic(KEY)).status_code == 403
    assert _call(admin_key_app, "GET", STATUS, _basic("wrong-0123456789abc")).status_code == 401
    # Basic is for a browser opening the page, not for the DICOMweb API.
    assert _call(admin_key_app, "GET", READ, _basic(ADMIN_KEY)).status_code == 401


def test_admin_actions_need_the_admin_scope_then_csrf(admin_key_app: Any) -> None:
    assert _call(admin_key_app, "POST", ACTION).status_code == 401
    assert _call(admin_key_app, "POST", ACTION, {"X-API-Key": KEY}).status_code == 403
    past_auth = _call(admin_key_app, "POST", ACTION, {"X-API-Key": ADMIN_KEY})
    assert past_auth.status_code == 403
    assert past_auth.json()["message"] == \
        "missing or invalid CSRF token; reload the status page"


def test_probes_and_metrics_stay_open(admin_key_app: Any) -> None:
    for path in ("/healthz", "/metrics"):
        assert _call(admin_key_app, "GET", path).status_code == 200


def test_admin_keys_in_a_key_file_and_a_comma_list(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# viewer\n{KEY}\n{ADMIN_KEY} admin  # the PACS team\n")
    from_file = load_settings(environ={"DICOMWEB_GW_API_KEYS": str(keys)}).api_keys
    from_list = load_settings(environ={"DICOMWEB_GW_API_KEYS": f"{KEY},{ADMIN_KEY} admin"}
                              ).api_keys
    for parsed in (from_file, from_list):
        assert parsed == (KEY, ADMIN_KEY)  # plain strings to the callers that had them
        assert [getattr(key, "admin", None) for key in parsed] == [False, True]
    with pytest.raises(SettingsError, match="only role") as bad:
        load_settings(environ={"DICOMWEB_GW_API_KEYS": f"{ADMIN_KEY} root"})
    assert ADMIN_KEY not in str(bad.value)


def test_oidc_admin_scope(oidc_app: Any, rsa_key: Any) -> None:
    reader = _token(rsa_key)
    refused = _call(oidc_app, "GET", STATUS, _bearer(reader))
    assert refused.status_code == 403
    assert refused.headers["www-authenticate"] == \
        'Bearer realm="dicomweb-gw", error="insufficient_scope", scope="dicomweb.admin"'
    admin = _token(rsa_key, scope="openid dicomweb.admin")
    assert _call(oidc_app, "GET", STATUS, _bearer(admin)).status_code == 200


def test_oidc_admin_scope_is_configurable(tmp_path: Path, jwks: Jwks, rsa_key: Any) -> None:
    app = _app(tmp_path, {"DICOMWEB_GW_OIDC_ISSUER": ISSUER,
                          "DICOMWEB_GW_OIDC_AUDIENCE": AUDIENCE,
                          "DICOMWEB_GW_OIDC_JWKS_URL": jwks.url,
                          "DICOMWEB_GW_OIDC_ADMIN_SCOPE": "pacs:admin"})
    token = _token(rsa_key, scope="pacs:admin")
    assert _call(app, "GET", STATUS, _bearer(token)).status_code == 200
    assert _call(app, "GET", STATUS, _bearer(_token(rsa_key, scope="dicomweb.admin"))
                 ).status_code == 403
