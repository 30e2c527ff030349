"""End to end: the real OHIF viewer (``@ohif/app`` prebuilt) in headless Chromium,
talking to the gateway in front of Orthanc.

Same origin: OHIF's files and ``/dicom-web/*`` (forwarded to the gateway, as a
reverse proxy would) on one port. Cross origin: OHIF on another port with absolute
roots pointing at the gateway, which allows that origin (``cors_origins``).

Run alone with ``pytest -m e2e``. Screenshots, canvas captures and the request
log go to ``test-artifacts/ohif/``.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from corpus import Corpus, StudyInfo
from gateway_fixtures import RunningGateway, make_settings, node_for, running_gateway
from ohif_fixtures import (
    OhifServer,
    RecordedResponse,
    ViewerPage,
    ensure_ohif_dist,
    launched_chromium,
    render_app_config,
    request_shape,
    save_artifact,
    serving_ohif,
    viewer_page,
)
from pacs_fixtures import LOOPBACK, RunningPacs, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.pacs]

# CT, MR (stored Implicit VR), a JPEG colour secondary capture, a 120-frame JPEG
# ultrasound cine, and a losslessly compressed multi-frame MR (the frame's part
# Content-Type must name its transfer syntax, or OHIF shows black).
VIEWED = ["ct_small", "mr_implicit", "jpeg_colour", "us_multiframe_jpeg",
          "mr_multiframe_compressed"]
MULTIFRAME = "us_multiframe_jpeg"
TOKEN = "e2e-test-token"

# Every DICOMweb response OHIF got, per test, for the request log artefact.
_LOG: list[tuple[str, RecordedResponse]] = []


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ohif_dist() -> Path:
    return ensure_ohif_dist()


@pytest.fixture(scope="module")
def cross_origin_port() -> int:
    """Port of the OHIF served from another origin; the gateway must know it first."""
    return free_port()


@pytest.fixture(scope="module")
def e2e_gateway(orthanc_pacs: RunningPacs, cross_origin_port: int,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """The gateway in front of Orthanc (C-GET), allowing the cross-origin OHIF only."""
    node = node_for(orthanc_pacs, "orthanc", "c-get")
    settings = replace(
        make_settings((node,), store_port=free_port(), tmp=tmp_path_factory.mktemp("e2e")),
        cors_origins=(f"http://{LOOPBACK}:{cross_origin_port}",))
    with running_gateway(settings) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def same_origin_ohif(ohif_dist: Path, e2e_gateway: RunningGateway) -> Iterator[OhifServer]:
    with serving_ohif(ohif_dist, render_app_config("/dicom-web"),
                      upstream=e2e_gateway.url) as server:
        yield server


@pytest.fixture(scope="module")
def cross_origin_ohif(ohif_dist: Path, e2e_gateway: RunningGateway,
                      cross_origin_port: int) -> Iterator[OhifServer]:
    config = render_app_config(e2e_gateway.dicomweb(), thumbnails="thumbnail")
    with serving_ohif(ohif_dist, config, port=cross_origin_port) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_chromium() as launched:
        yield launched


@pytest.fixture
def viewer(browser: Browser, request: pytest.FixtureRequest) -> Iterator[ViewerPage]:
    with viewer_page(browser) as page:
        yield page
        # Kept for the request log, whatever the outcome.
        for response in page.responses:
            _LOG.append((request.node.name, response))
        if page.console_errors or page.blocked:
            save_artifact(f"{_safe(request.node.name)}-console.txt", "\n".join(
                [*page.console_errors, *(f"blocked: {u}" for u in page.blocked)]))


@pytest.fixture(scope="module", autouse=True)
def _request_log() -> Iterator[None]:
    """Write every DICOMweb request OHIF made, and their distinct shapes, as artefacts."""
    _LOG.clear()
    yield
    entries = []
    counts: Counter[str] = Counter()
    statuses: defaultdict[str, set[int]] = defaultdict(set)
    types: defaultdict[str, set[str]] = defaultdict(set)
    for test, response in _LOG:
        root = _dicomweb_root(response.url)
        if root is None:
            continue
        entries.append({"test": test, "method": response.method, "url": response.url,
                        "status": response.status, "content_type": response.content_type})
        shape = f"{response.method} {request_shape(response.url, root)}"
        counts[shape] += 1
        statuses[shape].add(response.status)
        types[shape].add(response.content_type.split(";")[0])
    shapes = {shape: {"count": count, "statuses": sorted(statuses[shape]),
                      "content_types": sorted(types[shape])}
              for shape, count in sorted(counts.items())}
    save_artifact("requests.json", json.dumps(entries, indent=2))
    save_artifact("request-shapes.json", json.dumps(shapes, indent=2))


def _dicomweb_root(url: str) -> str | None:
    marker = "/dicom-web"
    index = url.find(marker + "/")
    return url[:index + len(marker)] if index >= 0 else None


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def _display_name(study: StudyInfo) -> str:
    """How OHIF's study list shows a PN: ``Family, Given``."""
    return study.patient_name.replace("^", ", ")


def _viewer_url(server: OhifServer, study: StudyInfo, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"StudyInstanceUIDs": study.study_uid,
                                                 **params}.items())
    return f"{server.url}/viewer?{query}"


def _assert_no_problems(viewer: ViewerPage, root: str) -> None:
    viewer.settle(root)
    problems = viewer.problems(root)
    assert not problems, "DICOMweb requests that did not succeed:\n" + "\n".join(problems)
    assert viewer.dicomweb(root), f"OHIF made no request under {root}"


# --------------------------------------------------------------------------- same origin


def test_study_list_shows_the_studies_and_filters_by_patient_name(
    same_origin_ohif: OhifServer, corpus: Corpus, viewer: ViewerPage,
) -> None:
    root = f"{same_origin_ohif.url}/dicom-web"
    page = viewer.page
    page.goto(f"{same_origin_ohif.url}/")
    rows = page.locator("tbody tr[aria-selected]")
    expected = sorted(_display_name(study) for study in corpus.studies)
    page.wait_for_function(
        "n => document.querySelectorAll('tbody tr[aria-selected]').length === n",
        arg=len(expected))
    names = sorted(text.strip() for text in rows.locator("td:first-child").all_inner_texts())
    viewer.screenshot("study-list")
    assert names == expected

    wanted = corpus.study("ct_small")
    with page.expect_response(lambda r: "PatientName=" in r.url) as filtered_response:
        page.locator("tr[data-filter-row] input").first.fill("Lestrade")
    assert filtered_response.value.status == 200
    page.wait_for_function(
        "() => document.querySelectorAll('tbody tr[aria-selected]').length === 1")
    viewer.screenshot("study-list-filtered")
    assert rows.locator("td:first-child").all_inner_texts() == [_display_name(wanted)]
    filtered = [r for r in viewer.dicomweb(root) if "PatientName=" in r.url]
    assert filtered, "no QIDO request with PatientName"
    assert "PatientName=*Lestrade*" in filtered[-1].url

    # And from the list into the viewer, as a user would.
    rows.first.click()
    page.get_by_role("button", name="Basic Viewer").click()
    page.wait_for_url("**/viewer?**")
    assert wanted.study_uid in page.url
    viewer.wait_for_image("from-list-ct_small")
    _assert_no_problems(viewer, root)


@pytest.mark.parametrize("label", VIEWED)
def test_study_opens_with_an_image(
    same_origin_ohif: OhifServer, corpus: Corpus, viewer: ViewerPage, label: str,
) -> None:
    root = f"{same_origin_ohif.url}/dicom-web"
    study = corpus.study(label)
    viewer.page.goto(_viewer_url(same_origin_ohif, study))
    _, fraction = viewer.wait_for_image(f"viewer-{label}")
    assert fraction > 0.02
    _assert_no_problems(viewer, root)
    # Metadata and pixels really went through the gateway.
    paths = [r.url for r in viewer.dicomweb(root)]
    assert any(p.endswith("/metadata") for p in paths)
    assert any("/frames/" in p for p in paths)


def test_scrolling_the_multiframe_instance_changes_the_image(
    same_origin_ohif: OhifServer, corpus: Corpus, viewer: ViewerPage,
) -> None:
    root = f"{same_origin_ohif.url}/dicom-web"
    study = corpus.study(MULTIFRAME)
    frames = study.instances[0].number_of_frames
    assert frames > 10
    page = viewer.page
    page.goto(_viewer_url(same_origin_ohif, study))
    first, _ = viewer.wait_for_image("multiframe-frame-1")
    # Let the prefetch finish: scrolling then only shows frames already decoded.
    viewer.settle(root)
    assert viewer.overlay().endswith(f"(1/{frames})"), viewer.overlay()

    pane = page.locator('[data-cy="viewport-pane"]').first
    box = pane.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    steps = 10
    for _ in range(steps):
        page.mouse.wheel(0, 120)
        page.wait_for_timeout(50)
    # "I: <InstanceNumber> (<frame>/<frames>)" in the bottom-right overlay.
    expected = f"({1 + steps}/{frames})"
    page.wait_for_function(
        "text => document.querySelector('[data-cy=\"viewport-overlay-bottom-right\"]')"
        ".innerText.includes(text)", arg=expected)
    scrolled, fraction = viewer.wait_for_image(f"multiframe-frame-{1 + steps}")
    assert fraction > 0.02
    assert scrolled != first, "the viewport shows the same pixels after scrolling"
    # Arrow keys page through frames too.
    page.keyboard.press("ArrowDown")
    page.wait_for_function(
        "text => document.querySelector('[data-cy=\"viewport-overlay-bottom-right\"]')"
        ".innerText.includes(text)", arg=f"({2 + steps}/{frames})")
    _assert_no_problems(viewer, root)
    frame_requests = {r.url for r in viewer.dicomweb(root) if "/frames/" in r.url}
    assert len(frame_requests) == frames, "OHIF fetches every frame of a cine, each 2xx"


# --------------------------------------------------------------------------- cross origin


def test_cross_origin_viewer_with_a_bearer_token(
    cross_origin_ohif: OhifServer, e2e_gateway: RunningGateway, corpus: Corpus,
    viewer: ViewerPage,
) -> None:
    """OHIF on one origin, the gateway on another: CORS preflights (the token makes
    OHIF send ``Authorization``) and CORP must let every request through. This OHIF
    fetches its thumbnails as JPEG from the gateway too."""
    root = e2e_gateway.dicomweb()
    assert not root.startswith(cross_origin_ohif.url)
    study = corpus.study("ct_small")
    viewer.page.goto(_viewer_url(cross_origin_ohif, study, token=TOKEN))
    viewer.wait_for_image("cross-origin-ct_small")
    _assert_no_problems(viewer, root)
    cors_errors = [e for e in viewer.console_errors if "CORS" in e]
    assert not cors_errors, cors_errors
    responses = viewer.dicomweb(root)
    assert all(r.allow_origin == cross_origin_ohif.url for r in responses), {
        (r.url, r.allow_origin) for r in responses if r.allow_origin != cross_origin_ohif.url}
    assert all(r.resource_policy == "cross-origin" for r in responses)
    assert any("/frames/" in r.url for r in responses)
    thumbnails = [r for r in responses if "/thumbnail" in r.url]
    assert len(thumbnails) >= len(study.series)
    assert {r.content_type for r in thumbnails} == {"image/jpeg"}
    assert {r.authorization for r in responses} == {f"Bearer {TOKEN}"}


def test_cors_headers(e2e_gateway: RunningGateway, cross_origin_port: int,
                      corpus: Corpus) -> None:
    """The gateway side of it, without a browser."""
    allowed = f"http://{LOOPBACK}:{cross_origin_port}"
    other = f"http://{LOOPBACK}:{free_port()}"
    study = corpus.study("ct_small")
    url = f"{e2e_gateway.dicomweb()}/studies/{study.study_uid}/series"
    preflight = {"Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization, accept"}
    with httpx.Client(timeout=30) as client:
        response = client.options(url, headers={"Origin": allowed, **preflight})
        assert response.status_code == 200, response.text
        assert response.headers["access-control-allow-origin"] == allowed
        allowed_headers = response.headers["access-control-allow-headers"].lower()
        assert "authorization" in {h.strip() for h in allowed_headers.split(",")}
        assert "GET" in response.headers["access-control-allow-methods"]

        response = client.get(url, headers={"Origin": allowed, "Authorization": "Bearer x",
                                            "Accept": "application/dicom+json"})
        assert response.status_code == 200, response.text
        assert response.headers["access-control-allow-origin"] == allowed
        assert response.headers["cross-origin-resource-policy"] == "cross-origin"

        response = client.options(url, headers={"Origin": other, **preflight})
        assert "access-control-allow-origin" not in response.headers
        response = client.get(url, headers={"Origin": other,
                                            "Accept": "application/dicom+json"})
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers
        assert response.headers["cross-origin-resource-policy"] == "cross-origin"


def test_no_origin_is_allowed_by_default(orthanc_pacs: RunningPacs, tmp_path: Path) -> None:
    settings = make_settings((node_for(orthanc_pacs, "orthanc", "c-get"),),
                             store_port=free_port(), tmp=tmp_path)
    assert settings.cors_origins == ()
    origin = f"http://{LOOPBACK}:{free_port()}"
    with running_gateway(settings) as gateway, httpx.Client(timeout=30) as client:
        response = client.options(f"{gateway.dicomweb()}/studies", headers={
            "Origin": origin, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization"})
        assert "access-control-allow-origin" not in response.headers
        response = client.get(f"{gateway.dicomweb()}/studies?limit=1",
                              headers={"Origin": origin})
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers
        assert response.headers["cross-origin-resource-policy"] == "cross-origin"

