"""Response headers every route needs (CORP, CORS, request ids), metrics, limits on
the request head, the audit trail and auth.

Pure ASGI, so streamed retrieves stay streamed (Starlette's BaseHTTPMiddleware
would sit between the app and every body chunk).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dicomweb_gw.http.auth import Authentication
from dicomweb_gw.http.error_responses import error_response
from dicomweb_gw.logs import REQUEST_ID, new_request_id
from dicomweb_gw.metrics import GatewayMetrics
from dicomweb_gw.settings import Settings

__all__ = ["MAX_HEADER_BYTES", "MAX_URI_BYTES", "SERVER_HEAD_BUFFER", "CrossOriginResourcePolicy",
           "RequestHeadLimits", "RequestIds", "RequestMetrics", "middleware"]

#: Longest request target (path and query string), and most bytes of header
#: fields: nginx's defaults (one 8k buffer for the request line, four for the
#: headers), so a gateway behind an ingress and one without refuse alike.
MAX_URI_BYTES = 8192
MAX_HEADER_BYTES = 4 * 8192
#: How much of a request head uvicorn (h11) may buffer while it arrives. h11's
#: default, 16 KB, is below our own limits: a head over it that arrives in
#: several reads (under load, over a real network) got a connection reset or a
#: bare 400 instead of the 414/431 below. Past this, h11 still refuses.
SERVER_HEAD_BUFFER = 1 << 20


def _adding_header(send: Send, name: bytes, value: bytes) -> Send:
    """``send`` with one more header on the response start."""

    async def send_with_header(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (name, value)]
        await send(message)

    return send_with_header


class CrossOriginResourcePolicy:
    """``Cross-Origin-Resource-Policy: cross-origin`` on every response.

    OHIF pages may run with COEP require-corp (for SharedArrayBuffer); such a
    page may only load frames from another origin that opts in like this.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        await self.app(scope, receive,
                       _adding_header(send, b"cross-origin-resource-policy", b"cross-origin"))


class RequestIds:
    """Sets the request id for everything the request does, and echoes it to the client."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = new_request_id(offered)
        token = REQUEST_ID.set(request_id)

        try:
            await self.app(scope, receive,
                           _adding_header(send, b"x-request-id", request_id.encode()))
        finally:
            REQUEST_ID.reset(token)


class RequestHeadLimits:
    """``414 URI Too Long`` beyond :data:`MAX_URI_BYTES`, ``431 Request Header Fields
    Too Large`` beyond :data:`MAX_HEADER_BYTES`, each with a JSON message.

    uvicorn's own limit on the request head (h11's 16 KB) only applies while
    the head is still arriving: one that comes in a single read, as on
    loopback or behind a proxy, reaches the app whatever its size. A QIDO of
    thousands of parameters would then be parsed and sent on as a C-FIND.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = _oversized(scope) if scope["type"] == "http" else None
        if refusal is not None:
            await error_response(*refusal)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _oversized(scope: Scope) -> tuple[int, str] | None:
    """The status and message for a request head over the limits, else None."""
    path = scope.get("raw_path") or scope["path"].encode()
    uri = len(path) + 1 + len(scope.get("query_string", b""))
    if uri > MAX_URI_BYTES:
        return 414, f"the URI is {uri} bytes long; the gateway accepts at most {MAX_URI_BYTES}"
    headers = sum(len(name) + len(value) + 4 for name, value in scope["headers"])  # ": ", CRLF
    if headers > MAX_HEADER_BYTES:
        return 431, (f"the request headers are {headers} bytes long; the gateway accepts at "
                     f"most {MAX_HEADER_BYTES}")
    return None


class RequestMetrics:
    """Counts every request by route, method and status, times it to the first byte,
    and keeps the number in progress (streams included: what an autoscaler watches)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope["path"]
        seen = False

        async def observe(message: Message) -> None:
            nonlocal seen
            if message["type"] == "http.response.start" and not seen:
                seen = True
                self.metrics.observe_request(path, scope["method"], message["status"],
                                             started)
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, observe)
        finally:
            self.metrics.in_flight.dec()
            if not seen:  # the client left, or the app failed before answering
                self.metrics.observe_request(path, scope["method"], 499, started)


def middleware(cors_origins: Sequence[str], metrics: GatewayMetrics | None = None,
               settings: Settings | None = None,
               audit: Middleware | None = None) -> list[Middleware]:
    """Metrics outermost (they see every status), CORS for the listed origins, then CORP,
    the request head limits, the ``audit`` trail if given, then authentication when
    ``settings`` enable it.

    Authentication is innermost: CORS answers preflights (which never carry
    credentials) before it, and its 401/403 still get CORS, CORP and request-id
    headers so that a browser viewer can read why it was refused. The audit
    trail sits inside the request ids (its events carry them) and outside
    authentication (refusals are audited, and it reads who was let in).
    """
    stack = [Middleware(RequestIds), Middleware(CrossOriginResourcePolicy),
             Middleware(RequestHeadLimits)]
    if audit is not None:
        stack.append(audit)
    if settings is not None and settings.auth_enabled:
        stack.append(Middleware(Authentication, settings=settings))
    if cors_origins:
        stack.insert(0, Middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            # Authorization for bearer tokens; Range for bulk data and progressive
            # frames; If-None-Match for a script that revalidates itself.
            allow_headers=["Authorization", "Accept", "Content-Type", "Range", "X-API-Key",
                           "If-None-Match", "X-Request-Id"],
            # None of these is CORS-safelisted: a script on the viewer's origin reads
            # them only if exposed (the ETag to revalidate, the range it was given,
            # a QIDO Warning, the request id to quote in a support call).
            expose_headers=["Content-Type", "Content-Length", "Content-Range", "Accept-Ranges",
                            "ETag", "Warning", "X-Request-Id"],
            max_age=600,
        ))
    if metrics is not None:
        stack.insert(0, Middleware(RequestMetrics, metrics=metrics))
    return stack
