"""The doctor's findings over HTTP, for operators and the status page.

``GET /admin/pacs``: the last probe of every node (probed_at, usable, findings,
recommended settings), as saved under the cache folder by ``dicomweb-gw doctor``
or by the POST below; a node never probed has ``probed_at: null``.
``POST /admin/pacs/{pacs}/probe``: probe the node now and answer its new report.

The probe blocks (pynetdicom) for seconds, so it runs in a thread; one probe
per node at a time (a second request waits for the first and probes again).
Before probing, the node's client releases its pooled associations: a PACS
that limits associations per calling AE would otherwise count ours against
the probe. C-MOVE samples land on the gateway's own storage SCP. Both need the
admin scope when authentication is on (``auth.py``). The POST takes no CSRF
token (scripts call it), so one a browser made for another web site is refused
with 403 (``csrf.from_another_site``): a browser logged in by Basic auth would
otherwise send its credential with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dicomweb_gw.dicomweb.dicomjson import dumps
from dicomweb_gw.errors import Forbidden, NotFound
from dicomweb_gw.http.csrf import CROSS_SITE_MESSAGE, from_another_site
from dicomweb_gw.pacs.probe import probe_node
from dicomweb_gw.pacs.probe_findings import ProbeReport, load_report, save_report
from dicomweb_gw.pacs.probe_target import ProbeTarget
from dicomweb_gw.pacs.protocol import PacsClient
from dicomweb_gw.pacs.storescp import MoveReceiver
from dicomweb_gw.settings import Settings

__all__ = ["pacs_findings_routes"]

log = logging.getLogger(__name__)

_NEVER_PROBED: dict[str, object] = {"probed_at": None, "usable": None, "findings": [],
                                     "settings": {}}


def pacs_findings_routes(*, settings: Settings, clients: Mapping[str, PacsClient],
                         receiver: MoveReceiver | None) -> list[BaseRoute]:
    nodes = {node.name: node for node in settings.nodes}
    target = ProbeTarget(settings.ae_title, settings.store_host, settings.store_port,
                         receiver=receiver)
    locks: dict[str, asyncio.Lock] = {}

    async def findings(request: Request) -> Response:
        reports = await asyncio.to_thread(
            lambda: {name: load_report(settings.cache_dir, name) for name in nodes})
        body = {"nodes": {name: _json(report) for name, report in reports.items()}}
        return Response(dumps(body), media_type="application/json")

    async def probe(request: Request) -> Response:
        if from_another_site(request.headers):
            raise Forbidden(CROSS_SITE_MESSAGE)
        name = request.path_params["pacs"]
        node = nodes.get(name)
        if node is None:
            raise NotFound(f"no PACS node named '{name}'")
        async with locks.setdefault(name, asyncio.Lock()):
            client = clients.get(name)
            if client is not None:
                await client.aclose()
            report = await asyncio.to_thread(probe_node, node, target)
            try:
                await asyncio.to_thread(save_report, settings.cache_dir, report)
            except OSError as exc:
                log.warning("could not save the doctor findings of PACS '%s': %s", name, exc)
        return Response(dumps(_json(report)), media_type="application/json")

    return [
        Route("/admin/pacs", findings, methods=["GET"]),
        Route("/admin/pacs/{pacs}/probe", probe, methods=["POST"]),
    ]


def _json(report: ProbeReport | None) -> dict[str, object]:
    return dict(_NEVER_PROBED) if report is None else report.to_json()
