"""The audit trail of the HTTP API: one event per access to patient data.

QIDO-RS is a ``query``, WADO-RS (instances, metadata, frames, bulk data,
rendered, thumbnails) and WADO-URI a ``retrieve``, STOW-RS a ``store``;
probes, metrics, the API description and capabilities are not patient data
and are not audited. Refused requests are: a 401 is exactly what an auditor
looks for. The status page's actions (a C-ECHO, a cancel, a purge) are written
by their handlers as ``admin`` events (``admin_event``): action, target,
who and outcome.

Which request is which is read from the DICOMweb routes the app serves,
matched against the path as the router will, so the trail cannot drift from
the URL space. Pure ASGI: bytes are counted as they pass, streamed retrieves
stay streams, and the event is written when the response has ended or
broken off (a client that left is ``aborted``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dicomweb_gw.audit_log import AuditLog
from dicomweb_gw.logs import REQUEST_ID

__all__ = ["AuditTrail", "admin_event"]

# The node (if named) and the service: a DICOMweb base or WADO-URI.
_BASE = re.compile(r"^(?:/pacs/(?P<pacs>[^/]+))?/(?P<service>dicom-web|wado)(?P<rest>/.*)?$")
_COLLECTIONS = frozenset({"studies", "series", "instances"})
_WADO_URI_UIDS = (("studyUID", "study"), ("seriesUID", "series"), ("objectUID", "instance"))
# RetrieveURLs in a STOW-RS response name the studies that were stored.
_STORED_STUDY = re.compile(rb"/studies/([0-9.]{1,64})[\"/]")
_STOW_RESPONSE_LIMIT = 1024 * 1024
#: Values are what a client sent: bounded, so a hostile request cannot bloat the trail.
_MAX_VALUE = 256


@dataclass(frozen=True)
class _Target:
    action: str  # query, retrieve or store
    route: str  # the route template, e.g. /pacs/{pacs}/dicom-web/studies/{study}
    pacs: str
    uids: dict[str, str]


@dataclass
class _Exchange:
    """What passed through one request, as counted in the receive/send wrappers."""

    status: int | None = None
    sent: int = 0
    received: int = 0
    complete: bool = False
    disconnected: bool = False
    response: bytearray = field(default_factory=bytearray)


class AuditTrail:
    """Writes one audit event per patient-data request to ``log``.

    ``routes`` are the routes of a DICOMweb base (under ``/dicom-web``); every
    node's base has the same ones.
    """

    def __init__(self, app: ASGIApp, log: AuditLog, routes: Sequence[BaseRoute],
                 default_pacs: str, auth_enabled: bool) -> None:
        self.app = app
        self.log = log
        self.routes = [route for route in routes if isinstance(route, Route)]
        self.default_pacs = default_pacs
        self.auth_enabled = auth_enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = self._target(scope) if scope["type"] == "http" else None
        if target is None:
            await self.app(scope, receive, send)
            return
        started, clock = time.time(), time.perf_counter()
        exchange = _Exchange()
        keep_response = target.action == "store"

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                exchange.received += len(message.get("body", b""))
            elif message["type"] == "http.disconnect":
                exchange.disconnected = True
            return message

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                exchange.sent += len(body)
                if keep_response and len(exchange.response) < _STOW_RESPONSE_LIMIT:
                    exchange.response += body
                exchange.complete = not message.get("more_body", False)
            try:
                await send(message)
            except OSError:  # the ASGI server says the client is gone
                exchange.disconnected = True
                raise

        error: BaseException | None = None
        try:
            await self.app(scope, counting_receive, counting_send)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.log.write(self._event(scope, target, exchange, error, started,
                                       time.perf_counter() - clock))

    def _target(self, scope: Scope) -> _Target | None:
        match = _BASE.match(scope["path"])
        if match is None:
            return None
        method = scope["method"]
        prefix = "" if match["pacs"] is None else "/pacs/{pacs}"
        pacs = match["pacs"] or self.default_pacs
        rest = match["rest"] or ""
        if match["service"] == "wado":
            if rest or method not in ("GET", "HEAD"):
                return None
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            uids = {key: query[param] for param, key in _WADO_URI_UIDS if param in query}
            return _Target("retrieve", f"{prefix}/wado", pacs, uids)
        for route in self.routes:
            if route.methods is None or method not in route.methods:
                continue
            found = route.path_regex.match(rest)
            if found is not None:
                return _Target(_action(method, route.path), f"{prefix}/dicom-web{route.path}",
                               pacs, found.groupdict())
        return None  # capabilities, or no such route (the 404/405 holds no patient data)

    def _event(self, scope: Scope, target: _Target, exchange: _Exchange,
               error: BaseException | None, started: float, seconds: float) -> dict[str, object]:
        if exchange.complete:
            status = exchange.status or 500
            outcome = "success" if status < 400 else "failure"
        elif exchange.disconnected or isinstance(
                error, ClientDisconnect | OSError | asyncio.CancelledError):
            status, outcome = exchange.status or 499, "aborted"  # 499: nginx's "client left"
        else:  # the gateway failed, before answering or by cutting a stream (PACS broke off)
            status, outcome = exchange.status or 500, "failure"
        who, how = self._who(scope, status)
        uids = target.uids
        event: dict[str, object] = {
            "time": datetime.fromtimestamp(started, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "request_id": REQUEST_ID.get(),
            "who": who,
            "auth": how,
            "client": scope["client"][0] if scope.get("client") else None,
            "action": target.action,
            "method": scope["method"],
            "route": target.route,
            "pacs": _clip(target.pacs),
            "study": _clip(uids.get("study")),
            "series": _clip(uids.get("series")),
            "instance": _clip(uids.get("instance")),
            "status": status,
            "outcome": outcome,
            "bytes_sent": exchange.sent,
            "bytes_received": exchange.received,
            "duration_ms": round(seconds * 1000, 1),
        }
        forwarded = _header(scope, b"x-forwarded-for")
        if forwarded:  # as the proxy said it: the peer address above is the proxy's
            event["forwarded_for"] = _clip(forwarded)
        if target.action == "query":
            event["query"] = _query(scope.get("query_string", b""))
        elif target.action == "store":
            stored = sorted({uid.decode() for uid in _STORED_STUDY.findall(exchange.response)})
            event["stored_studies"] = stored
            if event["study"] is None and len(stored) == 1:
                event["study"] = stored[0]
        return event

    def _who(self, scope: Scope, status: int) -> tuple[str, str]:
        """The principal, never a credential: an OIDC ``sub``, or an API key's id (a hash)."""
        principal = scope.get("auth")
        if isinstance(principal, dict):
            return str(principal.get("subject")), str(principal.get("method"))
        if self.auth_enabled and status in (401, 403):
            return "unauthenticated", "none"
        return "anonymous", "none"


def admin_event(scope: Scope, *, action: str, target: str, outcome: str, message: str,
                pacs: str | None = None, study: str | None = None) -> dict[str, object]:
    """The audit event of an administrator's action (``action``: echo, cancel, purge) on
    ``target`` (a node, a retrieve id, a study), with its ``outcome`` (success, failure,
    refused) and the message the administrator was given."""
    principal = scope.get("auth")
    who, how = ((str(principal.get("subject")), str(principal.get("method")))
                if isinstance(principal, dict) else ("anonymous", "none"))
    return {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "request_id": REQUEST_ID.get(),
        "type": "admin",
        "who": who,
        "auth": how,
        "client": scope["client"][0] if scope.get("client") else None,
        "action": action,
        "method": scope.get("method"),
        "route": _clip(scope.get("path")),
        "target": _clip(target),
        "pacs": _clip(pacs),
        "study": _clip(study),
        "outcome": outcome,
        "message": _clip(message),
    }


def _action(method: str, template: str) -> str:
    if method == "POST":
        return "store"
    # A collection (.../studies, .../series, .../instances) is searched; anything else is read.
    return "query" if template.rsplit("/", 1)[-1] in _COLLECTIONS else "retrieve"


def _query(query_string: bytes) -> dict[str, str | list[str]]:
    """The query parameters: this is the audit trail, so patient names belong here."""
    params: dict[str, str | list[str]] = {}
    for key, value in parse_qsl(query_string.decode("utf-8", "replace"), keep_blank_values=True):
        key, value = _clip(key) or "", _clip(value) or ""
        known = params.get(key)
        if known is None:
            params[key] = value
        elif isinstance(known, list):
            known.append(value)
        else:
            params[key] = [known, value]
    return params


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _clip(value: str | None) -> str | None:
    if value is None or len(value) <= _MAX_VALUE:
        return value
    return value[:_MAX_VALUE] + "..."
