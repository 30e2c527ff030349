"""One result of ``config check``, shared by the checks of each kind."""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["Check", "millis"]


@dataclass(frozen=True)
class Check:
    what: str
    #: True passed, False failed, None a warning (worth reading, not a failure).
    ok: bool | None
    detail: str


def millis(started: float) -> str:
    return f"{(time.perf_counter() - started) * 1000:.0f} ms"
