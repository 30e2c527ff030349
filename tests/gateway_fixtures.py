"""A real gateway (uvicorn in a thread) in front of the real PACS.

httpx's ASGITransport buffers whole responses, so streaming can only be seen
through a real server: every integration test talks HTTP over loopback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette

from dicomweb_gw.app import Gateway, create_app
from dicomweb_gw.http.middleware import SERVER_HEAD_BUFFER
from dicomweb_gw.settings import PacsNode, Settings
from pacs_fixtures import GATEWAY_AE_TITLE, RunningPacs, free_port

#: How long a test client keeps an idle pooled connection to a gateway: well under
#: uvicorn's 5 s keep-alive timeout. A request sent on a connection the server is
#: closing at that moment fails with no status line ("Server disconnected without
#: sending a response"), a client-side race that would pass for a gateway error.
KEEPALIVE_EXPIRY = 2.0


@dataclass(frozen=True)
class RunningGateway:
    url: str  # http://127.0.0.1:PORT
    settings: Settings
    app: Starlette

    def flights_started(self, node: str | None = None) -> int:
        """Retrieves that reached ``node``'s PACS so far (single flight makes this countable)."""
        services = self.app.state.services[node or self.settings.default_pacs]
        return int(services.wado.source.flights.started)

    def dicomweb(self, node: str | None = None) -> str:
        """DICOMweb root of ``node`` (the default PACS when None)."""
        return f"{self.url}/dicom-web" if node is None else f"{self.url}/pacs/{node}/dicom-web"


@contextmanager
def running_gateway(settings: Settings) -> Iterator[RunningGateway]:
    gateway = Gateway(settings)
    gateway.start()
    port = free_port()
    app = create_app(gateway=gateway)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on", h11_max_incomplete_event_size=SERVER_HEAD_BUFFER)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("gateway did not start")
        time.sleep(0.02)
    try:
        yield RunningGateway(url=f"http://127.0.0.1:{port}", settings=settings, app=app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def make_settings(nodes: tuple[PacsNode, ...], *, store_port: int, tmp: Path,
                  ae_title: str = GATEWAY_AE_TITLE, **extra: object) -> Settings:
    return Settings(nodes=nodes, default_pacs=nodes[0].name, ae_title=ae_title,
                    store_port=store_port, store_host="127.0.0.1", cache_dir=tmp / "cache",
                    **extra)  # type: ignore[arg-type]


def node_for(pacs: RunningPacs, name: str, retrieve: str, **extra: object) -> PacsNode:
    return PacsNode(name=name, host=pacs.host, port=pacs.port, ae_title=pacs.ae_title,
                    retrieve=retrieve, timeout=15.0, **extra)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def gateway(
    dcmqrscp_pacs: RunningPacs, orthanc_pacs: RunningPacs, gateway_store_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGateway]:
    """One gateway, three nodes: dcmqrscp (C-MOVE, the default), Orthanc by C-GET and by C-MOVE."""
    nodes = (
        node_for(dcmqrscp_pacs, "dcmqrscp", "c-move"),
        node_for(orthanc_pacs, "orthanc", "c-get"),
        node_for(orthanc_pacs, "orthanc-move", "c-move"),
    )
    settings = make_settings(nodes, store_port=gateway_store_port,
                             tmp=tmp_path_factory.mktemp("gateway"))
    with running_gateway(settings) as running:
        yield running
