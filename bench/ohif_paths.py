"""The three ways the real OHIF reaches the same studies, for ``test_bench_ohif.py``.

* ``gateway, C-MOVE`` and ``gateway, C-GET``: a gateway process (``run_gateway``)
  with two nodes on the session's Orthanc, one per retrieve method;
* ``OHIF on Orthanc DICOMweb``: Orthanc's own DICOMweb plugin, the reference.

Each path gets its own OHIF server (the e2e harness's files and app-config,
``tests/ohif_fixtures.py``) that forwards its DICOMweb root to the server
behind it, so the browser sees one origin and no CORS on every path (Orthanc
sends no CORS headers). The e2e harness forwards ``/dicom-web/*`` only; the
gateway's nodes live under ``/pacs/{node}/dicom-web``, so the server here
forwards whatever root it is given, with the harness's own proxy endpoint.

Over the simulated link (``tests/link_proxy.py``, 10 ms each way) the viewer
and the gateway stay on one side, the PACS is on the other: a LinkProxy sits
in front of Orthanc's DIMSE port, another in front of the gateway's storage
SCP for the C-MOVE back-channel, and for the reference path one in front of
Orthanc's HTTP port, so OHIF reaches Orthanc's DICOMweb over the same link.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import uvicorn
from extra_pacs import add_orthanc_destination
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from conftest import run_gateway
from link_proxy import LinkProxy
from ohif_fixtures import _proxy_endpoint, _SpaFiles, render_app_config
from pacs_fixtures import LOOPBACK, RunningPacs, free_port

LINK_DELAY_MS = 10
# Row label -> (gateway node, its retrieve method); both nodes are the same Orthanc.
GATEWAY_PATHS = {"gateway, C-MOVE": ("orthanc-move", "c-move"),
                 "gateway, C-GET": ("orthanc", "c-get")}
REFERENCE = "OHIF on Orthanc DICOMweb"
# Move destinations of their own: Orthanc finds one by AE title, and the other
# benchmarks' gateways keep theirs (at most 16 characters).
GATEWAY_AE_TITLES = {"loopback": "GW_OHIF", "link": "GW_OHIF_LINK"}
NETWORKS = ("loopback", "link")
_START_TIMEOUT = 10.0


@dataclass(frozen=True)
class ViewerPath:
    """One way to the studies: the OHIF server in front of it and how to make it cold."""

    label: str
    ohif: str  # that OHIF's origin, http://127.0.0.1:PORT
    root: str  # its DICOMweb root on that origin, forwarded to the server behind it
    purge: str | None  # the gateway's purge URL for a study, without it; None: nothing to purge

    @property
    def dicomweb(self) -> str:
        return f"{self.ohif}{self.root}"

    def viewer_url(self, study_uid: str) -> str:
        return f"{self.ohif}/viewer?StudyInstanceUIDs={study_uid}"

    def purge_url(self, study_uid: str) -> str | None:
        return None if self.purge is None else f"{self.purge}/{study_uid}"


def ohif_app(dist: Path, root: str, upstream: str, app_config: str | None = None) -> Starlette:
    """OHIF's files with a same-origin data source at ``root``, forwarded to ``upstream``;
    ``app_config``: another ``app-config.js`` than the e2e harness's for ``root``."""
    app_config = render_app_config(root) if app_config is None else app_config

    async def config(request: Request) -> Response:
        return Response(app_config, media_type="text/javascript",
                        headers={"Cache-Control": "no-store"})

    proxy, lifespan = _proxy_endpoint(upstream.rstrip("/"))
    routes: list[BaseRoute] = [
        Route("/app-config.js", config),
        Route(f"{root}/{{rest:path}}", proxy, methods=["GET", "HEAD", "POST", "OPTIONS"]),
        Mount("/", _SpaFiles(directory=dist)),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """``app`` on a free loopback port in a uvicorn thread; yields its origin."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=LOOPBACK, port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True, name=f"bench-ohif-{port}")
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"OHIF server on port {port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def viewer_paths(network: str, orthanc: RunningPacs, dist: Path,
                 folder: Path) -> Iterator[list[ViewerPath]]:
    """The three paths on ``network`` ("loopback" or "link"), gateway paths first."""
    if network not in NETWORKS:
        raise ValueError(f"unknown network {network!r}; one of {NETWORKS}")
    assert orthanc.http_url is not None
    with ExitStack() as stack:
        def link(port: int) -> LinkProxy:
            return stack.enter_context(LinkProxy(LOOPBACK, port, delay_ms=LINK_DELAY_MS))

        store_port = free_port()
        pacs, destination, orthanc_http = orthanc, store_port, orthanc.http_url
        if network == "link":
            pacs = replace(orthanc, port=link(orthanc.port).port)
            destination = link(store_port).port
            orthanc_http = f"http://{LOOPBACK}:{link(_port_of(orthanc.http_url)).port}"
        ae_title = GATEWAY_AE_TITLES[network]
        add_orthanc_destination(orthanc, ae_title, destination)
        gateway = stack.enter_context(run_gateway(
            folder / f"gateway-{network}",
            {node: (pacs, method) for node, method in GATEWAY_PATHS.values()},
            store_port, ae_title=ae_title))
        paths = []
        for label, (node, _) in GATEWAY_PATHS.items():
            root = f"/pacs/{node}/dicom-web"
            origin = stack.enter_context(serving(ohif_app(dist, root, gateway.url)))
            paths.append(ViewerPath(label, origin, root,
                                    purge=f"{gateway.url}/pacs/{node}/cache/studies"))
        origin = stack.enter_context(serving(ohif_app(dist, "/dicom-web", orthanc_http)))
        paths.append(ViewerPath(REFERENCE, origin, "/dicom-web", purge=None))
        yield paths


def _port_of(url: str) -> int:
    port = urlsplit(url).port
    if port is None:
        raise ValueError(f"{url} has no port")
    return port

