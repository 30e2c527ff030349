"""Authentication: API keys and OIDC bearer tokens, as a pure ASGI middleware.

Off unless ``DICOMWEB_GW_API_KEYS`` or ``DICOMWEB_GW_OIDC_ISSUER`` is set.
Reading (GET/HEAD) needs the read scope, anything else (STOW-RS POST, cache
DELETE) the write scope; API keys hold both. The status page and the
operator's actions (``/``, ``/status``, ``/status/assets/*``, ``/admin/*``) need
the admin scope instead: an OIDC token with ``oidc_admin_scope``, or an API key
marked admin (``KEY admin``). There, HTTP Basic (any user name, the API key as
password) is accepted too, and a 401 offers a Basic challenge, so that an
administrator can open the page in a browser. Whoever was let in is put in
``scope["auth"]`` for an audit log. Keys and tokens are never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from dicomweb_gw.http.auth_oidc import OidcVerifier, TokenError
from dicomweb_gw.http.error_responses import error_response
from dicomweb_gw.settings import Settings

__all__ = ["ApiKeys", "Authentication", "binding", "is_admin_path", "key_id"]

log = logging.getLogger(__name__)

REALM = 'Bearer realm="dicomweb-gw"'
BASIC_REALM = 'Basic realm="dicomweb-gw"'
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def key_id(key: str) -> str:
    """A name for a key that is safe to log: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def is_admin_path(path: str) -> bool:
    """The status page, its assets and the operator's ``/admin`` endpoints."""
    return (path in ("/", "/status", "/admin") or path.startswith("/status/")
            or path.startswith("/admin/"))


class ApiKeys:
    """Static keys, compared in constant time."""

    def __init__(self, keys: Sequence[str]) -> None:
        # Comparing fixed-length digests keeps the key length out of the timing too.
        self._digests = [(hashlib.sha256(key.encode()).digest(), key_id(key),
                          bool(getattr(key, "admin", False))) for key in keys]

    def match(self, offered: str) -> str | None:
        """The key id of ``offered`` if it is one of the keys, else None."""
        found = self.lookup(offered)
        return found[0] if found is not None else None

    def lookup(self, offered: str) -> tuple[str, bool] | None:
        """(key id, is an admin key) of ``offered`` if it is one of the keys, else None."""
        digest = hashlib.sha256(offered.encode("utf-8", "surrogateescape")).digest()
        found: tuple[str, bool] | None = None
        for known, ident, admin in self._digests:
            # No early exit: every key is compared, whichever one matches.
            if hmac.compare_digest(digest, known):
                found = (ident, admin)
        return found


@dataclass(frozen=True)
class _Denied:
    status: int
    message: str
    www_authenticate: str


class Authentication:
    """Lets a request through only with a valid API key or token of the needed scope."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.open_paths = tuple(settings.auth_open_paths)
        self.read_scope = settings.oidc_read_scope
        self.write_scope = settings.oidc_write_scope
        self.admin_scope = settings.oidc_admin_scope
        self.api_keys = ApiKeys(settings.api_keys) if settings.api_keys else None
        self.oidc = (OidcVerifier(settings.oidc_issuer, settings.oidc_audience,
                                  settings.oidc_jwks_url)
                     if settings.oidc_issuer and settings.oidc_audience
                     and settings.oidc_jwks_url else None)

    def _is_open(self, path: str) -> bool:
        # "/healthz" opens "/healthz" and "/healthz/...", not "/healthzfoo".
        return any(path == prefix or path.startswith(prefix.rstrip("/") + "/")
                   for prefix in self.open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"} or self._is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        outcome = await self._authenticate(scope)
        if isinstance(outcome, _Denied):
            log.info("%s %s -> %d: %s", scope.get("method", "WS"), scope["path"],
                     outcome.status, outcome.message)
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            response = error_response(outcome.status, outcome.message,
                                      {"WWW-Authenticate": outcome.www_authenticate})
            if outcome.status == 401 and is_admin_path(scope["path"]):
                # A browser prompts for a user name and password (the API key).
                response.headers.append("WWW-Authenticate", BASIC_REALM)
            await response(scope, receive, send)
            return
        # What the credential is bound to (CSRF tokens, csrf.py) goes apart from who it is,
        # so that nothing reading scope["auth"] (the audit trail) sees it.
        scope["auth_binding"] = outcome.pop("_binding")
        scope["auth"] = outcome
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope) -> dict[str, object] | _Denied:
        admin_path = is_admin_path(scope["path"])
        credential = _credential(scope, basic=admin_path)
        if credential is None:
            return _Denied(401, "authentication required", REALM)
        invalid = f'{REALM}, error="invalid_token"'
        subject: str | None = None
        scopes: tuple[str, ...] = ()
        if self.api_keys is not None and (found := self.api_keys.lookup(credential)):
            subject, method = found[0], "api-key"
            scopes = (self.read_scope, self.write_scope) + ((self.admin_scope,) if found[1]
                                                            else ())
        elif self.oidc is not None and credential.count(".") == 2:
            try:
                token = await self.oidc.verify(credential)
            except TokenError as exc:
                return _Denied(401, f"invalid token ({exc})", invalid)
            subject, scopes, method = token.subject, token.scopes, "oidc"
        else:
            return _Denied(401, "invalid API key or token", invalid)
        if admin_path:
            if self.admin_scope not in scopes:
                return _Denied(403, f"needs the admin scope ({self.admin_scope})",
                               f'{REALM}, error="insufficient_scope", '
                               f'scope="{self.admin_scope}"')
            return self._principal(subject, scopes, method, credential)
        needed = self.read_scope if scope.get("method", "GET") in _READ_METHODS \
            else self.write_scope
        if needed not in scopes:
            return _Denied(403, f"the token lacks the {needed} scope",
                           f'{REALM}, error="insufficient_scope", scope="{needed}"')
        return self._principal(subject, scopes, method, credential)

    @staticmethod
    def _principal(subject: str | None, scopes: tuple[str, ...], method: str,
                   credential: str) -> dict[str, object]:
        return {"subject": subject, "scopes": list(scopes), "method": method,
                "_binding": binding(credential)}


def binding(credential: str) -> str:
    """What a credential's CSRF tokens are bound to: a digest, never the credential."""
    return hashlib.sha256(b"csrf\n" + credential.encode("utf-8", "surrogateescape")).hexdigest()


def _credential(scope: Scope, *, basic: bool = False) -> str | None:
    """The bearer token or ``X-API-Key`` value, if the request carries one; with
    ``basic``, also the password of HTTP Basic credentials (the user name is ignored)."""
    authorization: str | None = None
    api_key: str | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"x-api-key":
            api_key = value.decode("latin-1").strip()
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        if basic and scheme.lower() == "basic" and (password := _basic_password(token)):
            return password
    return api_key or None


def _basic_password(token: str) -> str | None:
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, colon, password = decoded.partition(":")
    return password if colon and password else None
