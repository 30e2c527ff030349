"""End to end: OHIF plays a video, shows a PDF and overlays a SEG, through the gateway
(issue #18, part 4). Same origin, the gateway in front of Orthanc by C-GET.

Hooks used (OHIF 3.13.2):

* video: the ``<video>`` element cornerstone3D's video viewport puts in the page;
  its ``readyState``, ``error``, ``videoWidth`` and, once played, ``currentTime``.
* PDF: OHIF's PDF viewport is ``<object type="application/pdf" data=blob:...>``;
  the blob is read back in the page and must be the PDF.
* SEG: ``window.services.segmentationService.getSegmentations()`` (OHIF exposes
  its services on ``window``), after double-clicking the SEG's thumbnail
  (``[data-cy=study-browser-thumbnail-no-image]``, as OHIF's own
  ``tests/SEGHydration.spec.ts`` does) with ``disableConfirmationPrompts`` so it
  hydrates at once; and coloured pixels in the CT's canvas, which is grey alone.

Debian's Chromium plays H.264 in MP4; it has no HEVC or MPEG-2 decoder (what
``canPlayType`` says is saved as an artefact), so those are checked for bytes and
headers in tests/test_integration_media.py and not played here.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser

import media_corpus
from corpus import Corpus, StudyInfo
from gateway_fixtures import RunningGateway, make_settings, node_for, running_gateway
from ohif_fixtures import (
    OhifServer,
    ViewerPage,
    ensure_ohif_dist,
    launched_chromium,
    render_app_config,
    save_artifact,
    serving_ohif,
    viewer_page,
)
from pacs_fixtures import RunningPacs, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.pacs]


@pytest.fixture(scope="module")
def media_gateway(orthanc_pacs: RunningPacs,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    settings = make_settings((node_for(orthanc_pacs, "orthanc", "c-get"),),
                             store_port=free_port(), tmp=tmp_path_factory.mktemp("e2e-media"))
    with running_gateway(settings) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def media_ohif(media_gateway: RunningGateway) -> Iterator[OhifServer]:
    # Hydrate a SEG as soon as it is opened, without the "load this segmentation?" prompt;
    # and OHIF's own default ``singlepart: 'bulkdata,video'`` (its dist/app-config.js):
    # a video is then played from ``.../instances/I/rendered``, which the <video> element
    # fetches with ranges. (With ``singlepart: false``, as in test_e2e_ohif.py, OHIF
    # 3.13 fetches the video's bulk data but hands the viewport a Promise, not a URL.)
    config = render_app_config("/dicom-web").replace(
        "window.config = {", "window.config = {\n  disableConfirmationPrompts: true,", 1
    ).replace("singlepart: false,", "singlepart: 'bulkdata,video',", 1)
    assert "disableConfirmationPrompts" in config
    assert "singlepart: 'bulkdata,video'" in config
    with serving_ohif(ensure_ohif_dist(), config, upstream=media_gateway.url) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_chromium() as launched:
        yield launched


@pytest.fixture
def viewer(browser: Browser, request: pytest.FixtureRequest) -> Iterator[ViewerPage]:
    with viewer_page(browser) as page:
        yield page
        # What OHIF asked and what the page logged, whatever the outcome.
        log = [f"{r.status} {r.method} {r.url} {r.content_type}" for r in page.responses
               if "/dicom-web/" in r.url]
        save_artifact(f"{request.node.name}-log.txt", "\n".join(
            [*log, *page.failed, "--- console errors", *page.console_errors]))


def _open(server: OhifServer, viewer: ViewerPage, study: StudyInfo,
          series_uid: str | None = None) -> str:
    url = f"{server.url}/viewer?StudyInstanceUIDs={study.study_uid}"
    if series_uid is not None:
        url += f"&SeriesInstanceUIDs={series_uid}"
    viewer.page.goto(url)
    return f"{server.url}/dicom-web"


def _assert_no_problems(viewer: ViewerPage, root: str) -> None:
    viewer.settle(root)
    problems = viewer.problems(root)
    assert not problems, "DICOMweb requests that did not succeed:\n" + "\n".join(problems)


# cornerstone3D's VideoViewport keeps its <video> element out of the page and draws
# its frames on the viewport's canvas: found through the enabled element (OHIF puts
# cornerstone on window), or in the page for the newer render path that appends it.
_FIND_VIDEO = """(() => {
  for (const enabled of (window.cornerstone ? window.cornerstone.getEnabledElements() : [])) {
    const video = enabled.viewport && enabled.viewport.videoElement;
    if (video) return video;
  }
  return document.querySelector('video');
})()"""

_VIDEO_STATE = f"""() => {{
  const v = {_FIND_VIDEO};
  return v && {{readyState: v.readyState, error: v.error && v.error.code, src: v.currentSrc,
               width: v.videoWidth, height: v.videoHeight, time: v.currentTime,
               duration: v.duration}};
}}"""

_CODECS = """() => {
  const v = document.createElement('video');
  return Object.fromEntries([
    'video/mp4; codecs="avc1.42E01E"', 'video/mp4; codecs="hvc1.1.6.L93.B0"', 'video/mpeg',
  ].map(t => [t, v.canPlayType(t)]));
}"""


def test_video_plays(media_ohif: OhifServer, corpus: Corpus, viewer: ViewerPage) -> None:
    study = corpus.study("video")
    avc = study.series[list(media_corpus.VIDEOS).index("avc")]
    root = _open(media_ohif, viewer, study, avc.series_uid)
    page = viewer.page
    try:
        page.wait_for_function(
            f"() => {{ const v = {_FIND_VIDEO}; return v && (v.readyState >= 2 || v.error); }}",
            timeout=60_000)
    finally:
        viewer.screenshot("media-video")
        save_artifact("media-video-state.json", json.dumps(
            {"codecs": page.evaluate(_CODECS), "video": page.evaluate(_VIDEO_STATE)}, indent=2))
    state = page.evaluate(_VIDEO_STATE)
    assert state["error"] is None, state
    assert state["readyState"] >= 2, state
    assert (state["width"], state["height"]) == (160, 120), state
    assert state["duration"] == pytest.approx(3.0, abs=0.2), state
    # Played (muted: autoplay rules), the clock moves on.
    page.evaluate(f"() => {{ const v = {_FIND_VIDEO}; v.muted = true; return v.play(); }}")
    page.wait_for_function(f"() => {_FIND_VIDEO}.currentTime > 0.3", timeout=30_000)
    # And its frames reach the viewport's canvas.
    viewer.wait_for_image("media-video-canvas")
    _assert_no_problems(viewer, root)
    videos = [r for r in viewer.dicomweb(root) if r.url.endswith(
        f"/instances/{avc.instances[0].sop_instance_uid}/rendered")]
    assert videos, "the <video> element did not fetch the rendered video"
    assert {r.content_type for r in videos} == {"video/mp4"}
    assert {r.status for r in videos} <= {200, 206}


_PDF_OBJECT = """async () => {
  const o = document.querySelector('object[type="application/pdf"]');
  if (!o || !o.data) return null;
  const bytes = new Uint8Array(await (await fetch(o.data)).arrayBuffer());
  const box = o.getBoundingClientRect();
  return {head: String.fromCharCode(...bytes.slice(0, 8)), length: bytes.length,
          width: box.width, height: box.height, viewer: navigator.pdfViewerEnabled};
}"""


def test_pdf_displays(media_ohif: OhifServer, corpus: Corpus, viewer: ViewerPage) -> None:
    study = corpus.study("documents")
    root = _open(media_ohif, viewer, study, study.series[0].series_uid)
    page = viewer.page
    try:
        page.wait_for_function(
            "() => { const o = document.querySelector('object[type=\"application/pdf\"]');"
            " return o && o.data; }", timeout=60_000)
        page.wait_for_timeout(1000)  # let the PDF plugin draw, for the screenshot
    finally:
        viewer.screenshot("media-pdf")
    shown = page.evaluate(_PDF_OBJECT)
    save_artifact("media-pdf-object.json", json.dumps(shown, indent=2))
    assert shown is not None
    assert shown["head"] == "%PDF-1.4"
    assert shown["length"] == len(media_corpus.pdf_bytes())
    assert shown["width"] > 100, shown
    assert shown["height"] > 100, shown
    if shown["viewer"]:
        # With a PDF viewer the <object>'s fallback text is not shown.
        assert not page.get_by_text("No online PDF viewer installed").is_visible()
    _assert_no_problems(viewer, root)
    documents = [r for r in viewer.dicomweb(root) if r.url.endswith("/bulkdata/00420011")]
    assert documents, "OHIF did not fetch the PDF from its BulkDataURI"
    assert all(r.status == 200 and "multipart/related" in r.content_type for r in documents)


def _coloured_fraction(png: bytes) -> float:
    """Share of pixels whose channels differ: 0 for a greyscale CT, more with a labelmap."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    spread = pixels.max(axis=2) - pixels.min(axis=2)
    return float((spread > 12).mean())


def test_seg_overlays_the_ct(media_ohif: OhifServer, corpus: Corpus,
                             viewer: ViewerPage) -> None:
    study = corpus.study("seg_ct")
    root = _open(media_ohif, viewer, study)
    page = viewer.page
    ct_png, _ = viewer.wait_for_image("media-seg-ct")
    assert _coloured_fraction(ct_png) < 0.001
    thumbnail = page.locator('[data-cy="study-browser-thumbnail-no-image"]').filter(
        has_text="SEG")
    thumbnail.first.dblclick()
    try:
        page.wait_for_function(
            "() => (window.services.segmentationService.getSegmentations() || []).length > 0",
            timeout=60_000)
    finally:
        viewer.screenshot("media-seg")
    labels = page.evaluate(
        "() => window.services.segmentationService.getSegmentations().flatMap("
        "s => Object.values(s.segments || {}).filter(Boolean).map(x => x.label))")
    assert {"Sphere", "Box"} <= set(labels), labels
    # The labelmap is drawn over the CT: colour appears in the viewport.
    deadline_png = None
    for _ in range(60):
        deadline_png = viewer.canvas_png()
        if deadline_png is not None and _coloured_fraction(deadline_png) > 0.005:
            break
        page.wait_for_timeout(500)
    assert deadline_png is not None
    save_artifact("media-seg-canvas.png", deadline_png)
    assert _coloured_fraction(deadline_png) > 0.005
    _assert_no_problems(viewer, root)
    # OHIF's SEG loader fetches the SEG as a whole instance (multipart application/dicom).
    seg = study.series[1].instances[0]
    loads = [r for r in viewer.dicomweb(root) if r.url.endswith(seg.sop_instance_uid)]
    assert loads, "OHIF did not load the SEG instance"
    assert all('type="application/dicom"' in r.content_type for r in loads)

