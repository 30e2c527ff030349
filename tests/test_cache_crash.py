"""A real crash: SIGKILL a process writing to the disk cache, several times, then check the cache.

The child puts ~1 MB instances in a loop (with replacements, metadata and
evictions mixed in) and reports each finished put on stdout; the test kills it
at a random moment after a random number of puts, restarts it on the same
directory (so reconcile also runs after each crash), and finally opens the
store itself and checks that everything it serves is whole.
"""

from __future__ import annotations

import hashlib
import os
import random
import selectors
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from pydicom import dcmread

from dicomweb_gw.cache import DiskInstanceStore

PIXEL_BYTES = 1024 * 1024
BUDGET = 8 * 1024 * 1024 + 200_000  # eight instances: later runs evict while being killed
RUNS = 6

# The child: one instance ~1 MB; its pixel data is derived from its SOP UID so the
# parent can check content, not only length.
CHILD = textwrap.dedent("""
    import hashlib, sys
    from io import BytesIO
    from pathlib import Path
    from pydicom import dcmread
    from pydicom.data import get_testdata_file
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import generate_uid
    from dicomweb_gw.cache import DiskInstanceStore, _files
    from dicomweb_gw.model import RetrievedInstance

    real_write_chunks = _files.write_chunks

    def write_chunks(file, chunks):
        print("writing", flush=True)  # lets the parent aim at the write itself
        real_write_chunks(file, chunks)

    _files.write_chunks = write_chunks

    root, budget, pixel_bytes = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    template = dcmread(get_testdata_file("CT_small.dcm", download=False))
    template.Rows, template.Columns = 512, pixel_bytes // 1024
    study = generate_uid()
    series = [generate_uid() for _ in range(3)]

    def instance(number, sop):
        template.StudyInstanceUID = study
        template.SeriesInstanceUID = series[number % 3]
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = sop
        template.InstanceNumber = number
        template.PixelData = hashlib.sha256(sop.encode()).digest() * (pixel_bytes // 32)
        buffer = BytesIO()
        dcmwrite(buffer, template, enforce_file_format=True)
        encoded = buffer.getvalue()
        start = 144 + int.from_bytes(encoded[140:144], "little")
        return RetrievedInstance(str(template.SOPClassUID), sop,
                                 str(template.file_meta.TransferSyntaxUID), encoded[start:])

    store = DiskInstanceStore(root, budget)
    done = []
    number = 0
    while True:
        number += 1
        if number % 4 == 0 and done:
            sop = done[-2] if len(done) > 1 else done[-1]  # a replacement
        else:
            sop = generate_uid()
        store.put(instance(number, sop))
        done.append(sop)
        if number % 3 == 0:
            store.put_metadata(study, series[number % 3], b"[" + b"0" * 5000 + b"]")
            store.mark_complete(study, series[number % 3], done[-3:])
        store.get(done[0])
        print("put", sop, flush=True)
""")


def run_and_kill(root: Path, rng: random.Random, aim_at_write: bool) -> list[str]:
    """Start the child, SIGKILL it after a random number of puts plus a random delay
    (counted from the start of the next write if ``aim_at_write``); returns the SOP
    UIDs whose put it reported finished."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    stderr = root.parent / "child-stderr.txt"
    with stderr.open("wb") as errors:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(root), str(BUDGET), str(PIXEL_BYTES)],
            stdout=subprocess.PIPE, stderr=errors, env=env)
    assert child.stdout is not None
    reported: list[str] = []
    wanted = rng.randint(2, 12)
    deadline = time.monotonic() + 60
    buffer = b""
    writing = False
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        while len(reported) < wanted or (aim_at_write and not writing):
            assert time.monotonic() < deadline, "the child made no progress"
            if not selector.select(timeout=1):
                continue
            chunk = os.read(child.stdout.fileno(), 65536)
            assert chunk, f"the child died by itself:\n{stderr.read_text()}"
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                kind, _, sop = line.decode().partition(" ")
                if kind == "put":
                    reported.append(sop)
                writing = kind == "writing" and len(reported) >= wanted
    # Aimed: lands in writing, fsyncing, parsing, renaming or committing (a put takes
    # ~10 ms here). Otherwise anywhere, evictions and metadata included.
    time.sleep(rng.uniform(0, 0.004 if aim_at_write else 0.015))
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL, stderr.read_text()
    return reported


def instance_path(root: Path, sop: str) -> Path:
    return root / "instances" / hashlib.sha1(sop.encode()).hexdigest()[:2] / f"{sop}.dcm"


def test_sigkill_mid_write_never_leaves_a_broken_instance(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    reported: list[str] = []
    for run in range(RUNS):
        reported = run_and_kill(root, rng, aim_at_write=run % 2 == 0)

    with DiskInstanceStore(root, BUDGET) as store:
        assert not list(root.rglob(".tmp-*")), f"seed {seed}"
        with sqlite3.connect(root / "index.sqlite3") as db:
            rows = dict(db.execute("SELECT sop_instance_uid, size FROM instances"))
            metadata = db.execute("SELECT COUNT(*) FROM metadata").fetchone()[0]
        files = {p: p.stat().st_size for p in (root / "instances").glob("*/*")}
        assert files == {instance_path(root, sop): size for sop, size in rows.items()}, seed
        assert len(list((root / "metadata").glob("*/*"))) == metadata, f"seed {seed}"
        assert 0 < sum(rows.values()) <= BUDGET
        assert store.stats().bytes == sum(rows.values())
        # A put that returned before the kill is durable (the last one cannot have been
        # evicted yet: the next put evicts the least recently used).
        assert reported[-1] in rows, f"seed {seed}"

        for sop, size in rows.items():
            cached = store.get(sop)
            assert cached is not None, f"seed {seed}"
            assert cached.path in files
            assert cached.size == size == files[cached.path]
            dataset = dcmread(cached.path)
            assert dataset.SOPInstanceUID == sop
            assert dataset.file_meta.MediaStorageSOPInstanceUID == sop
            assert len(dataset.PixelData) == PIXEL_BYTES
            assert dataset.PixelData == hashlib.sha256(sop.encode()).digest() * (
                PIXEL_BYTES // 32), f"seed {seed}"
