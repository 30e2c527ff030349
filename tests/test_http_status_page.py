"""The status page (issue #20) rendered from a fixture snapshot, without a browser:
escaping, accessible names, the auth warning, and every number in the HTML itself
(no JavaScript needed to see the data). The browser test is test_e2e_status_page.py.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request

from dicomweb_gw import cli
from dicomweb_gw.http.error_responses import EXCEPTION_HANDLERS
from dicomweb_gw.http.status_html import SECTIONS, render_page
from dicomweb_gw.http.status_page import page_routes
from status_fixtures import (
    AUTH_OFF_WARNING,
    AUTH_ON,
    CSRF_TOKEN,
    STUDY_A,
    STUDY_B,
    empty_snapshot,
    snapshot,
)

EVIL = '<script>alert("x")</script>'

# --------------------------------------------------------------------------- a small DOM


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parent: Element | None = None
    children: list[Element | str] = field(default_factory=list)

    def text(self) -> str:
        """The text content, whitespace collapsed, elements apart by a space."""
        return " ".join(" ".join(child if isinstance(child, str) else child.text()
                                 for child in self.children).split())

    def iter(self, tag: str | None = None) -> Iterator[Element]:
        for child in self.children:
            if isinstance(child, Element):
                if tag is None or child.tag == tag:
                    yield child
                yield from child.iter(tag)

    def by_id(self, ident: str) -> Element:
        found = [el for el in self.iter() if el.attrs.get("id") == ident]
        assert len(found) == 1, f"{len(found)} elements with id {ident!r}"
        return found[0]

    def ancestor(self, tag: str) -> Element | None:
        node = self.parent
        while node is not None and node.tag != tag:
            node = node.parent
        return node


_VOID = {"meta", "link", "input", "br", "hr", "img"}


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, parent=self.current)
        self.current.children.append(element)
        if tag not in _VOID:
            self.current = element

    def handle_endtag(self, tag: str) -> None:
        node: Element | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        assert node is not None, f"stray </{tag}>"
        assert node.parent is not None, f"stray </{tag}>"
        self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.children.append(data)


def parse(markup: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(markup)
    builder.close()
    assert builder.current is builder.root, f"<{builder.current.tag}> never closed"
    return builder.root


def accessible_name(element: Element) -> str:
    return element.attrs.get("aria-label") or element.text()


def page(**replace: Any) -> Element:
    return parse(render_page(snapshot(**replace)))


# --------------------------------------------------------------------------- the page


def test_the_page_is_a_titled_english_document() -> None:
    markup = render_page(snapshot())
    assert markup.startswith("<!DOCTYPE html>")
    dom = parse(markup)
    assert next(dom.iter("html")).attrs["lang"] == "en"
    assert next(dom.iter("title")).text() == "dicomweb-gw status"
    metas = [m for m in dom.iter("meta") if m.attrs.get("name") == "csrf-token"]
    assert [m.attrs["content"] for m in metas] == [CSRF_TOKEN]


def test_every_value_is_escaped() -> None:
    nodes = snapshot()["nodes"]
    nodes[0]["name"] = EVIL
    nodes[0]["health_message"] = EVIL
    nodes[0]["failures"][0]["fix"] = EVIL
    markup = render_page(snapshot(
        nodes=nodes, config=[{"name": EVIL, "value": EVIL}],
        gateway={"version": EVIL, "replica_id": EVIL},
        auth={"enabled": False, "warning": EVIL}, csrf_token='"><script>x</script>'))
    assert "<script>alert" not in markup
    assert "<script>x" not in markup
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in markup
    dom = parse(markup)
    # The only script is the page's own, loaded from the gateway.
    assert [s.attrs.get("src") for s in dom.iter("script")] == ["status/assets/page.js"]
    assert EVIL in dom.by_id("nodes").text()


def test_the_data_is_in_the_html_itself() -> None:
    """No JavaScript needed: every section's numbers are rendered by the server."""
    dom = page()
    gateway = dom.by_id("gateway").text()
    assert "0.1.0" in gateway
    assert "2 h 5 min" in gateway  # uptime 7500 s
    assert "•••• (2 keys)" in dom.by_id("config").text()

    nodes = dom.by_id("nodes")
    default = dom.by_id("node-default").parent
    assert default is not None
    text = default.text()
    assert "C-ECHO answered in 3 ms" in text
    assert "1 of 8" in text  # associations
    assert "C-FIND success 12" in text
    assert "0xA801 Move destination unknown" in text
    assert "register AE DICOMWEB_GW at 10.0.0.5:11113 on ORTHANC" in text
    assert "C-GET accepted the PACS answers C-GET retrieve = \"c-get\"" in text  # doctor
    assert "connection refused by ARCHIVE at 10.0.0.9:104" in nodes.text()

    retrieves = dom.by_id("retrieves")
    assert STUDY_A in retrieves.text()
    assert "12 of 120" in retrieves.text()
    assert "3.2" in retrieves.text()
    progress = next(retrieves.iter("progress"))
    assert (progress.attrs["value"], progress.attrs["max"]) == ("12", "120")

    cache = dom.by_id("cache").text()
    assert "123.5 MB of 10.7 GB" in cache
    assert "83%" in cache
    assert "2 (130 instances)" in cache
    assert STUDY_A in cache
    assert STUDY_B in cache

    cluster = dom.by_id("cluster").text()
    assert "redis://***@redis:6379/0: reachable" in cluster
    assert "s3://images/(masked): unreachable" in cluster
    assert "99ff00aa11bb" in cluster


def test_health_is_a_word_as_well_as_a_colour() -> None:
    badges = [b for b in page().iter("span") if "badge" in b.attrs.get("class", "")]
    assert [(b.text(), b.attrs["class"]) for b in badges] == [
        ("ok", "badge health-ok"), ("failing", "badge health-failing")]
    unknown = [b for b in parse(render_page(empty_snapshot())).iter("span")
               if "badge" in b.attrs.get("class", "")]
    assert [b.text() for b in unknown] == ["unknown"]


def test_the_warning_is_shown_when_auth_is_off() -> None:
    dom = page()
    alerts = [el for el in dom.iter() if el.attrs.get("role") == "alert"]
    assert [a.text() for a in alerts] == [AUTH_OFF_WARNING]
    # At the top: before the first section.
    header = next(dom.iter("header"))
    assert alerts[0].ancestor("header") is header


def test_no_warning_when_auth_is_on() -> None:
    dom = page(auth=AUTH_ON)
    assert not [el for el in dom.iter() if el.attrs.get("role") == "alert"]
    assert "Authentication is off" not in dom.text()


def test_every_button_has_a_name_that_names_its_target() -> None:
    dom = page()
    names = [accessible_name(b) for b in dom.iter("button")]
    assert names == [
        "Run C-ECHO on default", "Run C-ECHO on archive",
        f"Cancel the retrieve of study {STUDY_A} from default",
        f"Purge study {STUDY_A} from the cache of default",
        f"Purge study {STUDY_B} from the cache of default",
    ]
    for button in dom.iter("button"):
        # The visible text is part of the name (WCAG 2.5.3, label in name).
        assert button.text()
        assert button.text() in accessible_name(button)


def test_every_action_is_a_post_form_with_the_csrf_token() -> None:
    dom = page()
    forms = list(dom.iter("form"))
    assert [f.attrs["action"] for f in forms] == [
        "admin/pacs/default/echo", "admin/pacs/archive/echo",
        "admin/retrieves/r-1/cancel",
        f"admin/cache/studies/{STUDY_A}/purge?pacs=default",
        f"admin/cache/studies/{STUDY_B}/purge?pacs=default",
    ]
    for form in forms:
        assert form.attrs["method"] == "post"
        hidden = {i.attrs["name"]: i.attrs["value"] for i in form.iter("input")
                  if i.attrs.get("type") == "hidden"}
        assert hidden["csrf_token"] == CSRF_TOKEN
    purges = [f for f in forms if "/purge" in f.attrs["action"]]
    assert all("Purge study" in f.attrs["data-confirm"] for f in purges)
    assert not [f for f in forms if "/purge" not in f.attrs["action"]
                and "data-confirm" in f.attrs]


def test_path_segments_are_percent_encoded() -> None:
    nodes = snapshot()["nodes"][:1]
    nodes[0]["name"] = "a/b c"
    dom = page(nodes=nodes)
    assert next(dom.iter("form")).attrs["action"] == "admin/pacs/a%2Fb%20c/echo"


def test_tables_have_captions_and_scoped_headers() -> None:
    tables = list(page().iter("table"))
    assert len(tables) >= 6
    for table in tables:
        assert next(table.iter("caption")).text()
        headers = list(table.iter("th"))
        assert headers
        assert all(h.attrs.get("scope") in {"col", "row"} for h in headers)


def test_a_heading_per_section_and_a_live_region_for_results() -> None:
    dom = page()
    for section in SECTIONS:
        if section == "auth_warning":
            continue
        element = dom.by_id(section)
        assert element.attrs["aria-labelledby"] == f"{section}-heading"
        assert next(element.iter("h2")).attrs["id"] == f"{section}-heading"
    live = dom.by_id("action-result")
    assert live.attrs["aria-live"] == "polite"


def test_progress_bars_are_labelled_and_indeterminate_when_the_total_is_unknown() -> None:
    retrieves = snapshot()["retrieves"]
    retrieves[0]["expected"] = None
    dom = page(retrieves=retrieves)
    bars = list(dom.iter("progress"))
    assert all(bar.attrs.get("aria-label") for bar in bars)
    first = bars[0]
    assert "max" not in first.attrs
    assert "value" not in first.attrs
    assert "12 of ?" in dom.by_id("retrieves").text()


def test_an_empty_gateway_says_so() -> None:
    dom = parse(render_page(empty_snapshot()))
    assert "No retrieve in flight." in dom.by_id("retrieves").text()
    assert "The cache is empty." in dom.by_id("cache").text()
    assert "never run" in dom.by_id("nodes").text()
    assert dom.by_id("cluster").text() == ""
    assert not list(dom.by_id("cache").iter("button"))


def test_no_patient_data_keys_are_rendered() -> None:
    """Only what the snapshot carries is drawn: an unknown key (as a patient name would
    be, if a collector ever leaked one) is not."""
    nodes = snapshot()["nodes"]
    nodes[0]["patient_name"] = "Doe^Jane"
    retrieves = snapshot()["retrieves"]
    retrieves[0]["PatientName"] = "Doe^Jane"
    assert "Doe" not in render_page(snapshot(nodes=nodes, retrieves=retrieves))


# --------------------------------------------------------------------------- routes


async def _fixture_snapshot(request: Request) -> dict[str, object]:
    return snapshot()


_APP = Starlette(routes=page_routes(_fixture_snapshot), exception_handlers=EXCEPTION_HANDLERS)


def get(path: str) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=_APP)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return await client.get(path)

    return asyncio.run(call())


@pytest.mark.parametrize("path", ["/", "/status"])
def test_the_page_is_served_at_root_and_status(path: str) -> None:
    response = get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert "<title>dicomweb-gw status</title>" in response.text


@pytest.mark.parametrize(("name", "media_type", "marker"), [
    ("page.js", "text/javascript; charset=utf-8", "X-CSRF-Token"),
    ("page.css", "text/css; charset=utf-8", ":focus-visible"),
])
def test_assets_are_served(name: str, media_type: str, marker: str) -> None:
    response = get(f"/status/assets/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert marker in response.text


@pytest.mark.parametrize("name", ["page.html", "..%2F__init__.py", "nope.js"])
def test_only_the_listed_assets_are_served(name: str) -> None:
    response = get(f"/status/assets/{name}")
    assert response.status_code == 404
    assert "from __future__" not in response.text
    assert "<title>" not in response.text


# --------------------------------------------------------------------------- the demo


def test_the_demo_prints_the_status_page_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    ran: list[int] = []
    monkeypatch.setattr(cli, "_run_gateway", lambda settings, host, port: ran.append(port) or 0)
    args = argparse.Namespace(host="127.0.0.1", port=8099, data_dir=tmp_path)
    assert cli._demo(args) == 0
    assert ran == [8099]
    assert "http://127.0.0.1:8099/status" in capsys.readouterr().out


def test_a_failure_without_a_dimse_status_shows_only_its_words() -> None:
    nodes = snapshot()["nodes"]
    nodes[0]["failures"][0].update(status=None, status_words="PACS unavailable")
    failures = [t for t in page(nodes=nodes).by_id("nodes").iter("table")
                if "Last failures" in next(t.iter("caption")).text()]
    cells = list(next(failures[0].iter("tbody")).iter("td"))
    assert cells[1].text() == "PACS unavailable"
    assert not list(cells[1].iter("code"))


def test_a_series_retrieve_is_named_by_its_series() -> None:
    retrieves = snapshot()["retrieves"]
    retrieves[0].update(level="SERIES", series="1.2.3.4.5")
    buttons = [accessible_name(b) for b in page(retrieves=retrieves).by_id("retrieves")
               .iter("button")]
    assert buttons == ["Cancel the retrieve of series 1.2.3.4.5 from default"]
