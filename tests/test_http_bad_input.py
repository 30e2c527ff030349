"""Hostile or broken requests against a real uvicorn: a short 4xx, never a 500 or a hang.

The PACS behind the gateway is down on purpose: every request here must be
refused before it would reach a PACS (which would answer 503).
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from dicomweb_gw.http.middleware import MAX_HEADER_BYTES, MAX_URI_BYTES
from dicomweb_gw.settings import PacsNode
from gateway_fixtures import RunningGateway, make_settings, running_gateway
from pacs_fixtures import free_port

TIMEOUT = 10.0  # a hang fails the test instead of stalling the suite
GOOD = "1.2.826.0.1.3680043.8.498.1"
LONG_UID = "1." + "2" * 70  # well-formed but over 64 characters
BAD_UIDS = ["..", "1.2/../3", "1.2%2F3", "1.2%5C3", "%2E%2E", "1.2%003", "1.2.3.", LONG_UID]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    node = PacsNode(name="down", host="127.0.0.1", port=free_port(), ae_title="DOWN",
                    retrieve="c-get", timeout=5)
    settings = make_settings((node,), store_port=free_port(),
                             tmp=tmp_path_factory.mktemp("bad-input"))
    with running_gateway(settings) as running:
        yield running


def _raw_get(gateway: RunningGateway, target: str) -> tuple[int, bytes]:
    """GET ``target`` exactly as written: httpx would resolve ``..`` before sending."""
    address = urlsplit(gateway.url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port,
                                            timeout=TIMEOUT)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _short_json_error(body: bytes) -> str:
    message = json.loads(body)["message"]
    assert isinstance(message, str)
    assert len(message) < 300
    return message


def test_oversized_header_is_431(gateway: RunningGateway) -> None:
    response = httpx.get(f"{gateway.dicomweb()}/studies", timeout=TIMEOUT,
                         headers={"X-Padding": "a" * 100_000})
    assert response.status_code == 431
    assert str(MAX_HEADER_BYTES) in _short_json_error(response.content)


def test_oversized_header_arriving_in_pieces_is_431(gateway: RunningGateway) -> None:
    """Over a real network (or under load) a big head arrives in several reads; h11's own
    16 KB buffer limit used to answer that with a reset or a bare 400, not our 431."""
    address = urlsplit(gateway.url)
    head = (f"GET /dicom-web/studies HTTP/1.1\r\nHost: {address.netloc}\r\n"
            f"X-Padding: {'a' * 100_000}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((address.hostname or "", address.port or 80),
                                  timeout=TIMEOUT) as sock:
        for start in range(0, len(head), 8192):
            sock.sendall(head[start:start + 8192])
            time.sleep(0.005)  # each piece is its own read on the server
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line.split()[1] == b"431", status_line
    assert str(MAX_HEADER_BYTES) in _short_json_error(rest.partition(b"\r\n\r\n")[2])


def test_large_but_acceptable_headers_pass(gateway: RunningGateway) -> None:
    # A fat OIDC token or a cookie jar of 20 KB is not an attack.
    response = httpx.get(f"{gateway.url}/healthz", timeout=TIMEOUT,
                         headers={"X-Padding": "a" * 20_000})
    assert response.status_code == 200


@pytest.mark.parametrize("size", [10_000, 100_000])
def test_oversized_query_string_is_414(gateway: RunningGateway, size: int) -> None:
    query = "&".join(f"PatientName=x{i}" for i in range(size // 14))
    status, body = _raw_get(gateway, f"/dicom-web/studies?{query}")  # httpx stops at 64 KB
    assert status == 414
    assert str(MAX_URI_BYTES) in _short_json_error(body)


def test_long_but_acceptable_query_reaches_the_gateway(gateway: RunningGateway) -> None:
    # 100 UIDs, as a viewer may list them: answered (by the down PACS's 503), not refused.
    uids = ",".join(f"{GOOD}.{i}" for i in range(100))
    response = httpx.get(f"{gateway.dicomweb()}/studies", params={"StudyInstanceUID": uids},
                         timeout=TIMEOUT)
    assert response.status_code == 503


RETRIEVE_TARGETS = [
    "/dicom-web/studies/{bad}",
    "/dicom-web/studies/{bad}/metadata",
    "/dicom-web/studies/{bad}/series",
    "/dicom-web/studies/{good}/series/{bad}",
    "/dicom-web/studies/{good}/series/{bad}/metadata",
    "/dicom-web/studies/{good}/series/{good}/instances/{bad}",
    "/dicom-web/studies/{good}/series/{good}/instances/{bad}/frames/1",
    "/dicom-web/studies/{good}/series/{good}/instances/{bad}/rendered",
    "/pacs/down/dicom-web/studies/{bad}/thumbnail",
    "/wado?requestType=WADO&studyUID={bad}&seriesUID={good}&objectUID={good}",
    "/wado?requestType=WADO&studyUID={good}&seriesUID={bad}&objectUID={good}",
    "/wado?requestType=WADO&studyUID={good}&seriesUID={good}&objectUID={bad}",
]


@pytest.mark.parametrize("bad", BAD_UIDS)
@pytest.mark.parametrize("template", RETRIEVE_TARGETS)
def test_invalid_uid_is_400_or_404(gateway: RunningGateway, template: str, bad: str) -> None:
    status, body = _raw_get(gateway, template.format(good=GOOD, bad=bad))
    # 400 is PS3.18's answer to an invalid UID; 404 when a decoded "/" makes the
    # path name no resource at all. Never the 503 of reaching the (down) PACS.
    assert status in (400, 404), body
    _short_json_error(body)


def test_invalid_uid_message_names_the_attribute(gateway: RunningGateway) -> None:
    status, body = _raw_get(gateway, f"/dicom-web/studies/{GOOD}/series/1.2.3./metadata")
    assert status == 400
    assert "SeriesInstanceUID '1.2.3.'" in _short_json_error(body)


def test_bulkdata_path_cannot_climb(gateway: RunningGateway) -> None:
    status, body = _raw_get(gateway, f"/dicom-web/studies/{GOOD}/series/{GOOD}/instances/"
                                     f"{GOOD}/bulkdata/..%2F..%2Fetc%2Fpasswd")
    assert status == 400
    _short_json_error(body)


def test_gateway_still_answers_afterwards(gateway: RunningGateway) -> None:
    assert httpx.get(f"{gateway.url}/healthz", timeout=TIMEOUT).status_code == 200
