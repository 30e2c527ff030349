"""The operator's endpoints: liveness, readiness, metrics, the OpenAPI document, cache purge.

They take what they need as plain callables, so this module knows the PACS
clients and the cache only through their Protocols; app.py wires them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dicomweb_gw.cache.protocol import InstanceStore
from dicomweb_gw.dicomweb.dicomjson import dumps
from dicomweb_gw.dicomweb.uids import require_uid
from dicomweb_gw.errors import NotFound, PacsError
from dicomweb_gw.http.openapi import openapi_json
from dicomweb_gw.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from dicomweb_gw.pacs.protocol import PacsClient

__all__ = ["operations_routes"]

Handler = Callable[[Request], Awaitable[Response]]
#: How long /readyz waits for each node's C-ECHO.
READY_TIMEOUT = 5.0


def operations_routes(
    *, clients: Mapping[str, PacsClient], default_pacs: str,
    store: Callable[[str], InstanceStore], render_metrics: Callable[[], bytes],
    routing_problem: Callable[[], str | None] | None,
) -> list[BaseRoute]:
    """``routing_problem``: why C-MOVE routing between replicas is broken (None when it
    works); None without several replicas."""
    purge = _purge(clients, default_pacs, store)
    return [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _readyz(clients, routing_problem), methods=["GET"]),
        Route("/metrics", _metrics(render_metrics), methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/cache/studies/{study}", purge, methods=["DELETE"]),
        Route("/cache/studies/{study}/series/{series}", purge, methods=["DELETE"]),
        Route("/pacs/{pacs}/cache/studies/{study}", purge, methods=["DELETE"]),
        Route("/pacs/{pacs}/cache/studies/{study}/series/{series}", purge, methods=["DELETE"]),
    ]


def _purge(clients: Mapping[str, PacsClient], default_pacs: str,
           store: Callable[[str], InstanceStore]) -> Handler:
    """Forget a study or series, so the next request asks the PACS again."""

    async def purge(request: Request) -> Response:
        params = request.path_params
        node = params.get("pacs", default_pacs)
        if node not in clients:
            raise NotFound(f"no PACS node named '{node}'")
        study = require_uid(params["study"], "StudyInstanceUID")
        series = params.get("series")
        if series is not None:
            require_uid(series, "SeriesInstanceUID")
        count = await asyncio.to_thread(store(node).purge, study, series)
        return Response(dumps({"pacs": node, "purged": count}), media_type="application/json")

    return purge


def _metrics(render: Callable[[], bytes]) -> Handler:
    async def metrics(request: Request) -> Response:
        body = await asyncio.to_thread(render)  # reads the cache indexes
        return Response(body, media_type=METRICS_CONTENT_TYPE)

    return metrics


async def _healthz(request: Request) -> Response:
    return Response(dumps({"status": "ok"}), media_type="application/json")


def _readyz(clients: Mapping[str, PacsClient],
            routing_problem: Callable[[], str | None] | None) -> Handler:
    async def readyz(request: Request) -> Response:
        failures: dict[str, str] = {}

        async def check(name: str, client: PacsClient) -> None:
            try:
                await asyncio.wait_for(client.echo(), READY_TIMEOUT)
            except TimeoutError:
                failures[name] = f"no C-ECHO answer within {READY_TIMEOUT:g} s"
            except PacsError as exc:
                failures[name] = exc.message

        await asyncio.gather(*(check(n, c) for n, c in clients.items()))
        # A dead move router loses every C-MOVE instance that lands on another replica.
        routing = routing_problem() if routing_problem is not None else None
        status = 503 if failures or routing else 200
        body: dict[str, object] = {
            "status": "unavailable" if status == 503 else "ready",
            "pacs": {name: failures.get(name, "ok") for name in clients}}
        if routing_problem is not None:
            body["move_routing"] = routing or "ok"
        return Response(dumps(body), status_code=status, media_type="application/json")

    return readyz
