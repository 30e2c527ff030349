"""What one PACS node has been doing lately, for the status page.

``DimsePacsClient`` records every DIMSE operation here as it ends: the last
C-ECHO, the operations of the last minute by outcome, and the last ten
failures, each with its status code in words and the fix the error message
already names (``failures.py`` writes those; this module only picks them out,
so there is one table of fixes). Thread-safe: operations end in worker threads.

No patient data is kept: operation names, status codes and the error messages,
which name the PACS, AE titles and addresses, never identifiers.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from dicomweb_gw.errors import PacsError, PacsMisconfigured, PacsTimeout, PacsUnavailable
from dicomweb_gw.pacs.status import status_words

__all__ = ["EchoResult", "FailureRecord", "NodeActivity", "fix_of", "outcome_of",
           "status_code_of"]

#: Operations counted per minute: the window, in seconds.
WINDOW = 60.0
#: Failures kept, newest first.
KEPT_FAILURES = 10
#: Operations remembered for the per-minute counts at most (a busy node's minute).
_KEPT_OPERATIONS = 100_000

_STATUS = re.compile(r"\((0x[0-9A-Fa-f]{4})\b")
#: The fix a message names: "register AE title ..." (failures.py) or "set ... = ...".
_FIX = re.compile(r"\b((?:register AE title|set [a-z_]+ ?=)[^;]*)")
#: What an error without a status code was, in words, and its ``dimse_operations`` outcome.
_KINDS: dict[type[PacsError], tuple[str, str]] = {
    PacsUnavailable: ("PACS unavailable", "unavailable"),
    PacsTimeout: ("No response in time", "timeout"),
    PacsMisconfigured: ("Misconfigured", "misconfigured"),
}


@dataclass(frozen=True)
class EchoResult:
    at: float
    ok: bool
    milliseconds: float
    message: str


@dataclass(frozen=True)
class FailureRecord:
    at: float
    operation: str
    status: str | None
    status_words: str
    message: str
    fix: str | None


def status_code_of(message: str) -> int | None:
    """The DIMSE status an error message quotes ("... (0xA801) ..."), if any."""
    found = _STATUS.search(message)
    return int(found.group(1), 16) if found else None


def fix_of(message: str, *, pacs_ae_title: str) -> str | None:
    """The fix an error message names, with "the PACS" made the PACS's AE title."""
    found = _FIX.search(message)
    if found is None:
        return None
    return found.group(1).strip().replace("on the PACS", f"on {pacs_ae_title}")


class NodeActivity:
    """The recent activity of one node; every method may be called from any thread."""

    def __init__(self, ae_title: str, *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._ae_title = ae_title
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._operations: deque[tuple[float, str, str]] = deque(maxlen=_KEPT_OPERATIONS)
        self._failures: deque[FailureRecord] = deque(maxlen=KEPT_FAILURES)
        self._echo: EchoResult | None = None
        #: The last operation that told us something about the node: (ok, message).
        self._last: tuple[bool, str] | None = None

    def echoed(self, milliseconds: float, error: PacsError | None = None) -> None:
        """A C-ECHO ended: answered in ``milliseconds``, or failed with ``error``."""
        now = self._clock()
        if error is None:
            result = EchoResult(now, True, milliseconds, "Success")
            summary = (True, f"C-ECHO answered in {milliseconds:.0f} ms")
        else:
            result = EchoResult(now, False, milliseconds, error.message)
            summary = (False, f"C-ECHO failed: {error.message}")
        with self._lock:
            self._echo = result
            self._last = summary
        self.ended("C-ECHO", "success" if error is None else outcome_of(error), error)

    def ended(self, operation: str, outcome: str, error: PacsError | None = None) -> None:
        """An operation ended with ``outcome`` (the ``dimse_operations`` metric's label)."""
        with self._lock:
            self._operations.append((self._monotonic(), operation, outcome))
            if error is not None:
                self._failures.appendleft(self._failure(operation, error))
                self._last = (False, f"{operation} failed: {error.message}")
            elif outcome == "success" and operation != "C-ECHO":
                self._last = (True, f"{operation} succeeded")

    def _failure(self, operation: str, error: PacsError) -> FailureRecord:
        code = status_code_of(error.message)
        words = (status_words(code) if code is not None
                 else _KINDS.get(type(error), ("Failure", ""))[0])
        return FailureRecord(
            at=self._clock(), operation=operation,
            status=f"0x{code:04X}" if code is not None else None, status_words=words,
            message=error.message, fix=fix_of(error.message, pacs_ae_title=self._ae_title))

    # -- reading ---------------------------------------------------------------------------
    @property
    def echo(self) -> EchoResult | None:
        with self._lock:
            return self._echo

    def health(self) -> tuple[str, str]:
        """("ok" | "failing" | "unknown", a readable sentence): from the last echo or
        operation that succeeded or failed."""
        with self._lock:
            last = self._last
        if last is None:
            return "unknown", "no C-ECHO or operation yet"
        return ("ok" if last[0] else "failing"), last[1]

    def per_minute(self) -> list[tuple[str, str, int]]:
        """(operation, outcome, count) over the last minute, most frequent first."""
        since = self._monotonic() - WINDOW
        counts: dict[tuple[str, str], int] = {}
        with self._lock:
            while self._operations and self._operations[0][0] < since:
                self._operations.popleft()
            for _, operation, outcome in self._operations:
                counts[(operation, outcome)] = counts.get((operation, outcome), 0) + 1
        return sorted(((op, outcome, n) for (op, outcome), n in counts.items()),
                      key=lambda row: (-row[2], row[0], row[1]))

    def failures(self) -> list[FailureRecord]:
        """The last failures, newest first."""
        with self._lock:
            return list(self._failures)


def outcome_of(error: PacsError) -> str:
    """The ``dimse_operations`` outcome label of an operation that ended in ``error``."""
    return _KINDS.get(type(error), ("", "failure"))[1]
