"""Unit tests for the shared blob stores (dicomweb_gw.cache.blobs*): a folder and real S3 (moto)."""

from __future__ import annotations

import io
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest

from dicomweb_gw.cache import blobs
from dicomweb_gw.cache._files import TEMP_PREFIX
from dicomweb_gw.cache.blob_urls import blob_store_from_url
from dicomweb_gw.cache.blobs import BlobStore, BlobStoreError, atomic_file
from dicomweb_gw.cache.blobs_folder import FolderBlobStore
from dicomweb_gw.cache.blobs_s3 import S3BlobStore
from s3_fixtures import CREDENTIALS, REGION, S3Server, unreachable_s3_store

BIG = 12 << 20  # above obstore's 5 MiB part size: an S3 upload of it is multipart


@pytest.fixture(params=["folder", "s3"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> BlobStore:
    if kind == "folder":
        return FolderBlobStore(tmp_path / "shared")
    server: S3Server = request.getfixturevalue("s3_server")
    return server.store()


@pytest.fixture
def down(kind: str, tmp_path: Path) -> BlobStore:
    """A store that cannot work: its folder is a file (a lost mount), or no S3 listens."""
    if kind == "folder":
        (tmp_path / "not-a-folder").write_bytes(b"")
        return FolderBlobStore(tmp_path / "not-a-folder")
    return unreachable_s3_store()


def temps_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.name.startswith(TEMP_PREFIX)]


# -- round trips -----------------------------------------------------------------------------


def test_bytes_and_file_round_trip(store: BlobStore, tmp_path: Path) -> None:
    store.put_bytes("s/a.json", b'{"a": 1}')
    assert store.get_bytes("s/a.json") == b'{"a": 1}'
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(BIG + 12345))
    store.put_file("s/x/big.dcm", source)
    dest = tmp_path / "down" / "big.dcm"
    dest.parent.mkdir()
    assert store.get_file("s/x/big.dcm", dest) is True
    assert dest.read_bytes() == source.read_bytes()
    assert store.get_bytes("s/x/big.dcm") == source.read_bytes()
    assert not temps_under(dest.parent)


def test_put_replaces_and_get_file_replaces_dest(store: BlobStore, tmp_path: Path) -> None:
    store.put_bytes("k", b"old")
    store.put_bytes("k", b"new")
    assert store.get_bytes("k") == b"new"
    dest = tmp_path / "dest"
    dest.write_bytes(b"something else, longer")
    assert store.get_file("k", dest)
    assert dest.read_bytes() == b"new"


def test_empty_object(store: BlobStore, tmp_path: Path) -> None:
    store.put_bytes("empty", b"")
    assert store.get_bytes("empty") == b""
    assert store.get_file("empty", tmp_path / "empty")
    assert (tmp_path / "empty").read_bytes() == b""


def test_missing_key(store: BlobStore, tmp_path: Path) -> None:
    store.put_bytes("a/b/c", b"1")
    dest = tmp_path / "dest"
    for key in ("nothing", "a/b", "a/b/c/d"):
        assert store.get_bytes(key) is None
        assert store.get_file(key, dest) is False
    assert not dest.exists()
    assert os.listdir(tmp_path) == (["shared"] if isinstance(store, FolderBlobStore) else [])
    store.delete("nothing")  # deleting what is not there is fine


@pytest.mark.parametrize("key", ["", "/a", "a/", "a//b", "a/../b", "./a", "a/.tmp-x", "a\\b",
                                 "a\0b", "x" * 1025])
def test_malformed_keys_are_refused(store: BlobStore, key: str) -> None:
    with pytest.raises(ValueError, match="invalid blob key"):
        store.put_bytes(key, b"1")
    with pytest.raises(ValueError, match="invalid blob key"):
        store.get_bytes(key)


# -- listing and deleting --------------------------------------------------------------------

KEYS = ["a/b", "a/b/c", "a/b/d/e", "a/bc/x", "ab/x", "z"]


def test_list_prefix_selects_whole_segments(store: BlobStore) -> None:
    # "a/b" is an object and a prefix: S3 can hold both, a folder cannot.
    keys = [key for key in KEYS if key != "a/b" or not isinstance(store, FolderBlobStore)]
    for key in reversed(keys):
        store.put_bytes(key, key.encode())
    assert store.list_prefix("") == keys
    assert store.list_prefix("a/b") == ["a/b/c", "a/b/d/e"]
    assert store.list_prefix("a") == [key for key in keys if key.startswith("a/")]
    assert store.list_prefix("a/b/c") == []  # an object is not a prefix
    assert store.list_prefix("nothing") == []


def test_delete_prefix(store: BlobStore) -> None:
    keys = [key for key in KEYS if key != "a/b"]
    for key in keys:
        store.put_bytes(key, b"1")
    assert store.delete_prefix("a/b") == 2
    assert store.list_prefix("") == ["a/bc/x", "ab/x", "z"]
    assert store.delete_prefix("a/b") == 0
    store.delete("z")
    assert store.get_bytes("z") is None
    assert store.list_prefix("") == ["a/bc/x", "ab/x"]
    assert store.delete_prefix("") == 2
    assert store.list_prefix("") == []
    store.put_bytes("a/b/c", b"again")  # works after its folders were pruned
    assert store.get_bytes("a/b/c") == b"again"


def test_folder_prunes_emptied_folders_and_ignores_temps(tmp_path: Path) -> None:
    store = FolderBlobStore(tmp_path / "shared")
    store.put_bytes("s/x/1.dcm", b"1")
    store.put_bytes("s/y/2.dcm", b"2")
    in_progress = tmp_path / "shared" / "s" / "y" / ".tmp-abc.part"  # another replica's write
    in_progress.write_bytes(b"partial")
    assert store.list_prefix("s") == ["s/x/1.dcm", "s/y/2.dcm"]
    assert store.delete_prefix("s") == 2
    assert not (tmp_path / "shared" / "s" / "x").exists()
    assert in_progress.exists()  # not ours to delete while it may be in progress
    assert store.remove_stale_temps(max_age=3600) == 0
    old = time.time() - 7200
    os.utime(in_progress, (old, old))
    assert store.remove_stale_temps(max_age=3600) == 1
    assert not in_progress.exists()


# -- atomicity -------------------------------------------------------------------------------


class FailingSource(io.FileIO):
    """A source file whose reads fail once ``limit`` bytes were read: a disk error midway."""

    def __init__(self, path: Path, limit: int) -> None:
        super().__init__(path, "rb")
        self.limit = limit
        self.served = 0

    def read(self, size: int | None = -1) -> bytes:
        if self.served >= self.limit:
            raise OSError(5, "simulated read error")
        data = super().read(size)
        self.served += len(data)
        return data

    def readinto(self, buffer: object) -> int:
        raise AssertionError("read() is what the stores use")


@pytest.fixture
def failing_source(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every upload's source fails after 6 MiB (one S3 part went up); records the reads."""
    opened: list[int] = []

    def open_failing(path: Path) -> BinaryIO:
        opened.append(1)
        return FailingSource(path, 6 << 20)

    monkeypatch.setattr(blobs, "open_source", open_failing)
    return opened


def test_upload_failing_midway_leaves_the_old_object(store: BlobStore, tmp_path: Path,
                                                     failing_source: list[int],
                                                     request: pytest.FixtureRequest) -> None:
    store.put_bytes("k/old", b"old object")
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(BIG))
    for key in ("k/old", "k/new"):
        with pytest.raises(OSError, match="simulated read error"):
            store.put_file(key, source)
    assert len(failing_source) == 2
    assert store.get_bytes("k/old") == b"old object"
    assert store.get_bytes("k/new") is None
    assert store.list_prefix("k") == ["k/old"]
    if isinstance(store, FolderBlobStore):
        assert not temps_under(store.root)
    else:
        assert isinstance(store, S3BlobStore)
        server: S3Server = request.getfixturevalue("s3_server")
        # obstore aborted the multipart upload (else its parts would linger, billed).
        assert server.pending_uploads(store.prefix) == 0


def test_atomic_file_keeps_the_old_dest_when_the_block_fails(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.write_bytes(b"old")

    def download() -> None:
        with atomic_file(dest) as out:
            out.write(b"half of the new")
            raise RuntimeError("download broke")

    with pytest.raises(RuntimeError):
        download()
    assert dest.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["dest"]


# A child process that stops at the worst moment: the object or file fully written
# but not yet renamed (os.fsync), or an S3 multipart upload with one part sent.
_CHILD = """
import json, os, sys, time
from pathlib import Path
from dicomweb_gw.cache import blobs
from dicomweb_gw.cache.blobs_folder import FolderBlobStore
from dicomweb_gw.cache.blobs_s3 import S3BlobStore

spec = json.loads(sys.argv[1])
if spec["kind"] == "folder":
    store = FolderBlobStore(Path(spec["root"]))
else:
    store = S3BlobStore(spec["bucket"], spec["prefix"], endpoint=spec["endpoint"],
                        region=spec["region"], config=spec["config"])

def stop(*args, **kwargs):
    print("stopped", flush=True)
    time.sleep(600)

if spec["action"] == "put" and spec["kind"] == "s3":
    opened = blobs.open_source
    class Stalling:
        def __init__(self, path):
            self.file, self.reads = opened(path), 0
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            self.file.close()
        def seek(self, *args):
            return self.file.seek(*args)
        def tell(self):
            return self.file.tell()
        def read(self, size=-1):
            self.reads += 1
            if self.reads == 3:  # the first 5 MiB part is on its way
                stop()
            return self.file.read(size)
    blobs.open_source = Stalling
else:
    os.fsync = stop
if spec["action"] == "put":
    store.put_file(spec["key"], Path(spec["source"]))
else:
    store.get_file(spec["key"], Path(spec["dest"]))
"""


@pytest.mark.parametrize("action", ["put", "get"])
def test_a_writer_killed_midway_leaves_nothing_visible(store: BlobStore, tmp_path: Path,
                                                       action: str) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(BIG))
    dest = tmp_path / "download" / "object"
    dest.parent.mkdir()
    if action == "get":
        store.put_file("k/object", source)
    spec: dict[str, object] = {"action": action, "key": "k/object", "source": str(source),
                               "dest": str(dest)}
    if isinstance(store, FolderBlobStore):
        spec.update(kind="folder", root=str(store.root))
    else:
        assert isinstance(store, S3BlobStore)
        spec.update(kind="s3", bucket=store.bucket, prefix=store.prefix,
                    endpoint=store.endpoint, region=REGION, config=dict(CREDENTIALS))
    child = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(spec)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], 60)
        line = child.stdout.readline() if ready else b""
    finally:
        child.kill()  # SIGKILL: no cleanup of any kind runs
        _, stderr = child.communicate()
    assert line == b"stopped\n", stderr.decode(errors="replace")[-3000:]
    if action == "put":
        assert store.get_bytes("k/object") is None
        assert store.list_prefix("") == []
    else:
        assert not dest.exists()
        # What the crash left is a temp file, which the local cache's reconcile deletes.
        assert [path.name.startswith(TEMP_PREFIX) for path in dest.parent.iterdir()] == [True]


def test_concurrent_writers_and_readers_of_one_key(store: BlobStore) -> None:
    """Readers see a whole object, never a mix; the last writer leaves a whole one."""
    payloads = [bytes([i]) * (256 << 10) for i in range(6)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as exc:
                errors.append(exc)
        return run

    def write(payload: bytes) -> Callable[[], None]:
        def work() -> None:
            for _ in range(5):
                store.put_bytes("shared/key", payload)
        return work

    def read() -> None:
        seen = 0
        while not stop.is_set() or seen == 0:
            data = store.get_bytes("shared/key")
            if data is not None:
                assert data in payloads, f"a mixed object of {len(data)} bytes"
                seen += 1

    writers = [threading.Thread(target=guarded(write(p))) for p in payloads]
    readers = [threading.Thread(target=guarded(read)) for _ in range(3)]
    for thread in writers + readers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    for thread in readers:
        thread.join()
    assert not errors, errors
    assert store.get_bytes("shared/key") in payloads
    assert store.list_prefix("shared") == ["shared/key"]
    if isinstance(store, FolderBlobStore):
        assert not temps_under(store.root)


# -- failures --------------------------------------------------------------------------------


def test_a_store_that_is_down_raises_blob_store_error(down: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"data")
    started = time.monotonic()
    calls: list[Callable[[], object]] = [
        lambda: down.put_bytes("k", b"1"), lambda: down.put_file("k", source),
        lambda: down.get_bytes("k"), lambda: down.get_file("k", tmp_path / "dest"),
        lambda: down.list_prefix("k"), lambda: down.delete_prefix("k"), lambda: down.delete("k")]
    for call in calls:
        with pytest.raises(BlobStoreError) as raised:
            call()
        assert "\n" not in str(raised.value)
    assert time.monotonic() - started < 30
    assert not (tmp_path / "dest").exists()


def test_missing_upload_source_is_a_plain_os_error(store: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as raised:
        store.put_file("k", tmp_path / "no such file")
    assert not isinstance(raised.value, BlobStoreError)


# -- from a URL ------------------------------------------------------------------------------


def test_folder_from_url(tmp_path: Path) -> None:
    for url in (f"file://{tmp_path}/shared", str(tmp_path / "shared"),
                f"file://localhost{tmp_path}/shared"):
        store = blob_store_from_url(url)
        assert isinstance(store, FolderBlobStore)
        assert store.root == tmp_path / "shared"
    store.put_bytes("a/b", b"1")
    assert (tmp_path / "shared" / "a" / "b").read_bytes() == b"1"


def test_s3_from_url_with_credentials_from_the_environment(
        s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDENTIALS["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDENTIALS["secret_access_key"])
    store = blob_store_from_url(f"{s3_server.url}/from-url/node/", s3_endpoint=s3_server.endpoint,
                                s3_region=REGION)
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix) == (s3_server.bucket, "from-url/node")
    store.put_bytes("x", b"1")
    assert s3_server.store("from-url").list_prefix("") == ["node/x"]


@pytest.mark.parametrize(("url", "endpoint", "problem"), [
    ("relative/path", None, "not file:///path"),
    ("http://example.com/x", None, "not file:///path"),
    ("file://nas/share", None, "names no host"),
    ("file:relative", None, "absolute path"),
    ("s3://", None, "not a valid S3 bucket name"),
    ("s3://Upper_Case/x", None, "not a valid S3 bucket name"),
    ("s3://bucket/a//b", None, "invalid key prefix"),
    ("s3://bucket/x?versionId=1", None, "no query"),
    ("s3://bucket/x", "localhost:9000", "not an http:// or https:// URL"),
])
def test_bad_urls_are_one_line_value_errors(url: str, endpoint: str | None, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as raised:
        blob_store_from_url(url, s3_endpoint=endpoint)
    assert "\n" not in str(raised.value)


def test_credentials_in_an_s3_url_are_refused_and_not_echoed() -> None:
    with pytest.raises(ValueError, match="AWS_ACCESS_KEY_ID") as raised:
        blob_store_from_url("s3://AKIAKEY:s3cr3t@bucket/prefix")
    assert "s3cr3t" not in str(raised.value)
