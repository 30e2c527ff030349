"""OHIF's progressive loading (HTJ2K RPCL with byte ranges) vs its default path, warm.

Run with ``bench/run -k ohif_progressive``; results in
``bench/results/ohif_progressive.json``. Timings are reported, never asserted.

One gateway (C-GET node on the session's Orthanc) and a generated CT of
``BENCH_PROGRESSIVE_SLICES`` (default 512) slices of 512x512 16 bits (CT_small
upscaled, with noise, so a lossless HTJ2K frame is some 150 KB as a real CT's,
not a few KB). The study is retrieved through the gateway before anything is
timed (warm). The real OHIF (``tests/ohif_fixtures.py``) opens it in three
configurations of the same data source, each its own OHIF server:

* ``OHIF default``: as ``bench/test_bench_ohif.py`` configures it; OHIF 3.13
  asks frames as ``multipart/related; type=application/octet-stream;
  transfer-syntax=*``, i.e. the stored uncompressed 512 KB, streamed.
* ``HTJ2K, whole frames``: the data source's ``stackRetrieveOptions`` (how
  OHIF 3.13 configures the stack viewport's retrieve; its cornerstone
  extension merges them into its default ``{retrieveOptions: {single:
  {streaming: true, decodeLevel: 1}}}``) adds ``urlArguments`` asking HTJ2K
  RPCL: the closest to progressive without ranges (cornerstone decodes an
  RPCL stream as it arrives).
* ``progressive``: the stages of cornerstone3D's ``sequentialRetrieve``
  (``singleFast`` then ``singleFinal``): a first ``Range: bytes=0-65535``
  (``rangeIndex: 0``), decoded at a lower resolution, then the rest
  (``rangeIndex: -1``), all with ``accept=`` HTJ2K RPCL in the URL, as
  cornerstone3D's progressive-loading docs configure it. Prefetch uses the
  ``default`` options (whole HTJ2K frames).

The HTJ2K configurations ask ``image/jhc`` with ``transfer-syntax=.202``:
HTJ2K RPCL with TLM, the syntax made for decoding a prefix (cornerstone3D's
streaming decode of a multipart answer is limited to .202, .203 and its
private 3.2.840.10008.1.2.4.96), where ``image/jhc`` alone means .201
(PS3.18 Table 8.7.3-5).

An untimed opening per configuration records every frame request (URL,
``Range``, status, media type) and fails the benchmark if the progressive one
did not ask HTJ2K with ranges and get 206s. Timed openings: fresh browser
contexts, the configurations in rotating order, median of ``BENCH_RUNS``
(default 3); on loopback and with a 10 ms link (``tests/link_proxy.py``)
between the viewer's side and the gateway, where a range's round trip costs, and
with that link capped at 10 Mbit/s per connection, where a frame's bytes cost.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from ohif_paths import ViewerPath, ohif_app, serving
from ohif_probe import OPEN_TIMEOUT, POLL_MS, PROBE_SCRIPT, Opening, open_study
from playwright.sync_api import Browser
from playwright.sync_api import Request as PlaywrightRequest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from record import Comparison, comparison, save
from timing import stats

from conftest import run_gateway
from corpus import StudyInfo, _stack, _StudySpec, _StudyWriter
from link_proxy import LinkProxy
from ohif_fixtures import (
    OHIF_VERSION,
    ensure_ohif_dist,
    launched_chromium,
    render_app_config,
    viewer_page,
)
from pacs_fixtures import LOOPBACK, RunningPacs, _load_into_orthanc, free_port

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
SLICES = int(os.environ.get("BENCH_PROGRESSIVE_SLICES", "512"))
SIZE = 512
LINK_DELAY_MS = 10
# "slow": the same link capped at 10 Mbit/s per connection and direction, where the
# bytes of a frame, not round trips, cost: the case progressive loading is made for.
SLOW_RATE = 1.25e6  # bytes/s
NETWORKS = tuple(os.environ.get("BENCH_PROGRESSIVE_NETWORKS", "loopback,link,slow").split(","))
WHERE = {"loopback": "loopback", "link": f"{LINK_DELAY_MS} ms link viewer-gateway",
         "slow": f"{LINK_DELAY_MS} ms, {SLOW_RATE * 8 / 1e6:.0f} Mbit/s link viewer-gateway"}
NODE = "orthanc"
ROOT = f"/pacs/{NODE}/dicom-web"
RPCL = "1.2.840.10008.1.2.4.202"
# cornerstone appends urlArguments verbatim: the media type's parameters encoded.
ACCEPT_ARGUMENT = "accept=" + quote(f"image/jhc;transfer-syntax={RPCL}", safe="/")
CHUNK = 65536  # cornerstone's default first range, bytes=0-65535

DEFAULT = "OHIF default (uncompressed frames)"
HTJ2K_WHOLE = "HTJ2K RPCL, whole frames (streamed)"
PROGRESSIVE = "progressive: HTJ2K RPCL, byte ranges"
# Label -> the data source's stackRetrieveOptions (None: OHIF's default).
CONFIGS: dict[str, dict[str, Any] | None] = {
    DEFAULT: None,
    HTJ2K_WHOLE: {"retrieveOptions": {"single": {
        "streaming": True, "decodeLevel": 1, "urlArguments": ACCEPT_ARGUMENT}}},
    PROGRESSIVE: {
        "stages": [{"id": "lossySequential", "retrieveType": "singleFast"},
                   {"id": "finalSequential", "retrieveType": "singleFinal"}],
        "retrieveOptions": {
            # Prefetch of the other slices takes "default": whole HTJ2K frames.
            "default": {"streaming": True, "urlArguments": ACCEPT_ARGUMENT},
            "singleFast": {"rangeIndex": 0, "chunkSize": CHUNK, "decodeLevel": 2,
                           "urlArguments": ACCEPT_ARGUMENT},
            "singleFinal": {"rangeIndex": -1, "urlArguments": ACCEPT_ARGUMENT},
        }},
}
_CONFIG_ANCHOR = "omitQuotationForMultipartRequest: true,"
_FRAME_TIMINGS_SCRIPT = """() => performance.getEntriesByType('resource')
  .filter(entry => entry.name.includes('/frames/'))
  .map(entry => [entry.name, entry.startTime, entry.responseEnd, entry.encodedBodySize])"""


def _app_config(stack_retrieve_options: dict[str, Any] | None) -> str:
    """The e2e harness's app-config with ``stackRetrieveOptions`` in the data source."""
    config = render_app_config(ROOT)
    if stack_retrieve_options is None:
        return config
    assert config.count(_CONFIG_ANCHOR) == 1, "the app-config template changed"
    return config.replace(_CONFIG_ANCHOR, f"{_CONFIG_ANCHOR}\n        stackRetrieveOptions: "
                          f"{json.dumps(stack_retrieve_options)},")


def _noisy_ct(ds: Dataset, index: int) -> None:
    """CT_small's slice as 512x512 with its own shift and noise (about 5 bits a pixel)."""
    base = ds.pixel_array.astype(np.int32)
    scale = SIZE // int(ds.Rows)
    big = np.roll(np.kron(base, np.ones((scale, scale), dtype=np.int32)), index * 2, axis=1)
    noise = np.random.default_rng(index).integers(-12, 13, size=big.shape)
    ds.Rows = ds.Columns = SIZE
    ds.PixelSpacing = [f"{float(v) / scale:.6f}" for v in ds.PixelSpacing]
    for keyword in ("SmallestImagePixelValue", "LargestImagePixelValue"):
        if keyword in ds:
            del ds[keyword]
    ds.PixelData = np.clip(big + noise, -2048, 4095).astype("<i2").tobytes()


@pytest.fixture(scope="module")
def big_study(orthanc_pacs: RunningPacs, tmp_path_factory: pytest.TempPathFactory) -> StudyInfo:
    writer = _StudyWriter(tmp_path_factory.mktemp("bench-ohif-progressive"),
                          _StudySpec(f"ct_{SLICES}", "Bench^Progressive", "GW-BENCHPROG",
                                     "20250303", "ACC-BPROG", f"CT {SLICES} slices"))
    writer.add_series("CT", "Axial 0.6mm", _stack("CT_small.dcm", SLICES, _noisy_ct),
                      ExplicitVRLittleEndian)
    study = writer.finish()
    _load_into_orthanc(orthanc_pacs, study.instances)
    return study


@dataclass(frozen=True)
class FrameRequest:
    url: str
    range: str | None
    status: int | None
    content_type: str | None


def _recorded_opening(browser: Browser, path: ViewerPath, study_uid: str,
                      name: str) -> tuple[float, list[FrameRequest], dict[str, Any] | None]:
    """An untimed opening logging every frame request: (first image s, the requests)."""
    requests: dict[PlaywrightRequest, dict[str, Any]] = {}
    with viewer_page(browser) as viewer:
        page = viewer.page

        def on_request(request: PlaywrightRequest) -> None:
            if "/frames/" in request.url:
                requests[request] = {"url": request.url,
                                     "range": request.headers.get("range")}

        def on_response(response: Any) -> None:
            if response.request in requests:
                requests[response.request].update(
                    status=response.status, content_type=response.headers.get("content-type"))

        page.on("request", on_request)
        page.on("response", on_response)
        page.add_init_script(PROBE_SCRIPT)
        page.goto(path.viewer_url(study_uid), wait_until="commit")
        handle = page.wait_for_function("() => window.__dwgFirstImage", polling=100,
                                        timeout=OPEN_TIMEOUT * 1000)
        first = float(handle.json_value()) / 1000
        viewer.settle(path.dicomweb, timeout=OPEN_TIMEOUT)
        timings = page.evaluate(_FRAME_TIMINGS_SCRIPT)
        problems = viewer.problems(path.dicomweb)
        if problems:
            print(f"\n{name}: {len(problems)} DICOMweb requests did not succeed: {problems[:3]}")
    frames = [FrameRequest(r["url"], r["range"], r.get("status"), r.get("content_type"))
              for r in requests.values()]
    return first, frames, _first_ranged_frame(frames, timings)


def _first_ranged_frame(frames: list[FrameRequest],
                        timings: list[list[Any]]) -> dict[str, Any] | None:
    """When the two ranges of the first ranged frame ended, in s from navigation start:
    an image before the second one ended was decoded from the prefix alone."""
    ranged = next((f.url for f in frames if f.range), None)
    if ranged is None:
        return None
    ends = [[round(start / 1000, 3), round(end / 1000, 3), size]
            for url, start, end, size in timings if url == ranged]
    return {"url": ranged, "entries_start_end_bytes": ends}


def _summary(frames: list[FrameRequest]) -> dict[str, Any]:
    statuses: dict[str, int] = defaultdict(int)
    types: dict[str, int] = defaultdict(int)
    for frame in frames:
        statuses[str(frame.status)] += 1
        # Without the multipart boundary, which differs on every answer.
        types[str(frame.content_type).split("; boundary=")[0]] += 1
    return {"frame_requests": len(frames),
            "with_range": sum(1 for f in frames if f.range),
            "asking_htj2k": sum(1 for f in frames if "accept=image%2Fjhc" in f.url
                                or "accept=image/jhc" in f.url),
            "statuses": dict(statuses), "content_types": dict(types),
            "first": [asdict(f) for f in frames[:4]]}


def _check_progressive(summary: dict[str, Any]) -> None:
    """The progressive configuration really asked HTJ2K RPCL with ranges and got 206s."""
    assert summary["asking_htj2k"] > 0, f"no frame request asked image/jhc: {summary}"
    assert summary["with_range"] > 0, f"no frame request sent Range: {summary}"
    assert summary["statuses"].get("206", 0) > 0, f"no 206 answer: {summary}"
    assert any(RPCL in t for t in summary["content_types"]), f"no RPCL frame: {summary}"


def _prewarm(gateway_url: str, study_uid: str) -> float:
    """Retrieve the whole study through the gateway once (it is then in its cache)."""
    started = time.monotonic()
    url = f"{gateway_url}{ROOT}/studies/{study_uid}"
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    with httpx.stream("GET", url, headers={"Accept": accept}, timeout=900) as response:
        response.raise_for_status()
        for _ in response.iter_raw():
            pass
    return time.monotonic() - started


def _paths(stack: ExitStack, gateway_url: str, dist: Path) -> dict[str, dict[str, ViewerPath]]:
    by_network: dict[str, dict[str, ViewerPath]] = {}
    port = int(gateway_url.rsplit(":", 1)[1])
    for network in NETWORKS:
        upstream = gateway_url
        if network in ("link", "slow"):
            link = stack.enter_context(LinkProxy(
                LOOPBACK, port, delay_ms=LINK_DELAY_MS,
                rate=SLOW_RATE if network == "slow" else None))
            upstream = f"http://{LOOPBACK}:{link.port}"
        by_network[network] = {}
        for label, options in CONFIGS.items():
            origin = stack.enter_context(serving(ohif_app(dist, ROOT, upstream,
                                                          _app_config(options))))
            by_network[network][label] = ViewerPath(label, origin, ROOT, purge=None)
    return by_network


def _slug(*parts: str) -> str:
    return "-".join("".join(ch if ch.isalnum() else "_" for ch in part) for part in parts)


Openings = dict[tuple[str, str], list[Opening]]


def _comparisons(openings: Openings) -> list[Comparison]:
    name = f"{SLICES}-slice CT, warm"
    result = [comparison(f"ohif_progressive.{network}", f"{name}, {WHERE[network]}: time to "
                         "first image", "s",
                         {label: stats([o.first_image_s for o in openings[network, label]])
                          for label in CONFIGS}, reference=DEFAULT)
              for network in NETWORKS]
    # The part of it the frame's retrieve and decode take, without OHIF's start-up and
    # the 512 instances' metadata (the same in every configuration).
    result += [comparison(f"ohif_progressive.{network}.frame", f"{name}, {WHERE[network]}: "
                          "first frame request to first image", "s",
                          {label: stats([o.first_image_s - o.first_frame_s
                                         for o in openings[network, label]
                                         if o.first_frame_s is not None])
                           for label in CONFIGS}, reference=DEFAULT)
               for network in NETWORKS]
    network = NETWORKS[0]
    result += [
        comparison(f"ohif_progressive.{network}.requests", f"{name}, {WHERE[network]}: "
                   "DICOMweb requests before the first image", "requests",
                   {label: stats([o.requests for o in openings[network, label]])
                    for label in CONFIGS}, reference=DEFAULT),
        comparison(f"ohif_progressive.{network}.mb", f"{name}, {WHERE[network]}: MB of "
                   "DICOMweb responses before the first image", "MB",
                   {label: stats([o.mb for o in openings[network, label]])
                    for label in CONFIGS}, reference=DEFAULT),
        comparison(f"ohif_progressive.{network}.total_mb", f"{name}, {WHERE[network]}: MB of "
                   "DICOMweb responses once OHIF was quiet (its prefetch of every slice)",
                   "MB", {label: stats([o.total_mb for o in openings[network, label]])
                          for label in CONFIGS}, reference=DEFAULT),
    ]
    return result


@pytest.mark.pacs
@pytest.mark.timeout(3600)
def test_ohif_progressive_time_to_first_image(
        orthanc_pacs: RunningPacs, big_study: StudyInfo,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    dist = ensure_ohif_dist()
    folder = tmp_path_factory.mktemp("bench-ohif-progressive")
    uid = big_study.study_uid
    openings: Openings = defaultdict(list)
    checks: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        gateway = stack.enter_context(run_gateway(folder / "gateway",
                                                  {NODE: (orthanc_pacs, "c-get")},
                                                  free_port(), ae_title="GW_OHIF_PROG"))
        prewarm_s = _prewarm(gateway.url, uid)
        paths = _paths(stack, gateway.url, dist)
        with launched_chromium() as browser:
            # Untimed: each configuration once per network, its frame requests recorded
            # (and the gateway's encoded HTJ2K frames cached, as for a second reader).
            for network, by_config in paths.items():
                for label, path in by_config.items():
                    first, frames, ranged = _recorded_opening(
                        browser, path, uid, _slug("bench-progressive-check", network, label))
                    checks[f"{network}.{label}"] = {"first_image_s": first, **_summary(frames),
                                                    "first_ranged_frame": ranged}
            _check_progressive(checks[f"{NETWORKS[0]}.{PROGRESSIVE}"])
            labels = list(CONFIGS)
            for run in range(RUNS):
                order = labels[run % len(labels):] + labels[:run % len(labels)]
                for network, by_config in paths.items():
                    for label in order:
                        openings[network, label].append(open_study(
                            browser, by_config[label], uid, cold=False,
                            name=_slug("bench-progressive", network, label)))
    save("ohif_progressive",
         f"OHIF {OHIF_VERSION} progressive loading (HTJ2K RPCL, byte ranges) vs its default "
         f"path: the gateway, a {SLICES}-slice CT, warm", _comparisons(openings), notes=[
             f"Median (min-max) of {RUNS} runs after one untimed opening per configuration; "
             "headless Chromium with software rendering on the same 2 cores as the gateway, "
             "Orthanc and whatever else runs (the load average is recorded): read the ratios "
             "of one run side by side, not the absolute times.",
             f"A {SLICES}-slice CT, 512x512 16-bit, uncompressed in Orthanc (C-GET node), "
             f"retrieved through the gateway once before anything is timed ({prewarm_s:.0f} s). "
             "Every opening is a fresh browser context (no HTTP cache).",
             "Time to first image: from the navigation to the first viewport canvas with a "
             f"non-black pixel (polled every {POLL_MS} ms in the page): OHIF's start-up, QIDO, "
             "the series' metadata and the first frame, as bench/test_bench_ohif.py measures it.",
             f"{DEFAULT}: frames as multipart octet-stream, transfer-syntax=* (as stored). "
             f"{HTJ2K_WHOLE}: stackRetrieveOptions single: urlArguments {ACCEPT_ARGUMENT}, "
             f"streaming. {PROGRESSIVE}: cornerstone3D's sequential stages, singleFast "
             f"rangeIndex 0 (Range: bytes=0-{CHUNK - 1}) then singleFinal rangeIndex -1 (the "
             "rest), same urlArguments; prefetch of the other slices takes whole HTJ2K frames.",
             f"Link: {LINK_DELAY_MS} ms each way between the OHIF server (the viewer's side) and "
             "the gateway (tests/link_proxy.py); slow: the same link capped at "
             f"{SLOW_RATE * 8 / 1e6:.0f} Mbit/s per connection and direction; the gateway "
             "and Orthanc on loopback.",
         ],
         raw={"checks": checks, "prewarm_s": prewarm_s,
              "openings": {f"{network}.{label}": [asdict(o) for o in runs]
                           for (network, label), runs in openings.items()}})
