"""Unit tests for the disk instance cache (dicomweb_gw.cache.disk)."""

from __future__ import annotations

import errno
import hashlib
import random
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from copy import deepcopy
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian

from dicomweb_gw.cache import (
    CachedInstance,
    CacheFull,
    CacheInUse,
    DiskInstanceStore,
    InvalidInstance,
    _files,
)
from dicomweb_gw.cache._files import header_of, read_header
from dicomweb_gw.codecs.part10 import instance_from_file, part10_chunks
from dicomweb_gw.model import RetrievedInstance
from testdata import pydicom_file

# -- helpers ---------------------------------------------------------------------------------


def new_uid() -> str:
    """A fresh UID of fixed length, so instances made from one template have equal sizes."""
    return f"1.2.826.0.1.3680043.8.498.{random.randrange(10**19, 10**20)}"


@cache
def _template(name: str) -> Dataset:
    return dcmread(pydicom_file(name))


def encode(dataset: Dataset) -> RetrievedInstance:
    """Split a data set with file meta into a RetrievedInstance (data set bytes only)."""
    buffer = BytesIO()
    dcmwrite(buffer, dataset, enforce_file_format=True)
    encoded = buffer.getvalue()
    # (0002,0000) UL: its value (the group's length) sits at 140..144, after preamble and header.
    start = 144 + int.from_bytes(encoded[140:144], "little")
    return RetrievedInstance(
        sop_class_uid=str(dataset.SOPClassUID),
        sop_instance_uid=str(dataset.SOPInstanceUID),
        transfer_syntax_uid=str(dataset.file_meta.TransferSyntaxUID),
        dataset=encoded[start:],
    )


def make(study: str, series: str, *, number: int | None = None, name: str = "CT_small.dcm",
         sop: str | None = None, pixel_bytes: int | None = None) -> RetrievedInstance:
    """A pydicom test file as a new instance of the given study and series."""
    dataset = deepcopy(_template(name))
    dataset.StudyInstanceUID = study
    dataset.SeriesInstanceUID = series
    dataset.SOPInstanceUID = sop or new_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    if number is not None:
        dataset.InstanceNumber = number
    if pixel_bytes is not None:
        dataset.PixelData = bytes(pixel_bytes)
    return encode(dataset)


def part10_size(instance: RetrievedInstance) -> int:
    from dicomweb_gw.codecs.part10 import part10_chunks

    return sum(len(chunk) for chunk in part10_chunks(instance))


def expected_path(root: Path, sop_uid: str) -> Path:
    """The documented layout: instances/<first 2 hex of sha1(UID)>/<UID>.dcm."""
    return root / "instances" / hashlib.sha1(sop_uid.encode()).hexdigest()[:2] / f"{sop_uid}.dcm"


def index_rows(root: Path) -> dict[str, int]:
    with sqlite3.connect(root / "index.sqlite3") as db:
        return dict(db.execute("SELECT sop_instance_uid, size FROM instances").fetchall())


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*/*/*") if p.is_file())


def assert_consistent(root: Path) -> None:
    """No temp files; the index's instances are exactly the instance files, sizes included."""
    assert not [p for p in files_under(root) if p.name.startswith(".tmp-")]
    rows = index_rows(root)
    on_disk = {p: p.stat().st_size for p in files_under(root)
               if p.parent.parent.name == "instances"}
    assert on_disk == {expected_path(root, uid): size for uid, size in rows.items()}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


Opener = Callable[..., DiskInstanceStore]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def open_store(tmp_path: Path, clock: Clock) -> Iterator[Opener]:
    """Opens stores on tmp_path/cache (closing the previous one) and closes the last."""
    opened: list[DiskInstanceStore] = []

    def opener(max_bytes: int = 10**9) -> DiskInstanceStore:
        for store in opened:
            store.close()
        opened.append(DiskInstanceStore(tmp_path / "cache", max_bytes, clock=clock))
        return opened[-1]

    yield opener
    for store in opened:
        store.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def uids(instances: list[CachedInstance] | None) -> list[str] | None:
    return None if instances is None else [i.sop_instance_uid for i in instances]


# -- put / get -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm",
                                  "MR_small_bigendian.dcm", "JPEG2000.dcm"])
def test_put_get_round_trip(open_store: Opener, root: Path, name: str) -> None:
    store = open_store()
    study, series = new_uid(), new_uid()
    instance = make(study, series, name=name)
    cached = store.put(instance)
    assert cached == store.get(instance.sop_instance_uid)
    assert (cached.study_uid, cached.series_uid) == (study, series)
    assert cached.sop_class_uid == instance.sop_class_uid
    assert cached.transfer_syntax_uid == instance.transfer_syntax_uid
    assert cached.path == expected_path(root, instance.sop_instance_uid)
    raw = cached.path.read_bytes()
    assert cached.size == len(raw)
    assert raw.endswith(instance.dataset)
    assert len(raw) - len(instance.dataset) == 144 + int.from_bytes(raw[140:144], "little")
    read = dcmread(cached.path)
    assert read.file_meta.TransferSyntaxUID == instance.transfer_syntax_uid
    assert read.file_meta.MediaStorageSOPInstanceUID == instance.sop_instance_uid
    assert read.SOPInstanceUID == instance.sop_instance_uid
    assert read.PixelData == _template(name).PixelData
    stats = store.stats()
    assert (stats.instances, stats.bytes, stats.hits, stats.misses) == (1, len(raw), 1, 0)
    assert_consistent(root)


def test_get_unknown_is_a_miss(open_store: Opener) -> None:
    store = open_store()
    assert store.get(new_uid()) is None
    assert store.stats().misses == 1


def test_put_replaces_same_sop_instance(open_store: Opener, root: Path) -> None:
    store = open_store()
    study, series = new_uid(), new_uid()
    first = make(study, series)
    store.put(first)
    second = make(study, series, sop=first.sop_instance_uid, pixel_bytes=1000)
    cached = store.put(second)
    assert cached.size == part10_size(second) != part10_size(first)
    assert store.get(first.sop_instance_uid) == cached
    assert cached.path.read_bytes().endswith(second.dataset)
    assert (store.stats().instances, store.stats().bytes) == (1, cached.size)
    assert_consistent(root)


def test_instance_larger_than_budget_is_not_cached(open_store: Opener, root: Path) -> None:
    instance = make(new_uid(), new_uid())
    store = open_store(part10_size(instance) - 1)
    with pytest.raises(CacheFull):
        store.put(instance)
    assert store.get(instance.sop_instance_uid) is None
    assert store.stats().instances == 0
    assert_consistent(root)


def test_data_set_without_study_uid_is_invalid(open_store: Opener, root: Path) -> None:
    dataset = Dataset()
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    dataset.SOPInstanceUID = new_uid()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    store = open_store()
    with pytest.raises(InvalidInstance):
        store.put(encode(dataset))
    assert store.stats().instances == 0
    assert_consistent(root)


# -- LRU -------------------------------------------------------------------------------------


def test_lru_eviction_order_and_get_refreshes(open_store: Opener, root: Path) -> None:
    study, series = new_uid(), new_uid()
    a, b, c, d, e = (make(study, series, number=n) for n in range(5))
    # Room for three and a half: the fourth put must evict exactly one.
    store = open_store(max(part10_size(i) for i in (a, b, c, d, e)) * 7 // 2)
    for instance in (a, b, c):
        store.put(instance)
    assert store.get(a.sop_instance_uid) is not None  # now b is the least recently used
    store.put(d)
    assert store.get(b.sop_instance_uid) is None
    assert not expected_path(root, b.sop_instance_uid).exists()
    store.put(e)  # c is next: a was used after it
    assert store.get(c.sop_instance_uid) is None
    assert [store.get(i.sop_instance_uid) is not None for i in (a, d, e)] == [True] * 3
    stats = store.stats()
    assert (stats.instances, stats.evictions) == (3, 2)
    assert stats.bytes <= part10_size(a) * 7 // 2
    assert_consistent(root)


def test_reopen_with_smaller_budget_evicts_least_recently_used(open_store: Opener,
                                                               root: Path) -> None:
    study, series = new_uid(), new_uid()
    instances = [make(study, series, number=n) for n in range(4)]
    store = open_store()
    for instance in instances:
        store.put(instance)
    store.get(instances[0].sop_instance_uid)
    store = open_store(max(part10_size(i) for i in instances) * 2)
    assert store.stats().instances == 2
    present = [store.get(i.sop_instance_uid) is not None for i in instances]
    assert present == [True, False, False, True]
    assert_consistent(root)


# -- completeness ----------------------------------------------------------------------------


def test_complete_study_and_series(open_store: Opener, clock: Clock) -> None:
    store = open_store()
    study, series_a, series_b = new_uid(), "1.2.3.1", "1.2.3.2"
    a = [make(study, series_a, number=n) for n in (3, 1, 2)]
    b = [make(study, series_b, number=n) for n in (2, 1)]
    for instance in b + a:
        store.put(instance)
    assert store.complete(study, None, 60) is None  # no record yet
    store.mark_complete(study, None, [i.sop_instance_uid for i in a + b])

    by_number = [a[1], a[2], a[0], b[1], b[0]]  # series, then InstanceNumber
    assert uids(store.complete(study, None, 60)) == [i.sop_instance_uid for i in by_number]
    # The study record covers each of its series, and only those.
    assert uids(store.complete(study, series_a, 60)) == [i.sop_instance_uid for i in by_number[:3]]
    assert uids(store.complete(study, series_b, 60)) == [i.sop_instance_uid for i in by_number[3:]]
    assert store.complete(study, "1.2.3.99", 60) is None
    assert store.complete(new_uid(), None, 60) is None

    clock.now += 61  # TTL expiry
    assert store.complete(study, None, 60) is None
    assert store.complete(study, series_a, 60) is None
    assert store.complete(study, None, 120) is not None


def test_series_record_does_not_make_study_complete(open_store: Opener) -> None:
    store = open_store()
    study, series = new_uid(), new_uid()
    instances = [make(study, series, number=n) for n in (1, 2)]
    for instance in instances:
        store.put(instance)
    store.mark_complete(study, series, [i.sop_instance_uid for i in instances])
    assert uids(store.complete(study, series, 60)) == [i.sop_instance_uid for i in instances]
    assert store.complete(study, None, 60) is None


def test_complete_is_none_once_a_member_is_evicted(open_store: Opener) -> None:
    study, series = new_uid(), new_uid()
    members = [make(study, series, number=n) for n in (1, 2)]
    other = make(new_uid(), new_uid())
    store = open_store(max(part10_size(i) for i in [*members, other]) * 5 // 2)
    for instance in members:
        store.put(instance)
    store.mark_complete(study, series, [i.sop_instance_uid for i in members])
    store.mark_complete(study, None, [i.sop_instance_uid for i in members])
    store.get(members[0].sop_instance_uid)
    store.put(other)  # evicts members[1]
    assert store.get(members[1].sop_instance_uid) is None
    assert store.complete(study, series, 60) is None
    assert store.complete(study, None, 60) is None
    store.put(members[1])  # back in the cache, but nobody re-checked the PACS
    assert store.complete(study, series, 60) is None


def test_complete_is_none_when_a_member_was_never_cached(open_store: Opener) -> None:
    store = open_store()
    study, series = new_uid(), new_uid()
    instance = make(study, series)
    store.put(instance)
    store.mark_complete(study, series, [instance.sop_instance_uid, new_uid()])
    assert store.complete(study, series, 60) is None


def test_vanished_file_is_a_miss_and_forgotten(open_store: Opener, root: Path) -> None:
    store = open_store()
    study, series = new_uid(), new_uid()
    instances = [make(study, series, number=n) for n in (1, 2)]
    for instance in instances:
        store.put(instance)
    store.mark_complete(study, series, [i.sop_instance_uid for i in instances])
    expected_path(root, instances[1].sop_instance_uid).unlink()
    assert store.complete(study, series, 60) is None
    assert store.get(instances[1].sop_instance_uid) is None
    assert store.get(instances[0].sop_instance_uid) is not None
    assert store.stats().instances == 1
    assert_consistent(root)


# -- metadata --------------------------------------------------------------------------------


def test_metadata_round_trip_and_ttl(open_store: Opener, root: Path, clock: Clock) -> None:
    store = open_store()
    study, series = new_uid(), new_uid()
    assert store.get_metadata(study, series, 60) is None
    store.put_metadata(study, series, b'[{"x": 1}]')
    assert store.get_metadata(study, series, 60) == b'[{"x": 1}]'
    store.put_metadata(study, series, b"[]")
    assert store.get_metadata(study, series, 60) == b"[]"
    assert store.get_metadata(study, new_uid(), 60) is None
    assert [p.parent.parent.name for p in files_under(root)] == ["metadata"]
    clock.now += 61
    assert store.get_metadata(study, series, 60) is None


def test_metadata_dropped_on_eviction(open_store: Opener, root: Path) -> None:
    study, series = new_uid(), new_uid()
    kept_study, kept_series = new_uid(), new_uid()
    first, second = make(study, series), make(new_uid(), new_uid())
    store = open_store(max(part10_size(first), part10_size(second)) * 3 // 2)
    store.put(first)
    store.put_metadata(study, series, b"[1]")
    store.put_metadata(kept_study, kept_series, b"[2]")
    store.put(second)  # evicts first
    assert store.get_metadata(study, series, 60) is None
    assert store.get_metadata(kept_study, kept_series, 60) == b"[2]"
    assert len([p for p in files_under(root) if p.parent.parent.name == "metadata"]) == 1


def test_metadata_dropped_when_an_instance_is_replaced(open_store: Opener) -> None:
    store = open_store()
    study, series = new_uid(), new_uid()
    instance = make(study, series)
    store.put(instance)
    store.put_metadata(study, series, b"[1]")
    store.put(instance)
    assert store.get_metadata(study, series, 60) is None


# -- purge -----------------------------------------------------------------------------------


def test_purge_series_and_study(open_store: Opener, root: Path) -> None:
    store = open_store()
    study, series_a, series_b = new_uid(), new_uid(), new_uid()
    a = [make(study, series_a, number=n) for n in (1, 2)]
    b = [make(study, series_b, number=n) for n in (1, 2, 3)]
    other = make(new_uid(), new_uid())
    for instance in [*a, *b, other]:
        store.put(instance)
    store.mark_complete(study, None, [i.sop_instance_uid for i in a + b])
    store.mark_complete(study, series_b, [i.sop_instance_uid for i in b])
    store.put_metadata(study, series_a, b"[a]")
    store.put_metadata(study, series_b, b"[b]")

    assert store.purge(study, series_a) == 2
    assert store.get(a[0].sop_instance_uid) is None
    assert store.get_metadata(study, series_a, 60) is None
    assert store.get_metadata(study, series_b, 60) == b"[b]"
    assert store.complete(study, None, 60) is None  # the study record went with series a
    assert store.complete(study, series_b, 60) is not None

    assert store.purge(study) == 3
    assert store.complete(study, series_b, 60) is None
    assert store.get_metadata(study, series_b, 60) is None
    assert store.purge(study) == 0
    assert store.get(other.sop_instance_uid) is not None
    assert (store.stats().instances, store.stats().bytes) == (1, part10_size(other))
    assert [p.parent.parent.name for p in files_under(root)] == ["instances"]
    assert_consistent(root)



def test_the_status_page_counts_without_holding_the_cache(open_store: Opener) -> None:
    """Its two queries scan the whole index (about 0.1 s at 200,000 instances). Under
    the store's lock every cache read and write of every request would wait for them
    at each refresh of the page; they read on a connection of their own instead
    (WAL: a reader never blocks the writer), and see what is committed."""
    store = open_store()
    study, series = new_uid(), new_uid()
    big, small = make(study, series, number=1), make(new_uid(), new_uid())
    for instance in (big, make(study, series, number=2), small):
        store.put(instance)
    answers: list[object] = []
    with store._lock:  # a cache operation in progress, for as long as the test likes
        reader = threading.Thread(target=lambda: answers.extend(
            (store.largest_studies(1), store.study_count())))
        reader.start()
        reader.join(timeout=10)
        assert answers, "the status page's queries waited for the cache's lock"
    assert answers == [[(study, 2 * part10_size(big), 2)], 2]
    store.put(make(new_uid(), new_uid()))
    assert store.study_count() == 3  # what the writer committed since

# -- persistence and repair ------------------------------------------------------------------


def test_state_survives_a_restart(open_store: Opener, root: Path) -> None:
    study, series = new_uid(), new_uid()
    instances = [make(study, series, number=n) for n in (1, 2, 3)]
    store = open_store()
    for instance in instances:
        store.put(instance)
    store.mark_complete(study, series, [i.sop_instance_uid for i in instances])
    store.put_metadata(study, series, b"[meta]")
    before = store.stats()

    store = open_store()
    after = store.stats()
    assert (after.instances, after.bytes) == (before.instances, before.bytes)
    assert store.get(instances[2].sop_instance_uid) == before_get(instances[2], root)
    assert uids(store.complete(study, series, 60)) == [i.sop_instance_uid for i in instances]
    assert store.get_metadata(study, series, 60) == b"[meta]"
    assert_consistent(root)


def before_get(instance: RetrievedInstance, root: Path) -> CachedInstance:
    path = expected_path(root, instance.sop_instance_uid)
    return CachedInstance(dcmread(path).StudyInstanceUID, dcmread(path).SeriesInstanceUID,
                          instance.sop_instance_uid, instance.sop_class_uid,
                          instance.transfer_syntax_uid, path, path.stat().st_size)


def test_use_order_survives_a_restart(open_store: Opener, root: Path) -> None:
    study, series = new_uid(), new_uid()
    instances = [make(study, series, number=n) for n in (1, 2, 3, 4)]
    budget = part10_size(instances[0]) * 7 // 2
    store = open_store(budget)
    for instance in instances[:3]:
        store.put(instance)
    store.get(instances[0].sop_instance_uid)  # so 1 is the least recently used, not 0

    store = open_store(budget)
    store.put(instances[3])
    present = [store.get(i.sop_instance_uid) is not None for i in instances]
    assert present == [True, False, True, True]
    assert_consistent(root)


def test_reconcile_removes_temps_and_orphans(open_store: Opener, root: Path) -> None:
    study, series = new_uid(), new_uid()
    kept, lost = make(study, series, number=1), make(study, series, number=2)
    store = open_store()
    for instance in (kept, lost):
        store.put(instance)
    store.put_metadata(study, series, b"[m]")
    store.close()
    # What a crash can leave: temp files, and files the index never heard of.
    bucket = expected_path(root, kept.sop_instance_uid).parent
    (bucket / ".tmp-crashed.part").write_bytes(b"half an instance")
    (root / "metadata" / "zz").mkdir()
    (root / "metadata" / "zz" / ".tmp-meta.part").write_bytes(b"[")
    orphan = expected_path(root, new_uid())
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"renamed but never indexed")
    (root / "metadata" / "zz" / "orphan.bin").write_bytes(b"[]")
    # And what an outside hand can do: a file removed.
    expected_path(root, lost.sop_instance_uid).unlink()

    store = open_store()
    assert not orphan.exists()
    assert_consistent(root)
    assert set(index_rows(root)) == {kept.sop_instance_uid}
    assert store.stats().instances == 1
    assert store.get(kept.sop_instance_uid) is not None
    # The series lost an instance, so its metadata went too.
    assert store.get_metadata(study, series, 60) is None
    assert files_under(root) == [expected_path(root, kept.sop_instance_uid)]


def test_damaged_index_starts_afresh(open_store: Opener, root: Path) -> None:
    store = open_store()
    instance = make(new_uid(), new_uid())
    store.put(instance)
    store.close()
    for suffix in ("-wal", "-shm"):
        (root / f"index.sqlite3{suffix}").unlink(missing_ok=True)
    (root / "index.sqlite3").write_bytes(b"this is not a database" * 100)
    store = open_store()
    assert store.get(instance.sop_instance_uid) is None
    assert files_under(root) == []
    store.put(instance)
    assert_consistent(root)


def test_one_store_per_directory(open_store: Opener, root: Path) -> None:
    open_store()
    with pytest.raises(CacheInUse):
        DiskInstanceStore(root, 10**9)


# -- concurrency -----------------------------------------------------------------------------


def test_threads_put_and_get_concurrently(open_store: Opener, root: Path) -> None:
    study = new_uid()
    series = [new_uid() for _ in range(4)]
    work = [[make(study, series[t % 4], number=n) for n in range(12)] for t in range(8)]
    size = max(part10_size(i) for batch in work for i in batch)
    store = open_store(size * 20)
    errors: list[BaseException] = []
    start = threading.Barrier(len(work))

    def worker(batch: list[RetrievedInstance]) -> None:
        try:
            start.wait()
            for n, instance in enumerate(batch):
                store.put(instance)
                store.put(batch[n // 2])  # re-puts race with other threads' evictions
                for earlier in batch[: n + 1]:
                    hit = store.get(earlier.sop_instance_uid)
                    if hit is None:
                        continue
                    try:
                        read = dcmread(hit.path, stop_before_pixels=True)
                    except FileNotFoundError:
                        continue  # evicted by another thread since: a miss, as documented
                    assert read.SOPInstanceUID == earlier.sop_instance_uid
                store.complete(study, series[0], 60)
                store.put_metadata(study, series[n % 4], b"[]")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(batch,)) for batch in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stats = store.stats()
    assert stats.bytes <= size * 20
    assert stats.evictions > 0
    assert stats.instances == len(index_rows(root))
    assert stats.bytes == sum(index_rows(root).values())
    assert_consistent(root)


# -- full disk -------------------------------------------------------------------------------


def _full_disk(monkeypatch: pytest.MonkeyPatch, failures: int) -> list[int]:
    """Make the next ``failures`` writes fail with ENOSPC half way; returns the call count."""
    calls = [0]
    real = _files.write_chunks

    def write_chunks(file: BinaryIO, chunks: Iterable[bytes]) -> None:
        calls[0] += 1
        if calls[0] <= failures:
            file.write(b"\0" * 4096)  # a partial temp file must not survive
            raise OSError(errno.ENOSPC, "No space left on device")
        real(file, chunks)

    monkeypatch.setattr(_files, "write_chunks", write_chunks)
    return calls


def test_disk_full_evicts_and_retries_once(open_store: Opener, root: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store()
    study, series = new_uid(), new_uid()
    old = [make(study, series, number=n) for n in (1, 2, 3)]
    for instance in old:
        store.put(instance)
    store.get(old[0].sop_instance_uid)
    calls = _full_disk(monkeypatch, failures=1)
    new = make(study, series, number=4)
    assert store.put(new).path.read_bytes().endswith(new.dataset)
    assert calls[0] == 2
    # Exactly enough was evicted for the new instance (same size), least recently used first.
    assert [store.get(i.sop_instance_uid) is not None for i in old] == [True, False, True]
    assert store.stats().evictions == 1
    assert_consistent(root)


def test_disk_full_raises_cache_full_and_corrupts_nothing(open_store: Opener, root: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    store = open_store()
    study, series = new_uid(), new_uid()
    old = [make(study, series, number=n) for n in (1, 2, 3)]
    for instance in old:
        store.put(instance)
    store.get(old[0].sop_instance_uid)
    calls = _full_disk(monkeypatch, failures=10)
    with pytest.raises(CacheFull):
        store.put(make(study, series, number=4))
    assert calls[0] == 2  # one retry, no more
    store.put_metadata(study, series, b"[]")  # metadata is an extra: logged, not raised
    assert store.get_metadata(study, series, 60) is None
    assert_consistent(root)
    # The retry evicted one instance; the others are intact.
    assert store.get(old[1].sop_instance_uid) is None
    for instance in (old[0], old[2]):
        cached = store.get(instance.sop_instance_uid)
        assert cached is not None
        assert cached.path.read_bytes().endswith(instance.dataset)

    monkeypatch.undo()
    again = make(study, series, number=5)
    assert dcmread(store.put(again).path).SOPInstanceUID == again.sop_instance_uid
    assert store.stats().instances == 3
    assert_consistent(root)


def test_disk_full_with_nothing_to_evict_does_not_retry(open_store: Opener, root: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store()
    calls = _full_disk(monkeypatch, failures=10)
    with pytest.raises(CacheFull):
        store.put(make(new_uid(), new_uid()))
    assert calls[0] == 1
    assert_consistent(root)


def test_other_write_errors_propagate(open_store: Opener, root: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store()

    def failing(file: BinaryIO, chunks: Iterable[bytes]) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(_files, "write_chunks", failing)
    with pytest.raises(OSError, match="I/O error") as raised:
        store.put(make(new_uid(), new_uid()))
    assert not isinstance(raised.value, CacheFull)
    assert_consistent(root)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm",
                                  "MR_small_bigendian.dcm", "JPEG2000.dcm", "image_dfl.dcm"])
def test_header_of_an_instance_in_memory_matches_the_file(name: str, tmp_path: Path) -> None:
    instance = instance_from_file(pydicom_file(name))
    path = tmp_path / "instance.dcm"
    path.write_bytes(b"".join(part10_chunks(instance)))

    in_memory = header_of(instance)
    if name == "image_dfl.dcm":  # deflated: only the file can be read
        assert in_memory is None
    else:
        assert in_memory == read_header(path)
        assert in_memory is not None
        assert in_memory.study_uid


def test_header_of_a_broken_data_set_is_an_invalid_instance() -> None:
    broken = RetrievedInstance("1.2.840.10008.5.1.4.1.1.2", "1.2.3", "1.2.840.10008.1.2.1",
                               b"\x08\x00\x16\x00UI\xff\x7f")  # a length past the end
    with pytest.raises(InvalidInstance):
        header_of(broken)
