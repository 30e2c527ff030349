"""The capabilities resource (PS3.18 10.8 and Annex H): what a node's services answer.

``OPTIONS {base}`` (and ``GET {base}/capabilities``, which a browser can
open) returns a WADL document, ``application/vnd.sun.wadl+xml``; with
``Accept: application/json`` the same as a JSON summary. Both are built
from the route table that serves the requests, so they cannot drift from
it: every route is listed with its methods; the transaction names, media
types and query parameters come from TRANSACTIONS by endpoint name, and a
route whose endpoint has no entry there is still listed, just without them.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from dicomweb_gw import __version__
from dicomweb_gw.codecs.render import RENDERED_TYPES
from dicomweb_gw.dicomweb.dicomjson import dumps
from dicomweb_gw.errors import NotAcceptable
from dicomweb_gw.http.baseurl import base_url
from dicomweb_gw.http.negotiation import parse_accept
from dicomweb_gw.http.wado_uri import MEDIA_TYPES as WADO_URI_MEDIA_TYPES
from dicomweb_gw.http.wado_uri import QUERY_PARAMETERS as WADO_URI_PARAMETERS

__all__ = ["TRANSACTIONS", "WADL", "Transaction", "capabilities_routes"]

WADL = "application/vnd.sun.wadl+xml"
_WADL_NS = "http://wadl.dev.java.net/2009/02"
_JSON = "application/json"
_XML_TYPES = (WADL, "application/xml", "text/xml")


def _multipart(media_type: str) -> str:
    return f'multipart/related; type="{media_type}"'


@dataclass(frozen=True)
class Transaction:
    """What one endpoint is, in PS3.18's terms."""

    title: str
    media_types: tuple[str, ...]  # of the response
    query: tuple[str, ...] = ()
    request_media_types: tuple[str, ...] = ()  # of the request body


_SEARCH = ("attributeID", "includefield", "fuzzymatching", "limit", "offset")
#: Metadata and search results: DICOM JSON, or DICOM XML one data set per part.
_DICOM_MODEL_TYPES = ("application/dicom+json", _multipart("application/dicom+xml"))
_FRAME_TYPES = tuple(_multipart(t) for t in ("application/octet-stream", "image/jpeg",
                                              "image/jls", "image/jp2", "image/jphc",
                                              "image/dicom-rle"))
_CAPABILITIES = Transaction("Capabilities (PS3.18 10.8)", (WADL, _JSON), ("accept",))

#: Endpoint name -> transaction: DicomWebApi's methods, WadoUri's and our own.
TRANSACTIONS: dict[str, Transaction] = {
    "search_studies": Transaction("Search for studies (QIDO-RS, PS3.18 10.6)",
                                  _DICOM_MODEL_TYPES, _SEARCH),
    "search_series": Transaction("Search for series (QIDO-RS, PS3.18 10.6)",
                                 _DICOM_MODEL_TYPES, _SEARCH),
    "search_instances": Transaction("Search for instances (QIDO-RS, PS3.18 10.6)",
                                    _DICOM_MODEL_TYPES, _SEARCH),
    "retrieve": Transaction("Retrieve instances (WADO-RS, PS3.18 10.4)",
                            (_multipart("application/dicom"),), ("accept",)),
    "metadata": Transaction("Retrieve metadata (WADO-RS, PS3.18 10.4)",
                            _DICOM_MODEL_TYPES, ("accept",)),
    "frames": Transaction("Retrieve frames (WADO-RS, PS3.18 10.4)",
                          (*_FRAME_TYPES, "application/octet-stream"), ("accept",)),
    "bulkdata": Transaction("Retrieve bulk data (WADO-RS, PS3.18 10.4)",
                            (_multipart("application/octet-stream"),
                             "application/octet-stream"), ("accept",)),
    "rendered": Transaction("Retrieve rendered (WADO-RS, PS3.18 10.4)", RENDERED_TYPES,
                            ("accept", "viewport", "window", "quality")),
    "thumbnail": Transaction("Retrieve thumbnail (WADO-RS, PS3.18 10.4)", RENDERED_TYPES,
                             ("accept", "viewport", "window", "quality")),
    "store": Transaction("Store instances (STOW-RS, PS3.18 10.5)",
                         ("application/dicom+json",),
                         request_media_types=(_multipart("application/dicom"),)),
    "wado_uri": Transaction("Retrieve an object (WADO-URI, PS3.18 9)", WADO_URI_MEDIA_TYPES,
                            WADO_URI_PARAMETERS),
    "capabilities": _CAPABILITIES,
}


@dataclass
class _Resource:
    """One node of the path tree: its methods (name -> endpoint name) and children."""

    methods: dict[str, str] = field(default_factory=dict)
    children: dict[str, _Resource] = field(default_factory=dict)


@dataclass(frozen=True)
class _Service:
    name: str
    base_path: str  # where the paths below start, e.g. /pacs/orthanc/dicom-web
    tree: _Resource


def capabilities_routes(mount: Mount, wado_uri: Route | None, pacs_name: str) -> list[Route]:
    """OPTIONS on the DICOMweb base and GET {base}/capabilities; to be placed before ``mount``
    (which would otherwise take /capabilities)."""
    capabilities = Capabilities(pacs_name)
    own = [Route(mount.path, capabilities.capabilities, methods=["OPTIONS"]),
           Route(mount.path + "/", capabilities.capabilities, methods=["OPTIONS"]),
           Route(mount.path + "/capabilities", capabilities.capabilities, methods=["GET"])]
    capabilities.add("DICOMweb", mount.path, [*own, *mount.routes])
    if wado_uri is not None:
        capabilities.add("WADO-URI", "", [wado_uri])
    return own


class Capabilities:
    def __init__(self, pacs_name: str) -> None:
        self.pacs_name = pacs_name
        self._services: list[_Service] = []

    def add(self, name: str, base_path: str, routes: Iterable[BaseRoute]) -> None:
        """Describe ``routes``; paths under ``base_path`` are taken relative to it."""
        tree = _Resource()
        for route in routes:
            if not isinstance(route, Route):
                continue
            path = route.path.removeprefix(base_path) if base_path else route.path
            node = tree
            for segment in _segments(path):
                node = node.children.setdefault(segment, _Resource())
            for method in sorted((route.methods or set()) - {"HEAD"}):
                node.methods[method] = getattr(route.endpoint, "__name__", "")
        self._services.append(_Service(name, base_path, tree))

    async def capabilities(self, request: Request) -> Response:
        media_type = _negotiate(request.query_params.get("accept")
                                or request.headers.get("accept"))
        if media_type == _JSON:
            return Response(dumps(self.summary(request)), media_type=_JSON)
        return Response(self.wadl(request), media_type=media_type)

    def wadl(self, request: Request) -> bytes:
        root = ET.Element("application", {"xmlns": _WADL_NS,
                                          "xmlns:xsd": "http://www.w3.org/2001/XMLSchema"})
        ET.SubElement(root, "doc", {"title": f"dicomweb-gw {__version__}: DICOMweb services "
                                             f"of PACS '{self.pacs_name}'"})
        for service in self._services:
            resources = ET.SubElement(root, "resources",
                                      {"base": base_url(request, service.base_path) + "/"})
            ET.SubElement(resources, "doc", {"title": service.name})
            if service.tree.methods:
                _wadl_resource(resources, "/", service.tree)
            for segment, child in service.tree.children.items():
                _wadl_resource(resources, segment, child)
        ET.indent(root)
        document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
        return document

    def summary(self, request: Request) -> dict[str, object]:
        services = []
        for service in self._services:
            resources = [{"path": path or "/", "methods": [_method_summary(name, endpoint)
                                                           for name, endpoint in methods]}
                         for path, methods in _flatten(service.tree, "")]
            services.append({"name": service.name, "base": base_url(request, service.base_path),
                             "resources": resources})
        return {"application": "dicomweb-gw", "version": __version__, "pacs": self.pacs_name,
                "services": services}


def _segments(path: str) -> list[str]:
    """Path segments, route parameters as WADL templates: ``{tags:path}`` -> ``{tags}``."""
    return [re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", part) for part in path.split("/") if part]


def _wadl_resource(parent: ET.Element, segment: str, node: _Resource) -> None:
    resource = ET.SubElement(parent, "resource", {"path": segment})
    template = re.fullmatch(r"\{(\w+)\}", segment)
    if template:
        ET.SubElement(resource, "param", {"name": template.group(1), "style": "template",
                                          "type": "xsd:string", "required": "true"})
    for name, endpoint in node.methods.items():
        method = ET.SubElement(resource, "method", {"name": name})
        transaction = TRANSACTIONS.get(endpoint)
        if transaction is None:
            continue
        ET.SubElement(method, "doc", {"title": transaction.title})
        request = ET.SubElement(method, "request")
        for param in transaction.query:
            ET.SubElement(request, "param", {"name": param, "style": "query",
                                             "type": "xsd:string"})
        for media_type in transaction.request_media_types:
            ET.SubElement(request, "representation", {"mediaType": media_type})
        response = ET.SubElement(method, "response", {"status": "200"})
        for media_type in transaction.media_types:
            ET.SubElement(response, "representation", {"mediaType": media_type})
    for child_segment, child in node.children.items():
        _wadl_resource(resource, child_segment, child)


def _flatten(node: _Resource, path: str) -> list[tuple[str, list[tuple[str, str]]]]:
    found = [(path, list(node.methods.items()))] if node.methods else []
    for segment, child in node.children.items():
        found += _flatten(child, f"{path}/{segment}")
    return found


def _method_summary(name: str, endpoint: str) -> dict[str, object]:
    transaction = TRANSACTIONS.get(endpoint)
    if transaction is None:
        return {"method": name}
    summary: dict[str, object] = {"method": name, "transaction": transaction.title,
                                  "mediaTypes": list(transaction.media_types),
                                  "queryParameters": list(transaction.query)}
    if transaction.request_media_types:
        summary["requestMediaTypes"] = list(transaction.request_media_types)
    return summary


def _negotiate(accept: str | None) -> str:
    """WADL unless JSON is preferred; an XML type asked for labels the WADL so."""
    if not accept or not accept.strip():
        return WADL
    for media in parse_accept(accept):
        if media.essence in ("*/*", "application/*"):
            return WADL
        if media.essence in _XML_TYPES:
            return media.essence
        if media.essence == _JSON:
            return _JSON
    raise NotAcceptable(f"capabilities are available as {', '.join(_XML_TYPES)} or {_JSON}, "
                        f"not '{accept}'")
