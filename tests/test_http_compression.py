"""Compression (#18 part 3): which answers, which coding, streamed, and never pixel data."""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import anyio
import brotli  # type: ignore[import-untyped]
import httpx
import pytest
import uvicorn
from backports import zstd
from starlette.types import Receive, Scope, Send

from demo_gateway import DemoSetup, demo_gateway
from pacs_fixtures import free_port
from test_http_http_caching import Study, instance_url, make_study

DICOM_JSON = "application/dicom+json"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    return make_study(tmp_path_factory.mktemp("compression") / "study", 3)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, study: Study) -> Iterator[DemoSetup]:
    with demo_gateway(tmp_path_factory.mktemp("gateway"), study.files) as running:
        yield running


def raw_get(url: str, **headers: str) -> tuple[httpx.Headers, bytes]:
    """Status 200, the headers and the body as sent (not decoded)."""
    with httpx.Client(timeout=30) as client, client.stream("GET", url, headers=headers) as r:
        assert r.status_code == 200, r.read()
        return r.headers, b"".join(r.iter_raw())


def decode(coding: str, body: bytes) -> bytes:
    if coding == "gzip":
        return zlib.decompress(body, 31)
    if coding == "br":
        return bytes(brotli.decompress(body))
    return zstd.decompress(body)


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
def test_metadata_is_compressed_in_the_offered_coding(setup: DemoSetup, study: Study,
                                                      coding: str) -> None:
    url = f"{setup.gateway.dicomweb()}/studies/{study.study_uid}/metadata"
    plain_headers, plain = raw_get(url, accept=DICOM_JSON, **{"accept-encoding": "identity"})
    headers, body = raw_get(url, accept=DICOM_JSON, **{"accept-encoding": coding})
    assert headers["content-encoding"] == coding
    assert "content-encoding" not in plain_headers
    assert "Accept-Encoding" in headers["vary"]
    assert "Accept-Encoding" in plain_headers["vary"]
    assert decode(coding, body) == plain
    assert len(body) * 3 < len(plain)


@pytest.mark.parametrize(("offered", "chosen"), [
    ("gzip, deflate, br, zstd", "zstd"),  # Chrome's: our preference on a tie
    ("gzip, deflate, br", "br"),
    ("gzip;q=1.0, br;q=0.5, zstd;q=0.1", "gzip"),  # q-values win over our preference
    ("*", "zstd"),
    ("br;q=0, zstd;q=0, *;q=0.5", "gzip"),
    ("deflate", None),
    ("gzip;q=0", None),
])
def test_q_values_choose_the_coding(setup: DemoSetup, study: Study, offered: str,
                                    chosen: str | None) -> None:
    url = instance_url(setup, study) + "/metadata"
    headers, _ = raw_get(url, accept=DICOM_JSON, **{"accept-encoding": offered})
    assert headers.get("content-encoding") == chosen


@pytest.mark.parametrize(("suffix", "accept"), [
    ("/frames/1", "application/octet-stream"),
    ("/frames/1", 'multipart/related; type="application/octet-stream"'),
    ("/rendered", "image/png"),
    ("", 'multipart/related; type="application/dicom"'),
    ("/bulkdata/7fe00010", "application/octet-stream"),
])
def test_pixel_and_bulk_data_are_never_compressed(setup: DemoSetup, study: Study, suffix: str,
                                                  accept: str) -> None:
    headers, _ = raw_get(instance_url(setup, study) + suffix, accept=accept,
                         **{"accept-encoding": "gzip, br, zstd"})
    assert "content-encoding" not in headers


def test_dicom_xml_and_qido_are_compressed(setup: DemoSetup, study: Study) -> None:
    base = setup.gateway.dicomweb()
    xml, _ = raw_get(f"{base}/studies/{study.study_uid}/metadata",
                     accept='multipart/related; type="application/dicom+xml"',
                     **{"accept-encoding": "gzip"})
    assert xml["content-encoding"] == "gzip"
    qido, body = raw_get(f"{base}/studies/{study.study_uid}/instances",
                         **{"accept-encoding": "gzip"})
    assert qido["content-encoding"] == "gzip"
    assert b"00080018" in decode("gzip", body)


def test_small_answers_are_sent_as_they_are(setup: DemoSetup, study: Study) -> None:
    headers, body = raw_get(
        f"{setup.gateway.dicomweb()}/studies?StudyInstanceUID={study.study_uid}",
        accept=DICOM_JSON, **{"accept-encoding": "gzip"})
    assert len(body) < 1024
    assert "content-encoding" not in headers


def test_compression_off(tmp_path: Path, study: Study) -> None:
    with demo_gateway(tmp_path, study.files, compression="off") as running:
        headers, _ = raw_get(f"{running.gateway.dicomweb()}/studies/{study.study_uid}/metadata",
                             accept=DICOM_JSON, **{"accept-encoding": "gzip"})
        assert "content-encoding" not in headers


# --------------------------------------------------------------------------- streaming


class GatedApp:
    """Sends a first JSON chunk, then waits for the client to have decoded it (or 20 s)."""

    FIRST = b'[{"00100010":{"vr":"PN","Value":[{"Alphabetic":"First^Chunk"}]}}' + b" " * 4000

    def __init__(self) -> None:
        self.client_saw_first = threading.Event()
        self.waited_for_client = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] in ("http", "lifespan")
        if scope["type"] == "lifespan":
            message = await receive()
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/dicom+json")]})
        await send({"type": "http.response.body", "body": self.FIRST, "more_body": True})
        # In a thread, as the event is set by the test's (synchronous) client.
        self.waited_for_client = await anyio.to_thread.run_sync(self.client_saw_first.wait, 20)
        await send({"type": "http.response.body", "body": b",{}]" + b" " * 4000})


def test_compressed_first_chunk_arrives_before_the_answer_is_finished() -> None:
    from dicomweb_gw.http.compression import Compression

    app = GatedApp()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Compression(app), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        inflate = zlib.decompressobj(31)
        seen = b""
        with httpx.stream("GET", f"http://127.0.0.1:{port}/",
                          headers={"Accept-Encoding": "gzip"}, timeout=30) as response:
            assert response.headers["content-encoding"] == "gzip"
            assert "content-length" not in response.headers
            for raw in response.iter_raw():
                seen += inflate.decompress(raw)
                if seen.startswith(GatedApp.FIRST):
                    app.client_saw_first.set()
        assert app.waited_for_client, "the first chunk was held back until the end"
        assert seen == GatedApp.FIRST + b",{}]" + b" " * 4000
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_choose_coding() -> None:
    from dicomweb_gw.http.compression import choose_coding, is_compressible

    assert choose_coding("gzip, br") == "br"
    assert choose_coding("x-gzip") == "gzip"
    assert choose_coding("identity") is None
    assert choose_coding("gzip;q=oops, br;q=0.1") == "br"
    assert is_compressible('multipart/related; type="application/dicom+xml"; boundary=x')
    assert is_compressible("multipart/related; type=application/dicom+xml; boundary=x")
    assert not is_compressible('multipart/related; type="application/dicom"; boundary=x')
    assert not is_compressible("application/octet-stream")
    assert not is_compressible("image/jpeg")
    assert is_compressible("application/dicom+json; charset=utf-8")
