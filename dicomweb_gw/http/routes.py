"""The URL space: ``/dicom-web`` for the default PACS, ``/pacs/{name}/dicom-web`` for each."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import Receive, Scope, Send

from dicomweb_gw.http.capabilities import capabilities_routes
from dicomweb_gw.http.endpoints import DicomWebApi, Services
from dicomweb_gw.http.wado_uri import wado_uri_route
from dicomweb_gw.pacs.protocol import PacsClient

__all__ = ["SharedPathRoute", "dicomweb_routes", "mount_point", "node_routes", "share_allow"]


class SharedPathRoute(Route):
    """A Route whose 405 names every method served at the request's path.

    Starlette answers a wrong method from the first route whose path matches,
    so ``PUT /studies`` said ``Allow: GET, HEAD`` although POST (STOW) is
    served there too; RFC 9110 15.5.6 wants the resource's methods.
    """

    neighbours: tuple[Route, ...] = ()

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            raise HTTPException(status_code=405, headers={"Allow": self.allowed(scope)})
        await super().handle(scope, receive, send)

    def allowed(self, scope: Scope) -> str:
        methods = set(self.methods or ())
        for route in self.neighbours:
            if route.methods and route.matches(scope)[0] is not Match.NONE:
                methods |= route.methods
        return ", ".join(sorted(methods))


def share_allow(routes: list[BaseRoute]) -> list[BaseRoute]:
    """``routes`` with each Route made a SharedPathRoute that sees the others."""
    shared = [SharedPathRoute(route.path, route.endpoint, methods=route.methods, name=route.name)
              if isinstance(route, Route) else route for route in routes]
    neighbours = tuple(route for route in shared if isinstance(route, Route))
    for route in neighbours:
        if isinstance(route, SharedPathRoute):
            route.neighbours = neighbours
    return shared


def mount_point(node_name: str | None) -> str:
    return "/dicom-web" if node_name is None else f"/pacs/{node_name}/dicom-web"


def dicomweb_routes(api: DicomWebApi) -> Mount:
    routes: list[BaseRoute] = [
        Route("/studies", api.search_studies, methods=["GET"]),
        Route("/series", api.search_series, methods=["GET"]),
        Route("/instances", api.search_instances, methods=["GET"]),
        Route("/studies/{study}", api.retrieve, methods=["GET"]),
        Route("/studies/{study}/series", api.search_series, methods=["GET"]),
        Route("/studies/{study}/instances", api.search_instances, methods=["GET"]),
        Route("/studies/{study}/series/{series}", api.retrieve, methods=["GET"]),
        Route("/studies/{study}/series/{series}/instances", api.search_instances,
              methods=["GET"]),
        Route("/studies/{study}/series/{series}/instances/{instance}", api.retrieve,
              methods=["GET"]),
        Route("/studies/{study}/metadata", api.metadata, methods=["GET"]),
        Route("/studies/{study}/series/{series}/metadata", api.metadata, methods=["GET"]),
        Route("/studies/{study}/series/{series}/instances/{instance}/metadata", api.metadata,
              methods=["GET"]),
        Route("/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
              api.frames, methods=["GET"]),
        Route("/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tags:path}",
              api.bulkdata, methods=["GET"]),
        Route("/studies", api.store, methods=["POST"]),
        Route("/studies/{study}", api.store, methods=["POST"]),
    ]
    instance = "/studies/{study}/series/{series}/instances/{instance}"
    for resource in ("/studies/{study}", "/studies/{study}/series/{series}", instance,
                     instance + "/frames/{frames}"):
        routes.append(Route(resource + "/rendered", api.rendered, methods=["GET"]))
        routes.append(Route(resource + "/thumbnail", api.thumbnail, methods=["GET"]))
    return Mount(api.prefix, routes=share_allow(routes))


def node_routes(mount: Mount, pacs: PacsClient, services: Services,
                node_name: str | None) -> list[BaseRoute]:
    """WADO-URI of a node and the capabilities of its DICOMweb base (described from ``mount``
    and the WADO-URI route); they go before ``mount``, which would take {base}/capabilities."""
    wado_uri = wado_uri_route(node_name, pacs, services)
    return [*capabilities_routes(mount, wado_uri, pacs.name), wado_uri]
