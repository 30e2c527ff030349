"""The OpenAPI document: valid, one source of truth, and every route in it (and only those).

``openapi/openapi.yaml`` is canonical; ``dicomweb_gw/http/openapi.json`` is its
packaged JSON rendering (``openapi/build.py``), served at ``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route

from dicomweb_gw.app import create_app
from dicomweb_gw.http.openapi import openapi_document
from dicomweb_gw.settings import PacsNode, Settings

ROOT = Path(__file__).resolve().parent.parent
SPEC_YAML = ROOT / "openapi" / "openapi.yaml"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
NODES = ("main", "research")


def load_spec() -> dict[str, Any]:
    with SPEC_YAML.open(encoding="utf-8") as stream:
        document = yaml.safe_load(stream)
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Starlette:
    """Built, never started: the routes are all that is looked at (no PACS needed)."""
    nodes = tuple(PacsNode(name=name, host="127.0.0.1", port=1, ae_title="NOWHERE")
                  for name in NODES)
    settings = Settings(nodes=nodes, default_pacs=NODES[0],
                        cache_dir=tmp_path_factory.mktemp("openapi") / "cache")
    return create_app(settings)


def test_spec_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1.")
    validate(spec)


def test_packaged_copy_equals_the_canonical_yaml(spec: dict[str, Any]) -> None:
    assert json.loads(openapi_document()) == spec, "run: python openapi/build.py"
    check = subprocess.run([sys.executable, str(ROOT / "openapi" / "build.py"), "--check"],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr


def test_served_document_equals_the_canonical_yaml(app: Starlette,
                                                  spec: dict[str, Any]) -> None:
    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return await client.get("/openapi.json")

    response = asyncio.run(fetch())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == spec


def _app_operations(routes: list[BaseRoute], prefix: str = "") -> set[tuple[str, str]]:
    operations: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, Mount):
            operations |= _app_operations(list(route.routes), prefix + route.path)
        elif isinstance(route, Route):
            path = prefix + route.path
            # One route per configured node: the spec has the {pacs} template instead.
            path = re.sub(rf"^/pacs/({'|'.join(NODES)})/", "/pacs/{pacs}/", path)
            path = re.sub(r"\{(\w+):\w+\}", r"{\1}", path)  # {tags:path} -> {tags}
            # Starlette answers HEAD for every GET route by itself.
            operations |= {(path, method.lower()) for method in route.methods or ()
                           if method != "HEAD"}
    return operations


def _spec_operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in spec["paths"].items()
            for method in item if method in HTTP_METHODS}


def test_every_route_is_in_the_spec_and_vice_versa(app: Starlette,
                                                  spec: dict[str, Any]) -> None:
    in_app = _app_operations(list(app.routes))
    in_spec = _spec_operations(spec)
    assert sorted(in_app - in_spec) == [], "routes missing from openapi/openapi.yaml"
    assert sorted(in_spec - in_app) == [], "operations in the spec that the app lacks"


def test_every_path_parameter_is_declared(spec: dict[str, Any]) -> None:
    """The validator checks this too; here the message names the operation."""
    components = spec["components"]["parameters"]

    def names(parameters: list[dict[str, Any]]) -> set[str]:
        resolved = [components[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
                    for p in parameters]
        return {p["name"] for p in resolved if p["in"] == "path"}

    for path, item in spec["paths"].items():
        templated = set(re.findall(r"\{(\w+)\}", path))
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            declared = names(item.get("parameters", [])) | names(
                operation.get("parameters", []))
            assert declared == templated, f"{method.upper()} {path}"


def test_every_pacs_operation_documents_json_errors(spec: dict[str, Any]) -> None:
    """Operations that reach a PACS document 502/503/504 with the JSON error body."""
    error = {"$ref": "#/components/schemas/Error"}
    for path, item in spec["paths"].items():
        if "dicom-web/" not in path and not path.endswith("/wado"):
            continue
        if path.endswith(("/capabilities", "dicom-web/")):
            continue
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            for status in ("400", "404", "502", "503", "504"):
                response = operation["responses"].get(status)
                assert response is not None, f"{method.upper()} {path} lacks {status}"
                name = response["$ref"].rsplit("/", 1)[1]
                body = spec["components"]["responses"][name]["content"]["application/json"]
                assert body["schema"] == error


def test_metadata_and_search_offer_dicom_xml(spec: dict[str, Any]) -> None:
    """PS3.18 10.4.4 and 10.6.3: multipart DICOM XML is required beside DICOM JSON."""
    xml = 'multipart/related; type="application/dicom+xml"'
    paths = [path for path in spec["paths"]
             if path.endswith(("/metadata", "/studies", "/series", "/instances"))]
    assert len(paths) == 2 * (3 + 6)  # /dicom-web and /pacs/{pacs}/dicom-web: metadata, QIDO
    for path in paths:
        content = spec["paths"][path]["get"]["responses"]["200"]["content"]
        assert {"application/dicom+json", xml} <= set(content), path
        single = path.endswith("{instance}/metadata")
        assert ("application/dicom+xml" in content) is single, path
