"""CSRF tokens for the status page's actions (every ``POST /admin/...``).

A token is ``<issued>.<mac>``: the issue time (Unix seconds) and an HMAC-SHA256
over it, keyed by a key derived from (a) a secret every replica derives alike
from the configuration (the API keys and the OIDC issuer/audience), and (b) the
credential the request came with. So a token issued by replica A passes on
replica B behind the same load balancer, without shared state; a page opened
with one credential cannot post with another; and a site that does not know
the credential cannot make one. Tokens live ``MAX_AGE`` seconds (the page gets
a fresh one each time it redraws). Compared in constant time.

With authentication off there is no credential and no configured secret: the
secret is random per process, so a token from one replica fails on another
(reload the page there). Acceptable: with authentication off anyone who can
reach the port may use the API anyway; the token only stops another web site
making a browser post here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from dicomweb_gw.settings import Settings

__all__ = ["CROSS_SITE_MESSAGE", "CSRF_MESSAGE", "MAX_AGE", "CsrfTokens", "from_another_site"]

#: How long a token is accepted after it was issued (seconds).
MAX_AGE = 4 * 3600
#: What a POST without a valid token is told.
CSRF_MESSAGE = "missing or invalid CSRF token; reload the status page"
#: What a POST a browser made for another web site is told.
CROSS_SITE_MESSAGE = "refused: this request was made by another web site"
#: A token "issued" this far in the future still passes (clocks of replicas differ).
_SKEW = 300


class CsrfTokens:
    def __init__(self, secret: bytes, *, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self._clock = clock

    @classmethod
    def for_settings(cls, settings: Settings) -> CsrfTokens:
        """Derived from what every replica is configured with; random per process when
        authentication is off."""
        if not settings.auth_enabled:
            return cls(secrets.token_bytes(32))
        material = "\n".join(["dicomweb-gw csrf v1", *sorted(settings.api_keys),
                              settings.oidc_issuer or "", settings.oidc_audience or ""])
        return cls(hashlib.sha256(material.encode()).digest())

    def issue(self, binding: str) -> str:
        """A token for requests carrying the credential ``binding`` stands for."""
        issued = str(int(self._clock()))
        return f"{issued}.{self._mac(binding, issued)}"

    def valid(self, token: str | None, binding: str) -> bool:
        if not token:
            return False
        issued, dot, mac = token.strip().partition(".")
        if not dot or not issued.isdigit():
            return False
        age = self._clock() - int(issued)
        if not -_SKEW <= age <= MAX_AGE:
            return False
        return hmac.compare_digest(mac.encode(), self._mac(binding, issued).encode())

    def _mac(self, binding: str, issued: str) -> str:
        key = hmac.new(self._secret, binding.encode(), hashlib.sha256).digest()
        digest = hmac.new(key, issued.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def from_another_site(headers: Mapping[str, str]) -> bool:
    """Whether a browser says another web site made this request.

    For POSTs an API client makes (a script with a bearer token sends neither
    header) but a browser could also be led to make with credentials it holds
    (HTTP Basic, or none with authentication off): ``Sec-Fetch-Site`` where the
    browser sends it (every current one), else an ``Origin`` other than the
    ``Host`` (or the ``X-Forwarded-Host`` a proxy in front set). ``Origin: null``
    (a sandboxed or file page) counts as another site.
    """
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site.strip().lower() not in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is None:
        return False
    hosts = {headers.get("host", ""), *headers.get("x-forwarded-host", "").split(",")}
    return urlsplit(origin.strip()).netloc not in {host.strip() for host in hosts if host.strip()}
