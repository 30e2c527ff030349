"""The status page's routes: ``GET /`` and ``GET /status`` (the HTML, drawn by
``status_html.py`` from the same snapshot as ``GET /admin/status``) and
``GET /status/assets/{name}`` (its script and style sheet, packaged beside it).

Who may see it is the auth middleware's business (the admin scope when auth is
on); the actions the page's forms post to are in ``status_json.py``.

The page is locked down with headers, as it carries a CSRF token and buttons
that change things: it may not be framed (clickjacking), loads scripts and styles
only from the gateway (no inline script, so an escaping slip cannot run), and is
never cached (it is a live view, and the token changes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from dicomweb_gw.errors import NotFound
from dicomweb_gw.http.status_html import render_page
from dicomweb_gw.http.status_json import status_snapshot

__all__ = ["ASSETS", "PAGE_HEADERS", "page_routes"]

SnapshotSource = Callable[[Request], Awaitable[dict[str, object]]]

#: The files under ``status_assets/`` served at ``/status/assets/{name}``, and their types.
ASSETS = {
    "page.js": "text/javascript; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
}

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def page_routes(snapshot: SnapshotSource = status_snapshot) -> list[BaseRoute]:
    """``snapshot``: where the page's data comes from (tests give a fixture)."""

    async def page(request: Request) -> Response:
        body = render_page(await snapshot(request))
        return HTMLResponse(body, headers=PAGE_HEADERS)

    return [
        Route("/", page, methods=["GET"], name="status_root"),
        # The name: the actions' 303 after a plain form post points here (url_for).
        Route("/status", page, methods=["GET"], name="status_page"),
        Route("/status/assets/{name}", _asset, methods=["GET"], name="status_asset"),
    ]


async def _asset(request: Request) -> Response:
    name = request.path_params["name"]
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound(f"no status page asset named '{name}'")
    # no-cache, not no-store: the browser revalidates, so an upgrade is seen at once.
    return Response(_read_asset(name), media_type=media_type,
                    headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


@cache
def _read_asset(name: str) -> bytes:
    return resources.files("dicomweb_gw.http").joinpath("status_assets", name).read_bytes()
