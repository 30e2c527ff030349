"""``dicomweb-gw doctor --write FILE``: a TOML config with what the probe found.

Each probed node gets a ``[pacs.NAME]`` table with its address, AE title and
``retrieve``, then every setting whose value (as configured, with the probe's
recommendations on top) differs from the default, each quirk with a comment
saying what the probe saw. The gateway-level settings of the current
configuration come along (ae_title and store_port always, the rest when not
at their default), secrets excepted: they are never copied into a new file.
``load_settings(config_file=FILE)`` reads the result as it is; the doctor
tests hold it to that.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from dicomweb_gw.pacs.probe_findings import ProbeReport, TomlValue
from dicomweb_gw.settings import PacsNode, Settings
from dicomweb_gw.settings.registry import GATEWAY_SETTINGS, NODE_SETTINGS, Setting

__all__ = ["config_toml", "configured", "differs", "node_values", "toml_text"]

#: Written for every node, default or not: what identifies it, and how it retrieves.
_ALWAYS = ("host", "port", "ae_title", "retrieve")
#: Gateway-level settings written even at their default: what the PACS knows us by.
_GATEWAY_ALWAYS = ("ae_title", "store_port")


def config_toml(settings: Settings, nodes: Sequence[PacsNode],
                reports: Mapping[str, ProbeReport]) -> str:
    """The TOML text for ``nodes`` (probed, reports by node name) and ``settings``."""
    probed = ", ".join(f"{name} at {report.probed_at:%Y-%m-%d %H:%M:%S} UTC"
                       for name, report in reports.items())
    lines = ["# Written by `dicomweb-gw doctor --write`" + (f" (probed {probed})" if probed
                                                            else "") + ".",
             "# Use it with: dicomweb-gw serve --config THIS_FILE", ""]
    lines += _gateway_lines(settings, nodes)
    for node in nodes:
        lines += ["", f"[pacs.{node.name}]"]
        report = reports.get(node.name)
        notes = _notes(report) if report is not None else {}
        for name, value in node_values(node, report).items():
            if name in notes:
                lines.append(f"# {notes[name]}")
            lines.append(f"{_key(name, NODE_SETTINGS)} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def node_values(node: PacsNode, report: ProbeReport | None) -> dict[str, TomlValue]:
    """The node's settings to write: as configured, the probe's on top, defaults left out."""
    defaults = _defaults(PacsNode)
    values: dict[str, TomlValue] = {}
    recommended = dict(report.settings) if report is not None else {}
    for setting in NODE_SETTINGS:
        if setting.toml is None:
            continue
        value = recommended.get(setting.name, configured(node, setting.name))
        if value is None:
            continue
        if setting.name in _ALWAYS or setting.parse(value) != defaults.get(setting.name):
            values[setting.name] = value
    return values


def configured(node: PacsNode, name: str) -> TomlValue | None:
    """The node's setting ``name`` as the TOML file writes it."""
    current = getattr(node, name)
    if current is None:
        # None is "auto" / "default" (relational, idle_timeout): the registry's word for it.
        return next((setting.default for setting in NODE_SETTINGS if setting.name == name),
                    None)
    value: TomlValue = _as_toml(current)
    return value


def differs(node: PacsNode, name: str, value: TomlValue) -> bool:
    """Whether ``value`` would change the node's setting ``name`` (False for a name or
    value this version does not know: findings saved by another version)."""
    setting = next((setting for setting in NODE_SETTINGS if setting.name == name), None)
    if setting is None:
        return False
    try:
        return bool(setting.parse(value) != getattr(node, name))
    except ValueError:
        return False


def toml_text(value: TomlValue) -> str:
    """``true``, ``500``, ``"c-move"``: a value as the TOML file (and the tables) write it."""
    return _toml(value)


def _gateway_lines(settings: Settings, nodes: Sequence[PacsNode]) -> list[str]:
    defaults = _defaults(Settings)
    lines: list[str] = []
    skipped: list[str] = []
    names = [node.name for node in nodes]
    for setting in GATEWAY_SETTINGS:
        if setting.toml is None:
            continue
        if setting.name == "default_pacs":
            if len(names) > 1 and settings.default_pacs in names \
                    and settings.default_pacs != names[0]:
                lines.append(f"default_pacs = {_toml(settings.default_pacs)}")
            continue
        value = getattr(settings, setting.name)
        if setting.name not in _GATEWAY_ALWAYS and value == defaults.get(setting.name):
            continue
        if setting.secret:
            skipped.append(setting.toml)
            continue
        lines.append(f"{setting.toml} = {_toml(_as_toml(value))}")
    if skipped:
        lines.append(f"# not copied (secrets): {', '.join(skipped)}; set them as before")
    return lines


def _notes(report: ProbeReport) -> dict[str, str]:
    """Setting -> what the probe saw, for the quirks it found."""
    notes: dict[str, str] = {}
    for finding in report.findings:
        if finding.setting is not None and finding.status == "quirk":
            notes[finding.setting] = f"doctor, {finding.check}: {finding.result}"
    return notes


def _defaults(cls: type[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in fields(cls):
        if item.default is not MISSING:
            found[item.name] = item.default
        elif item.default_factory is not MISSING:
            found[item.name] = item.default_factory()
    return found


def _key(name: str, registry: Sequence[Setting]) -> str:
    return next(setting.toml for setting in registry if setting.name == name and setting.toml)


def _as_toml(value: object) -> Any:
    """A settings value in the form the TOML file writes it."""
    if value is None:
        return None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _toml(value: Any) -> str:
    if value is None:
        raise ValueError("TOML has no null")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    # JSON's string escapes (\" \\ \n \uXXXX) are TOML basic-string escapes too.
    return json.dumps(str(value), ensure_ascii=False)
