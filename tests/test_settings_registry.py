"""The settings registry (dicomweb_gw.settings.registry) against everything that names
a setting: the code's defaults, the README's settings table, the Helm chart
(values.yaml and the templates) and the error messages. Each test here fails when a
setting is added to, renamed in or removed from one of them and not the others.
"""

from __future__ import annotations

import dataclasses
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli_fixtures import clean_environment, restore_logging  # noqa: F401 (autouse)
from dicomweb_gw.cli import main
from dicomweb_gw.settings import PacsNode, Settings, SettingsError, load_settings, log_format_from
from dicomweb_gw.settings.registry import (
    CONFIG_FILE,
    ENV_PREFIX,
    GATEWAY_SETTINGS,
    NODE_SETTINGS,
    Setting,
    all_settings,
    markdown_table,
)

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CHART = ROOT / "helm" / "dicomweb-gw"
TEMPLATES = CHART / "templates"
DEPLOYMENT = TEMPLATES / "deployment.yaml"

#: Variables of the admin CLI's client side (prefetch --url/--token), not gateway settings.
CLI_ONLY_VARIABLES = {"DICOMWEB_GW_URL", "DICOMWEB_GW_TOKEN"}

#: A value each setting refuses: (in the environment, as a TOML literal); None where the
#: setting has no such source or accepts anything there. Every setting needs a row, so a
#: new setting cannot skip the error-message tests below.
BAD_VALUES: dict[str, tuple[str | None, str | None]] = {
    "host": ("two words", '"two words"'),
    "port": ("abc", "70000"),
    "ae_title": ("SEVENTEEN_CHARS_X", '"A\\\\B"'),
    "retrieve": ("c-find", '"c-find"'),
    "max_associations": (None, "0"),
    "timeout": (None, '"soon"'),
    "query_model": (None, '"series"'),
    "move_originator": (None, '"sometimes"'),
    "fallback_charset": ("latin1", '"klingon"'),
    "max_matches": ("-1", '"many"'),
    "relational": ("sometimes", '"sometimes"'),
    "post_filter": ("maybe", '"maybe"'),
    "cancel": ("stop", '"stop"'),
    "idle_timeout": ("soon", "0"),
    "total_timeout": ("-5", '"long"'),
    "compressed": ("maybe", '"maybe"'),
    "retrieve_associations": ("0", '"many"'),
    "retrieve_split_above": ("-1", '"far"'),
    "prefetch": ("maybe", '"maybe"'),
    "prefetch_studies": ("0", "-1"),
    "prefetch_idle": ("0", '"soon"'),
    "config_file": (None, None),  # any path; a missing file has its own message
    "default_pacs": (None, '"bad name"'),
    "store_port": ("0", "true"),
    "store_host": ("pacs host", '"pacs host"'),
    "cache_dir": (None, None),  # any folder name; config check tests writability
    "cache_max_bytes": ("lots", '"huge"'),
    "cache_ttl": ("0", "-1"),
    "cors_origins": ("viewer.example.org", '["ftp://x"]'),
    "upload_max_bytes": ("10XB", "0"),
    "qido_max_results": ("0", '"many"'),
    "log_format": ("xml", None),
    "api_keys": ("tooshort-secret", '["tooshort-secret"]'),
    "oidc_issuer": ("two words", '"two words"'),
    "oidc_audience": ("two words", '"two words"'),
    "oidc_jwks_url": ("http://idp.example.org/jwks", '"ftp://idp.example.org/jwks"'),
    "oidc_read_scope": ("two words", '"two words"'),
    "oidc_write_scope": ("two words", '"two words"'),
    "oidc_admin_scope": ("two words", '"two words"'),
    "status_echo_interval": ("0", '"often"'),
    "auth_open_paths": ("healthz", '["healthz"]'),
    "audit_log": (None, "1"),  # any text is a file path in the environment
    "log_patient_data": ("maybe", '"maybe"'),
    "redis_url": ("http://:hunter2@redis:6379", '"http://:hunter2@redis:6379"'),
    "shared_store": ("relative/path", '"relative/path"'),
    "s3_endpoint": ("two words", '"two words"'),
    "s3_region": ("two words", '"two words"'),
    "lease_seconds": ("0", '"long"'),
    "qido_cache_ttl": ("-1", '"never"'),
    "http_cache": ("public", '"public"'),
    "http_cache_max_age": ("-1", '"a day"'),
    "compression": ("gzip", "true"),
}


# --------------------------------------------------------------------------- the code


def test_registry_names_every_field_once() -> None:
    settings_fields = {f.name for f in dataclasses.fields(Settings)} - {"nodes"}
    node_fields = {f.name for f in dataclasses.fields(PacsNode)} - {"name"}
    assert {s.name for s in GATEWAY_SETTINGS} == settings_fields
    assert len(GATEWAY_SETTINGS) == len(settings_fields)
    assert {s.name for s in NODE_SETTINGS} == node_fields
    assert len(NODE_SETTINGS) == len(node_fields)


def test_environment_variables_and_toml_keys_are_unique() -> None:
    variables = [s.env for s in all_settings() if s.env]
    assert len(variables) == len(set(variables))
    assert all(name.startswith(ENV_PREFIX) for name in variables)
    for table in (GATEWAY_SETTINGS, NODE_SETTINGS):
        keys = [s.toml for s in table if s.toml]
        assert len(keys) == len(set(keys))
    assert "pacs" not in {s.toml for s in GATEWAY_SETTINGS}  # the node tables' key


def test_every_setting_can_be_set_somewhere() -> None:
    assert [s.name for s in all_settings() if s.env is None and s.toml is None] == []


def _code_default(setting: Setting) -> Any:
    owner = PacsNode if setting in NODE_SETTINGS else Settings
    field = {f.name: f for f in dataclasses.fields(owner)}[setting.name]
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


@pytest.mark.parametrize("setting", [*GATEWAY_SETTINGS, *NODE_SETTINGS],
                         ids=lambda s: s.name)
def test_documented_default_is_the_code_default(setting: Setting,
                                                monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # ~ in cache_dir
    code = _code_default(setting)
    if code is dataclasses.MISSING:
        # Required fields: the environment alone falls back on the documented default.
        only_env = load_settings(environ={})
        actual = (only_env.node() if setting in NODE_SETTINGS else only_env)
        assert getattr(actual, setting.name) == setting.parse(setting.default)
    elif setting.default is None:
        assert not code, f"{setting.name}: documented as unset, but the code has {code!r}"
    else:
        assert setting.parse(setting.default) == code


def test_every_variable_named_in_the_code_is_registered() -> None:
    named: set[str] = set()
    for source in (ROOT / "dicomweb_gw").rglob("*.py"):
        named |= set(re.findall(r"\bDICOMWEB_GW_[A-Z0-9_]*[A-Z0-9]\b", source.read_text()))
    registered = {s.env for s in all_settings() if s.env}
    assert named - registered - CLI_ONLY_VARIABLES == set()


# --------------------------------------------------------------------------- README


def readme_settings_table() -> list[str]:
    """The rows (header included) of the table in the README's Settings section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("|")]


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def test_readme_table_names_the_registered_variables() -> None:
    variables = {_cells(row)[0].strip("`") for row in readme_settings_table()[2:]} - {"—"}
    registered = {s.env for s in all_settings() if s.env}
    assert variables - registered == set(), "in the README but not in the registry"
    assert registered - variables == set(), "in the registry but not in the README"


def test_readme_table_is_the_registry() -> None:
    expected = markdown_table().splitlines()
    # On failure: python -m dicomweb_gw.settings prints the table to paste.
    assert readme_settings_table() == expected


# --------------------------------------------------------------------------- Helm chart


def values_yaml() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return loaded


def has_value(values: dict[str, Any], dotted: str) -> bool:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


_ACTION = re.compile(r"{{-?(.*?)-?}}", re.DOTALL)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_ABSOLUTE = re.compile(r"\$?\.Values((?:\.\w+)+)")
_RELATIVE = re.compile(r"(?<![\w$)\]])\.(\w+(?:\.\w+)*)?")
_BUILTINS = ("Values", "Release", "Chart", "Capabilities", "Template", "Files")


def _references(action: str, scope: str | None) -> set[str]:
    """values.yaml paths an action reads; ``scope`` is the path ``.`` stands for."""
    code = _STRING.sub('""', action)
    found = {match.group(1)[1:] for match in _ABSOLUTE.finditer(code)}
    code = _ABSOLUTE.sub("", code)
    if scope is not None:
        for match in _RELATIVE.finditer(code):
            tail = match.group(1)
            if tail and tail.split(".")[0] in _BUILTINS:
                continue
            path = ".".join(part for part in (scope, tail) if part)
            if path:
                found.add(path)
    return found


def template_actions(text: str) -> Iterator[tuple[int, set[str]]]:
    """Each action's offset and the values paths it reads, following ``with`` blocks
    (``.`` is the value of the ``with``; inside ``range`` it is not a values path)."""
    scopes: list[str | None] = [""]
    for match in _ACTION.finditer(text):
        action = match.group(1).strip()
        if action.startswith("/*"):
            continue
        word = action.split(maxsplit=1)[0] if action else ""
        if word == "end":
            scopes.pop()
            continue
        if word == "with":
            reads = _references(action[len("with"):], scopes[-1])
            yield match.start(), reads
            scopes.append(next(iter(reads)) if len(reads) == 1 else None)
            continue
        yield match.start(), _references(action, scopes[-1])
        if word in ("if", "define", "block"):
            scopes.append("" if word == "define" else scopes[-1])
        elif word == "range":
            scopes.append(None)


def test_registered_helm_values_exist_in_values_yaml() -> None:
    values = values_yaml()
    missing = [(s.name, path) for s in all_settings() for path in s.helm
               if not has_value(values, path)]
    assert missing == []


def test_registered_helm_values_are_used_by_the_chart() -> None:
    read: set[str] = set()
    for template in TEMPLATES.iterdir():
        for _, paths in template_actions(template.read_text()):
            read |= paths
    unused = [(s.name, path) for s in all_settings() for path in s.helm if path not in read]
    assert unused == []


def chart_environment() -> dict[str, set[str]]:
    """Each DICOMWEB_GW_ variable the Deployment sets -> the values paths its value reads."""
    text = DEPLOYMENT.read_text()
    actions = list(template_actions(text))
    chart: dict[str, set[str]] = {}
    for match in re.finditer(r"- name: (DICOMWEB_GW_\w+)\n\s+(value: .*|valueFrom:)",
                             text):
        start, end = match.span(2)
        paths = chart.setdefault(match.group(1), set())
        for offset, reads in actions:
            if start <= offset < end:
                paths |= reads
    return chart


def test_the_chart_sets_only_registered_variables() -> None:
    registered = {s.env for s in all_settings() if s.env}
    assert set(chart_environment()) - registered == set()


def test_the_chart_sets_each_variable_from_its_registered_value() -> None:
    by_env = {s.env: s for s in all_settings() if s.env}
    chart = chart_environment()
    assert chart, "no DICOMWEB_GW_ variable found in the Deployment"
    wrong = {env: sorted(paths - set(by_env[env].helm))
             for env, paths in chart.items() if paths - set(by_env[env].helm)}
    assert wrong == {}


def config_toml_keys() -> tuple[set[str], set[str]]:
    """Keys of the TOML the chart renders: (top level, in [pacs.NAME] tables)."""
    helpers = (TEMPLATES / "_helpers.tpl").read_text()
    body = helpers.split('define "dicomweb-gw.configToml"', 1)[1].split("{{- end }}\n\n", 1)[0]
    top, _, nodes = body.partition("[pacs.")
    key = re.compile(r"^(\w+) = ", re.MULTILINE)
    return set(key.findall(top)), set(key.findall(nodes))


def test_the_chart_config_toml_uses_registered_keys() -> None:
    top, node = config_toml_keys()
    assert top, "no keys found in the chart's configToml"
    assert top - {s.toml for s in GATEWAY_SETTINGS} == set()
    assert node - {s.toml for s in NODE_SETTINGS} == set()


def test_each_setting_with_a_helm_value_reaches_the_gateway() -> None:
    """By its variable in the Deployment, or its key in the chart's TOML."""
    chart_env = set(chart_environment())
    top, node = config_toml_keys()
    lost = [s.name for s in all_settings() if s.helm
            and s.env not in chart_env
            and s.toml not in (node if s in NODE_SETTINGS else top)]
    assert lost == []


def test_helm_template_reader_follows_with_blocks() -> None:
    """The reader the chart tests rely on: absolute, nested ``with`` and ``range``."""
    text = ('{{- with .Values.a }}{{- with .b.c }}{{ .d | quote }}{{ . }}{{- end }}'
            '{{- range $k, $v := .list }}{{ .x }}{{ $v.y }}{{- end }}{{ .e }}{{- end }}'
            '{{ $.Values.f.g }}{{ include "x.y" . }}')
    reads = set().union(*(paths for _, paths in template_actions(text)))
    assert reads == {"a", "a.b.c", "a.b.c.d", "a.list", "a.e", "f.g"}


# --------------------------------------------------------------------------- messages


def test_every_setting_has_a_bad_value_example() -> None:
    assert {s.name for s in all_settings()} == set(BAD_VALUES)


def _env_cases() -> list[Any]:
    return [pytest.param(s, BAD_VALUES[s.name][0], id=s.env)
            for s in all_settings() if s.env and BAD_VALUES[s.name][0] is not None]


def _toml_cases() -> list[Any]:
    return [pytest.param(s, BAD_VALUES[s.name][1],
                         id=f"[pacs.main] {s.toml}" if s in NODE_SETTINGS else s.toml)
            for s in all_settings() if s.toml and BAD_VALUES[s.name][1] is not None]


@pytest.mark.parametrize(("setting", "bad"), _env_cases())
def test_bad_environment_value_names_variable_setting_and_what_is_accepted(
        setting: Setting, bad: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={setting.env or "": bad})
    message = str(caught.value)
    assert message.startswith(f"{setting.env}"), message
    assert f"setting {setting.name}" in message
    assert "environment" in message
    assert "must" in message
    assert "\n" not in message
    assert (bad in message) is not setting.secret


@pytest.mark.parametrize(("setting", "bad"), _toml_cases())
def test_bad_toml_value_names_key_file_and_what_is_accepted(
        setting: Setting, bad: str, tmp_path: Path) -> None:
    keys = {"host": '"pacs.example.org"', "port": "104", "ae_title": '"MAINPACS"'}
    top = ""
    if setting in NODE_SETTINGS:
        keys[setting.toml or ""] = bad
    else:
        top = f"{setting.toml} = {bad}\n"
    text = top + "[pacs.main]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items())
    config = tmp_path / "gw.toml"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={}, config_file=config)
    message = str(caught.value)
    label = f"[pacs.main] {setting.toml}" if setting in NODE_SETTINGS else setting.toml
    assert message.startswith(label or ""), message
    assert f"config file {config}" in message
    assert "must" in message
    assert "\n" not in message


def test_secret_values_stay_out_of_messages() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"DICOMWEB_GW_REDIS_URL": "http://:hunter2@redis:6379/0"})
    assert "hunter2" not in str(caught.value)
    assert "DICOMWEB_GW_REDIS_URL" in str(caught.value)


# --------------------------------------------------------------------------- LOG_FORMAT


def test_log_format_is_a_setting() -> None:
    assert log_format_from({}) == "text"
    assert log_format_from({"DICOMWEB_GW_LOG_FORMAT": " JSON "}) == "json"
    assert load_settings(environ={"DICOMWEB_GW_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(SettingsError, match=r"DICOMWEB_GW_LOG_FORMAT='xml'.*'text' or 'json'"):
        log_format_from({"DICOMWEB_GW_LOG_FORMAT": "xml"})


def test_log_format_in_the_config_file_says_environment_only(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text('log_format = "json"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match=r"log_format \(environment only: "
                                            r"DICOMWEB_GW_LOG_FORMAT\)"):
        load_settings(environ={}, config_file=config)


def test_cli_refuses_a_bad_log_format_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Not silently plain text: the operator asked for something the collector parses."""
    with socket.socket() as sock:  # a port nothing listens on: echo fails fast, if reached
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    monkeypatch.setenv("DICOMWEB_GW_PACS_PORT", str(closed))
    monkeypatch.setenv("DICOMWEB_GW_LOG_FORMAT", "xml")
    assert main(["echo"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dicomweb-gw: invalid settings: DICOMWEB_GW_LOG_FORMAT='xml'")
    assert "\n" not in err


def test_config_file_variable_is_registered() -> None:
    assert CONFIG_FILE.env == "DICOMWEB_GW_CONFIG"
    assert CONFIG_FILE not in GATEWAY_SETTINGS
