"""The client's view of our URL, for RetrieveURL and BulkDataURI values.

Behind a reverse proxy or an ingress, the Host and scheme we see are not the
ones the client used: ``Forwarded`` (RFC 7239) or ``X-Forwarded-*`` say them.
"""

from __future__ import annotations

import re

from starlette.requests import Request

__all__ = ["base_url"]

_FORWARDED_PAIR = re.compile(r'(host|proto)=("[^"]*"|[^;,\s]*)', re.IGNORECASE)


def base_url(request: Request, prefix: str) -> str:
    """``scheme://host[/forwarded-prefix]{prefix}`` as the client sees it."""
    scheme = request.url.scheme
    host = request.headers.get("host") or request.url.netloc
    outer_prefix = ""
    forwarded = request.headers.get("forwarded")
    if forwarded:
        first = forwarded.split(",")[0]
        for name, value in _FORWARDED_PAIR.findall(first):
            value = value.strip('"')
            if name.lower() == "host" and value:
                host = value
            elif name.lower() == "proto" and value:
                scheme = value
    else:
        if proto := request.headers.get("x-forwarded-proto"):
            scheme = proto.split(",")[0].strip()
        if forwarded_host := request.headers.get("x-forwarded-host"):
            host = forwarded_host.split(",")[0].strip()
    if forwarded_prefix := request.headers.get("x-forwarded-prefix"):
        outer_prefix = "/" + forwarded_prefix.strip().strip("/") if forwarded_prefix.strip("/") \
            else ""
    # Starlette's Mount appends its own path to root_path; app_root_path is
    # what the ASGI server was given (e.g. uvicorn --root-path).
    root = request.scope.get("app_root_path", request.scope.get("root_path", ""))
    return f"{scheme}://{host}{outer_prefix}{root}{prefix}"
