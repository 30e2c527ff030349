"""Series metadata shared through a real Redis: what one replica built, another reads,
and a purge on any replica forgets it everywhere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cluster_fixtures import RedisServer
from dicomweb_gw.cache.disk import DiskInstanceStore
from dicomweb_gw.cluster.link import RedisLink
from dicomweb_gw.cluster.shared_caches import MetadataSharingStore, qido_generation_key

STUDY, SERIES_A, SERIES_B = "1.2.3", "1.2.3.1", "1.2.3.2"


@pytest.fixture
def replicas(redis_server: RedisServer, tmp_path: Path) -> Iterator[list[MetadataSharingStore]]:
    """Three replicas' stores: each its own disk cache, one Redis."""
    stores = [MetadataSharingStore(DiskInstanceStore(tmp_path / f"r{i}", 10**8),
                                   RedisLink(redis_server.url), node="main", ttl=60)
              for i in range(3)]
    yield stores
    for store in stores:
        store.close()


def test_metadata_built_on_one_replica_is_read_on_another(
        replicas: list[MetadataSharingStore]) -> None:
    replicas[0].put_metadata(STUDY, SERIES_A, b"[1]")
    assert replicas[1].get_metadata(STUDY, SERIES_A, max_age=60) == b"[1]"
    assert replicas[1].get_metadata(STUDY, SERIES_B, max_age=60) is None
    assert replicas[2].get_metadata(STUDY, SERIES_A, max_age=0) is None  # too old


def test_a_purge_forgets_the_series_or_the_study_everywhere(
        replicas: list[MetadataSharingStore], redis_server: RedisServer) -> None:
    replicas[0].put_metadata(STUDY, SERIES_A, b"[1]")
    replicas[0].put_metadata(STUDY, SERIES_B, b"[2]")
    client = redis.Redis(port=redis_server.port)
    generation = int(client.get(qido_generation_key("main")) or 0)

    replicas[1].purge(STUDY, SERIES_A)
    assert replicas[2].get_metadata(STUDY, SERIES_A, max_age=60) is None
    assert replicas[2].get_metadata(STUDY, SERIES_B, max_age=60) == b"[2]"

    replicas[1].purge(STUDY)
    assert list(client.scan_iter("dicomweb-gw:metadata:*")) == []
    # Every purge made the node's shared QIDO answers stale.
    assert int(client.get(qido_generation_key("main")) or 0) == generation + 2
    client.close()
