"""``GET /admin/status`` and the status page's actions (issue #20), against real PACS.

The snapshot's shape is checked against the contract with the suite's gateway in
front of dcmqrscp and Orthanc; the behaviours (a node turning red when its PACS
stops, a 0xA801 failure with its fix, a retrieve in flight cancelled, a study
purged) against the quirky PACS, which can stop, refuse and dawdle on demand.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster_fixtures import RedisServer, running_replicas
from corpus import Corpus
from dicomweb_gw.dicomweb.flights import FlightTable, Landed, flying
from dicomweb_gw.errors import PacsUnavailable
from dicomweb_gw.model import CachedInstance, RetrieveKeys, RetrieveReport
from dicomweb_gw.settings import load_settings
from dicomweb_gw.settings.registry import GATEWAY_SETTINGS
from dicomweb_gw.settings.summary import settings_summary
from gateway_fixtures import KEEPALIVE_EXPIRY, RunningGateway
from pacs_fixtures import free_port
from quirky_pacs import Quirks, SampleStudy, quirky_gateway, sample_studies

pytestmark = pytest.mark.timeout(120)

DICOM = 'multipart/related; type="application/dicom"'
JSON = {"Accept": "application/json"}
#: How long a test waits for something the gateway does in the background.
PATIENCE = 30.0

NODE_KEYS = {"name", "ae_title", "host", "port", "calling_ae", "retrieve", "health",
             "health_message", "echo", "doctor", "associations", "operations_per_minute",
             "failures"}
RETRIEVE_KEYS = {"id", "node", "level", "study", "series", "instance", "received", "expected",
                 "bytes", "mb_per_second", "age_seconds", "waiters", "prefetch"}
CACHE_KEYS = {"bytes", "max_bytes", "studies", "hits", "misses", "hit_rate", "evictions",
              "largest_studies"}


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30.0,
                        limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY))


def _status(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/admin/status")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


def _wait_for(client: httpx.Client, ready: Callable[[dict[str, Any]], bool],
              what: str) -> dict[str, Any]:
    deadline = time.monotonic() + PATIENCE
    while True:
        snapshot = _status(client)
        if ready(snapshot):
            return snapshot
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {PATIENCE:g} s: {json.dumps(snapshot)}")
        time.sleep(0.2)


def _node(snapshot: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(n for n in snapshot["nodes"] if n["name"] == name)
    return found


def _post(client: httpx.Client, path: str, token: str, **kwargs: Any) -> httpx.Response:
    return client.post(path, headers={**JSON, "X-CSRF-Token": token}, **kwargs)


def _files(studies: list[SampleStudy]) -> list[Path]:
    return [path for study in studies for path in study.paths]


def _audit_events(path: Path, action: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + PATIENCE
    while True:
        events = [json.loads(line) for line in path.read_text().splitlines()
                  if line.strip()] if path.exists() else []
        found = [e for e in events if e.get("type") == "admin" and e["action"] == action]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


# --- the shape, with dcmqrscp and Orthanc ------------------------------------------------


@pytest.fixture
def watched_gateway(gateway: RunningGateway) -> Iterator[RunningGateway]:
    """The suite's gateway, its background C-ECHOs stopped afterwards: other tests count
    its associations and DIMSE threads."""
    yield gateway
    gateway.app.state.status_board.stop_watching()



def test_snapshot_follows_the_contract(watched_gateway: RunningGateway, corpus: Corpus) -> None:
    gateway = watched_gateway
    study = corpus.uncompressed_studies[0]
    with _client(gateway.url) as client:
        retrieved = client.get(f"/dicom-web/studies/{study.study_uid}", headers={"Accept": DICOM})
        assert retrieved.status_code == 200
        snapshot = _wait_for(client, lambda s: all(n["health"] == "ok" for n in s["nodes"]),
                             "every node green")
    assert set(snapshot) == {"generated_at", "gateway", "auth", "csrf_token", "config", "nodes",
                             "retrieves", "cache", "cluster"}
    assert snapshot["generated_at"].endswith("Z")
    assert set(snapshot["gateway"]) == {"version", "started_at", "uptime_seconds", "replica_id",
                                        "base_url"}
    assert snapshot["gateway"]["base_url"] == f"{gateway.url}/dicom-web"
    assert snapshot["auth"]["enabled"] is False
    assert "Authentication is off" in snapshot["auth"]["warning"]
    assert snapshot["csrf_token"]
    config = {row["name"]: row["value"] for row in snapshot["config"]}
    assert config["ae_title"] == gateway.settings.ae_title
    assert config["pacs.dcmqrscp.retrieve"] == "c-move"
    assert [n["name"] for n in snapshot["nodes"]] == ["dcmqrscp", "orthanc", "orthanc-move"]
    for node in snapshot["nodes"]:
        assert set(node) == NODE_KEYS
        assert node["calling_ae"] == gateway.settings.ae_title
        assert node["echo"]["ok"] is True
        assert node["associations"]["max"] >= 1
    dcmqrscp = _node(snapshot, "dcmqrscp")
    assert dcmqrscp["health_message"].startswith("C-ECHO answered in ")
    counted = {(row["operation"], row["outcome"]) for row in dcmqrscp["operations_per_minute"]}
    assert ("C-ECHO", "success") in counted
    assert ("C-MOVE", "success") in counted
    assert snapshot["retrieves"] == []
    cache = snapshot["cache"]
    assert set(cache) >= CACHE_KEYS
    assert cache["bytes"] > 0
    assert cache["max_bytes"] == gateway.settings.cache_max_bytes
    listed = {(row["node"], row["study"]) for row in cache["largest_studies"]}
    assert ("dcmqrscp", study.study_uid) in listed
    assert snapshot["cluster"] is None


def test_no_patient_data_in_the_snapshot(watched_gateway: RunningGateway,
                                         corpus: Corpus) -> None:
    gateway = watched_gateway
    with _client(gateway.url) as client:
        for study in corpus.uncompressed_studies[:2]:
            assert client.get(f"/dicom-web/studies/{study.study_uid}",
                              headers={"Accept": DICOM}).status_code == 200
        text = json.dumps(_status(client), ensure_ascii=False)
    for study in corpus.uncompressed_studies:
        assert study.patient_name not in text
        assert study.patient_name.replace("^", " ") not in text
        assert f'"{study.patient_id}"' not in text


# --- behaviours, with the quirky PACS -----------------------------------------------------


@pytest.fixture
def studies(tmp_path: Path) -> list[SampleStudy]:
    return sample_studies(tmp_path, count=2)


def test_node_turns_failing_when_its_pacs_stops(tmp_path: Path,
                                                studies: list[SampleStudy]) -> None:
    with quirky_gateway(tmp_path, _files(studies), status_echo_interval=1.0) as setup, \
            _client(setup.gateway.url) as client:
        first = _status(client)
        assert _node(first, "quirky")["health"] in ("unknown", "ok")
        _wait_for(client, lambda s: _node(s, "quirky")["health"] == "ok", "green")
        setup.pacs.stop()
        snapshot = _wait_for(client, lambda s: _node(s, "quirky")["health"] == "failing",
                             "red after the PACS stopped")
    node = _node(snapshot, "quirky")
    assert node["health_message"].startswith("C-ECHO failed: PACS 'quirky'")
    assert node["echo"]["ok"] is False
    assert node["failures"][0]["operation"] == "C-ECHO"


def test_move_destination_unknown_shows_its_words_and_fix(
        tmp_path: Path, studies: list[SampleStudy]) -> None:
    quirks = Quirks(registered_destinations={})
    with quirky_gateway(tmp_path, _files(studies), quirks=quirks, retrieve="c-move") as setup, \
            _client(setup.gateway.url) as client:
        refused = client.get(f"/dicom-web/studies/{studies[0].study_uid}",
                             headers={"Accept": DICOM})
        assert refused.status_code == 502
        snapshot = _status(client)
    node = _node(snapshot, "quirky")
    assert node["health"] == "failing"
    failure = node["failures"][0]
    assert failure["operation"] == "C-MOVE"
    assert failure["status"] == "0xA801"
    assert failure["status_words"] == "Move destination unknown"
    store_address = f"127.0.0.1:{setup.store_port}"
    assert failure["fix"].startswith(
        f"register AE title '{setup.gateway.settings.ae_title}' at {store_address} on "
        f"{setup.pacs.ae_title}")
    assert ("C-MOVE", "misconfigured") in {(r["operation"], r["outcome"])
                                           for r in node["operations_per_minute"]}


def test_echo_action(tmp_path: Path, studies: list[SampleStudy]) -> None:
    audit = tmp_path / "audit.log"
    with quirky_gateway(tmp_path, _files(studies), audit_log=str(audit)) as setup, \
            _client(setup.gateway.url) as client:
        token = _status(client)["csrf_token"]
        answer = _post(client, "/admin/pacs/quirky/echo", token)
        assert answer.status_code == 200
        assert answer.json()["ok"] is True
        assert answer.json()["message"].startswith("PACS 'quirky' answered C-ECHO in ")
        assert _node(_status(client), "quirky")["echo"]["ok"] is True
        missing = _post(client, "/admin/pacs/nosuch/echo", token)
        assert missing.status_code == 404
        assert missing.json() == {"ok": False, "message": "no PACS node named 'nosuch'"}
    [event, _] = _audit_events(audit, "echo")
    assert (event["target"], event["outcome"], event["who"]) == ("quirky", "success",
                                                                 "anonymous")


def test_retrieve_in_flight_is_listed_and_cancellable(
        tmp_path: Path, studies: list[SampleStudy]) -> None:
    # The PACS waits before its first C-STORE (keeping the association alive with
    # Pendings), so the retrieve stays in flight until it is cancelled.
    quirks = Quirks(first_store_delay=60.0, pending_every=0.5)
    audit = tmp_path / "audit.log"
    study = studies[0].study_uid
    with quirky_gateway(tmp_path, _files(studies), quirks=quirks, audit_log=str(audit),
                        node={"prefetch": False}) as setup, \
            _client(setup.gateway.url) as client:
        outcome: dict[str, Any] = {}

        def viewer() -> None:
            with _client(setup.gateway.url) as own:
                try:
                    response = own.get(f"/dicom-web/studies/{study}", headers={"Accept": DICOM})
                    outcome["status"], outcome["body"] = response.status_code, response.text
                except httpx.HTTPError as exc:  # the stream broken off is an outcome too
                    outcome["error"] = exc

        thread = threading.Thread(target=viewer)
        thread.start()
        snapshot = _wait_for(client, lambda s: bool(s["retrieves"]), "a retrieve in flight")
        [flight] = snapshot["retrieves"]
        assert set(flight) == RETRIEVE_KEYS
        assert (flight["node"], flight["level"], flight["study"]) == ("quirky", "STUDY", study)
        assert (flight["received"], flight["waiters"], flight["prefetch"]) == (0, 1, False)
        # Its size comes from the PACS's Pending responses (not from a listing: one request).
        in_study = len(studies[0].paths)
        snapshot = _wait_for(client, lambda s: [r["expected"] for r in s["retrieves"]]
                             == [in_study], f"{in_study} instances expected")
        assert _post(client, "/admin/retrieves/r-0/cancel", snapshot["csrf_token"]
                     ).status_code == 404
        # Cancelled once the PACS has the C-GET, so that there is something to C-CANCEL.
        deadline = time.monotonic() + PATIENCE
        while not setup.pacs.retrieves and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [kind for kind, _ in setup.pacs.retrieves] == ["C-GET"]
        answer = _post(client, f"/admin/retrieves/{flight['id']}/cancel",
                       snapshot["csrf_token"])
        assert answer.status_code == 200, answer.text
        assert answer.json()["ok"] is True
        thread.join(PATIENCE)
        assert not thread.is_alive()
        # The waiter was told (a 503 before any part was sent).
        assert outcome.get("status") == 503
        assert "cancelled by an administrator" in outcome["body"]
        _wait_for(client, lambda s: not s["retrieves"], "no retrieve in flight")
        deadline = time.monotonic() + PATIENCE
        while setup.pacs.cancels_received == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert setup.pacs.cancels_received >= 1  # the PACS got its C-CANCEL
    assert [(e["target"], e["outcome"]) for e in _audit_events(audit, "cancel")] == [
        ("r-0", "failure"), (flight["id"], "success")]


def test_purge_removes_the_study(tmp_path: Path, studies: list[SampleStudy]) -> None:
    audit = tmp_path / "audit.log"
    study = studies[0].study_uid
    with quirky_gateway(tmp_path, _files(studies), audit_log=str(audit)) as setup, \
            _client(setup.gateway.url) as client:
        assert client.get(f"/dicom-web/studies/{study}",
                          headers={"Accept": DICOM}).status_code == 200
        snapshot = _wait_for(client, lambda s: any(
            r["study"] == study for r in s["cache"]["largest_studies"]), "the study cached")
        [row] = [r for r in snapshot["cache"]["largest_studies"] if r["study"] == study]
        assert (row["node"], row["instances"]) == ("quirky", 2)
        assert row["bytes"] > 0
        token = snapshot["csrf_token"]
        answer = _post(client, f"/admin/cache/studies/{study}/purge?pacs=quirky", token)
        assert answer.status_code == 200
        assert answer.json() == {"ok": True, "message": f"purged 2 instance(s) of study {study} "
                                                        "from the cache of 'quirky'"}
        after = _status(client)
        assert study not in {r["study"] for r in after["cache"]["largest_studies"]}
        assert after["cache"]["studies"] == 0
        bad_uid = _post(client, "/admin/cache/studies/not-a-uid/purge", token)
        assert bad_uid.status_code == 400
        unknown_node = _post(client, f"/admin/cache/studies/{study}/purge?pacs=nosuch", token)
        assert unknown_node.status_code == 404
    [event, *_] = _audit_events(audit, "purge")
    assert (event["study"], event["pacs"], event["outcome"]) == (study, "quirky", "success")


def test_quirky_patient_data_stays_out(tmp_path: Path, studies: list[SampleStudy]) -> None:
    with quirky_gateway(tmp_path, _files(studies)) as setup, \
            _client(setup.gateway.url) as client:
        for study in studies:
            assert client.get(f"/dicom-web/studies/{study.study_uid}",
                              headers={"Accept": DICOM}).status_code == 200
        text = json.dumps(_status(client), ensure_ascii=False)
    assert "Quirky" not in text
    assert "QUIRKY-" not in text


# --- the flight table's side, without a PACS ----------------------------------------------


def test_cancel_ends_every_waiter_with_the_admin_error() -> None:
    study = "1.2.3"
    started = asyncio.Event()

    async def produce(keys: RetrieveKeys) -> AsyncGenerator[Landed, None]:
        handle = CachedInstance(study, "1.2.3.1", "1.2.3.1.1", "1.2.840.10008.5.1.4.1.1.2",
                                "1.2.840.10008.1.2.1", Path("/nonexistent"), 1234)
        flight = flying()  # as InstanceSource's producer shows its PACS's counts
        assert flight is not None
        assert flight.keys == keys
        flight.progress = RetrieveReport()
        yield Landed(study, "1.2.3.1", "1.2.3.1.1", handle)
        started.set()
        await asyncio.sleep(3600)  # a PACS that takes its time

    async def wait(table: FlightTable) -> BaseException | None:
        try:
            async with aclosing(table.join("main", RetrieveKeys(study), produce)) as landed:
                async for _ in landed:
                    pass
        except PacsUnavailable as exc:
            return exc
        return None

    async def scenario() -> None:
        table = FlightTable()
        waiters = [asyncio.create_task(wait(table)) for _ in range(2)]
        await started.wait()
        [flight] = table.live()
        assert (flight.waiters, flight.bytes, len(flight.landed)) == (2, 1234, 1)
        assert flight.expected is None
        flight.expect({"1.2.3.1": frozenset({"1.2.3.1.1", "1.2.3.1.2"})})
        assert flight.expected == 2
        flight.manifest = None
        assert flight.progress is not None  # the producer ran in the flight's task
        flight.progress.expected = 7  # as the PACS's Pending responses say
        assert flight.expected == 7
        assert table.cancel("r-nosuch") is None
        assert table.cancel(flight.id) is flight
        errors = await asyncio.gather(*waiters)
        for error in errors:
            assert isinstance(error, PacsUnavailable)
            assert "cancelled by an administrator" in error.message
        assert table.live() == []

    asyncio.run(scenario())


# --- several replicas ----------------------------------------------------------------------


def test_replicas_see_each_other_and_take_each_others_tokens(
        tmp_path: Path, redis_server: RedisServer) -> None:
    admin = "adm1n-0123456789abcdef"
    env = {"DICOMWEB_GW_REDIS_URL": redis_server.url,
           "DICOMWEB_GW_SHARED_STORE": f"file://{tmp_path / 'shared'}",
           "DICOMWEB_GW_API_KEYS": f"{admin} admin",
           "DICOMWEB_GW_PACS_PORT": str(free_port())}
    (tmp_path / "shared").mkdir()
    key = {"X-API-Key": admin, **JSON}
    with running_replicas(2, tmp_path / "replicas", env) as (one, two), \
            _client(one.url) as client_one, _client(two.url) as client_two:
        client_one.headers.update(key)
        client_two.headers.update(key)
        snapshot = _wait_for(client_one, lambda s: len(s["cluster"]["replicas"]) == 2,
                             "both replicas seen")
        _wait_for(client_two, lambda s: len(s["cluster"]["replicas"]) == 2,
                  "both replicas seen from the other")
        cluster = snapshot["cluster"]
        assert cluster["redis"] == {"url": redis_server.url, "reachable": True}
        assert cluster["shared_store"]["reachable"] is True
        mine = [r for r in cluster["replicas"] if r["self"]]
        assert [r["id"] for r in mine] == [snapshot["gateway"]["replica_id"]]
        # A token the page got from one replica passes on the other (a load balancer
        # may send the POST anywhere).
        answer = client_two.post("/admin/cache/studies/1.2.3.4/purge",
                                 headers={"X-CSRF-Token": snapshot["csrf_token"]})
        assert answer.status_code == 200, answer.text


def test_the_configuration_is_shown_with_secrets_masked() -> None:
    key, admin = "k3y-0123456789abcdef", "adm1n-0123456789abcdef"
    settings = load_settings(environ={
        "DICOMWEB_GW_API_KEYS": f"{key},{admin} admin",
        "DICOMWEB_GW_REDIS_URL": "redis://gw:s3cret@redis.example.org:6379/0",
        "DICOMWEB_GW_SHARED_STORE": "s3://bucket/prefix"})
    rows = dict(settings_summary(settings))
    assert rows["api_keys"] == "•••• (2 keys, 1 admin)"
    assert rows["redis_url"] == "redis://***@redis.example.org:6379/0"
    assert rows["shared_store"] == "s3://bucket/prefix"
    assert rows["pacs.default.relational"] == "auto"  # None shown as the word it stands for
    assert {name for name, _ in settings_summary(settings)} >= {
        s.name for s in GATEWAY_SETTINGS}
    text = repr(rows)
    for secret in (key, admin, "s3cret"):
        assert secret not in text
