"""Two replicas' TieredInstanceStores over one shared blob store (a folder, and real S3).

Also the DiskInstanceStore additions the tiered store relies on (adopt, peek,
staging_path, mark_complete's completed_at).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dicomweb_gw.cache import CachedInstance, CacheFull, DiskInstanceStore, InvalidInstance
from dicomweb_gw.cache._shared_layout import Manifest, instance_key, manifest_key, segment
from dicomweb_gw.cache.blobs import BlobStore
from dicomweb_gw.cache.blobs_folder import FolderBlobStore
from dicomweb_gw.cache.tiered import TieredInstanceStore
from dicomweb_gw.model import RetrievedInstance
from s3_fixtures import S3Server, unreachable_s3_store
from test_cache_disk import Clock, assert_consistent, make, new_uid, part10_size

TTL = 3600.0


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["folder", "s3"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "folder":
        return FolderBlobStore(tmp_path / "shared")
    server: S3Server = request.getfixturevalue("s3_server")
    return server.store()


Replica = Callable[..., TieredInstanceStore]


@pytest.fixture
def replica(tmp_path: Path, clock: Clock, shared: BlobStore) -> Iterator[Replica]:
    """Opens a replica's store: its own local folder, the one shared store (by default)."""
    opened: list[TieredInstanceStore] = []

    def open_replica(name: str, *, max_bytes: int = 10**9, store: BlobStore | None = None,
                     outage_backoff: float = 0.0, fetch_threads: int = 8) -> TieredInstanceStore:
        local = DiskInstanceStore(tmp_path / name, max_bytes, clock=clock)
        opened.append(TieredInstanceStore(local, shared if store is None else store,
                                          clock=clock, outage_backoff=outage_backoff,
                                          fetch_threads=fetch_threads))
        return opened[-1]

    yield open_replica
    for store in opened:
        store.close()


def uids(instances: list[CachedInstance] | None) -> list[str] | None:
    return None if instances is None else [i.sop_instance_uid for i in instances]


def series_of(store: TieredInstanceStore, sop_instance_uid: str) -> str:
    found = store.local.peek([sop_instance_uid])
    assert sop_instance_uid in found
    return found[sop_instance_uid].series_uid


def a_study(series_count: int = 2, per_series: int = 3) -> tuple[str, list[str],
                                                                  list[RetrievedInstance]]:
    """A study whose instances come in shuffled: the order of ``complete`` is not luck."""
    study = new_uid()
    series = [new_uid() for _ in range(series_count)]
    instances = [make(study, uid, number=number) for uid in series
                 for number in range(1, per_series + 1)]
    random.shuffle(instances)
    return study, series, instances


# -- instances -------------------------------------------------------------------------------


def test_put_on_one_replica_get_on_another(replica: Replica, shared: BlobStore,
                                           tmp_path: Path) -> None:
    a, b = replica("a"), replica("b")
    study, _, instances = a_study()
    cached = a.put(instances[0])
    assert cached.path.exists()
    key = instance_key(cached.study_uid, cached.series_uid, cached.sop_instance_uid)
    assert shared.list_prefix(study) == [key]

    found = b.get(cached.sop_instance_uid, study_uid=cached.study_uid,
                  series_uid=cached.series_uid)
    assert found is not None
    assert found.path.read_bytes() == cached.path.read_bytes()  # byte for byte
    assert found.path.is_relative_to(tmp_path / "b")
    assert (found.sop_class_uid, found.transfer_syntax_uid, found.size) == \
           (cached.sop_class_uid, cached.transfer_syntax_uid, cached.size)
    assert b.shared_hits == 1
    # Now in B's own disk cache: no second download.
    assert b.local.stats().instances == 1
    assert b.get(cached.sop_instance_uid, study_uid=study) == found
    assert b.shared_hits == 1
    assert b.stats().hits == 2
    assert b.stats().misses == 0


def test_get_with_the_study_only_finds_the_series(replica: Replica) -> None:
    a, b = replica("a"), replica("b")
    study, _, instances = a_study()
    for instance in instances:
        a.put(instance)
    wanted = instances[3]
    found = b.get(wanted.sop_instance_uid, study_uid=study)
    assert found is not None
    assert found.sop_instance_uid == wanted.sop_instance_uid
    assert b.local.stats().instances == 1


def test_get_without_hints_or_unknown_is_a_miss(replica: Replica) -> None:
    a, b = replica("a"), replica("b")
    study, (series, _), instances = a_study()
    a.put(instances[0])
    assert b.get(instances[0].sop_instance_uid) is None  # no study: the shared store is not asked
    assert b.get(new_uid(), study_uid=study, series_uid=series) is None
    assert b.get(new_uid(), study_uid=study) is None
    assert b.get(new_uid(), study_uid=new_uid()) is None
    assert b.stats().misses == 4
    assert b.stats().hits == 0
    assert b.shared_errors == 0
    assert b.shared_hits == 0


# -- completeness ----------------------------------------------------------------------------


def test_mark_complete_on_one_replica_complete_on_another(replica: Replica, clock: Clock,
                                                          shared: BlobStore) -> None:
    a, b = replica("a"), replica("b")
    study, series, instances = a_study()
    for instance in instances:
        a.put(instance)
    a.mark_complete(study, None, [i.sop_instance_uid for i in instances])
    expected = uids(a.complete(study, None, TTL))
    assert expected is not None
    assert len(expected) == 6

    clock.now += 10
    found = b.complete(study, None, TTL)
    assert uids(found) == expected
    assert found is not None
    for item in found:
        assert item.path.read_bytes() == a.local.peek([item.sop_instance_uid])[
            item.sop_instance_uid].path.read_bytes()
    assert b.shared_hits == 6
    # Each series too (the study's record covers them), from B's disk now.
    for uid in series:
        assert uids(b.complete(study, uid, TTL)) == [u for u in expected
                                                     if series_of(b, u) == uid]
    assert b.shared_hits == 6
    # A replica asking for one series downloads that series only.
    c = replica("c")
    assert uids(c.complete(study, series[1], TTL)) == [u for u in expected
                                                       if series_of(b, u) == series[1]]
    assert c.shared_hits == 3
    assert c.local.stats().instances == 3
    # B's local record keeps the manifest's time: it expires when A's does.
    clock.now += TTL - 10
    assert b.complete(study, None, TTL) is None
    assert a.complete(study, None, TTL) is None
    manifest = Manifest.decode(shared.get_bytes(manifest_key(study, None)) or b"")
    assert manifest.completed_at == clock.now - TTL
    assert sorted(manifest.members) == sorted((i.sop_instance_uid,
                                               series_of(a, i.sop_instance_uid))
                                              for i in instances)


def test_series_manifest_answers_for_its_series_only(replica: Replica) -> None:
    a, b = replica("a"), replica("b")
    study, (first, second), instances = a_study()
    for instance in instances:
        a.put(instance)
    in_first = [i.sop_instance_uid for i in instances
                if series_of(a, i.sop_instance_uid) == first]
    a.mark_complete(study, first, in_first)
    assert sorted(uids(b.complete(study, first, TTL)) or []) == sorted(in_first)
    assert b.complete(study, second, TTL) is None
    assert b.complete(study, None, TTL) is None
    assert b.local.stats().instances == 3


def test_stale_manifest_is_not_used(replica: Replica, clock: Clock) -> None:
    a, b = replica("a"), replica("b")
    study, _, instances = a_study(1, 2)
    for instance in instances:
        a.put(instance)
    a.mark_complete(study, None, [i.sop_instance_uid for i in instances])
    clock.now += 100
    assert b.complete(study, None, 50) is None
    assert b.shared_hits == 0
    assert b.complete(study, None, 150) is not None


def test_manifest_naming_a_missing_instance_is_not_complete(replica: Replica,
                                                            shared: BlobStore) -> None:
    a, b = replica("a"), replica("b")
    study, _, instances = a_study()
    cached = [a.put(instance) for instance in instances]
    a.mark_complete(study, None, [i.sop_instance_uid for i in instances])
    gone = cached[2]
    shared.delete(instance_key(gone.study_uid, gone.series_uid, gone.sop_instance_uid))
    assert b.complete(study, None, TTL) is None
    assert b.complete(study, gone.series_uid, TTL) is None
    assert b.stats().misses == 2
    assert b.shared_errors == 0
    # A's own disk still knows it whole.
    assert a.complete(study, None, TTL) is not None


def test_a_missing_member_stops_the_downloads(replica: Replica, shared: BlobStore) -> None:
    a = replica("a")
    b = replica("b", fetch_threads=1)  # one at a time, in the manifest's order
    study, _, instances = a_study()
    cached = {item.sop_instance_uid: item for item in map(a.put, instances)}
    a.mark_complete(study, None, [i.sop_instance_uid for i in instances])
    first = cached[instances[0].sop_instance_uid]
    shared.delete(instance_key(first.study_uid, first.series_uid, first.sop_instance_uid))
    assert b.complete(study, None, TTL) is None
    assert b.shared_hits == 0
    assert b.local.stats().instances == 0


def test_manifest_member_of_unknown_series_is_found_by_listing(replica: Replica,
                                                               shared: BlobStore) -> None:
    """A replica marks complete an instance it did not cache (another one did): its
    series is unknown in the manifest, and readers find it by listing the study."""
    a, b, c = replica("a"), replica("b"), replica("c")
    study, series, instances = a_study()
    for instance in instances[1:]:
        a.put(instance)
    elsewhere = c.put(instances[0])
    a.mark_complete(study, None, [i.sop_instance_uid for i in instances])
    manifest = Manifest.decode(shared.get_bytes(manifest_key(study, None)) or b"")
    assert (elsewhere.sop_instance_uid, None) in manifest.members
    # A itself cannot answer (its record names an instance it lacks), B can:
    found = b.complete(study, None, TTL)
    assert found is not None
    assert len(found) == 6
    assert elsewhere.sop_instance_uid in (uids(found) or [])
    assert uids(b.complete(study, elsewhere.series_uid, TTL)) == \
           [u for u in uids(found) or [] if series_of(b, u) == elsewhere.series_uid]
    assert set(series) == {item.series_uid for item in found}


def test_malformed_manifest_is_ignored(replica: Replica, shared: BlobStore,
                                       caplog: pytest.LogCaptureFixture) -> None:
    a, b = replica("a"), replica("b")
    study, _, instances = a_study(1, 1)
    a.put(instances[0])
    shared.put_bytes(manifest_key(study, None), b'{"study_uid": 1}')
    with caplog.at_level(logging.WARNING):
        assert b.complete(study, None, TTL) is None
    assert "ignoring shared manifest" in caplog.text


# -- purge -----------------------------------------------------------------------------------


def test_purge_on_one_replica_clears_the_shared_store(replica: Replica, shared: BlobStore) -> None:
    a, b = replica("a"), replica("b")
    study, _, instances = a_study()
    other_study, _, others = a_study(1, 1)
    for instance in [*instances, *others]:
        a.put(instance)
    a.mark_complete(study, None, [i.sop_instance_uid for i in instances])
    assert b.complete(study, None, TTL) is not None

    assert b.purge(study) == 6
    assert shared.list_prefix(segment(study)) == []
    assert len(shared.list_prefix(segment(other_study))) == 1  # others are untouched
    assert b.complete(study, None, TTL) is None
    # A still has it locally; once A forgets it too, nothing brings it back.
    assert a.complete(study, None, TTL) is not None
    assert a.local.purge(study) == 6
    assert a.complete(study, None, TTL) is None
    assert a.get(instances[0].sop_instance_uid, study_uid=study) is None
    # A replica that never held it counts what the shared store had.
    for instance in instances:
        a.put(instance)
    assert replica("c").purge(study) == 6


def test_purging_a_series_voids_the_study_manifest(replica: Replica, shared: BlobStore) -> None:
    a, b = replica("a"), replica("b")
    study, (first, second), instances = a_study()
    for instance in instances:
        a.put(instance)
    a.mark_complete(study, None, [i.sop_instance_uid for i in instances])
    in_second = [i.sop_instance_uid for i in instances
                 if series_of(a, i.sop_instance_uid) == second]
    a.mark_complete(study, second, in_second)
    assert b.purge(study, first) == 3
    assert shared.get_bytes(manifest_key(study, None)) is None
    assert shared.get_bytes(manifest_key(study, second)) is not None
    c = replica("c")
    assert c.complete(study, None, TTL) is None
    assert c.complete(study, first, TTL) is None
    assert sorted(uids(c.complete(study, second, TTL)) or []) == sorted(in_second)


# -- the shared store failing ----------------------------------------------------------------


@pytest.fixture(params=["folder", "s3"])
def down(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "folder":
        (tmp_path / "lost-mount").write_bytes(b"")
        return FolderBlobStore(tmp_path / "lost-mount")
    return unreachable_s3_store()


def test_shared_store_down_means_local_only(replica: Replica, down: BlobStore, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    store = replica("a", store=down)
    study, (series, _), instances = a_study()
    with caplog.at_level(logging.WARNING, logger="dicomweb_gw.cache.tiered"):
        cached = [store.put(instance) for instance in instances]  # no exception
        assert all(item.path.exists() for item in cached)
        assert store.shared_errors == 6
        store.mark_complete(study, None, [i.sop_instance_uid for i in instances])
        assert store.shared_errors == 7
        assert uids(store.complete(study, None, TTL)) is not None  # the local answer
        assert store.get(cached[0].sop_instance_uid, study_uid=study) == cached[0]
        assert store.get(new_uid(), study_uid=study, series_uid=series) is None
        assert store.get(new_uid(), study_uid=study) is None
        assert store.complete(new_uid(), None, TTL) is None
        assert store.shared_errors == 10
        assert store.purge(study) == 6  # the local count
        assert store.shared_errors == 11
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 11
    assert all("shared cache store" in r.getMessage() for r in warnings)
    assert store.stats().hits == 2
    assert store.stats().misses == 3
    assert_consistent(tmp_path / "a")


def test_after_a_failure_the_shared_store_is_left_alone(replica: Replica, down: BlobStore) -> None:
    store = replica("a", store=down, outage_backoff=60.0)
    study, _, instances = a_study()
    for instance in instances:
        store.put(instance)
    assert store.get(new_uid(), study_uid=study) is None
    store.mark_complete(study, None, [i.sop_instance_uid for i in instances])
    assert store.shared_errors == 1
    assert store.shared_skipped == 7
    assert store.purge(study) == 6  # purges still try
    assert store.shared_errors == 2


# -- what cannot be cached locally -----------------------------------------------------------


def test_shared_instance_too_big_for_the_local_cache_is_a_miss(replica: Replica,
                                                               tmp_path: Path) -> None:
    a = replica("a")
    study, _, instances = a_study(1, 1)
    cached = a.put(instances[0])
    b = replica("b", max_bytes=cached.size - 1)
    assert b.get(cached.sop_instance_uid, study_uid=study, series_uid=cached.series_uid) is None
    assert b.local.stats().instances == 0
    assert_consistent(tmp_path / "b")  # the download did not linger


def test_garbage_in_the_shared_store_is_a_miss(replica: Replica, shared: BlobStore,
                                               tmp_path: Path) -> None:
    b = replica("b")
    study, series, sop = new_uid(), new_uid(), new_uid()
    shared.put_bytes(instance_key(study, series, sop), b"not DICOM at all" * 100)
    assert b.get(sop, study_uid=study, series_uid=series) is None
    assert_consistent(tmp_path / "b")


def test_an_object_holding_another_instance_is_a_miss(replica: Replica,
                                                      shared: BlobStore) -> None:
    a, b = replica("a"), replica("b")
    study, _, instances = a_study()
    cached = a.put(instances[0])
    impostor = new_uid()
    data = shared.get_bytes(instance_key(study, cached.series_uid, cached.sop_instance_uid))
    assert data is not None
    shared.put_bytes(instance_key(study, cached.series_uid, impostor), data)
    assert b.get(impostor, study_uid=study, series_uid=cached.series_uid) is None


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_odd_uids_get_hashed_key_segments(replica: Replica, shared: BlobStore) -> None:
    a, b = replica("a"), replica("b")
    study, series = "1.2.3/../evil", "complete.json"
    instance = make(study, series)
    a.put(instance)
    a.mark_complete(study, series, [instance.sop_instance_uid])
    keys = shared.list_prefix("")
    assert all(".." not in key and key.count("/") == 2 for key in keys), keys
    assert uids(b.complete(study, series, TTL)) == [instance.sop_instance_uid]


# -- the local tier's additions (DiskInstanceStore) ------------------------------------------


@pytest.fixture
def disk(tmp_path: Path, clock: Clock) -> Iterator[DiskInstanceStore]:
    with DiskInstanceStore(tmp_path / "cache", 10**9, clock=clock) as store:
        yield store


def part10_file(instance: RetrievedInstance, path: Path) -> Path:
    from dicomweb_gw.codecs.part10 import part10_chunks

    path.write_bytes(b"".join(part10_chunks(instance)))
    return path


def test_adopt_takes_a_part10_file_over(disk: DiskInstanceStore, tmp_path: Path) -> None:
    study, series = new_uid(), new_uid()
    instance = make(study, series, number=7)
    staging = disk.staging_path(instance.sop_instance_uid)
    assert staging.name.startswith(".tmp-")
    assert not staging.exists()
    part10_file(instance, staging)
    adopted = disk.adopt(staging)
    assert not staging.exists()
    assert (adopted.study_uid, adopted.series_uid, adopted.sop_instance_uid) == \
           (study, series, instance.sop_instance_uid)
    assert (adopted.sop_class_uid, adopted.transfer_syntax_uid, adopted.size) == \
           (instance.sop_class_uid, instance.transfer_syntax_uid, part10_size(instance))
    assert disk.get(instance.sop_instance_uid) == adopted
    # From anywhere (another folder), and replacing what is cached.
    elsewhere = part10_file(instance, tmp_path / "elsewhere.dcm")
    assert disk.adopt(elsewhere) == adopted
    assert not elsewhere.exists()
    assert disk.stats().instances == 1
    assert_consistent(tmp_path / "cache")


def test_adopt_refuses_and_deletes_what_it_cannot_cache(tmp_path: Path, clock: Clock) -> None:
    instance = make(new_uid(), new_uid())
    with DiskInstanceStore(tmp_path / "cache", part10_size(instance) - 1, clock=clock) as small:
        too_big = part10_file(instance, small.staging_path(instance.sop_instance_uid))
        with pytest.raises(CacheFull):
            small.adopt(too_big)
        assert not too_big.exists()
        garbage = small.staging_path("x")
        garbage.write_bytes(b"garbage" * 100)
        with pytest.raises(InvalidInstance):
            small.adopt(garbage)
        assert not garbage.exists()
        assert small.stats().instances == 0
    assert_consistent(tmp_path / "cache")


def test_staging_leftovers_are_reconciled_away(tmp_path: Path, clock: Clock) -> None:
    instance = make(new_uid(), new_uid())
    with DiskInstanceStore(tmp_path / "cache", 10**9, clock=clock) as store:
        leftover = part10_file(instance, store.staging_path(instance.sop_instance_uid))
    # A crash between download and adopt: the next open deletes the file.
    with DiskInstanceStore(tmp_path / "cache", 10**9, clock=clock):
        assert not leftover.exists()


def test_peek_neither_touches_nor_counts(disk: DiskInstanceStore) -> None:
    study, series = new_uid(), new_uid()
    first, second = (disk.put(make(study, series)) for _ in range(2))
    found = disk.peek([first.sop_instance_uid, new_uid(), second.sop_instance_uid])
    assert found == {first.sop_instance_uid: first, second.sop_instance_uid: second}
    assert disk.stats().hits == disk.stats().misses == 0
    os.unlink(second.path)  # vanished: peek forgets it, as get would
    assert disk.peek([second.sop_instance_uid]) == {}
    assert disk.stats().instances == 1


def test_mark_complete_keeps_a_given_time(disk: DiskInstanceStore, clock: Clock) -> None:
    study, series = new_uid(), new_uid()
    cached = disk.put(make(study, series))
    disk.mark_complete(study, None, [cached.sop_instance_uid], completed_at=clock.now - 100)
    assert disk.complete(study, None, 50) is None
    assert uids(disk.complete(study, None, 150)) == [cached.sop_instance_uid]
