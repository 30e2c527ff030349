"""Composition root: settings in, a Starlette app out."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount

from dicomweb_gw.audit_log import AuditLog
from dicomweb_gw.cache.blob_urls import blob_store_from_url
from dicomweb_gw.cache.blobs import BlobStore
from dicomweb_gw.cache.blobs_folder import FolderBlobStore
from dicomweb_gw.cache.disk import DiskInstanceStore
from dicomweb_gw.cache.protocol import InstanceStore
from dicomweb_gw.cache.tiered import TieredInstanceStore
from dicomweb_gw.cluster.link import RedisLink
from dicomweb_gw.cluster.moves import MoveRouting
from dicomweb_gw.cluster.replicas import Replicas
from dicomweb_gw.cluster.shared_caches import MetadataSharingStore, SharedQidoService
from dicomweb_gw.cluster.shared_flights import ClusterFlights
from dicomweb_gw.dicomweb.flights import FlightTable
from dicomweb_gw.dicomweb.pixels import PixelService
from dicomweb_gw.dicomweb.qido import QidoService
from dicomweb_gw.dicomweb.rendered import RenderService
from dicomweb_gw.dicomweb.source import InstanceSource
from dicomweb_gw.dicomweb.stow import StowService
from dicomweb_gw.dicomweb.wado import WadoService
from dicomweb_gw.dicomweb.wado_metadata import MetadataService
from dicomweb_gw.http.audit_trail import AuditTrail
from dicomweb_gw.http.compression import Compression
from dicomweb_gw.http.endpoints import DicomWebApi, Services
from dicomweb_gw.http.error_responses import EXCEPTION_HANDLERS
from dicomweb_gw.http.http_caching import HttpCaching
from dicomweb_gw.http.logfilter import install_stream_abort_filter
from dicomweb_gw.http.middleware import middleware
from dicomweb_gw.http.operations import operations_routes
from dicomweb_gw.http.pacs_findings import pacs_findings_routes
from dicomweb_gw.http.routes import dicomweb_routes, mount_point, node_routes
from dicomweb_gw.http.status_json import StatusBoard, StatusSources, status_routes
from dicomweb_gw.http.status_page import page_routes
from dicomweb_gw.metrics import GatewayMetrics
from dicomweb_gw.pacs.dimse import DimsePacsClient
from dicomweb_gw.pacs.storescp import MoveReceiver
from dicomweb_gw.redaction import install_patient_data_filter
from dicomweb_gw.settings import Settings, SettingsError, load_settings

__all__ = ["Gateway", "create_app"]

log = logging.getLogger(__name__)


class Gateway:
    """The long-lived parts: PACS clients, the C-MOVE storage SCP, caches, and
    (with several replicas) the link to Redis."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Listening from the start only if a node retrieves by C-MOVE; a C-GET node whose
        # PACS turns out to have no C-GET starts it when it falls back to C-MOVE.
        self._receiver_at_start = any(node.retrieve == "c-move" for node in settings.nodes)
        self.receiver = MoveReceiver(
            settings.ae_title, host=settings.store_host, port=settings.store_port)
        self.metrics = GatewayMetrics()
        self.audit = AuditLog(settings.audit_log)
        self.clients = {
            node.name: DimsePacsClient(node, ae_title=settings.ae_title, receiver=self.receiver,
                                       metrics=self.metrics)
            for node in settings.nodes
        }
        self._stores: dict[str, InstanceStore] = {}
        #: ``stats()`` of every store opened so far (the metrics and the status page).
        self.cache_stats = lambda: {name: store.stats() for name, store in
                                    list(self._stores.items())}
        #: The local disk cache under each node's store (the status page's sizes).
        self.disk_stores: dict[str, DiskInstanceStore] = {}
        #: Each node's flight table, once its services are built (the status page).
        self.flight_tables: dict[str, FlightTable] = {}
        self._started = False
        self.metrics.watch_caches(self.cache_stats)
        self.link = (RedisLink(settings.redis_url, on_health=self.metrics.redis_up.set)
                     if settings.redis_url else None)
        # Sharing retrieves needs somewhere to share the instances: Redis alone
        # shares only the metadata and QIDO caches.
        sharing = self.link is not None and settings.shared_store is not None
        if self.link is not None and not sharing:
            log.warning("DICOMWEB_GW_REDIS_URL is set but DICOMWEB_GW_SHARED_STORE is not: "
                        "replicas share metadata and QIDO answers, but each retrieves alone")
        self.cluster = (ClusterFlights(self.link, lease_seconds=settings.lease_seconds)
                        if self.link is not None and sharing else None)
        self.routing = (MoveRouting(self.link, self.store)
                        if self.link is not None and sharing and self._receiver_at_start
                        else None)
        self.receiver.routing = self.routing
        #: Heartbeats of the replicas, for the status page.
        self.replicas = (Replicas(self.link, shared_store=settings.shared_store,
                                  shared_blobs=lambda: blob_store_from_url(
                                      settings.shared_store or "",
                                      s3_endpoint=settings.s3_endpoint,
                                      s3_region=settings.s3_region))
                         if self.link is not None else None)
        if self.link is not None:
            link, cluster = self.link, self.cluster
            self.metrics.watch_cluster(
                lambda: link.errors,
                (lambda: asdict(cluster.roles)) if cluster is not None else None)

    def store(self, node: str) -> InstanceStore:
        """The instance cache of one PACS node, opened on first use (reconciling what a
        crash left).

        Each node has its own: a study complete on one PACS says nothing about
        another, and the nodes share the size budget equally.
        """
        if node not in self._stores:
            folder = self.settings.cache_dir / node
            budget = self.settings.cache_max_bytes // max(1, len(self.settings.nodes))
            try:
                local = DiskInstanceStore(folder, budget)
            except OSError as exc:
                raise SettingsError(
                    f"cannot use cache folder {folder} "
                    f"(DICOMWEB_GW_CACHE_DIR): {exc.strerror or exc}") from None
            self.disk_stores[node] = local
            store: InstanceStore = local
            if self.settings.shared_store is not None:
                # The local cache stays: it holds the files this replica streams from.
                store = TieredInstanceStore(local, self._shared_blobs(node))
            if self.link is not None:
                store = MetadataSharingStore(store, self.link, node=node,
                                             ttl=self.settings.cache_ttl)
            self._stores[node] = store
        return self._stores[node]

    def _shared_blobs(self, node: str) -> BlobStore:
        # One prefix per node, like the local cache: a study cached from one PACS
        # says nothing about another.
        url = f"{self.settings.shared_store or ''}".rstrip("/") + f"/{node}"
        try:
            blobs = blob_store_from_url(url, s3_endpoint=self.settings.s3_endpoint,
                                        s3_region=self.settings.s3_region)
        except ValueError as exc:
            raise SettingsError(f"DICOMWEB_GW_SHARED_STORE: {exc}") from None
        if isinstance(blobs, FolderBlobStore):
            # Temp files of writers that died midway: swept in the background, as the
            # walk over a large shared volume must not delay the start.
            threading.Thread(target=blobs.remove_stale_temps, name=f"sweep-{node}",
                             daemon=True).start()
        return blobs

    def start(self) -> None:
        """Bind the storage SCP; a port clash is a settings error, said in one line."""
        if self._started:
            return
        for node in self.clients:  # open the caches now: a bad folder is a start-up error
            self.store(node)
        self.audit.start()  # so is an audit log file that cannot be opened
        if self._receiver_at_start:
            try:
                self.receiver.start()
            except OSError as exc:
                raise SettingsError(
                    f"cannot listen for C-MOVE on port {self.settings.store_port} "
                    f"(DICOMWEB_GW_STORE_PORT): {exc.strerror}") from None
            if self.routing is not None:
                self.routing.start(self.receiver.deliver, self.receiver.abandon)
        self._started = True

    async def stop(self) -> None:
        for client in self.clients.values():
            await client.aclose()
        await asyncio.to_thread(self.receiver.stop)
        if self.routing is not None:
            await asyncio.to_thread(self.routing.stop)
        if self.link is not None:
            await self.link.aclose()
        await asyncio.to_thread(self.audit.close)  # writes what is queued
        stores, self._stores = self._stores, {}
        self.disk_stores = {}
        for store in stores.values():
            await asyncio.to_thread(store.close)
        self._started = False


def create_app(settings: Settings | None = None, gateway: Gateway | None = None) -> Starlette:
    if gateway is None:
        gateway = Gateway(settings if settings is not None else load_settings())
    settings = gateway.settings
    qido = (SharedQidoService(max_results=settings.qido_max_results, link=gateway.link,
                              ttl=settings.qido_cache_ttl)
            if gateway.link is not None and settings.qido_cache_ttl > 0
            else QidoService(max_results=settings.qido_max_results))
    services = {name: _services(gateway, name, qido) for name in gateway.clients}

    routing = gateway.routing
    routes: list[BaseRoute] = operations_routes(
        clients=gateway.clients, default_pacs=settings.default_pacs, store=gateway.store,
        render_metrics=gateway.metrics.render,
        routing_problem=(lambda: routing.problem) if routing is not None else None)
    routes += pacs_findings_routes(settings=settings, clients=gateway.clients,
                                   receiver=gateway.receiver)
    routes += status_routes() + page_routes()
    replicas = gateway.replicas
    board = StatusBoard(StatusSources(
        settings=settings, clients=gateway.clients, flights=gateway.flight_tables,
        store=gateway.store, cache_stats=gateway.cache_stats,
        disk_stores=lambda: dict(gateway.disk_stores), audit=gateway.audit,
        replica_id=gateway.link.replica_id if gateway.link is not None else "",
        cluster=replicas.snapshot if replicas is not None else None))
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
        install_patient_data_filter(settings.log_patient_data)
        gateway.start()
        if replicas is not None:
            replicas.start()
        try:
            yield
        finally:
            await board.aclose()
            if replicas is not None:
                await replicas.stop()
            await gateway.stop()

    stack = middleware(settings.cors_origins, gateway.metrics, settings,
                       _audit_trail(gateway, mounts[mount_point(None)]))
    if settings.compression == "auto":
        # Outermost: metrics, the audit trail (bytes_sent) and the rest see the answer as
        # the handler made it, whatever coding the client took.
        stack.insert(0, Middleware(Compression))
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, middleware=stack,
                    lifespan=lifespan)
    app.state.gateway = gateway
    app.state.services = services
    app.state.status_board = board
    return app


def _services(gateway: Gateway, node: str, qido: QidoService) -> Services:
    """Lazy about the store: it is opened at start-up, not when the app is built."""
    ttl = gateway.settings.cache_ttl

    def prefetched(pacs: str, outcome: str) -> None:
        gateway.metrics.prefetches.labels(pacs, outcome).inc()

    source = InstanceSource(lambda: gateway.store(node), ttl=ttl, cluster=gateway.cluster,
                            prefetch=True, on_prefetch=prefetched)
    gateway.flight_tables[node] = source.flights
    pixels = PixelService(source)
    return Services(qido=qido, wado=WadoService(source),
                    metadata=MetadataService(source, ttl=ttl), pixels=pixels,
                    render=RenderService(pixels), stow=StowService(lambda: gateway.store(node)),
                    upload_max_bytes=gateway.settings.upload_max_bytes, prefetch=source.prefetch,
                    http_caching=_http_caching(gateway, node))


def _http_caching(gateway: Gateway, node: str) -> HttpCaching:
    settings = gateway.settings
    # The fields a credential comes in: an answer is for whoever presented it.
    credentials = ("Authorization", "X-API-Key") if settings.api_keys else ("Authorization",)
    return HttpCaching(lambda: gateway.store(node), mode=settings.http_cache,
                       max_age=settings.http_cache_max_age, ttl=settings.cache_ttl,
                       credential_headers=credentials)


def _audit_trail(gateway: Gateway, base: Mount) -> Middleware | None:
    """The audit middleware, told the DICOMweb routes (every node's base has ``base``'s)."""
    if not gateway.audit.enabled:
        return None
    settings = gateway.settings
    return Middleware(AuditTrail, log=gateway.audit, routes=base.routes,
                      default_pacs=settings.default_pacs, auth_enabled=settings.auth_enabled)
