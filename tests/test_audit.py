"""The audit log: one JSON line per access to patient data, through a real gateway.

The gateway fronts the demo PACS with an API key and ``audit_log`` set to a
file; each request carries its own ``X-Request-ID`` so its event can be found.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from corpus import Corpus, StudyInfo
from demo_gateway import NODE, demo_gateway
from dicomweb_gw.app import Gateway, create_app
from dicomweb_gw.audit_log import AuditLog
from dicomweb_gw.http.auth import key_id
from dicomweb_gw.settings import SettingsError, load_settings
from gateway_fixtures import RunningGateway

KEY = "audit-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
DICOM = 'multipart/related; type="application/dicom"'
EVENT_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory,
            corpus: Corpus) -> Iterator[tuple[RunningGateway, Path]]:
    tmp = tmp_path_factory.mktemp("audit")
    log_file = tmp / "audit.jsonl"
    study, big = corpus.study("ct_small"), corpus.study("big_ct")
    files = [i.path for s in (study, big) for i in s.instances]
    with demo_gateway(tmp, files, api_keys=(KEY,), audit_log=str(log_file)) as setup:
        yield setup.gateway, log_file


def _events(log_file: Path) -> list[dict[str, Any]]:
    if not log_file.exists():
        return []
    return [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines()]


def _event(log_file: Path, request_id: str) -> dict[str, Any]:
    """The event of one request (written by a thread, so waited for)."""
    deadline = time.monotonic() + EVENT_TIMEOUT
    while time.monotonic() < deadline:
        found = [e for e in _events(log_file) if e["request_id"] == request_id]
        if found:
            assert len(found) == 1, found
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no audit event for request {request_id}")


def _get(url: str, **headers: str) -> tuple[httpx.Response, str]:
    request_id = secrets.token_hex(8)
    response = httpx.get(url, headers={**AUTH, "X-Request-ID": request_id, **headers},
                         timeout=60)
    return response, request_id


def test_query_event_names_who_what_and_the_query(audited: tuple[RunningGateway, Path],
                                                   corpus: Corpus) -> None:
    gateway, log_file = audited
    response, request_id = _get(f"{gateway.dicomweb()}/studies?PatientName=Lestrade*&limit=5")
    assert response.status_code == 200, response.text
    event = _event(log_file, request_id)
    assert event["who"] == key_id(KEY)
    assert KEY not in json.dumps(event)  # the key's id, never the key
    assert event["auth"] == "api-key"
    assert event["action"] == "query"
    assert event["method"] == "GET"
    assert event["route"] == "/dicom-web/studies"
    assert event["pacs"] == NODE
    assert event["query"] == {"PatientName": "Lestrade*", "limit": "5"}
    assert event["status"] == 200
    assert event["outcome"] == "success"
    assert event["bytes_sent"] == len(response.content)
    assert event["bytes_received"] == 0
    assert event["client"] == "127.0.0.1"
    assert event["study"] is None
    assert event["duration_ms"] >= 0
    assert event["time"].endswith("Z")
    assert abs(datetime.fromisoformat(event["time"]).timestamp() - time.time()) < 60


@pytest.mark.parametrize(("path", "headers", "action", "route", "levels"), [
    ("/dicom-web/studies/{study}", {"Accept": DICOM}, "retrieve",
     "/dicom-web/studies/{study}", ("study",)),
    ("/pacs/demo/dicom-web/studies/{study}/series/{series}/metadata", {}, "retrieve",
     "/pacs/{pacs}/dicom-web/studies/{study}/series/{series}/metadata", ("study", "series")),
    ("/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/1",
     {"Accept": 'multipart/related; type="application/octet-stream"'}, "retrieve",
     "/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
     ("study", "series", "instance")),
    ("/dicom-web/studies/{study}/series/{series}/instances/{instance}/rendered",
     {"Accept": "image/jpeg"}, "retrieve",
     "/dicom-web/studies/{study}/series/{series}/instances/{instance}/rendered",
     ("study", "series", "instance")),
    ("/dicom-web/studies/{study}/series/{series}/instances", {}, "query",
     "/dicom-web/studies/{study}/series/{series}/instances", ("study", "series")),
    ("/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={instance}"
     "&contentType=application/dicom", {}, "retrieve", "/wado",
     ("study", "series", "instance")),
])
def test_retrieve_events_name_the_route_and_uids(
    audited: tuple[RunningGateway, Path], corpus: Corpus, path: str, headers: dict[str, str],
    action: str, route: str, levels: tuple[str, ...],
) -> None:
    gateway, log_file = audited
    study = corpus.study("ct_small")
    series = study.series[0]
    uids = {"study": study.study_uid, "series": series.series_uid,
            "instance": series.instances[0].sop_instance_uid}
    response, request_id = _get(gateway.url + path.format(**uids), **headers)
    assert response.status_code == 200, response.text
    event = _event(log_file, request_id)
    assert (event["action"], event["route"], event["outcome"]) == (action, route, "success")
    assert {key: event[key] for key in uids} == {
        key: uids[key] if key in levels else None for key in uids}
    assert event["bytes_sent"] == len(response.content)
    assert event["pacs"] == NODE


def test_store_event_counts_the_upload_and_names_the_stored_study(
    audited: tuple[RunningGateway, Path],
) -> None:
    gateway, log_file = audited
    ds = pydicom.dcmread(str(get_testdata_file("CT_small.dcm", download=False)))
    ds.StudyInstanceUID = study_uid = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    boundary = secrets.token_hex(8)
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + buffer.getvalue() + f"\r\n--{boundary}--\r\n".encode())
    request_id = secrets.token_hex(8)
    response = httpx.post(f"{gateway.dicomweb()}/studies", content=body, timeout=60, headers={
        **AUTH, "X-Request-ID": request_id, "Accept": "application/dicom+json",
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})
    assert response.status_code == 200, response.text
    event = _event(log_file, request_id)
    assert event["action"] == "store"
    assert event["method"] == "POST"
    assert event["route"] == "/dicom-web/studies"
    assert event["bytes_received"] == len(body)
    assert event["bytes_sent"] == len(response.content)
    assert event["stored_studies"] == [study_uid]
    assert event["study"] == study_uid


def test_refused_request_is_audited_as_a_failure(audited: tuple[RunningGateway, Path],
                                                 corpus: Corpus) -> None:
    gateway, log_file = audited
    request_id = secrets.token_hex(8)
    url = f"{gateway.dicomweb()}/studies/{corpus.study('ct_small').study_uid}/metadata"
    response = httpx.get(url, headers={"X-Request-ID": request_id}, timeout=30)
    assert response.status_code == 401
    event = _event(log_file, request_id)
    assert (event["who"], event["status"], event["outcome"]) == ("unauthenticated", 401,
                                                                 "failure")
    assert event["study"] == corpus.study("ct_small").study_uid


def test_invalid_uid_is_audited_as_a_failure(audited: tuple[RunningGateway, Path]) -> None:
    gateway, log_file = audited
    response, request_id = _get(f"{gateway.dicomweb()}/studies/1.2.x/metadata")
    assert response.status_code == 400
    event = _event(log_file, request_id)
    assert (event["status"], event["outcome"], event["study"]) == (400, "failure", "1.2.x")


def test_no_event_for_what_is_not_patient_data(audited: tuple[RunningGateway, Path]) -> None:
    gateway, log_file = audited
    ids = []
    for path in ("/healthz", "/metrics", "/openapi.json", "/dicom-web/capabilities",
                 "/pacs/demo/dicom-web/capabilities", "/no/such/route"):
        response, request_id = _get(gateway.url + path)
        assert response.status_code in (200, 404), path
        ids.append(request_id)
    # A later request's event is written after theirs would have been.
    _, marker = _get(f"{gateway.dicomweb()}/studies?limit=1")
    _event(log_file, marker)
    assert not {e["request_id"] for e in _events(log_file)} & set(ids)


def test_client_leaving_mid_stream_is_aborted(audited: tuple[RunningGateway, Path],
                                              corpus: Corpus) -> None:
    gateway, log_file = audited
    big: StudyInfo = corpus.study("big_ct")
    request_id = secrets.token_hex(8)
    with httpx.stream("GET", f"{gateway.dicomweb()}/studies/{big.study_uid}", timeout=60,
                      headers={**AUTH, "X-Request-ID": request_id, "Accept": DICOM}) as response:
        assert response.status_code == 200
        received = len(next(response.iter_raw()))
    event = _event(log_file, request_id)
    assert event["outcome"] == "aborted"
    assert event["status"] == 200
    assert received <= event["bytes_sent"] < big.total_bytes


def test_without_authentication_everyone_is_anonymous(tmp_path: Path) -> None:
    log_file = tmp_path / "audit.jsonl"
    app = create_app(load_settings(environ={"DICOMWEB_GW_CACHE_DIR": str(tmp_path / "cache"),
                                            "DICOMWEB_GW_AUDIT_LOG": str(log_file)}))

    async def call() -> httpx.Response:
        # No lifespan here: the audit log opens on its first event.
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return await client.get("/pacs/default/dicom-web/studies/1.2.x/series",
                                    headers={"X-Request-ID": "anon-1"})

    assert asyncio.run(call()).status_code == 400
    event = _event(log_file, "anon-1")
    app.state.gateway.audit.close()
    assert (event["who"], event["auth"], event["action"]) == ("anonymous", "none", "query")
    assert event["route"] == "/pacs/{pacs}/dicom-web/studies/{study}/series"
    assert event["pacs"] == "default"


# --- the sink --------------------------------------------------------------------------


def test_file_is_appended_to_and_readable_by_owner_and_group_only(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(str(path))
    audit.start()
    audit.write({"n": 1})
    audit.close()
    AuditLog(str(path)).write({"n": 2})  # opened on first write when never started
    deadline = time.monotonic() + EVENT_TIMEOUT
    while path.read_text().count("\n") < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"n": 1}, {"n": 2}]
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o007 == 0


def _lines_of(path: Path, count: int) -> list[dict[str, Any]]:
    """The events in ``path`` once it holds ``count`` lines (or what it holds at the deadline)."""
    deadline = time.monotonic() + EVENT_TIMEOUT
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= count:
            break
        time.sleep(0.02)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("rotate", ["rename", "delete"])
def test_file_moved_away_by_logrotate_is_reopened_at_the_configured_path(
    tmp_path: Path, rotate: str
) -> None:
    path = tmp_path / "audit.jsonl"
    rotated = tmp_path / "audit.jsonl.1"
    audit = AuditLog(str(path))
    audit.start()
    try:
        audit.write({"n": 1})
        assert _lines_of(path, 1) == [{"n": 1}]
        if rotate == "rename":
            path.rename(rotated)  # logrotate without copytruncate
        else:
            path.unlink()
        audit.write({"n": 2})
        audit.write({"n": 3})
        assert _lines_of(path, 2) == [{"n": 2}, {"n": 3}]
    finally:
        audit.close()
    if rotate == "rename":
        assert _lines_of(rotated, 1) == [{"n": 1}]
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o007 == 0


def test_stdout_target(capsys: pytest.CaptureFixture[str]) -> None:
    audit = AuditLog("stdout")
    audit.start()
    audit.write({"action": "query"})
    audit.close()
    assert json.loads(capsys.readouterr().out) == {"action": "query"}


def test_off_writes_nothing_and_starts_no_thread() -> None:
    audit = AuditLog("off")
    audit.start()
    audit.write({"action": "query"})
    assert not audit.enabled
    assert audit._thread is None


def test_write_does_not_wait_for_a_slow_destination() -> None:
    release = threading.Event()

    class Stalled(io.StringIO):
        def write(self, text: str) -> int:
            release.wait(10)
            return super().write(text)

    stream = Stalled()

    class StalledLog(AuditLog):
        def _open(self) -> tuple[TextIO, bool]:
            return stream, False

    audit = StalledLog("stalled")
    audit.start()
    started = time.perf_counter()
    for index in range(200):
        audit.write({"n": index})
    assert time.perf_counter() - started < 0.5
    release.set()
    audit.close()
    assert len(stream.getvalue().splitlines()) == 200


def test_unopenable_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="DICOMWEB_GW_AUDIT_LOG"):
        AuditLog(str(tmp_path / "missing-folder" / "audit.jsonl")).start()


# --- settings --------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("stdout", "stdout"), ("STDERR", "stderr"), (" off ", "off"),
    ("/var/log/dicomweb-gw/audit.jsonl", "/var/log/dicomweb-gw/audit.jsonl"),
])
def test_audit_log_from_the_environment(value: str, expected: str) -> None:
    assert load_settings(environ={"DICOMWEB_GW_AUDIT_LOG": value}).audit_log == expected


def test_audit_log_is_off_by_default_and_settable_in_toml(tmp_path: Path) -> None:
    assert load_settings(environ={}).audit_log == "off"
    config = tmp_path / "gw.toml"
    config.write_text('audit_log = "stdout"\n', encoding="utf-8")
    assert load_settings(environ={}, config_file=config).audit_log == "stdout"
    env = {"DICOMWEB_GW_AUDIT_LOG": str(tmp_path / "a.jsonl")}
    assert load_settings(environ=env, config_file=config).audit_log == str(tmp_path / "a.jsonl")


@pytest.mark.parametrize("text", ['audit_log = ""', "audit_log = 1", "audit_log = true"])
def test_invalid_audit_log_in_toml(tmp_path: Path, text: str) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="audit_log"):
        load_settings(environ={}, config_file=config)


def test_gateway_does_not_start_with_an_unwritable_audit_log(tmp_path: Path) -> None:
    settings = load_settings(environ={"DICOMWEB_GW_CACHE_DIR": str(tmp_path / "cache"),
                                      "DICOMWEB_GW_RETRIEVE": "c-get",
                                      "DICOMWEB_GW_AUDIT_LOG": str(tmp_path / "no" / "a.log")})
    with pytest.raises(SettingsError, match="audit log"):
        Gateway(settings).start()
