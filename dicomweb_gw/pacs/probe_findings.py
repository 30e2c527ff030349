"""What ``dicomweb-gw doctor`` found out about a PACS node, as data: the findings,
their JSON form, and where the last ones are kept.

Each finding is one check: what the probe saw, what it means for the gateway,
and the per-node setting that handles it with the value the probe recommends
(as it is written in the TOML file). The last report of each node is saved
under the cache folder (``<cache_dir>/doctor/<node>.json``), so that
``dicomweb-gw config check`` and ``GET /admin/pacs`` can show it without
probing again. Findings never carry patient data (no names, IDs or UIDs of
what the PACS holds): they end up in files, terminals and HTTP answers.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast, get_args

__all__ = ["Finding", "ProbeReport", "Status", "TomlValue", "findings_path", "load_report",
           "save_report"]

log = logging.getLogger(__name__)

#: ok: as the gateway expects; quirk: a deviation a setting (or the gateway) handles;
#: failed: the check found a problem or could not run; skipped: nothing to check with.
Status = Literal["ok", "quirk", "failed", "skipped"]
#: A setting's value as the TOML file writes it ("auto", 500, true, "GB18030").
TomlValue = str | int | float | bool

_FOLDER = "doctor"


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    #: What the probe saw, in a line.
    result: str
    #: What it means for the gateway, and what to do about it.
    meaning: str
    #: The ``[pacs.NAME]`` setting that handles it (None: no setting does).
    setting: str | None = None
    #: The value the probe recommends for ``setting`` (None: leave it as it is).
    value: TomlValue | None = None
    #: The node cannot serve the gateway while this stands (doctor exits non-zero).
    blocking: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "status": self.status, "result": self.result,
                "meaning": self.meaning, "setting": self.setting, "value": self.value,
                "blocking": self.blocking}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        status = data["status"]
        if status not in get_args(Status):
            raise ValueError(f"unknown status {status!r}")
        value = data.get("value")
        if value is not None and not isinstance(value, str | int | float | bool):
            raise ValueError(f"value {value!r} is not a TOML scalar")
        return cls(check=str(data["check"]), status=cast(Status, status),
                   result=str(data["result"]), meaning=str(data["meaning"]),
                   setting=None if data.get("setting") is None else str(data["setting"]),
                   value=value, blocking=bool(data.get("blocking", False)))


@dataclass(frozen=True)
class ProbeReport:
    node: str
    #: ``AE@host:port`` of the node as probed.
    address: str
    probed_at: datetime
    findings: tuple[Finding, ...]
    #: The settings the probe recommends for the node, TOML-valued, defaults included.
    settings: Mapping[str, TomlValue] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def usable(self) -> bool:
        """Reachable, queryable, and with a way to retrieve: nothing blocking found."""
        return not any(finding.blocking for finding in self.findings)

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "address": self.address,
            "probed_at": self.probed_at.astimezone(UTC).isoformat(timespec="seconds"),
            "seconds": round(self.seconds, 3),
            "usable": self.usable,
            "findings": [finding.to_json() for finding in self.findings],
            "settings": dict(self.settings),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProbeReport:
        probed_at = datetime.fromisoformat(str(data["probed_at"]))
        if probed_at.tzinfo is None:
            probed_at = probed_at.replace(tzinfo=UTC)
        settings = data.get("settings") or {}
        if not isinstance(settings, Mapping):
            raise ValueError("settings must be an object")
        return cls(node=str(data["node"]), address=str(data.get("address", "")),
                   probed_at=probed_at,
                   findings=tuple(Finding.from_json(item) for item in data["findings"]),
                   settings={str(key): value for key, value in settings.items()},
                   seconds=float(data.get("seconds", 0.0)))


def findings_path(cache_dir: Path, node: str) -> Path:
    return cache_dir / _FOLDER / f"{node}.json"


def save_report(cache_dir: Path, report: ProbeReport) -> Path:
    """Write the report atomically: a reader sees the previous one or this one, whole."""
    path = findings_path(cache_dir, report.node)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report.to_json(), indent=1, ensure_ascii=False) + "\n"
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{report.node}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def load_report(cache_dir: Path, node: str) -> ProbeReport | None:
    """The node's last report; None if it was never probed (or the file is unreadable)."""
    path = findings_path(cache_dir, node)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ProbeReport.from_json(data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable doctor findings %s: %s", path, exc)
        return None
