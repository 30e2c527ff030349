"""Composition root: settings in, a Starlette app out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from dicomweb_gw.cache.disk import DiskInstanceStore
from dicomweb_gw.dicomweb.dicomjson import dumps
from dicomweb_gw.dicomweb.pixels import PixelService
from dicomweb_gw.dicomweb.qido import QidoService
from dicomweb_gw.dicomweb.rendered import RenderService
from dicomweb_gw.dicomweb.source import InstanceSource
from dicomweb_gw.dicomweb.stow import StowService
from dicomweb_gw.dicomweb.uids import require_uid
from dicomweb_gw.dicomweb.wado import WadoService
from dicomweb_gw.dicomweb.wado_metadata import MetadataService
from dicomweb_gw.errors import NotFound, PacsError
from dicomweb_gw.http.endpoints import DicomWebApi, Services
from dicomweb_gw.http.errors import EXCEPTION_HANDLERS
from dicomweb_gw.http.logfilter import install_stream_abort_filter
from dicomweb_gw.http.middleware import middleware
from dicomweb_gw.http.openapi import openapi_json
from dicomweb_gw.http.routes import dicomweb_routes, mount_point, node_routes
from dicomweb_gw.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from dicomweb_gw.metrics import GatewayMetrics
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
        self.metrics = GatewayMetrics()
        self.clients = {
            node.name: DimsePacsClient(node, ae_title=settings.ae_title, receiver=self.receiver,
                                       metrics=self.metrics)
            for node in settings.nodes
        }
        self._stores: dict[str, DiskInstanceStore] = {}
        self._started = False
        self.metrics.watch_caches(
            lambda: {name: store.stats() for name, store in list(self._stores.items())})

    def store(self, node: str) -> DiskInstanceStore:
        """The instance cache of one PACS node, opened on first use (reconciling what a
        crash left).

        Each node has its own: a study complete on one PACS says nothing about
        another, and the nodes share the size budget equally.
        """
        if node not in self._stores:
            folder = self.settings.cache_dir / node
            budget = self.settings.cache_max_bytes // max(1, len(self.settings.nodes))
            try:
                self._stores[node] = DiskInstanceStore(folder, budget)
            except OSError as exc:
                raise SettingsError(
                    f"cannot use cache folder {folder} "
                    f"(DICOMWEB_GW_CACHE_DIR): {exc.strerror or exc}") from None
        return self._stores[node]

    def start(self) -> None:
        """Bind the storage SCP; a port clash is a settings error, said in one line."""
        if self._started:
            return
        for node in self.clients:  # open the caches now: a bad folder is a start-up error
            self.store(node)
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
        stores, self._stores = self._stores, {}
        for store in stores.values():
            await asyncio.to_thread(store.close)
        self._started = False


def create_app(settings: Settings | None = None, gateway: Gateway | None = None) -> Starlette:
    if gateway is None:
        gateway = Gateway(settings if settings is not None else load_settings())
    settings = gateway.settings
    qido = QidoService(max_results=settings.qido_max_results)
    services = {name: _services(gateway, name, qido) for name in gateway.clients}

    purge = _purge_endpoint(gateway)
    routes: list[BaseRoute] = [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _readyz_endpoint(gateway), methods=["GET"]),
        Route("/metrics", _metrics_endpoint(gateway), methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/cache/studies/{study}", purge, methods=["DELETE"]),
        Route("/cache/studies/{study}/series/{series}", purge, methods=["DELETE"]),
        Route("/pacs/{pacs}/cache/studies/{study}", purge, methods=["DELETE"]),
        Route("/pacs/{pacs}/cache/studies/{study}/series/{series}", purge, methods=["DELETE"]),
    ]
    default = gateway.clients[settings.default_pacs]
    routes.append(dicomweb_routes(DicomWebApi(default, prefix=mount_point(None),
                                              services=services[settings.default_pacs])))
    for name, client in gateway.clients.items():
        routes.append(dicomweb_routes(DicomWebApi(client, prefix=mount_point(name),
                                                  services=services[name])))
    # WADO-URI and each base's capabilities: first, as the mounts would take .../capabilities.
    mounts = {route.path: route for route in routes if isinstance(route, Mount)}
    for node_name, client in [(None, default), *gateway.clients.items()]:
        routes[:0] = node_routes(mounts[mount_point(node_name)], client,
                                 services[node_name or settings.default_pacs], node_name)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        install_stream_abort_filter()
        gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS,
                    middleware=middleware(settings.cors_origins, gateway.metrics, settings),
                    lifespan=lifespan)
    app.state.gateway = gateway
    app.state.services = services
    return app


def _services(gateway: Gateway, node: str, qido: QidoService) -> Services:
    """Lazy about the store: it is opened at start-up, not when the app is built."""
    ttl = gateway.settings.cache_ttl
    source = InstanceSource(lambda: gateway.store(node), ttl=ttl)
    pixels = PixelService(source)
    return Services(qido=qido, wado=WadoService(source),
                    metadata=MetadataService(source, ttl=ttl), pixels=pixels,
                    render=RenderService(pixels), stow=StowService(lambda: gateway.store(node)),
                    upload_max_bytes=gateway.settings.upload_max_bytes)


def _purge_endpoint(gateway: Gateway) -> Callable[[Request], Awaitable[Response]]:
    """Forget a study or series, so the next request asks the PACS again."""

    async def purge(request: Request) -> Response:
        params = request.path_params
        node = params.get("pacs", gateway.settings.default_pacs)
        if node not in gateway.clients:
            raise NotFound(f"no PACS node named '{node}'")
        study = require_uid(params["study"], "StudyInstanceUID")
        series = params.get("series")
        if series is not None:
            require_uid(series, "SeriesInstanceUID")
        count = await asyncio.to_thread(gateway.store(node).purge, study, series)
        return Response(dumps({"pacs": node, "purged": count}), media_type="application/json")

    return purge


def _metrics_endpoint(gateway: Gateway) -> Callable[[Request], Awaitable[Response]]:
    async def metrics(request: Request) -> Response:
        body = await asyncio.to_thread(gateway.metrics.render)  # reads the cache indexes
        return Response(body, media_type=METRICS_CONTENT_TYPE)

    return metrics


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
