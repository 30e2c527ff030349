"""Response headers every route needs (CORP, CORS, request ids), metrics and auth.

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
from dicomweb_gw.logs import REQUEST_ID, new_request_id
from dicomweb_gw.metrics import GatewayMetrics
from dicomweb_gw.settings import Settings

__all__ = ["CrossOriginResourcePolicy", "RequestIds", "RequestMetrics", "middleware"]


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


class RequestMetrics:
    """Counts every request by route, method and status, and times it to the first byte."""

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

        try:
            await self.app(scope, receive, observe)
        finally:
            if not seen:  # the client left, or the app failed before answering
                self.metrics.observe_request(path, scope["method"], 499, started)


def middleware(cors_origins: Sequence[str], metrics: GatewayMetrics | None = None,
               settings: Settings | None = None) -> list[Middleware]:
    """Metrics outermost (they see every status), CORS for the listed origins, then CORP,
    then authentication when ``settings`` enable it.

    Authentication is innermost: CORS answers preflights (which never carry
    credentials) before it, and its 401/403 still get CORS, CORP and request-id
    headers so that a browser viewer can read why it was refused.
    """
    stack = [Middleware(RequestIds), Middleware(CrossOriginResourcePolicy)]
    if settings is not None and settings.auth_enabled:
        stack.append(Middleware(Authentication, settings=settings))
    if cors_origins:
        stack.insert(0, Middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            # Authorization for bearer tokens; Range for bulk data.
            allow_headers=["Authorization", "Accept", "Content-Type", "Range", "X-API-Key"],
            expose_headers=["Content-Type", "Content-Length", "Content-Range", "Warning"],
            max_age=600,
        ))
    if metrics is not None:
        stack.insert(0, Middleware(RequestMetrics, metrics=metrics))
    return stack
