"""Time to first image in the real OHIF, measured by the page itself.

An init script runs in every new document before OHIF's own scripts:

* it raises the Resource Timing buffer (Chromium keeps 250 entries by default;
  opening a 100-instance study makes more requests than that);
* every 50 ms it copies each viewport canvas onto a scratch canvas (never
  touching the viewport canvas's own context, which cornerstone owns) and
  looks for a pixel whose red, green or blue is not zero. The first time one
  shows, it keeps ``performance.now()``: milliseconds since the navigation
  started (the document's time origin), on the browser's clock, so neither
  Playwright's round trips nor Python's polling add to it. It is at most one
  poll late.

Requests and bytes come from the Resource Timing entries under the path's
DICOMweb root: those that ended before the first image (what showing it took)
and, once OHIF has gone quiet, all of them (its prefetch of the rest of the
series included). Playwright's own count of responses is kept next to them as
a cross-check (Resource Timing misses requests made from workers).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from ohif_paths import ViewerPath
from playwright.sync_api import Browser
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from ohif_fixtures import ViewerPage, viewer_page
from pacs_fixtures import LOOPBACK

POLL_MS = 50
OPEN_TIMEOUT = 120.0  # seconds, to the first image and again to quiet

PROBE_SCRIPT = """(() => {
  if (window.top !== window) return;
  performance.setResourceTimingBufferSize(100000);
  let scratch = null;
  const timer = setInterval(() => {
    let canvases = document.querySelectorAll(
      '[data-cy="viewport-pane"] canvas.cornerstone-canvas');
    if (!canvases.length) canvases = document.querySelectorAll('canvas.cornerstone-canvas');
    for (const canvas of canvases) {
      const width = canvas.width, height = canvas.height;
      if (!width || !height) continue;
      if (!scratch || scratch.width !== width || scratch.height !== height) {
        scratch = new OffscreenCanvas(width, height);
      }
      const context = scratch.getContext('2d', { willReadFrequently: true });
      context.clearRect(0, 0, width, height);
      context.drawImage(canvas, 0, 0);
      // RGBA bytes read as little-endian words: the low 24 bits are R, G and B.
      const pixels = new Uint32Array(context.getImageData(0, 0, width, height).data.buffer);
      for (let i = 0; i < pixels.length; i++) {
        if (pixels[i] & 0x00ffffff) {
          window.__dwgFirstImage = performance.now();
          clearInterval(timer);
          return;
        }
      }
    }
  }, POLL_MS);
})();""".replace("POLL_MS", str(POLL_MS))

_ENTRIES_SCRIPT = """root => performance.getEntriesByType('resource')
  .filter(entry => entry.name.startsWith(root))
  .map(entry => [entry.name, entry.startTime, entry.responseEnd, entry.encodedBodySize])"""


@dataclass(frozen=True)
class Opening:
    """One study opened in a fresh browser context (times in s from navigation start)."""

    first_image_s: float
    # When OHIF made its first DICOMweb request: its start-up, the same on every path.
    first_request_s: float | None
    requests: int  # DICOMweb requests that ended before the first image
    mb: float  # their response bodies, MB (1e6 bytes)
    metadata_s: float | None  # when the last series metadata before the first image ended
    first_frame_s: float | None  # when OHIF asked for its first frame
    total_requests: int  # every DICOMweb request once OHIF was quiet
    total_mb: float
    responses_seen: int  # DICOMweb responses as Playwright saw them (cross-check)
    errors: list[str]  # DICOMweb requests that did not succeed, in words
    purged: int | None  # instances the gateway's purge forgot (None: nothing purged)


def open_study(browser: Browser, path: ViewerPath, study_uid: str, *, cold: bool,
               name: str) -> Opening:
    """Open ``study_uid`` in OHIF through ``path``; cold: purge the gateway's cache first.

    Waits until OHIF is quiet before returning, so the next opening starts on
    an idle machine. Fails (with a screenshot in test-artifacts/ohif/) if no
    image showed, or if a request left the OHIF server's origin: it would have
    bypassed the path being measured. DICOMweb requests that did not succeed
    are kept in ``errors`` (and printed): the image showed all the same.
    """
    purged = None
    purge = path.purge_url(study_uid)
    if cold and purge is not None:
        response = httpx.delete(purge, timeout=30)
        response.raise_for_status()
        purged = int(response.json()["purged"])
    root = path.dicomweb
    with viewer_page(browser) as viewer:
        page = viewer.page
        page.add_init_script(PROBE_SCRIPT)
        page.goto(path.viewer_url(study_uid), wait_until="commit")
        try:
            handle = page.wait_for_function("() => window.__dwgFirstImage", polling=100,
                                            timeout=OPEN_TIMEOUT * 1000)
        except PlaywrightTimeout:
            viewer.screenshot(name)
            raise AssertionError(f"{name}: no image in the viewport after {OPEN_TIMEOUT:.0f} s"
                                 f"; {_summary(viewer, root)}") from None
        first_ms = float(handle.json_value())
        viewer.settle(root, timeout=OPEN_TIMEOUT)
        problems = viewer.problems(root)
        # Requests to another loopback origin (other hosts are blocked anyway).
        urls = [r.url for r in viewer.responses] + [f.split(" ", 2)[1] for f in viewer.failed]
        outside = [url for url in urls
                   if url.startswith(f"http://{LOOPBACK}:") and not url.startswith(f"{path.ohif}/")]
        if outside:
            viewer.screenshot(name)
            raise AssertionError(f"{name}: requests outside the measured path: {outside[:5]}")
        if problems:  # kept and shown, not fatal: the image did show
            print(f"\n{name}: {len(problems)} DICOMweb requests did not succeed: {problems[:3]}")
        entries = page.evaluate(_ENTRIES_SCRIPT, f"{root}/")
        seen = len(viewer.dicomweb(f"{root}/"))
    before = [entry for entry in entries if entry[2] <= first_ms]
    metadata = [end for url, _, end, _ in before if url.split("?")[0].endswith("/metadata")]
    frames = [start for url, start, _, _ in entries if "/frames/" in url]
    return Opening(
        first_image_s=first_ms / 1000,
        first_request_s=min(entry[1] for entry in entries) / 1000 if entries else None,
        requests=len(before),
        mb=sum(entry[3] for entry in before) / 1e6,
        metadata_s=max(metadata) / 1000 if metadata else None,
        first_frame_s=min(frames) / 1000 if frames else None,
        total_requests=len(entries),
        total_mb=sum(entry[3] for entry in entries) / 1e6,
        responses_seen=seen,
        errors=problems,
        purged=purged,
    )


def _summary(viewer: ViewerPage, root: str) -> str:
    errors = [f"{r.status} {r.method} {r.url}" for r in viewer.responses if r.status >= 400]
    return (f"{len(viewer.dicomweb(root))} DICOMweb responses, {len(errors)} errors "
            f"{errors[:3]}, {len(viewer.failed)} failed {viewer.failed[:3]}, console errors "
            f"{viewer.console_errors[:3]}")
