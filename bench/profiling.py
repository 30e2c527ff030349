"""Sampling profiles of the gateway process with py-spy, for docs/benchmarks.md.

py-spy attaches to the running gateway (no restart, every thread: the event
loop, pynetdicom's DIMSE threads, the worker threads) and writes collapsed
stacks (``--format raw``: one ``frame;frame;... count`` line per stack) to
``bench/results/profiles/<name>.txt``; ``bench/report.py`` summarises them
(speedscope.app opens them as a flame graph). Only samples of the thread
holding the GIL are kept (``--gil``): the gateway is one Python process, so
that is where its time goes, and threads that merely wait (timers, queues,
pynetdicom's reactor between polls) drop out. Samples per second of wall
time over the sampling rate is then how busy the GIL was; the duration is
written next to the profile (``<name>.json``). ``--nonblocking`` keeps py-spy
from pausing the gateway at every sample, so the profiled run is not slowed
down much; profiled runs are still extra runs, never the timed ones.

``BENCH_PROFILE=0`` turns profiling off. It needs ptrace rights on the
gateway (root, or ``kernel.yama.ptrace_scope=0``); without them the
benchmark goes on and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from record import RESULTS

PROFILES = RESULTS / "profiles"
RATE = 200  # samples per second


def _py_spy() -> str | None:
    beside_python = Path(sys.executable).parent / "py-spy"
    return str(beside_python) if beside_python.exists() else shutil.which("py-spy")


@contextmanager
def profiled(pid: int, name: str) -> Iterator[None]:
    """Profile process ``pid`` while the block runs."""
    binary = _py_spy()
    if os.environ.get("BENCH_PROFILE", "1") == "0" or binary is None:
        if binary is None:
            print("\n(py-spy not installed: no profile; pip install -e '.[bench]')")
        yield
        return
    PROFILES.mkdir(parents=True, exist_ok=True)
    output = PROFILES / f"{name}.txt"
    log = PROFILES / f"{name}.log"
    output.unlink(missing_ok=True)
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [binary, "record", "--pid", str(pid), "--format", "raw", "--rate", str(RATE),
             "--gil", "--nonblocking", "--output", str(output)],
            stdout=log_file, stderr=subprocess.STDOUT)
    time.sleep(1.0)  # attach before the work starts
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - started
        # SIGINT is py-spy's "stop and write the profile".
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        if output.exists():
            # The work's duration; sampling began 1 s earlier, but an idle gateway
            # hardly holds the GIL, so samples / (seconds * rate) is its GIL share.
            (PROFILES / f"{name}.json").write_text(json.dumps(
                {"seconds": round(seconds, 2), "rate": RATE}) + "\n")
        else:
            print(f"\n(py-spy wrote no profile for {name}: see {log})")
