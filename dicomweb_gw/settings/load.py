"""Reading the settings: the TOML file, then the environment on top, both driven by
the registry, then the checks that span several settings."""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from dicomweb_gw.settings.model import LogFormat, PacsNode, Settings, SettingsError
from dicomweb_gw.settings.parsers import LOOPBACK, InvalidValue, node_name
from dicomweb_gw.settings.registry import (
    CONFIG_FILE,
    GATEWAY_SETTINGS,
    LOG_FORMAT,
    NODE_SETTINGS,
    Setting,
)

__all__ = ["load_settings", "log_format_from"]

_BY_NAME = {setting.name: setting for setting in GATEWAY_SETTINGS}


def load_settings(
    environ: Mapping[str, str] | None = None, config_file: Path | str | None = None
) -> Settings:
    """Build settings from ``config_file`` (or ``DICOMWEB_GW_CONFIG``) and the environment."""
    env = os.environ if environ is None else environ
    named = config_file if config_file is not None else _from_env((CONFIG_FILE,), env).get(
        CONFIG_FILE.name)
    path = Path(named) if named else None
    data = _read_toml(path) if path else {}
    origin = f"config file {path}"
    _refuse_unknown_keys(data, origin)
    values = _from_toml(GATEWAY_SETTINGS, data, "", origin)
    values.update(_from_env(GATEWAY_SETTINGS, env))
    nodes = _nodes_from_toml(data.get("pacs", {}), origin)
    default = values.pop("default_pacs", nodes[0].name if nodes else "default")
    nodes = _override_default_node(nodes, default, _from_env(NODE_SETTINGS, env))
    settings = Settings(nodes=nodes, default_pacs=default, **values)
    _check_store_port(settings)
    _check_oidc(settings)
    return settings


def log_format_from(environ: Mapping[str, str] | None = None) -> LogFormat:
    """``DICOMWEB_GW_LOG_FORMAT``, for the CLI to set up logging before loading the rest."""
    env = os.environ if environ is None else environ
    value = _from_env((LOG_FORMAT,), env).get(LOG_FORMAT.name, LOG_FORMAT.default)
    return cast(LogFormat, value)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None


def _parse(setting: Setting, value: object, label: str, origin: str) -> Any:
    """The parsed value, or one line naming the setting, its origin and what is accepted."""
    try:
        return setting.parse(value)
    except InvalidValue as exc:
        shown = "" if setting.secret else f"={value!r}"
        raise SettingsError(f"{label}{shown} ({origin}): {exc}") from None


def _from_env(settings: Iterable[Setting], env: Mapping[str, str]) -> dict[str, Any]:
    """The settings' variables that are set; a blank variable counts as unset."""
    found: dict[str, Any] = {}
    for setting in settings:
        raw = env.get(setting.env) if setting.env else None
        if raw is not None and raw.strip():
            origin = f"environment, setting {setting.name}"
            if setting in NODE_SETTINGS:
                origin += " of the default PACS node"
            found[setting.name] = _parse(setting, raw.strip(), setting.env or "", origin)
    return found


def _from_toml(settings: Iterable[Setting], table: Mapping[str, Any], where: str,
               origin: str) -> dict[str, Any]:
    """The settings a TOML table holds; ``where`` prefixes the key (``[pacs.main] ``)."""
    return {setting.name: _parse(setting, table[setting.toml], where + setting.toml, origin)
            for setting in settings if setting.toml is not None and setting.toml in table}


def _refuse_unknown_keys(data: Mapping[str, Any], origin: str) -> None:
    known = {setting.toml for setting in GATEWAY_SETTINGS if setting.toml} | {"pacs"}
    unknown = sorted(set(data) - known)
    if unknown:
        named = ", ".join(_with_hint(key, known) for key in unknown)
        raise SettingsError(f"unknown setting(s) in {origin}: {named}")


def _with_hint(key: str, known: Iterable[str]) -> str:
    env_only = {setting.name: setting.env for setting in GATEWAY_SETTINGS
                if setting.toml is None}
    if key in env_only:
        return f"{key} (environment only: {env_only[key]})"
    close = difflib.get_close_matches(key, known, n=1)
    return f"{key} (did you mean {close[0]}?)" if close else key


def _nodes_from_toml(tables: object, origin: str) -> tuple[PacsNode, ...]:
    if not isinstance(tables, Mapping):
        raise SettingsError(f"{origin}: [pacs.NAME] tables expected")
    return tuple(_node_from_toml(name, table, origin) for name, table in tables.items())


def _node_from_toml(name: str, table: object, origin: str) -> PacsNode:
    where = f"[pacs.{name}]"
    try:
        node_name(name)
    except InvalidValue:
        raise SettingsError(f"{where} ({origin}): node names use letters, digits, '-' and "
                            "'_' only") from None
    if not isinstance(table, Mapping):
        raise SettingsError(f"{where} ({origin}): must be a table")
    keys = [setting.toml for setting in NODE_SETTINGS if setting.toml]
    unknown = sorted(set(table) - set(keys))
    if unknown:
        raise SettingsError(f"{where} ({origin}): unknown key(s) {', '.join(unknown)}; "
                            f"accepted: {', '.join(keys)}")
    for setting in NODE_SETTINGS:
        if setting.required and setting.toml not in table:
            raise SettingsError(f"{where} ({origin}): '{setting.toml}' is required")
    return PacsNode(name=name, **_from_toml(NODE_SETTINGS, table, where + " ", origin))


def _override_default_node(nodes: tuple[PacsNode, ...], default: str,
                           overrides: Mapping[str, Any]) -> tuple[PacsNode, ...]:
    """The environment's node settings apply to the default node; with no file, they
    are the default node, with the registry's defaults for what they leave out."""
    names = [node.name for node in nodes]
    if nodes and default not in names:
        raise SettingsError(f"default_pacs={default!r} names no [pacs.NAME] node "
                            f"(known: {', '.join(names)})")
    if default in names:
        return tuple(replace(node, **overrides) if node.name == default else node
                     for node in nodes)
    base = {setting.name: setting.parse(setting.default)
            for setting in NODE_SETTINGS if setting.required}
    return (PacsNode(name=default, **{**base, **overrides}),)


def _check_store_port(settings: Settings) -> None:
    clash = [node for node in settings.nodes
             if node.host in LOOPBACK and node.port == settings.store_port]
    if clash:
        setting = _BY_NAME["store_port"]
        raise SettingsError(
            f"{setting.env} / {setting.toml}={settings.store_port} is the port of the local "
            f"PACS node '{clash[0].name}'; the gateway's storage SCP needs a port of its own")


def _check_oidc(settings: Settings) -> None:
    """OIDC needs all three settings; half a configuration must not silently mean 'open'."""
    trio = [_BY_NAME[name] for name in ("oidc_issuer", "oidc_audience", "oidc_jwks_url")]
    missing = [f"{setting.env} (or {setting.toml})" for setting in trio
               if getattr(settings, setting.name) is None]
    if missing and len(missing) < len(trio):
        raise SettingsError(f"OIDC needs {', '.join(missing)} as well")
