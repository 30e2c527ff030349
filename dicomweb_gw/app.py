"""Composition root: settings in, a Starlette app out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dicomweb_gw.dicomweb.dicomjson import dumps
from dicomweb_gw.dicomweb.qido import QidoService
from dicomweb_gw.dicomweb.wado import WadoService
from dicomweb_gw.errors import PacsError
from dicomweb_gw.http.endpoints import DicomWebApi
from dicomweb_gw.http.errors import EXCEPTION_HANDLERS
from dicomweb_gw.http.logfilter import install_stream_abort_filter
from dicomweb_gw.http.routes import dicomweb_routes, mount_point
from dicomweb_gw.pacs.dimse import DimsePacsClient
from dicomweb_gw.pacs.storescp import MoveReceiver
from dicomweb_gw.settings import Settings, SettingsError, load_settings

__all__ = ["Gateway", "create_app"]

log = logging.getLogger(__name__)
_READY_TIMEOUT = 5.0


class Gateway:
    """The long-lived parts: PACS clients and the C-MOVE storage SCP."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        needs_receiver = any(node.retrieve == "c-move" for node in settings.nodes)
        self.receiver = (
            MoveReceiver(settings.ae_title, host=settings.store_host, port=settings.store_port)
            if needs_receiver else None
        )
        self.clients = {
            node.name: DimsePacsClient(node, ae_title=settings.ae_title, receiver=self.receiver)
            for node in settings.nodes
        }
        self._started = False

    def start(self) -> None:
        """Bind the storage SCP; a port clash is a settings error, said in one line."""
        if self._started:
            return
        if self.receiver is not None:
            try:
                self.receiver.start()
            except OSError as exc:
                raise SettingsError(
                    f"cannot listen for C-MOVE on port {self.settings.store_port} "
                    f"(DICOMWEB_GW_STORE_PORT): {exc.strerror}") from None
        self._started = True

    async def stop(self) -> None:
        for client in self.clients.values():
            await client.aclose()
        if self.receiver is not None:
            await asyncio.to_thread(self.receiver.stop)
        self._started = False


def create_app(settings: Settings | None = None, gateway: Gateway | None = None) -> Starlette:
    if gateway is None:
        gateway = Gateway(settings if settings is not None else load_settings())
    settings = gateway.settings
    qido = QidoService(max_results=settings.qido_max_results)
    wado = WadoService()

    routes: list[BaseRoute] = [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _readyz_endpoint(gateway), methods=["GET"]),
    ]
    default = gateway.clients[settings.default_pacs]
    routes.append(dicomweb_routes(DicomWebApi(default, prefix=mount_point(None), qido=qido,
                                              wado=wado)))
    for name, client in gateway.clients.items():
        routes.append(dicomweb_routes(DicomWebApi(client, prefix=mount_point(name), qido=qido,
                                                  wado=wado)))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        install_stream_abort_filter()
        gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS,
                    lifespan=lifespan)
    app.state.gateway = gateway
    return app


async def _healthz(request: Request) -> Response:
    return Response(dumps({"status": "ok"}), media_type="application/json")


def _readyz_endpoint(gateway: Gateway) -> Callable[[Request], Awaitable[Response]]:
    async def readyz(request: Request) -> Response:
        failures: dict[str, str] = {}

        async def check(name: str, client: DimsePacsClient) -> None:
            try:
                await asyncio.wait_for(client.echo(), _READY_TIMEOUT)
            except TimeoutError:
                failures[name] = f"no C-ECHO answer within {_READY_TIMEOUT:g} s"
            except PacsError as exc:
                failures[name] = exc.message

        await asyncio.gather(*(check(n, c) for n, c in gateway.clients.items()))
        status = 503 if failures else 200
        body = {"status": "unavailable" if failures else "ready",
                "pacs": {name: failures.get(name, "ok") for name in gateway.clients}}
        return Response(dumps(body), status_code=status, media_type="application/json")

    return readyz
