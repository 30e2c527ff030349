"""Every failure becomes a short JSON body with the right status, never a traceback."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from dicomweb_gw.dicomweb.dicomjson import dumps
from dicomweb_gw.errors import GatewayError, PacsError
from dicomweb_gw.http.logfilter import is_stream_abort

__all__ = ["EXCEPTION_HANDLERS", "error_response"]

log = logging.getLogger(__name__)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps({"status": status, "message": message}), status_code=status,
                    media_type="application/json", headers=headers)


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    level = logging.WARNING if isinstance(exc, PacsError) else logging.INFO
    log.log(level, "%s %s -> %d: %s", request.method, request.url.path, exc.status_code,
            exc.message)
    headers = {"Retry-After": "5"} if exc.status_code == 503 else None
    return error_response(exc.status_code, exc.message, headers)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: f"no such resource: {request.url.path}",
                405: f"method {request.method} is not allowed on {request.url.path}"}
    return error_response(exc.status_code, messages.get(exc.status_code, str(exc.detail)),
                          dict(exc.headers) if exc.headers else None)


async def _unexpected(request: Request, exc: Exception) -> Response:
    if is_stream_abort(exc):  # already logged in one line where it happened
        return error_response(502, "retrieve broke off mid-stream")
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, "internal error in the gateway; see its log")


EXCEPTION_HANDLERS = {
    GatewayError: _gateway_error,
    HTTPException: _http_exception,
    Exception: _unexpected,
}
