"""Three gateway processes, one Redis, one shared store, in front of a real PACS.

A counting TCP proxy sits between the replicas and the PACS, so "exactly one
retrieve reached the PACS" is counted from the DIMSE requests themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import httpx
import pytest
import redis
from pydicom import dcmread

from cluster_fixtures import RedisServer, Replica, running_replicas
from corpus import Corpus, StudyInfo
from dicomweb_gw.cache.blobs import TEMP_PREFIX
from multipart_helpers import parse_multipart
from pacs_fixtures import DCMQRSCP_AE_TITLE, RunningPacs, free_port, running_dcmqrscp
from s3_fixtures import CREDENTIALS, REGION, S3Server
from tcp_proxy import C_FIND_RQ, C_GET_RQ, C_MOVE_RQ, TcpProxy

pytestmark = pytest.mark.pacs

ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
CLIENTS = 30


def _env(pacs_port: int, redis_url: str, shared: Path, retrieve: str) -> dict[str, str]:
    return {
        "DICOMWEB_GW_PACS_HOST": "127.0.0.1",
        "DICOMWEB_GW_PACS_PORT": str(pacs_port),
        "DICOMWEB_GW_PACS_AE_TITLE": DCMQRSCP_AE_TITLE,
        "DICOMWEB_GW_RETRIEVE": retrieve,
        "DICOMWEB_GW_REDIS_URL": redis_url,
        "DICOMWEB_GW_SHARED_STORE": f"file://{shared}",
        "DICOMWEB_GW_LEASE_SECONDS": "2",
    }


async def _fetch_study(url: str, study_uid: str) -> set[str] | BaseException:
    """The SOP Instance UIDs of a whole-study response, or the error the client saw."""
    try:
        async with httpx.AsyncClient(timeout=120) as client:
            response = await client.get(f"{url}/dicom-web/studies/{study_uid}",
                                        headers={"Accept": ACCEPT_DICOM})
        if response.status_code != 200:
            return RuntimeError(f"{response.status_code}: {response.text[:200]}")
        parts = parse_multipart(response.headers["content-type"], response.content)
    except (httpx.HTTPError, ValueError) as exc:
        return exc
    return {str(dcmread(BytesIO(part.body)).SOPInstanceUID) for part in parts}


def _spread(replicas: list[Replica], study_uid: str,
            clients: int = CLIENTS) -> list[set[str] | BaseException]:
    async def all_clients() -> list[set[str] | BaseException]:
        return await asyncio.gather(*(
            _fetch_study(replicas[i % len(replicas)].url, study_uid) for i in range(clients)))

    return asyncio.run(all_clients())


def _expected(study: StudyInfo) -> set[str]:
    return {instance.sop_instance_uid for instance in study.instances}


def _shared_files(shared: Path) -> list[Path]:
    return [path for path in shared.rglob("*") if path.is_file()]


@pytest.fixture
def shared_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "shared"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("backend", ["folder", "s3"])
def test_thirty_clients_on_three_replicas_cause_one_c_get(
    dcmqrscp_pacs: RunningPacs, corpus: Corpus, redis_server: RedisServer,
    shared_dir: Path, tmp_path: Path, backend: str, request: pytest.FixtureRequest,
) -> None:
    # S3 (moto, in Python) is slower than a folder: a smaller study keeps the suite short.
    study = corpus.study("big_ct" if backend == "folder" else "ct_small")
    with TcpProxy([(dcmqrscp_pacs.host, dcmqrscp_pacs.port)]) as proxy, running_replicas(
        3, tmp_path, {**_env(proxy.port, redis_server.url, shared_dir, "c-get"),
                      # Split even on loopback, so the split retrieve is shared too.
                      "DICOMWEB_GW_PACS_RETRIEVE_SPLIT_ABOVE": "0",
                      **(_s3_env(request, tmp_path.name) if backend == "s3" else {})}
    ) as replicas:
        results = _spread(replicas, study.study_uid)

        assert [r for r in results if not isinstance(r, set)] == []
        assert all(r == _expected(study) for r in results)
        # One retrieve: big_ct's 100 instances go in 4 requests at once (retrieve_associations).
        assert proxy.commands[C_GET_RQ] == (4 if backend == "folder" else 1)
        roles = {role: sum(r.metric("dicomweb_gw_cluster_flights_total", f'role="{role}"')
                           for r in replicas) for role in ("owned", "followed", "alone")}
        assert roles["owned"] == 1
        assert roles["alone"] == 0
        if backend == "folder":  # every instance went once into the shared store, whole
            files = [p for p in _shared_files(shared_dir) if p.suffix == ".dcm"]
            assert len(files) == len(study.instances)


def test_c_move_landing_on_another_replica_reaches_the_owner(
    corpus: Corpus, redis_server: RedisServer, shared_dir: Path, tmp_path: Path,
) -> None:
    """The PACS sends every C-STORE of the move to the one replica no client asked."""
    study = corpus.study("ct_small")
    service_port = free_port()  # the "Service" the PACS knows
    with running_dcmqrscp(tmp_path / "pacs", study.instances, service_port) as pacs, \
            TcpProxy([(pacs.host, pacs.port)]) as proxy, \
            running_replicas(3, tmp_path, _env(proxy.port, redis_server.url, shared_dir,
                                               "c-move")) as replicas, \
            TcpProxy([("127.0.0.1", replicas[2].store_port)], port=service_port):
        results = _spread(replicas[:2], study.study_uid, clients=10)

        assert [r for r in results if not isinstance(r, set)] == []
        assert [len(r) for r in results] == [len(study.instances)] * 10, [
            replica.log()[-3000:] for replica in replicas]
        assert all(r == _expected(study) for r in results)
        assert proxy.commands[C_MOVE_RQ] == 1


@pytest.fixture
def slow_study(corpus: Corpus) -> StudyInfo:
    return corpus.study("big_ct")


def test_killing_the_replica_that_retrieves_lets_the_others_finish(
    dcmqrscp_pacs: RunningPacs, slow_study: StudyInfo, redis_server: RedisServer,
    shared_dir: Path, tmp_path: Path,
) -> None:
    # ~53 MB at 15 MB/s: about 3.5 s of transfer, time to kill the owner mid-way.
    with TcpProxy([(dcmqrscp_pacs.host, dcmqrscp_pacs.port)],
                  bytes_per_second=15e6) as proxy, running_replicas(
        3, tmp_path, {**_env(proxy.port, redis_server.url, shared_dir, "c-get"),
                      # One association: the throttle is per connection.
                      "DICOMWEB_GW_PACS_RETRIEVE_ASSOCIATIONS": "1"}
    ) as replicas:
        owner = replicas[0]

        async def scenario() -> tuple[list[set[str] | BaseException],
                                      list[set[str] | BaseException]]:
            # The first replica starts the retrieve alone; the others join it once under way.
            on_owner = [asyncio.ensure_future(_fetch_study(owner.url, slow_study.study_uid))
                        for _ in range(3)]
            await _until(lambda: _landed_entries(redis_server) >= 5)
            others = [asyncio.ensure_future(_fetch_study(replicas[1 + i % 2].url,
                                                         slow_study.study_uid))
                      for i in range(6)]
            await _until(lambda: _followers(replicas[1:]))
            owner.kill()
            return list(await asyncio.gather(*on_owner)), list(await asyncio.gather(*others))

        from_owner, from_others = asyncio.run(scenario())

        # Clients of the dead replica see an error, never a short "complete" study.
        assert all(isinstance(r, BaseException) or r == _expected(slow_study)
                   for r in from_owner)
        assert any(isinstance(r, BaseException) for r in from_owner)
        # The survivors took over and delivered everything.
        assert [r for r in from_others if not isinstance(r, set)] == []
        assert all(r == _expected(slow_study) for r in from_others)
        assert proxy.commands[C_GET_RQ] == 2  # the first, and the one take-over
        took_over = sum(r.metric("dicomweb_gw_cluster_flights_total", 'role="took_over"')
                        for r in replicas[1:])
        assert took_over == 1
        # No partial instance in the shared store: the killed replica's upload in
        # progress stayed a temp file (swept at the next start), never an instance.
        visible = [p for p in _shared_files(shared_dir) if not p.name.startswith(TEMP_PREFIX)]
        assert all(p.suffix in (".dcm", ".json") for p in visible), visible
        for path in visible:
            if path.suffix == ".dcm":
                instance = dcmread(path)
                assert len(instance.PixelData) == (
                    instance.Rows * instance.Columns * instance.BitsAllocated // 8)


def test_redis_down_means_per_replica_service_not_errors(
    dcmqrscp_pacs: RunningPacs, corpus: Corpus, redis_server: RedisServer,
    shared_dir: Path, tmp_path: Path,
) -> None:
    study = corpus.study("ct_small")
    with running_replicas(2, tmp_path, _env(dcmqrscp_pacs.port, redis_server.url, shared_dir,
                                            "c-get")) as replicas:
        redis_server.stop()
        results = _spread(replicas, study.study_uid, clients=4)
        qido = httpx.get(f"{replicas[0].url}/dicom-web/studies",
                         params={"PatientID": study.patient_id}, timeout=30)

        assert [r for r in results if not isinstance(r, set)] == []
        assert all(r == _expected(study) for r in results)
        assert qido.status_code == 200
        assert [item["0020000D"]["Value"][0] for item in qido.json()] == [study.study_uid]
        for replica in replicas:
            assert replica.metric("dicomweb_gw_redis_up") == 0
            assert replica.metric("dicomweb_gw_redis_errors_total") > 0
            assert "carrying on per replica" in replica.log()


def test_series_metadata_built_once_for_the_cluster(
    dcmqrscp_pacs: RunningPacs, corpus: Corpus, redis_server: RedisServer,
    shared_dir: Path, tmp_path: Path,
) -> None:
    study = corpus.study("ct_small")
    series = study.series[0]
    with TcpProxy([(dcmqrscp_pacs.host, dcmqrscp_pacs.port)]) as proxy, running_replicas(
        2, tmp_path, _env(proxy.port, redis_server.url, shared_dir, "c-get")
    ) as replicas:
        path = f"/dicom-web/studies/{study.study_uid}/series/{series.series_uid}/metadata"
        first = httpx.get(replicas[0].url + path, timeout=60)
        retrieves = proxy.commands[C_GET_RQ]
        second = httpx.get(replicas[1].url + path, timeout=60)

        assert first.status_code == second.status_code == 200
        # Equal but for the BulkDataURIs, which name the replica that answered.
        assert first.text.replace(replicas[0].url, "") == second.text.replace(replicas[1].url, "")
        assert len(second.json()) == len(series.instances)
        assert retrieves == 1
        assert proxy.commands[C_GET_RQ] == 1  # the second replica asked Redis, not the PACS


# -- helpers -------------------------------------------------------------------

def _s3_env(request: pytest.FixtureRequest, prefix: str) -> dict[str, str]:
    """The shared store in moto's S3-compatible server instead of a folder."""
    server: S3Server = request.getfixturevalue("s3_server")
    return {"DICOMWEB_GW_SHARED_STORE": f"{server.url}/{prefix}",
            "DICOMWEB_GW_S3_ENDPOINT": server.endpoint,
            "DICOMWEB_GW_S3_REGION": REGION,
            "AWS_ACCESS_KEY_ID": str(CREDENTIALS["access_key_id"]),
            "AWS_SECRET_ACCESS_KEY": str(CREDENTIALS["secret_access_key"])}


def _landed_entries(server: RedisServer) -> int:
    client = redis.Redis(port=server.port)
    try:
        return sum(int(client.xlen(key)) for key in client.scan_iter("dicomweb-gw:landed:*"))
    finally:
        client.close()


def _followers(replicas: list[Replica]) -> bool:
    return sum(r.metric("dicomweb_gw_cluster_flights_total", 'role="followed"')
               for r in replicas) >= 2


async def _until(condition: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def test_qido_answers_are_shared_until_a_purge(
    dcmqrscp_pacs: RunningPacs, corpus: Corpus, redis_server: RedisServer,
    shared_dir: Path, tmp_path: Path,
) -> None:
    study = corpus.study("ct_small")
    with TcpProxy([(dcmqrscp_pacs.host, dcmqrscp_pacs.port)]) as proxy, running_replicas(
        2, tmp_path, _env(proxy.port, redis_server.url, shared_dir, "c-get")
    ) as replicas:
        def search(replica: Replica, **headers: str) -> list[str]:
            answer = httpx.get(f"{replica.url}/dicom-web/studies",
                               params={"PatientID": study.patient_id}, headers=headers,
                               timeout=30)
            assert answer.status_code == 200
            return [item["0020000D"]["Value"][0] for item in answer.json()]

        first = search(replicas[0])
        finds = proxy.commands[C_FIND_RQ]
        second = search(replicas[1])
        finds_after_second = proxy.commands[C_FIND_RQ]
        no_cache = search(replicas[1], **{"Cache-Control": "no-cache"})
        finds_after_no_cache = proxy.commands[C_FIND_RQ]
        purge = httpx.delete(f"{replicas[1].url}/cache/studies/{study.study_uid}", timeout=30)
        third = search(replicas[0])

        assert first == second == no_cache == third == [study.study_uid]
        assert finds >= 1
        assert finds_after_second == finds  # the other replica answered from Redis
        assert finds_after_no_cache > finds_after_second  # "no-cache": asked the PACS
        assert purge.status_code == 200
        assert proxy.commands[C_FIND_RQ] > finds_after_no_cache  # a purge: everyone asks again
