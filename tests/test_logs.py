"""Request ids on responses and log lines; JSON log lines when asked."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import orjson
import pytest

from dicomweb_gw.app import create_app
from dicomweb_gw.logs import REQUEST_ID, _JsonFormatter, _RequestIdFilter, new_request_id
from dicomweb_gw.settings import load_settings


def _get(tmp_path: Path, path: str, headers: dict[str, str]) -> httpx.Response:
    app = create_app(load_settings(environ={"DICOMWEB_GW_CACHE_DIR": str(tmp_path)}))

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(call())


def test_request_id_is_echoed_or_made_up(tmp_path: Path) -> None:
    given = _get(tmp_path, "/healthz", {"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = _get(tmp_path, "/healthz", {})
    assert len(made.headers["x-request-id"]) == 16
    hostile = _get(tmp_path, "/healthz", {"X-Request-ID": "a b<script>"})
    assert hostile.headers["x-request-id"] != "a b<script>"


def test_log_lines_of_a_request_carry_its_id(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(_RequestIdFilter())
    with caplog.at_level(logging.INFO, logger="dicomweb_gw"):
        response = _get(tmp_path, "/dicom-web/studies?StudyDate=2023-13-01",
                        {"X-Request-ID": "req-42"})
    assert response.status_code == 400
    # Only the gateway's own lines: httpx (the test's client) logs "400" too, outside any request.
    ids = {getattr(r, "request_id", None) for r in caplog.records
           if r.name.startswith("dicomweb_gw") and "400" in r.getMessage()}
    assert ids == {"req-42"}


def test_json_lines_are_parseable_and_carry_the_request_id() -> None:
    record = logging.LogRecord("dicomweb_gw.test", logging.WARNING, __file__, 1,
                               "PACS '%s' failed", ("main",), None)
    token = REQUEST_ID.set("r-7")
    try:
        _RequestIdFilter().filter(record)
    finally:
        REQUEST_ID.reset(token)
    entry = orjson.loads(_JsonFormatter().format(record))
    assert entry["message"] == "PACS 'main' failed"
    assert entry["request_id"] == "r-7"
    assert entry["level"] == "WARNING"


def test_new_request_id_rejects_long_or_odd_tokens() -> None:
    assert new_request_id("x" * 64) == "x" * 64
    assert new_request_id("x" * 65) != "x" * 65
    assert new_request_id("ok:1.2_3") == "ok:1.2_3"
