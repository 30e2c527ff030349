"""OIDC bearer tokens: JWKS fetched and cached, JWTs checked by PyJWT.

Signatures are verified by PyJWT only; this module picks *which* key and
algorithm PyJWT may use, because that choice is where JWT libraries get
misused: the algorithm comes from an allow-list of asymmetric algorithms, never
from the token alone, so ``alg: none`` and HS256-signed-with-the-public-key
(key confusion) are refused before any verification is attempted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import httpx
import jwt

__all__ = ["ASYMMETRIC_ALGORITHMS", "JwksCache", "OidcVerifier", "TokenError",
           "VerifiedToken"]

log = logging.getLogger(__name__)

#: Asymmetric algorithms only, each with the JWK key type it needs.
ASYMMETRIC_ALGORITHMS: Mapping[str, str] = {
    "RS256": "RSA", "RS384": "RSA", "RS512": "RSA",
    "PS256": "RSA", "PS384": "RSA", "PS512": "RSA",
    "ES256": "EC", "ES384": "EC", "ES512": "EC",
    "EdDSA": "OKP",
}
#: Clock skew allowed between the identity provider and us for exp/nbf/iat.
LEEWAY_SECONDS = 30


class TokenError(Exception):
    """The token is not acceptable; the message is safe to log (it never holds the token)."""


@dataclass(frozen=True)
class VerifiedToken:
    subject: str
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class _Key:
    jwk: jwt.PyJWK
    kty: str
    #: The JWK's own ``alg`` when it names one: then only that algorithm may use it.
    alg: str | None


class JwksCache:
    """The identity provider's signing keys, by ``kid``.

    Keys are kept for ``ttl`` seconds; an unknown ``kid`` (key rotation) causes
    a refetch, but at most once per ``min_refresh_interval`` so that tokens
    with made-up kids cannot turn the gateway into a JWKS request amplifier.
    If a refetch fails, keys already known stay in use.
    """

    ttl = 600.0
    min_refresh_interval = 30.0
    timeout = 5.0

    def __init__(self, url: str) -> None:
        self.url = url
        self._keys: dict[str, _Key] = {}
        self._fetched_at: float | None = None
        self._last_unknown_kid_refresh: float | None = None
        # A thread lock, not an asyncio one: fetches run in worker threads, and
        # concurrent requests for an unknown kid should wait for one fetch.
        self._lock = threading.Lock()
        #: Number of JWKS downloads attempted (tests and diagnostics).
        self.fetches = 0

    def cached(self, kid: str | None) -> _Key | None:
        """The key if known and fresh, without any I/O (safe on the event loop)."""
        if self._fetched_at is None or time.monotonic() - self._fetched_at > self.ttl:
            return None
        return self._pick(kid)

    async def key(self, kid: str | None) -> _Key:
        found = self.cached(kid)
        if found is not None:
            return found
        # The download is blocking I/O: keep it off the event loop.
        return await anyio.to_thread.run_sync(self._key_blocking, kid)

    def _key_blocking(self, kid: str | None) -> _Key:
        with self._lock:
            now = time.monotonic()
            if self._fetched_at is None or now - self._fetched_at > self.ttl:
                try:
                    self._refresh()
                except TokenError:
                    if not self._keys:
                        raise
                    log.warning("JWKS refresh failed; still using the %d keys fetched before",
                                len(self._keys))
            found = self._pick(kid)
            if found is not None:
                return found
            recent = self._last_unknown_kid_refresh
            if recent is not None and now - recent < self.min_refresh_interval:
                raise TokenError(f"token signed with unknown key id {kid!r}")
            self._last_unknown_kid_refresh = now
            self._refresh()
            found = self._pick(kid)
            if found is None:
                raise TokenError(f"token signed with unknown key id {kid!r}")
            return found

    def _pick(self, kid: str | None) -> _Key | None:
        if kid is None:
            # A token without kid is only unambiguous when the provider has one key.
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    def _refresh(self) -> None:
        self.fetches += 1
        try:
            response = httpx.get(self.url, timeout=self.timeout, follow_redirects=False,
                                 headers={"Accept": "application/json"})
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("cannot fetch the OIDC signing keys from %s: %s", self.url,
                        str(exc) or type(exc).__name__)
            raise TokenError("the identity provider's signing keys are unavailable") from None
        keys = _parse_jwks(document)
        if not keys:
            log.warning("the JWKS at %s holds no usable asymmetric signing key", self.url)
            raise TokenError("the identity provider's signing keys are unavailable")
        self._keys = keys
        self._fetched_at = time.monotonic()


def _parse_jwks(document: Any) -> dict[str, _Key]:
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        return {}
    keys: dict[str, _Key] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        kty, alg = entry.get("kty"), entry.get("alg")
        # Symmetric ("oct") keys are never usable: they would allow HMAC tokens.
        if kty not in {"RSA", "EC", "OKP"}:
            continue
        if alg is not None and ASYMMETRIC_ALGORITHMS.get(str(alg)) != kty:
            continue
        try:
            jwk = jwt.PyJWK(entry)
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            log.warning("skipping JWKS key %s: %s", entry.get("kid", index), exc)
            continue
        keys[str(entry.get("kid", f"#{index}"))] = _Key(jwk, str(kty),
                                                       None if alg is None else str(alg))
    return keys


class OidcVerifier:
    def __init__(self, issuer: str, audience: str, jwks_url: str) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks = JwksCache(jwks_url)

    async def verify(self, token: str) -> VerifiedToken:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ASYMMETRIC_ALGORITHMS:
            raise TokenError(f"token algorithm {alg!r} is not allowed")
        kid = header.get("kid")
        key = await self.jwks.key(None if kid is None else str(kid))
        if ASYMMETRIC_ALGORITHMS[alg] != key.kty or (key.alg is not None and key.alg != alg):
            raise TokenError(f"token algorithm {alg} does not match its key")
        try:
            claims = jwt.decode(
                token, key=key.jwk.key, algorithms=[alg], audience=self.audience,
                issuer=self.issuer, leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]})
        except jwt.PyJWTError as exc:
            raise TokenError(f"token rejected: {exc}") from None
        except (ValueError, TypeError) as exc:  # e.g. a key and signature that do not fit
            raise TokenError(f"token rejected: {type(exc).__name__}") from None
        subject = claims.get("sub") or claims.get("client_id") or claims.get("azp")
        if not isinstance(subject, str) or not subject:
            raise TokenError("token has no subject")
        return VerifiedToken(subject, _scopes(claims))


def _scopes(claims: Mapping[str, Any]) -> tuple[str, ...]:
    """``scope`` (RFC 8693, space separated), or the ``scp``/``scopes`` lists some IdPs use."""
    found: list[str] = []
    for name in ("scope", "scp", "scopes"):
        value = claims.get(name)
        if isinstance(value, str):
            found.extend(value.split())
        elif isinstance(value, list):
            found.extend(item for item in value if isinstance(item, str))
    return tuple(dict.fromkeys(found))
