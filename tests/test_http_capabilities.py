"""The capabilities resource (PS3.18 10.8, Annex H): WADL and JSON, from the route table."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import httpx
import pytest
from starlette.routing import Mount, Route

from gateway_fixtures import RunningGateway

pytestmark = pytest.mark.pacs

NS = {"wadl": "http://wadl.dev.java.net/2009/02"}
WADL = "application/vnd.sun.wadl+xml"


def _wadl_methods(resources: ET.Element) -> set[tuple[str, str]]:
    """(path, method) for every method in the document, paths joined from the nesting."""
    found: set[tuple[str, str]] = set()

    def walk(element: ET.Element, path: str) -> None:
        for resource in element.findall("wadl:resource", NS):
            segment = resource.get("path", "").strip("/")
            here = f"{path}/{segment}" if segment else path
            for method in resource.findall("wadl:method", NS):
                found.add((here or "/", method.get("name", "")))
            walk(resource, here)

    walk(resources, "")
    return found


def _served(gateway: RunningGateway, prefix: str) -> set[tuple[str, str]]:
    """(path, method) the app really routes under ``prefix``, as WADL writes templates."""
    mount = next(r for r in gateway.app.routes if isinstance(r, Mount) and r.path == prefix)
    served = set()
    for route in mount.routes:
        assert isinstance(route, Route)
        for method in (route.methods or set()) - {"HEAD"}:
            served.add((route.path.replace(":path}", "}"), method))
    return served


@pytest.mark.parametrize("node", [None, "orthanc"])
def test_options_answers_wadl_listing_every_route(gateway: RunningGateway,
                                                  node: str | None) -> None:
    base = gateway.dicomweb(node)
    response = httpx.options(base, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == WADL
    root = ET.fromstring(response.content)
    assert root.tag == "{http://wadl.dev.java.net/2009/02}application"
    assert f"PACS '{node or gateway.settings.default_pacs}'" in root.find("wadl:doc", NS).get(
        "title", "")
    dicomweb, wado_uri = root.findall("wadl:resources", NS)
    assert dicomweb.get("base") == base + "/"
    methods = _wadl_methods(dicomweb)
    prefix = base.removeprefix(gateway.url)
    assert _served(gateway, prefix) <= methods  # nothing served goes undescribed
    assert {("/", "OPTIONS"), ("/capabilities", "GET")} <= methods
    wado_path = "/wado" if node is None else f"/pacs/{node}/wado"
    assert _wadl_methods(wado_uri) == {(wado_path, "GET")}


def test_wadl_describes_parameters_and_media_types(gateway: RunningGateway) -> None:
    root = ET.fromstring(httpx.options(gateway.dicomweb(), timeout=10).content)
    studies = root.find("wadl:resources/wadl:resource[@path='studies']", NS)
    assert studies is not None
    search = studies.find("wadl:method[@name='GET']", NS)
    assert "QIDO-RS" in search.find("wadl:doc", NS).get("title", "")
    params = {p.get("name") for p in search.findall("wadl:request/wadl:param", NS)}
    assert {"limit", "offset", "includefield"} <= params
    study = studies.find("wadl:resource[@path='{study}']", NS)
    template = study.find("wadl:param", NS)
    assert (template.get("name"), template.get("style")) == ("study", "template")
    rendered = root.find(".//wadl:resource[@path='rendered']/wadl:method", NS)
    types = {r.get("mediaType") for r in rendered.findall(".//wadl:representation", NS)}
    assert types == {"image/jpeg", "image/png", "image/gif"}
    wado = root.find(".//wadl:resource[@path='wado']/wadl:method", NS)
    wado_params = {p.get("name") for p in wado.findall("wadl:request/wadl:param", NS)}
    assert {"requestType", "studyUID", "seriesUID", "objectUID", "contentType",
            "anonymize", "frameNumber", "region"} <= wado_params


def test_json_summary(gateway: RunningGateway) -> None:
    response = httpx.get(f"{gateway.dicomweb('orthanc')}/capabilities",
                         headers={"Accept": "application/json"}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["pacs"] == "orthanc"
    dicomweb, wado_uri = body["services"]
    assert dicomweb["base"] == gateway.dicomweb("orthanc")
    by_path = {r["path"]: r["methods"] for r in dicomweb["resources"]}
    store = next(m for m in by_path["/studies"] if m["method"] == "POST")
    assert "STOW-RS" in store["transaction"]
    assert store["requestMediaTypes"] == ['multipart/related; type="application/dicom"']
    frames = by_path["/studies/{study}/series/{series}/instances/{instance}/frames/{frames}"]
    assert "application/octet-stream" in frames[0]["mediaTypes"]
    assert wado_uri["name"] == "WADO-URI"
    (resource,) = wado_uri["resources"]
    assert resource["path"] == "/pacs/orthanc/wado"
    assert "application/dicom" in resource["methods"][0]["mediaTypes"]


def test_a_browser_gets_xml_and_the_accept_parameter_wins(gateway: RunningGateway) -> None:
    url = f"{gateway.dicomweb()}/capabilities"
    browser = httpx.get(url, headers={"Accept": "text/html,application/xml;q=0.9,*/*;q=0.8"},
                        timeout=10)
    assert browser.headers["content-type"] == "application/xml"
    ET.fromstring(browser.content)
    as_json = httpx.get(url + "?accept=application/json", headers={"Accept": WADL}, timeout=10)
    assert as_json.json()["application"] == "dicomweb-gw"


def test_base_follows_forwarded_headers(gateway: RunningGateway) -> None:
    response = httpx.options(gateway.dicomweb(), timeout=10, headers={
        "X-Forwarded-Proto": "https", "X-Forwarded-Host": "pacs.example.org"})
    resources = ET.fromstring(response.content).find("wadl:resources", NS)
    assert resources.get("base") == "https://pacs.example.org/dicom-web/"


def test_unacceptable_media_type(gateway: RunningGateway) -> None:
    response = httpx.options(gateway.dicomweb(), headers={"Accept": "text/html"}, timeout=10)
    assert response.status_code == 406
    assert "application/vnd.sun.wadl+xml" in response.json()["message"]
