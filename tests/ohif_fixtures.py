"""The real OHIF viewer in headless Chromium, for the end-to-end tests.

* OHIF: the prebuilt viewer of the npm package ``@ohif/app`` (``package/dist``),
  fetched with ``npm pack`` on first use and cached under
  ``~/.cache/dicomweb-gw-test/ohif/<version>`` (``$XDG_CACHE_HOME`` is honoured);
  never inside the repository.
* ``serving_ohif``: a small Starlette app in a uvicorn thread that serves those
  files (unknown paths fall back to ``index.html``, ``.wasm`` is
  ``application/wasm``) with our own ``app-config.js``, and optionally forwards
  ``/dicom-web/*`` to a gateway (streamed, with ``X-Forwarded-*`` like a reverse
  proxy), so OHIF and the gateway share one origin.
* ``browser``: Debian's ``chromium`` driven by Playwright (never ``playwright
  install``: no downloads here). Every host but 127.0.0.1 is blocked.
* ``ViewerPage``: one browser page with every response and failed request
  recorded, plus the viewport helpers the tests need.

A missing ``chromium`` or ``npm`` is an error that names the Debian package,
never a skip: CI installs them (``.ci/test``).
"""

from __future__ import annotations

import base64
import io
import mimetypes
import os
import re
import string
import tarfile
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
    Response,
    Route,
    sync_playwright,
)
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse
from starlette.responses import StreamingResponse
from starlette.routing import BaseRoute, Mount
from starlette.routing import Route as StarletteRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from gateway_fixtures import KEEPALIVE_EXPIRY
from npm_cache import cache_dir, npm_pack, publish
from pacs_fixtures import LOOPBACK, free_port

OHIF_PACKAGE = "@ohif/app"
OHIF_VERSION = "3.13.2"
CHROMIUM = Path("/usr/bin/chromium")
CONFIG_TEMPLATE = Path(__file__).resolve().parent / "configs" / "ohif-app-config.js.template"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "ohif"
SERVER_START_TIMEOUT = 10.0

# Launch flags that work on a GPU-less, offline CI machine. Playwright adds
# --headless (headless=True) and its own fresh temporary profile (user-data dir).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Belt and braces with the route that aborts other hosts: no name resolves.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
# Everything not addressed to 127.0.0.1 (over http or ws) is aborted. A regex,
# not a predicate, so Playwright only intercepts the requests it aborts.
_NOT_LOOPBACK = re.compile(r"^(?!(?:http|ws)://127\.0\.0\.1[:/])")
# OHIF's first-run tour ("ohif.tours" customization): localStorage.shownTours
# lists the tour ids already shown (ui-next Onboarding/utilities.ts).
_SHOWN_TOURS_SCRIPT = "localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour']));"

mimetypes.add_type("application/wasm", ".wasm")


# --------------------------------------------------------------------------- OHIF files


def ensure_ohif_dist(version: str = OHIF_VERSION) -> Path:
    """``package/dist`` of ``@ohif/app@version``: ``npm pack`` once, then reused.

    Unpacked next to its final place and renamed into it, so an interrupted
    download never leaves a half-filled cache behind.
    """
    target = cache_dir("ohif") / version
    dist = target / "package" / "dist"
    if (dist / "index.html").is_file():
        return dist
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{version}-") as scratch:
        tarball = npm_pack(OHIF_PACKAGE, version, Path(scratch),
                           "the OHIF end-to-end tests fetch the viewer")
        unpacked = Path(scratch) / "unpacked"
        with tarfile.open(tarball) as archive:
            archive.extractall(unpacked, filter="data")
        if not (unpacked / "package" / "dist" / "index.html").is_file():
            pytest.fail(f"{OHIF_PACKAGE}@{version} has no package/dist/index.html",
                        pytrace=False)
        publish(unpacked, target, ready=(dist / "index.html").is_file)
    return dist


def render_app_config(dicomweb_root: str, *, thumbnails: str = "wadors") -> str:
    """OHIF's ``app-config.js`` with one DICOMweb data source at ``dicomweb_root``.

    ``thumbnails``: ``"wadors"`` (OHIF decodes them from frames, its default) or
    ``"thumbnail"`` (it fetches ``.../thumbnail?viewport=256,256`` as JPEG).
    """
    template = string.Template(CONFIG_TEMPLATE.read_text(encoding="utf-8"))
    strategy = "fetch" if thumbnails == "thumbnail" else "bulkDataRetrieve"
    return template.substitute(dicomweb_root=dicomweb_root, thumbnail_rendering=thumbnails,
                               thumbnail_request_strategy=strategy)


# --------------------------------------------------------------------------- static server

# Request headers a proxy must not forward (RFC 9110 7.6.1) or sets itself.
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade", "host", "content-length",
})


class _SpaFiles(StaticFiles):
    """Static files; a path whose last segment has no extension is a client-side
    route (``/viewer``, ``/viewer/dicomweb``) and gets ``index.html``."""

    async def get_response(self, path: str, scope: Scope) -> StarletteResponse:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404 or os.path.splitext(path)[1]:
                raise
            return await super().get_response("index.html", scope)


def _proxy_endpoint(upstream: str) -> tuple[
    Callable[[StarletteRequest], Awaitable[StarletteResponse]],
    Callable[[Starlette], AbstractAsyncContextManager[None]],
]:
    """A streaming reverse proxy to ``upstream`` and the lifespan owning its client."""
    holder: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        limits = httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY)
        async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits) as client:
            holder["client"] = client
            yield

    async def proxy(request: StarletteRequest) -> StarletteResponse:
        client = holder["client"]
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP]
        headers += [("x-forwarded-host", request.headers.get("host", "")),
                    ("x-forwarded-proto", request.url.scheme)]
        # Path and query forwarded byte for byte, as the browser encoded them.
        target = request.scope["raw_path"]
        if request.scope["query_string"]:
            target += b"?" + request.scope["query_string"]
        outgoing = client.build_request(
            request.method, httpx.URL(upstream).copy_with(raw_path=target), headers=headers,
            content=request.stream() if request.method in ("POST", "PUT") else None)
        upstream_response = await client.send(outgoing, stream=True)
        response_headers = {k: v for k, v in upstream_response.headers.items()
                            if k.lower() not in _HOP_BY_HOP}
        if "content-length" in upstream_response.headers:
            response_headers["content-length"] = upstream_response.headers["content-length"]

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream_response.aiter_raw():
                    yield chunk
            finally:  # also when the browser goes away mid-stream
                await upstream_response.aclose()

        return StreamingResponse(body(), status_code=upstream_response.status_code,
                                 headers=response_headers)

    return proxy, lifespan


def ohif_app(dist: Path, app_config: str, upstream: str | None = None) -> Starlette:
    """OHIF's files with ``app_config`` as ``/app-config.js``; ``/dicom-web/*`` forwarded
    to ``upstream`` (the gateway's base URL) when given."""

    async def config(request: StarletteRequest) -> StarletteResponse:
        return StarletteResponse(app_config, media_type="text/javascript",
                                 headers={"Cache-Control": "no-store"})

    routes: list[BaseRoute] = [StarletteRoute("/app-config.js", config)]
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]] | None = None
    if upstream is not None:
        proxy, lifespan = _proxy_endpoint(upstream.rstrip("/"))
        routes.append(StarletteRoute("/dicom-web/{rest:path}", proxy,
                                     methods=["GET", "HEAD", "POST", "DELETE", "OPTIONS"]))
    routes.append(Mount("/", _SpaFiles(directory=dist)))
    return Starlette(routes=routes, lifespan=lifespan)


@dataclass(frozen=True)
class OhifServer:
    url: str  # http://127.0.0.1:PORT (its origin)


@contextmanager
def serving_ohif(dist: Path, app_config: str, upstream: str | None = None,
                 port: int | None = None) -> Iterator[OhifServer]:
    """OHIF on ``port`` (a free one when None), in a uvicorn thread."""
    port = free_port() if port is None else port
    config = uvicorn.Config(ohif_app(dist, app_config, upstream), host=LOOPBACK, port=port,
                            log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name=f"ohif-{port}")
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"OHIF static server on port {port} did not start")
        time.sleep(0.02)
    try:
        yield OhifServer(url=f"http://{LOOPBACK}:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# --------------------------------------------------------------------------- browser


def _require_chromium() -> Path:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"{CHROMIUM} not found: the OHIF end-to-end tests drive Debian's Chromium; "
            "install the Debian package `chromium` (apt-get install -y chromium; "
            "see .ci/test). Do not run `playwright install`.", pytrace=False)
    return CHROMIUM


@contextmanager
def launched_chromium() -> Iterator[Browser]:
    executable = _require_chromium()
    with sync_playwright() as playwright:
        browser = _launch(playwright, executable)
        try:
            yield browser
        finally:
            browser.close()


def _launch(playwright: Playwright, executable: Path) -> Browser:
    return playwright.chromium.launch(executable_path=str(executable), headless=True,
                                      args=CHROMIUM_ARGS, timeout=60_000)


@dataclass(frozen=True)
class RecordedResponse:
    method: str
    url: str
    status: int
    content_type: str
    # The few response headers the CORS test looks at.
    allow_origin: str | None
    resource_policy: str | None
    authorization: str | None  # what the request carried


@dataclass
class ViewerPage:
    """One browser page with OHIF in it and a log of what it asked for."""

    page: Page
    responses: list[RecordedResponse] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "METHOD URL: error"
    blocked: list[str] = field(default_factory=list)  # URLs to hosts other than 127.0.0.1
    console_errors: list[str] = field(default_factory=list)
    in_flight: set[Request] = field(default_factory=set)

    # ---- requests

    def dicomweb(self, root: str) -> list[RecordedResponse]:
        return [r for r in self.responses if r.url.startswith(root)]

    def problems(self, root: str) -> list[str]:
        """Every request under ``root`` that did not end in a 2xx, and every one that
        failed outright (network error, CORS refusal), in words."""
        problems = [f"{r.status} {r.method} {r.url}"
                    for r in self.dicomweb(root) if not 200 <= r.status < 300]
        problems += [f"failed: {f}" for f in self.failed if f.split(" ", 2)[1].startswith(root)]
        return problems

    def settle(self, root: str, quiet: float = 0.5, timeout: float = 60.0) -> None:
        """Wait until no request under ``root`` has been in flight for ``quiet`` seconds
        (OHIF prefetches frames after the first image is up)."""
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            busy = any(r.url.startswith(root) for r in self.in_flight)
            now = time.monotonic()
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= quiet:
                return
            # wait_for_timeout, not time.sleep: the sync API only delivers events
            # while it is called.
            self.page.wait_for_timeout(100)
        pending = sorted(r.url for r in self.in_flight if r.url.startswith(root))
        raise AssertionError(f"requests still in flight after {timeout:.0f} s: {pending[:10]}")

    # ---- viewport

    def canvas_png(self) -> bytes | None:
        """The first viewport's pixels as PNG (read from the canvas, so the overlay
        text drawn above it in HTML does not count), or None while there is none."""
        data_url = self.page.evaluate(_CANVAS_SCRIPT)
        if not data_url or "," not in data_url:
            return None
        return base64.b64decode(data_url.split(",", 1)[1])

    def wait_for_image(self, name: str, min_fraction: float = 0.02,
                       timeout: float = 45.0) -> tuple[bytes, float]:
        """Poll the viewport until at least ``min_fraction`` of it is not black; save
        the page and the canvas as artefacts. Returns (canvas PNG, fraction)."""
        deadline = time.monotonic() + timeout
        png: bytes | None = None
        fraction = 0.0
        while time.monotonic() < deadline:
            png = self.canvas_png()
            if png is not None:
                fraction = non_black_fraction(png)
                if fraction >= min_fraction:
                    break
            self.page.wait_for_timeout(250)
        self.screenshot(name)
        if png is not None:
            save_artifact(f"{name}-canvas.png", png)
        if png is None or fraction < min_fraction:
            what = ("no viewport canvas" if png is None else
                    f"viewport still black ({fraction:.2%} of pixels not black)")
            errors = [f"{r.status} {r.method} {r.url}" for r in self.responses
                      if r.status >= 400] + self.failed
            raise AssertionError(
                f"{name}: {what} after {timeout:.0f} s; see {ARTIFACTS}/{name}.png\n"
                f"{len(errors)} failed requests, first ones:\n" + "\n".join(errors[:5])
                + "\nconsole errors:\n" + "\n".join(self.console_errors[:5]))
        return png, fraction

    def overlay(self, corner: str = "bottom-right") -> str:
        return self.page.locator(f'[data-cy="viewport-overlay-{corner}"]').first.inner_text()

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path


_CANVAS_SCRIPT = """() => {
  const canvas = document.querySelector('[data-cy="viewport-pane"] canvas.cornerstone-canvas')
    || document.querySelector('canvas.cornerstone-canvas');
  return canvas && canvas.width > 0 ? canvas.toDataURL('image/png') : null;
}"""


@contextmanager
def viewer_page(browser: Browser) -> Iterator[ViewerPage]:
    """A fresh context (own storage, no service workers) with the tour marked as shown."""
    context = browser.new_context(viewport={"width": 1280, "height": 800},
                                  service_workers="block")
    context.set_default_timeout(30_000)
    context.add_init_script(_SHOWN_TOURS_SCRIPT)
    page = context.new_page()
    viewer = ViewerPage(page=page)

    def block(route: Route) -> None:
        viewer.blocked.append(route.request.url)
        route.abort("blockedbyclient")

    def on_request(request: Request) -> None:
        viewer.in_flight.add(request)

    def on_response(response: Response) -> None:
        headers = response.headers
        viewer.responses.append(RecordedResponse(
            method=response.request.method, url=response.url, status=response.status,
            content_type=headers.get("content-type", ""),
            allow_origin=headers.get("access-control-allow-origin"),
            resource_policy=headers.get("cross-origin-resource-policy"),
            authorization=response.request.headers.get("authorization")))

    def on_finished(request: Request) -> None:
        viewer.in_flight.discard(request)

    def on_failed(request: Request) -> None:
        viewer.in_flight.discard(request)
        viewer.failed.append(f"{request.method} {request.url}: {request.failure}")

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            viewer.console_errors.append(message.text)

    context.route(_NOT_LOOPBACK, block)
    page.on("request", on_request)
    page.on("response", on_response)
    page.on("requestfinished", on_finished)
    page.on("requestfailed", on_failed)
    page.on("console", on_console)
    try:
        yield viewer
    finally:
        context.close()


# --------------------------------------------------------------------------- artefacts


def non_black_fraction(png: bytes, threshold: int = 16) -> float:
    """Share of pixels with a channel above ``threshold``: 0 for an empty viewport."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    if pixels.size == 0:
        return 0.0
    return float((pixels.max(axis=2) > threshold).mean())


def save_artifact(name: str, content: bytes | str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


_KEPT_QUERY_VALUES = frozenset({"includefield", "limit", "offset", "fuzzymatching",
                                "viewport", "accept"})
_PLACEHOLDERS = {"studies": "{study}", "series": "{series}", "instances": "{instance}",
                 "frames": "{n}"}


def request_shape(url: str, root: str) -> str:
    """``/studies/{study}/series/{series}/...?limit=101&PatientName=...``: a URL under
    ``root`` with UIDs and frame numbers replaced and most query values elided."""
    parts = urlsplit(url)
    path = parts.path[len(urlsplit(root).path):]
    segments = path.strip("/").split("/")
    shaped = [_PLACEHOLDERS.get(segments[i - 1], seg) if i else seg
              for i, seg in enumerate(segments)]
    query = []
    for pair in parts.query.split("&") if parts.query else []:
        key, _, value = pair.partition("=")
        query.append(f"{key}={value}" if key.lower() in _KEPT_QUERY_VALUES else f"{key}=...")
    return "/" + "/".join(shaped) + ("?" + "&".join(query) if query else "")
