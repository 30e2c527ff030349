"""The URL space's 405 answers: Allow names every method served at the path (RFC 9110 15.5.6).

The PACS behind the gateway is down on purpose: a 405 never reaches it.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from dicomweb_gw.settings import PacsNode
from gateway_fixtures import RunningGateway, make_settings, running_gateway
from pacs_fixtures import free_port

UID = "1.2.826.0.1.3680043.8.498.1"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    node = PacsNode(name="down", host="127.0.0.1", port=free_port(), ae_title="DOWN",
                    retrieve="c-get", timeout=5)
    settings = make_settings((node,), store_port=free_port(),
                             tmp=tmp_path_factory.mktemp("routes"))
    with running_gateway(settings) as running:
        yield running


def _allow(response: httpx.Response) -> set[str]:
    assert response.status_code == 405, response.text
    return {method.strip() for method in response.headers["allow"].split(",")}


@pytest.mark.parametrize("node", [None, "down"])
@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PUT", "/studies", {"GET", "HEAD", "POST"}),  # search and STOW
    ("DELETE", f"/studies/{UID}", {"GET", "HEAD", "POST"}),  # retrieve and STOW
    ("POST", f"/studies/{UID}/metadata", {"GET", "HEAD"}),
    ("POST", f"/studies/{UID}/series", {"GET", "HEAD"}),
])
def test_405_allow_lists_every_method_of_the_path(gateway: RunningGateway, node: str | None,
                                                  method: str, path: str,
                                                  allowed: set[str]) -> None:
    response = httpx.request(method, gateway.dicomweb(node) + path, timeout=10)
    assert _allow(response) == allowed
    assert method in response.json()["message"]
