"""End to end: the status page (issue #20) in Debian's headless Chromium, as the OHIF
test drives it (same launch options, same loopback-only browser context).

A gateway with two nodes:

* ``main``: a dcmqrscp of the test's own (C-GET), holding ``ct_small``; the test
  stops it to see the node turn red;
* ``linked``: the session's dcmqrscp behind a slow ``LinkProxy`` (C-GET, so the
  instances cross the link), so a cold retrieve of ``big_ct`` stays in flight
  long enough to be seen and cancelled.

``status_echo_interval`` is 1 s, so the page sees the PACS go within a few of its
5-second redraws. Screenshots go to ``test-artifacts/status/``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Dialog, Locator, Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from corpus import Corpus, StudyInfo
from dicomweb_gw.http.status_page import page_routes
from dicomweb_gw.settings.model import ApiKey
from gateway_fixtures import RunningGateway, make_settings, node_for, running_gateway
from link_proxy import LinkProxy
from ohif_fixtures import ViewerPage, launched_chromium, viewer_page
from pacs_fixtures import LOOPBACK, RunningPacs, free_port, running_dcmqrscp
from status_fixtures import CSRF_TOKEN, STUDY_A, snapshot

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "status"
AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
# Bytes per second, per connection and direction: big_ct (~52 MB) would take
# minutes, so the retrieve is certainly still in flight when the test looks.
SLOW_RATE = 250_000
# Longer than two redraws (5 s each) and the echo interval, for a loaded machine.
REDRAW_TIMEOUT = 30_000
ADMIN_KEY = "status-e2e-admin-key-0123456789"
READ_KEY = "status-e2e-read-key-9876543210"


@dataclass
class StatusRig:
    gateway: RunningGateway
    main_pacs: RunningPacs
    stop_main_pacs: contextlib.ExitStack
    small: StudyInfo
    big: StudyInfo


@dataclass
class BackgroundGet:
    """An httpx GET of a whole study in a thread: what it ended with."""

    url: str
    thread: threading.Thread | None = None
    status: int | None = None
    received: int = 0
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True, name="status-e2e-get")
        self.thread.start()

    def _run(self) -> None:
        try:
            with httpx.stream("GET", self.url, headers={"Accept": AS_STORED},
                              timeout=httpx.Timeout(120.0)) as response:
                self.status = response.status_code
                for chunk in response.iter_raw():
                    self.received += len(chunk)
        except httpx.HTTPError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.done.set()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def rig(corpus: Corpus, dcmqrscp_pacs: RunningPacs,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[StatusRig]:
    small, big = corpus.study("ct_small"), corpus.study("big_ct")
    tmp = tmp_path_factory.mktemp("status-e2e")
    with contextlib.ExitStack() as outer:
        # Its own stack: the test stops this PACS halfway through.
        stop_main = contextlib.ExitStack()
        outer.callback(stop_main.close)
        main = stop_main.enter_context(
            running_dcmqrscp(tmp / "main-pacs", small.instances, free_port()))
        link = outer.enter_context(LinkProxy(dcmqrscp_pacs.host, dcmqrscp_pacs.port,
                                             delay_ms=1, rate=SLOW_RATE))
        nodes = (node_for(main, "main", "c-get"),
                 node_for(replace(dcmqrscp_pacs, port=link.port), "linked", "c-get",
                          retrieve_associations=1, prefetch=False))
        settings = make_settings(nodes, store_port=free_port(), tmp=tmp,
                                 status_echo_interval=1.0)
        gateway = outer.enter_context(running_gateway(settings))
        yield StatusRig(gateway, main, stop_main, small, big)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_chromium() as launched:
        yield launched


@pytest.fixture
def status(browser: Browser, rig: StatusRig) -> Iterator[ViewerPage]:
    with viewer_page(browser) as viewer:
        viewer.page.goto(f"{rig.gateway.url}/status")
        yield viewer
        assert not viewer.console_errors, viewer.console_errors  # CSP refusals land here


def _screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _node(page: Page, name: str) -> Locator:
    return page.locator(f'article[aria-labelledby="node-{name}"]')


@dataclass
class FixtureServer:
    """The page's routes over a snapshot the test changes, and a fake of the actions
    that records what page.js sent."""

    url: str
    state: dict[str, Any]
    posts: list[tuple[str, str | None, str | None, dict[str, list[str]]]]


@pytest.fixture
def fixture_server() -> Iterator[FixtureServer]:
    state: dict[str, Any] = {"snapshot": snapshot()}
    posts: list[tuple[str, str | None, str | None, dict[str, list[str]]]] = []

    async def current(request: Request) -> dict[str, object]:
        return dict(state["snapshot"])

    async def action(request: Request) -> Response:
        form = parse_qs((await request.body()).decode())
        posts.append((request.url.path, request.headers.get("x-csrf-token"),
                      request.headers.get("accept"), form))
        if request.headers.get("accept") == "application/json":
            return JSONResponse({"ok": True, "message": f"done: {request.url.path}"})
        return RedirectResponse("/status", status_code=303)

    app = Starlette(routes=[*page_routes(current),
                            Route("/admin/{rest:path}", action, methods=["POST"])])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=LOOPBACK, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True, name="status-fixture-server")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fixture status server did not start")
        time.sleep(0.02)
    try:
        yield FixtureServer(f"http://{LOOPBACK}:{port}", state, posts)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _tab_to(page: Page, element_id: str, limit: int = 60) -> None:
    """Press Tab until ``element_id`` has the focus, as a keyboard user would."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement && document.activeElement.id") \
                == element_id:
            return
    raise AssertionError(f"#{element_id} not reached with {limit} presses of Tab")


# --------------------------------------------------------------------------- page.js alone


def test_redraw_keeps_the_focus_and_actions_send_the_csrf_token(
    browser: Browser, fixture_server: FixtureServer,
) -> None:
    """page.js over the fixture snapshot: a keyboard C-ECHO, a redraw that keeps the
    focus on the same button, a confirmed purge, and no CSP refusal."""
    with viewer_page(browser) as viewer:
        page = viewer.page
        page.goto(f"{fixture_server.url}/status")
        _tab_to(page, "echo-default")
        page.keyboard.press("Enter")
        expect(page.locator("#action-result")).to_have_text("done: /admin/pacs/default/echo")
        assert fixture_server.posts[0] == ("/admin/pacs/default/echo", CSRF_TOKEN,
                                           "application/json", {"csrf_token": [CSRF_TOKEN]})

        changed = snapshot()
        changed["nodes"][0]["health"] = "failing"
        changed["nodes"][0]["health_message"] = "C-ECHO failed: ORTHANC went away"
        fixture_server.state["snapshot"] = changed
        badge = _node(page, "default").locator(".badge")
        expect(badge).to_have_text("failing", timeout=REDRAW_TIMEOUT)
        assert page.evaluate("() => document.activeElement.id") == "echo-default"

        dialogs: list[str] = []

        def dismiss(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.once("dialog", dismiss)
        purge = page.get_by_role("button", name=f"Purge study {STUDY_A} from the cache")
        purge.click()
        assert len(dialogs) == 1
        assert len(fixture_server.posts) == 1, "a purge was sent though the dialog said no"

        page.once("dialog", lambda dialog: dialog.accept())
        purge.click()
        expect(page.locator("#action-result")).to_contain_text("/purge")
        path, token, _, form = fixture_server.posts[-1]
        assert path == f"/admin/cache/studies/{STUDY_A}/purge"
        assert token == CSRF_TOKEN
        assert form == {"csrf_token": [CSRF_TOKEN], "pacs": ["default"]}
        assert not viewer.console_errors, viewer.console_errors


# --------------------------------------------------------------------------- the real gateway


@pytest.mark.pacs
def test_status_page_follows_the_pacs_and_its_actions_work(
    rig: StatusRig, status: ViewerPage,
) -> None:
    """One story, in order: the steps share the gateway, its PACS and its cache."""
    page = status.page
    gateway = rig.gateway
    expect(page).to_have_title("dicomweb-gw status")
    expect(page.get_by_role("alert")).to_contain_text("Authentication is off")

    # A study in main's cache, for the purge at the end.
    response = httpx.get(f"{gateway.dicomweb('main')}/studies/{rig.small.study_uid}",
                         headers={"Accept": AS_STORED}, timeout=60)
    assert response.status_code == 200, response.text

    # 1. The real PACS answers its C-ECHO: green, "ok".
    main = _node(page, "main")
    expect(main.locator(".badge")).to_have_text("ok", timeout=REDRAW_TIMEOUT)
    expect(main.locator(".badge")).to_have_class("badge health-ok")

    # Keyboard: Tab to "Run C-ECHO on main", Enter; the result is said in the live region.
    _tab_to(page, "echo-main")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), "the focused button shows no outline"
    page.keyboard.press("Enter")
    expect(page.locator("#action-result")).to_contain_text("C-ECHO", timeout=REDRAW_TIMEOUT)
    expect(page.locator("#action-result")).to_have_class("result result-ok")
    _screenshot(page, "1-node-ok")

    # 2. The PACS goes away: red, with a message that names it.
    rig.stop_main_pacs.close()
    expect(main.locator(".badge")).to_have_text("failing", timeout=REDRAW_TIMEOUT)
    expect(main.locator(".badge")).to_have_class("badge health-failing")
    message = main.locator(".health-message")
    # Readable: what failed, which node, where.
    expect(message).to_contain_text("C-ECHO failed")
    expect(message).to_contain_text("'main'")
    expect(message).to_contain_text(f"{rig.main_pacs.host}:{rig.main_pacs.port}")
    _screenshot(page, "2-node-failing")

    # 3. A cold retrieve over the slow link: in the retrieves table, then cancelled.
    get = BackgroundGet(f"{gateway.dicomweb('linked')}/studies/{rig.big.study_uid}")
    get.start()
    row = page.locator("#retrieves tbody tr").filter(has_text=rig.big.study_uid)
    expect(row).to_have_count(1, timeout=REDRAW_TIMEOUT)
    expect(row).to_contain_text("linked")
    expect(row.locator("progress")).to_have_count(1)
    _screenshot(page, "3-retrieve-in-flight")
    row.get_by_role("button", name=f"Cancel the retrieve of study {rig.big.study_uid}").click()
    expect(page.locator("#action-result")).to_have_class("result result-ok",
                                                         timeout=REDRAW_TIMEOUT)
    expect(row).to_have_count(0, timeout=REDRAW_TIMEOUT)
    assert get.done.wait(60), "the cancelled retrieve's client never got an answer"
    assert get.received < rig.big.total_bytes
    linked_store = gateway.app.state.gateway.store("linked")
    assert linked_store.complete(rig.big.study_uid, None, max_age=3600) is None

    # 4. Purge the small study from the page, confirming the dialog.
    study = page.locator("#cache tbody tr").filter(has_text=rig.small.study_uid)
    expect(study).to_have_count(1, timeout=REDRAW_TIMEOUT)
    dialogs: list[str] = []

    def accept(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.get_by_role("button", name=f"Purge study {rig.small.study_uid} from the cache").click()
    expect(study).to_have_count(0, timeout=REDRAW_TIMEOUT)
    assert len(dialogs) == 1
    assert rig.small.study_uid in dialogs[0]
    expect(page.locator("#action-result")).to_have_class("result result-ok")
    _screenshot(page, "4-purged")
    main_store = gateway.app.state.gateway.store("main")
    assert main_store.complete(rig.small.study_uid, None, max_age=3600) is None
    sop = rig.small.instances[0].sop_instance_uid
    assert main_store.get(sop, study_uid=rig.small.study_uid) is None


@pytest.mark.pacs
def test_without_javascript_the_page_shows_the_data_and_forms_post(
    browser: Browser, rig: StatusRig,
) -> None:
    """Scripts off: the server's HTML alone shows the nodes, and a form post comes
    back to the page (303)."""
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{rig.gateway.url}/")
        expect(page.locator('article[aria-labelledby="node-linked"] .badge')).to_have_count(1)
        expect(page.locator("#cache h2")).to_have_text("Cache")
        with page.expect_navigation():
            page.get_by_role("button", name="Run C-ECHO on linked").click()
        assert page.url.endswith("/status")
        expect(page.get_by_role("heading", name="PACS nodes")).to_be_visible()
    finally:
        context.close()


@pytest.mark.pacs
def test_with_auth_on_an_admin_key_opens_the_page_and_its_actions(
    browser: Browser, dcmqrscp_pacs: RunningPacs, tmp_path: Path,
) -> None:
    """Basic auth with the admin API key as password, as an administrator's browser
    would send it: no warning, and page.js's refresh and actions (CSRF token bound to
    that credential) go through. A read-only key is refused."""
    settings = make_settings((node_for(dcmqrscp_pacs, "pacs", "c-get"),),
                             store_port=free_port(), tmp=tmp_path,
                             api_keys=(ApiKey(ADMIN_KEY, admin=True), ApiKey(READ_KEY)))
    with running_gateway(settings) as gateway:
        assert httpx.get(f"{gateway.url}/status", timeout=10).status_code == 401
        assert httpx.get(f"{gateway.url}/status", auth=("any", READ_KEY),
                         timeout=10).status_code == 403
        context = browser.new_context(http_credentials={"username": "admin",
                                                        "password": ADMIN_KEY})
        try:
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{gateway.url}/status")
            expect(page).to_have_title("dicomweb-gw status")
            expect(page.get_by_role("alert")).to_have_count(0)
            expect(page.locator("#refresh-note")).to_contain_text("last update",
                                                                  timeout=REDRAW_TIMEOUT)
            page.get_by_role("button", name="Run C-ECHO on pacs").click()
            expect(page.locator("#action-result")).to_have_class("result result-ok",
                                                                 timeout=REDRAW_TIMEOUT)
            expect(page.locator("#action-result")).to_contain_text("C-ECHO")
            assert not errors, errors
        finally:
            context.close()
