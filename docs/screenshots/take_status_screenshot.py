"""Take the README's screenshot of the status page: ``docs/images/status-page.png``.

    .venv/bin/python docs/screenshots/take_status_screenshot.py [--out PATH]

What ``dicomweb-gw demo`` runs (the embedded demo PACS with its sample studies,
the gateway in front of it by C-MOVE), plus a second node, ``archive``, whose PACS
is not running, so the page shows a failing node beside a healthy one. Before the
picture: a few retrieves (the cache has studies) and a search on ``archive`` (a
failure). The picture is the page from the top down to the cache; the
configuration table below it is left out.

Needs Debian's ``chromium`` and the ``test`` extra (Playwright), as the end-to-end
tests do; everything stays on 127.0.0.1. The PNG is reduced to a 128-colour palette
so it stays small (the page is flat colours and text).
"""

from __future__ import annotations

import argparse
import io
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from PIL import Image
from playwright.sync_api import sync_playwright

from dicomweb_gw.app import Gateway, create_app
from dicomweb_gw.demo import DemoPacs, generate_sample_data
from dicomweb_gw.http.middleware import SERVER_HEAD_BUFFER
from dicomweb_gw.settings import PacsNode, Settings

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "images" / "status-page.png"
CHROMIUM = "/usr/bin/chromium"
# As tests/ohif_fixtures.py launches it: GPU-less, offline.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
WIDTH = 1280
MAX_BYTES = 300_000
AE_TITLE = "DICOMWEB_GW"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _gateway(settings: Settings) -> Iterator[str]:
    gateway = Gateway(settings)
    gateway.start()
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_app(gateway=gateway), host="127.0.0.1", port=port, log_level="warning",
        lifespan="on", h11_max_incomplete_event_size=SERVER_HEAD_BUFFER))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _traffic(base: str) -> None:
    """What an afternoon of use leaves on the page: cached studies and a failure."""
    with httpx.Client(base_url=base, timeout=120) as client:
        studies = client.get("/dicom-web/studies").json()
        for study in studies[:3]:
            uid = study["0020000D"]["Value"][0]
            response = client.get(f"/dicom-web/studies/{uid}",
                                  headers={"Accept": 'multipart/related; '
                                                     'type="application/dicom"'})
            response.raise_for_status()
        client.get("/pacs/archive/dicom-web/studies")  # fails: its PACS is down


def _shrink(png: bytes) -> bytes:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=128, method=Image.Quantize.FASTOCTREE).save(out, "PNG",
                                                                       optimize=True)
    return out.getvalue()


def take(out: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="status-screenshot-") as scratch:
        data = Path(scratch)
        store_port = _free_port()
        pacs = DemoPacs(data / "pacs", ae_title="DEMOPACS",
                        move_destinations={AE_TITLE: ("127.0.0.1", store_port)})
        pacs.add_files(generate_sample_data(data / "samples"))
        pacs.start()
        try:
            nodes = (PacsNode(name="demo", host="127.0.0.1", port=pacs.port,
                              ae_title="DEMOPACS", retrieve="c-move"),
                     PacsNode(name="archive", host="127.0.0.1", port=_free_port(),
                              ae_title="ARCHIVE", retrieve="c-move", timeout=3.0))
            settings = Settings(nodes=nodes, default_pacs="demo", ae_title=AE_TITLE,
                                store_port=store_port, store_host="127.0.0.1",
                                cache_dir=data / "cache", status_echo_interval=2.0)
            with _gateway(settings) as base:
                _traffic(base)
                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                         headless=True, args=CHROMIUM_ARGS)
                    try:
                        page = browser.new_page(viewport={"width": WIDTH, "height": 900})
                        page.goto(f"{base}/status")
                        # Both nodes echoed at least once (the page's redraw shows it):
                        # one green, one red.
                        page.wait_for_function(
                            "() => document.querySelectorAll('.echo-message').length === 2",
                            timeout=60_000)
                        box = page.locator("#cache").bounding_box()
                        assert box is not None
                        png = page.screenshot(full_page=True, clip={
                            "x": 0, "y": 0, "width": WIDTH,
                            "height": box["y"] + box["height"] + 16})
                    finally:
                        browser.close()
        finally:
            pacs.stop()
    small = _shrink(png)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(small)
    print(f"wrote {out} ({len(small)} bytes)")
    return 0 if len(small) <= MAX_BYTES else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    return take(parser.parse_args().out)


if __name__ == "__main__":
    raise SystemExit(main())
