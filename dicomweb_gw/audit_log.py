"""The audit log: one JSON line per event, apart from the debug log.

In the spirit of IHE ATNA: who accessed which patient data, when, from where,
and with what outcome. It holds patient data on purpose (it is the trail), so
it has a destination of its own (``DICOMWEB_GW_AUDIT_LOG``): ``stdout`` (on
Kubernetes, where the debug log goes to stderr), ``stderr``, or a file that is
opened once, appended to and created readable by its owner and group only.

Lines are handed to a writer thread through a queue: a slow disk never holds
up the event loop, and no line is dropped while the queue waits for it.

A file is reopened when its path no longer names the file being written (as
``logging.handlers.WatchedFileHandler`` does): after ``logrotate`` renames or
deletes it, new lines go to a new file at the configured path, so rotation
needs no ``copytruncate`` (which loses the lines written during the copy).
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

import orjson

from dicomweb_gw.settings import SettingsError

__all__ = ["AuditLog"]

log = logging.getLogger(__name__)
_JOIN_SECONDS = 10.0


class AuditLog:
    """Writes audit events to ``target``: ``off``, ``stdout``, ``stderr`` or a file path."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._reopen_failing = False

    @property
    def enabled(self) -> bool:
        return self.target != "off"

    def start(self) -> None:
        """Open the destination and start the writer; a file that cannot be opened is a
        settings error, said in one line at start-up rather than lost events later."""
        with self._lock:
            if self._thread is not None or not self.enabled:
                return
            stream, owned = self._open()
            self._thread = threading.Thread(target=self._write_lines, args=(stream, owned),
                                            name="audit-log", daemon=True)
            self._thread.start()

    def write(self, event: Mapping[str, object]) -> None:
        """Queue one event; returns at once (serialising it is the only work done here)."""
        if not self.enabled:
            return
        if self._thread is None:  # an app served without its lifespan (tests, embedding)
            self.start()
        self._queue.put(orjson.dumps(event).decode() + "\n")

    def close(self) -> None:
        """Write what is queued, then close the file; ``write`` would reopen it."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)  # the writer's signal to stop
            thread.join(_JOIN_SECONDS)

    def _open(self) -> tuple[TextIO, bool]:
        if self.target == "stdout":
            return sys.stdout, False
        if self.target == "stderr":
            return sys.stderr, False
        path = Path(self.target)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            raise SettingsError(f"cannot open the audit log {path} (DICOMWEB_GW_AUDIT_LOG): "
                                f"{exc.strerror or exc}") from None
        return os.fdopen(fd, "a", encoding="utf-8"), True

    def _reopened_if_moved(self, stream: TextIO) -> TextIO:
        """``stream``, or the file now at the configured path if ours was renamed or
        deleted. One ``stat`` per batch of lines: cheap next to the write."""
        written = os.fstat(stream.fileno())
        try:
            current = os.stat(self.target)
        except FileNotFoundError:
            current = None
        if current is not None and (current.st_dev, current.st_ino) == (written.st_dev,
                                                                          written.st_ino):
            return stream
        try:
            reopened, _ = self._open()
        except SettingsError as exc:  # the moved file still takes lines: better than losing them
            if not self._reopen_failing:  # once, not once per batch
                log.error("%s; writing on to the file that was moved", exc)
            self._reopen_failing = True
            return stream
        self._reopen_failing = False
        stream.close()
        return reopened

    def _write_lines(self, stream: TextIO, owned: bool) -> None:
        failing = False
        try:
            while True:
                line = self._queue.get()
                if line is None:
                    return
                lines = [line]
                stop = False
                # Whatever else is queued goes out with it, in one flush.
                while not stop:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                    else:
                        lines.append(more)
                try:
                    if owned:
                        stream = self._reopened_if_moved(stream)
                    stream.writelines(lines)
                    stream.flush()
                    failing = False
                except (OSError, ValueError) as exc:  # disk full, closed stream
                    if not failing:  # once per outage, not once per line
                        log.error("cannot write the audit log %s: %s", self.target, exc)
                    failing = True
                if stop:
                    return
        finally:
            if owned:
                stream.close()
