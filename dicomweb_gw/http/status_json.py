"""The status page's data and actions (issue #20).

``GET /admin/status``: one JSON snapshot of the gateway (nodes, retrieves in
flight, cache, cluster, configuration with secrets masked); the HTML page
(``status_page.py``) is drawn from the same dict, ``status_snapshot``. No
patient data in it: UIDs, AE titles, hosts, numbers and status words only.

The actions, all ``POST`` with a CSRF token (``csrf.py``), all audited
(``admin`` events) and logged: ``/admin/pacs/{pacs}/echo``,
``/admin/retrieves/{id}/cancel`` and ``/admin/cache/studies/{study}/purge``.
They answer ``{"ok", "message"}`` to a ``fetch`` that accepts JSON, and
``303`` to the page for a plain form post. Who may call them (the admin scope)
is the auth middleware's business.

While someone watches (the page or the JSON was asked for within a minute),
every node gets a C-ECHO each ``status_echo_interval`` seconds, so a PACS
that stopped turns red without waiting for a request to fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from dicomweb_gw import __version__
from dicomweb_gw.audit_log import AuditLog
from dicomweb_gw.cache.disk import DiskInstanceStore
from dicomweb_gw.cache.protocol import CacheStats, InstanceStore
from dicomweb_gw.dicomweb.dicomjson import dumps
from dicomweb_gw.dicomweb.flights import Flight, FlightTable
from dicomweb_gw.dicomweb.uids import is_valid_uid
from dicomweb_gw.errors import PacsError
from dicomweb_gw.http.audit_trail import admin_event
from dicomweb_gw.http.baseurl import base_url
from dicomweb_gw.http.csrf import CSRF_MESSAGE, CsrfTokens
from dicomweb_gw.pacs.activity import NodeActivity
from dicomweb_gw.pacs.probe_findings import load_report
from dicomweb_gw.pacs.protocol import PacsClient
from dicomweb_gw.settings import Settings
from dicomweb_gw.settings.summary import settings_summary

__all__ = ["AUTH_OFF_WARNING", "StatusBoard", "status_routes", "status_snapshot"]

log = logging.getLogger(__name__)

AUTH_OFF_WARNING = ("Authentication is off: anyone who can reach this port can read images "
                    "and use this page.")
#: The background C-ECHOs stop this long after the page was last looked at.
WATCHED_FOR = 60.0
#: The largest studies listed.
LARGEST = 10


@runtime_checkable
class Monitored(Protocol):
    """A PACS client that records its activity (``DimsePacsClient``; fakes need not)."""

    activity: NodeActivity

    def association_use(self) -> tuple[int, int]: ...


@dataclass
class StatusSources:
    """What the snapshot reads, wired by app.py."""

    settings: Settings
    clients: Mapping[str, PacsClient]
    #: Each node's flight table.
    flights: Mapping[str, FlightTable]
    #: Each node's instance store (what purge purges).
    store: Callable[[str], InstanceStore]
    #: The ``stats()`` of each node's store opened so far (hits, misses, sizes): the
    #: numbers the metrics report too.
    cache_stats: Callable[[], Mapping[str, CacheStats]]
    #: Each node's local disk cache opened so far (sizes, largest studies).
    disk_stores: Callable[[], Mapping[str, DiskInstanceStore]]
    audit: AuditLog
    replica_id: str
    #: With Redis: the cluster section (``cluster/replicas.py``); None: one replica.
    cluster: Callable[[], Awaitable[dict[str, object]]] | None = None


class StatusBoard:
    """Builds snapshots and runs the actions; one per app (``app.state.status_board``)."""

    def __init__(self, sources: StatusSources, *, clock: Callable[[], float] = time.time,
                 ) -> None:
        self.sources = sources
        # One replica alone has no Redis id: a per-process one names it all the same.
        self.replica_id = sources.replica_id or uuid.uuid4().hex[:12]
        self.csrf = CsrfTokens.for_settings(sources.settings)
        self._clock = clock
        self.started_at = clock()
        self._started = time.monotonic()
        self._watched_at: float | None = None
        self._echoes: dict[str, asyncio.Task[None]] = {}

    # -- the snapshot ----------------------------------------------------------------------
    async def snapshot(self, request: Request) -> dict[str, object]:
        self.watched()
        settings = self.sources.settings
        nodes = await asyncio.to_thread(self._nodes)  # reads the doctor's files
        cache = await asyncio.to_thread(self._cache)  # reads the cache indexes
        cluster = await self.sources.cluster() if self.sources.cluster is not None else None
        return {
            "generated_at": _iso(self._clock()),
            "gateway": {"version": __version__, "started_at": _iso(self.started_at),
                        "uptime_seconds": round(time.monotonic() - self._started, 1),
                        "replica_id": self.replica_id,
                        "base_url": base_url(request, "/dicom-web")},
            "auth": _auth(settings),
            "csrf_token": self.csrf.issue(_binding(request)),
            "config": [{"name": name, "value": value}
                       for name, value in settings_summary(settings)],
            "nodes": nodes,
            "retrieves": self._retrieves(),
            "cache": cache,
            "cluster": cluster,
        }

    def _nodes(self) -> list[dict[str, object]]:
        return [self._node(name, client) for name, client in self.sources.clients.items()]

    def _node(self, name: str, client: PacsClient) -> dict[str, object]:
        settings = self.sources.settings
        node = client.node
        activity = client.activity if isinstance(client, Monitored) else None
        health, message = activity.health() if activity else ("unknown", "not monitored")
        echo = activity.echo if activity else None
        open_now, most = client.association_use() if isinstance(client, Monitored) \
            else (0, node.max_associations)
        report = load_report(settings.cache_dir, name)
        return {
            "name": name, "ae_title": node.ae_title, "host": node.host, "port": node.port,
            "calling_ae": settings.ae_title, "retrieve": node.retrieve,
            "health": health, "health_message": message,
            "echo": None if echo is None else {
                "at": _iso(echo.at), "ok": echo.ok,
                "milliseconds": round(echo.milliseconds, 1), "message": echo.message},
            "doctor": None if report is None else {
                "at": _iso(report.probed_at.timestamp()),
                "findings": [{"check": f.check, "outcome": f.result, "status": f.status,
                              "meaning": f.meaning,
                              "setting": None if f.setting is None else (
                                  f.setting if f.value is None
                                  else f"{f.setting} = {_toml(f.value)}")}
                             for f in report.findings]},
            "associations": {"open": open_now, "max": most},
            "operations_per_minute": [
                {"operation": op, "outcome": outcome, "count": count}
                for op, outcome, count in (activity.per_minute() if activity else [])],
            "failures": [
                {"at": _iso(f.at), "operation": f.operation, "status": f.status,
                 "status_words": f.status_words, "message": f.message, "fix": f.fix}
                for f in (activity.failures() if activity else [])],
        }

    def _retrieves(self) -> list[dict[str, object]]:
        now = time.monotonic()
        rows: list[dict[str, object]] = []
        for name, table in self.sources.flights.items():
            for flight in table.live():
                age = max(now - flight.started, 1e-6)
                rows.append({
                    "id": flight.id, "node": name, "level": flight.keys.level.value,
                    "study": flight.keys.study_uid, "series": flight.keys.series_uid,
                    "instance": flight.keys.instance_uid, "received": len(flight.landed),
                    "expected": flight.expected, "bytes": flight.bytes,
                    "mb_per_second": round(flight.bytes / 1e6 / age, 2),
                    "age_seconds": round(age, 1), "waiters": flight.waiters,
                    "prefetch": flight.prefetch})
        return rows

    def _cache(self) -> dict[str, object]:
        stats = dict(self.sources.cache_stats())
        disks = dict(self.sources.disk_stores())
        hits = sum(s.hits for s in stats.values())
        misses = sum(s.misses for s in stats.values())
        largest = sorted(
            ((name, study, size, count) for name, disk in disks.items()
             for study, size, count in disk.largest_studies(LARGEST)),
            key=lambda row: -row[2])[:LARGEST]
        return {
            "bytes": sum(s.bytes for s in stats.values()),
            "max_bytes": self.sources.settings.cache_max_bytes,
            "studies": sum(disk.study_count() for disk in disks.values()),
            "instances": sum(s.instances for s in stats.values()),
            "hits": hits, "misses": misses,
            "hit_rate": round(hits / (hits + misses), 3) if hits + misses else None,
            "evictions": sum(s.evictions for s in stats.values()),
            "largest_studies": [{"node": name, "study": study, "bytes": size,
                                 "instances": count}
                                for name, study, size, count in largest],
        }

    # -- background C-ECHOs while watched ---------------------------------------------------
    def watched(self) -> None:
        """The page or the JSON was asked for: keep echoing every node for a minute."""
        self._watched_at = time.monotonic()
        for name, client in self.sources.clients.items():
            task = self._echoes.get(name)
            if task is None or task.done():
                self._echoes[name] = asyncio.get_running_loop().create_task(
                    self._echo_while_watched(client), name=f"status-echo-{name}")

    async def _echo_while_watched(self, client: PacsClient) -> None:
        interval = self.sources.settings.status_echo_interval
        while self._watched_at is not None and time.monotonic() - self._watched_at < WATCHED_FOR:
            # The client records the outcome (its ``activity``): the node turns red or green.
            with contextlib.suppress(PacsError):
                await client.echo()
            await asyncio.sleep(interval)

    def stop_watching(self) -> None:
        """Stop the background C-ECHOs now, from any thread (they start again when the
        page is next looked at)."""
        self._watched_at = None
        for task in list(self._echoes.values()):
            task.get_loop().call_soon_threadsafe(task.cancel)

    async def aclose(self) -> None:
        tasks, self._echoes = list(self._echoes.values()), {}
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- actions ---------------------------------------------------------------------------
    async def echo(self, name: str) -> tuple[int, str]:
        client = self.sources.clients.get(name)
        if client is None:
            return 404, f"no PACS node named '{name}'"
        started = time.monotonic()
        try:
            await client.echo()
        except PacsError as exc:
            return 502, f"C-ECHO failed: {exc.message}"
        millis = (time.monotonic() - started) * 1000
        return 200, f"PACS '{name}' answered C-ECHO in {millis:.0f} ms"

    def cancel(self, flight_id: str) -> tuple[int, str, Flight | None]:
        for table in self.sources.flights.values():
            flight = table.cancel(flight_id)
            if flight is not None:
                return 200, (f"retrieve {flight_id} of {flight.keys.describe()} from PACS "
                             f"'{flight.pacs}' cancelled"), flight
        return 404, f"no retrieve in flight with id '{flight_id}' (it may have ended)", None

    async def purge(self, name: str, study: str) -> tuple[int, str]:
        if name not in self.sources.clients:
            return 404, f"no PACS node named '{name}'"
        if not is_valid_uid(study):
            return 400, f"StudyInstanceUID '{study[:80]}' is not a valid DICOM UID"
        count = await asyncio.to_thread(self.sources.store(name).purge, study, None)
        return 200, f"purged {count} instance(s) of study {study} from the cache of '{name}'"


async def status_snapshot(request: Request) -> dict[str, object]:
    """The snapshot ``GET /admin/status`` answers, for the page to draw."""
    board: StatusBoard = request.app.state.status_board
    return await board.snapshot(request)


def status_routes() -> list[BaseRoute]:
    """``GET /admin/status`` and the three actions; the board is ``app.state.status_board``."""

    async def get_status(request: Request) -> Response:
        body = await status_snapshot(request)
        return Response(dumps(body), media_type="application/json",
                        headers={"Cache-Control": "no-store"})

    async def echo(request: Request) -> Response:
        name = request.path_params["pacs"]
        return await _act(request, "echo", name, name, None,
                          lambda board: board.echo(name))

    async def cancel(request: Request) -> Response:
        flight_id = request.path_params["id"]

        async def run(board: StatusBoard) -> tuple[int, str]:
            status, message, _ = board.cancel(flight_id)
            return status, message

        return await _act(request, "cancel", flight_id, None, None, run)

    async def purge(request: Request) -> Response:
        study = request.path_params["study"]
        form = await _form(request)
        name = (request.query_params.get("pacs") or form.get("pacs")
                or _board(request).sources.settings.default_pacs)
        return await _act(request, "purge", study, name, study,
                          lambda board: board.purge(name, study), form=form)

    return [
        Route("/admin/status", get_status, methods=["GET"]),
        Route("/admin/pacs/{pacs}/echo", echo, methods=["POST"]),
        Route("/admin/retrieves/{id}/cancel", cancel, methods=["POST"]),
        Route("/admin/cache/studies/{study}/purge", purge, methods=["POST"]),
    ]


async def _act(request: Request, action: str, target: str, pacs: str | None,
               study: str | None, run: Callable[[StatusBoard], Awaitable[tuple[int, str]]],
               *, form: Mapping[str, str] | None = None) -> Response:
    """Check the CSRF token, run the action, audit and log it, answer."""
    board = _board(request)
    if form is None:
        form = await _form(request)
    token = request.headers.get("x-csrf-token") or form.get("csrf_token")
    if not board.csrf.valid(token, _binding(request)):
        status, message = 403, CSRF_MESSAGE
        outcome = "refused"
    else:
        status, message = await run(board)
        outcome = "success" if status < 400 else "failure"
    board.sources.audit.write(admin_event(request.scope, action=action, target=target,
                                          outcome=outcome, message=message, pacs=pacs,
                                          study=study))
    log.info("admin %s of %s by %s: %s (%s)", action, target, _who(request), outcome, message)
    return _answer(request, status, message)


def _answer(request: Request, status: int, message: str) -> Response:
    accept = request.headers.get("accept", "")
    if "application/json" in accept or "text/html" not in accept:
        return Response(dumps({"ok": status < 400, "message": message}), status_code=status,
                        media_type="application/json")
    # A plain form post: back to the page (which shows the outcome in the node or table).
    # Relative, as the page's form actions are: right behind a proxy's path prefix too.
    ups = request.url.path.strip("/").count("/")
    return RedirectResponse("../" * ups + "status", status_code=303)


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded body's fields (python-multipart is not installed: parsed here)."""
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        return {}
    body = await request.body()
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items() if values}


def _board(request: Request) -> StatusBoard:
    board: StatusBoard = request.app.state.status_board
    return board


def _binding(request: Request) -> str:
    """What the request's CSRF token is bound to (auth.py puts it in the scope)."""
    return str(request.scope.get("auth_binding") or "")


def _who(request: Request) -> str:
    principal = request.scope.get("auth")
    return str(principal.get("subject")) if isinstance(principal, dict) else "anonymous"


def _auth(settings: Settings) -> dict[str, object]:
    methods = (["api_key"] if settings.api_keys else []) + \
        (["oidc"] if settings.oidc_issuer is not None else [])
    enabled = settings.auth_enabled
    return {"enabled": enabled, "methods": methods,
            "warning": None if enabled else AUTH_OFF_WARNING}


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds") \
        .replace("+00:00", "Z")


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)
