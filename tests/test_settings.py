"""Unit tests for dicomweb_gw.settings: environment variables, TOML file, validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dicomweb_gw.settings import PacsNode, SettingsError, load_settings

TWO_NODES = """
ae_title = "GATEWAY"
store_port = 11200
default_pacs = "research"

[pacs.main]
host = "pacs.example.org"
port = 104
ae_title = "MAINPACS"
retrieve = "c-move"

[pacs.research]
host = "10.0.0.7"
port = 11112
ae_title = "RESEARCH"
retrieve = "c-get"
max_associations = 2
timeout = 5.5
"""


def write(tmp_path: Path, text: str, name: str = "gw.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def node_toml(**overrides: object) -> str:
    """A single ``[pacs.main]`` node; ``None`` drops a key, other values replace it."""
    keys: dict[str, object] = {"host": '"pacs.example.org"', "port": "104",
                               "ae_title": '"MAINPACS"'}
    keys.update(overrides)
    lines = [f"{key} = {value}" for key, value in keys.items() if value is not None]
    return "[pacs.main]\n" + "\n".join(lines) + "\n"


# -- environment only ---------------------------------------------------------


def test_empty_environment_gives_one_local_default_node() -> None:
    settings = load_settings(environ={})
    assert len(settings.nodes) == 1
    node = settings.node()
    assert node.name == settings.default_pacs
    assert node.host == "127.0.0.1"
    assert node.port == 11112
    assert node.retrieve == "c-move"


def test_environment_defines_the_default_node() -> None:
    settings = load_settings(environ={
        "DICOMWEB_GW_PACS_HOST": "pacs.hospital.local",
        "DICOMWEB_GW_PACS_PORT": "4242",
        "DICOMWEB_GW_PACS_AE_TITLE": "ORTHANC",
        "DICOMWEB_GW_AE_TITLE": "MYGW",
        "DICOMWEB_GW_RETRIEVE": "c-get",
        "DICOMWEB_GW_STORE_PORT": "11999",
        "DICOMWEB_GW_CACHE_DIR": "/var/cache/gw",
        "DICOMWEB_GW_CACHE_MAX_BYTES": "500MB",
    })
    node = settings.node()
    assert (node.host, node.port, node.ae_title, node.retrieve) == (
        "pacs.hospital.local", 4242, "ORTHANC", "c-get")
    assert settings.ae_title == "MYGW"
    assert settings.store_port == 11999
    assert settings.cache_dir == Path("/var/cache/gw")
    assert settings.cache_max_bytes == 500_000_000


def test_environment_values_are_stripped_and_retrieve_is_case_insensitive() -> None:
    settings = load_settings(environ={
        "DICOMWEB_GW_PACS_PORT": " 104 ",
        "DICOMWEB_GW_RETRIEVE": "C-GET",
        "DICOMWEB_GW_PACS_AE_TITLE": " PACS ",
    })
    assert settings.node().port == 104
    assert settings.node().retrieve == "c-get"
    assert settings.node().ae_title == "PACS"


def test_blank_environment_variable_counts_as_unset() -> None:
    settings = load_settings(environ={"DICOMWEB_GW_PACS_PORT": "  ", "DICOMWEB_GW_AE_TITLE": ""})
    assert settings.node().port == 11112
    assert settings.ae_title == "DICOMWEB_GW"


def test_unrelated_environment_variables_are_ignored() -> None:
    settings = load_settings(environ={"PACS_PORT": "abc", "DICOMWEB_GW_UNRELATED": "x"})
    assert settings.node().port == 11112


def test_cache_dir_expands_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = load_settings(environ={"DICOMWEB_GW_CACHE_DIR": "~/gw-cache"})
    assert settings.cache_dir == tmp_path / "gw-cache"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1048576", 1048576),
        ("10GiB", 10 * 1024**3),
        ("10gib", 10 * 1024**3),
        ("500MB", 500 * 1000**2),
        ("500MiB", 500 * 1024**2),
        ("2G", 2 * 1000**3),
        ("64KiB", 64 * 1024),
        ("1.5GiB", 3 * 1024**3 // 2),
        ("1TB", 1000**4),
        ("100B", 100),
        (" 10 GiB ", 10 * 1024**3),
    ],
)
def test_cache_max_bytes_sizes(text: str, expected: int) -> None:
    settings = load_settings(environ={"DICOMWEB_GW_CACHE_MAX_BYTES": text})
    assert settings.cache_max_bytes == expected


@pytest.mark.parametrize("text", ["lots", "10XB", "-5", "0", "10 G iB", "GiB", "1e9"])
def test_invalid_cache_max_bytes(text: str) -> None:
    with pytest.raises(SettingsError, match="DICOMWEB_GW_CACHE_MAX_BYTES"):
        load_settings(environ={"DICOMWEB_GW_CACHE_MAX_BYTES": text})


@pytest.mark.parametrize("port", ["abc", "0", "65536", "-1", "104.5", "80 80"])
@pytest.mark.parametrize("variable", ["DICOMWEB_GW_PACS_PORT", "DICOMWEB_GW_STORE_PORT"])
def test_invalid_ports(variable: str, port: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings(environ={variable: port})


@pytest.mark.parametrize("port", ["1", "65535"])
def test_port_bounds_are_inclusive(port: str) -> None:
    assert load_settings(environ={"DICOMWEB_GW_PACS_PORT": port}).node().port == int(port)


@pytest.mark.parametrize(
    "title",
    ["A" * 17, "BAD\\AE", "ÄRZTE", "TAB\tAE"],
)
@pytest.mark.parametrize("variable", ["DICOMWEB_GW_AE_TITLE", "DICOMWEB_GW_PACS_AE_TITLE"])
def test_invalid_ae_titles(variable: str, title: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings(environ={variable: title})


def test_ae_title_of_exactly_16_characters_is_allowed() -> None:
    settings = load_settings(environ={"DICOMWEB_GW_AE_TITLE": "A" * 16})
    assert settings.ae_title == "A" * 16


@pytest.mark.parametrize("method", ["c-find", "cget", "move", "wado"])
def test_invalid_retrieve(method: str) -> None:
    with pytest.raises(SettingsError, match="DICOMWEB_GW_RETRIEVE") as caught:
        load_settings(environ={"DICOMWEB_GW_RETRIEVE": method})
    assert "c-get" in str(caught.value)
    assert "c-move" in str(caught.value)


@pytest.mark.parametrize("host", ["pacs host", "pacs\thost"])
def test_invalid_pacs_host(host: str) -> None:
    with pytest.raises(SettingsError, match="DICOMWEB_GW_PACS_HOST"):
        load_settings(environ={"DICOMWEB_GW_PACS_HOST": host})


def test_store_port_equal_to_a_local_pacs_port_is_rejected() -> None:
    with pytest.raises(SettingsError, match="STORE_PORT"):
        load_settings(environ={"DICOMWEB_GW_PACS_HOST": "localhost",
                               "DICOMWEB_GW_PACS_PORT": "11113"})


def test_store_port_equal_to_a_remote_pacs_port_is_fine() -> None:
    settings = load_settings(environ={"DICOMWEB_GW_PACS_HOST": "pacs.example.org",
                                      "DICOMWEB_GW_PACS_PORT": "11113"})
    assert settings.node().port == settings.store_port == 11113


def test_error_message_is_one_line() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"DICOMWEB_GW_PACS_PORT": "abc"})
    assert "\n" not in str(caught.value)
    assert "abc" in str(caught.value)


# -- TOML file ----------------------------------------------------------------


def test_toml_file_with_several_nodes(tmp_path: Path) -> None:
    settings = load_settings(environ={}, config_file=write(tmp_path, TWO_NODES))
    assert {node.name for node in settings.nodes} == {"main", "research"}
    assert settings.default_pacs == "research"
    assert settings.ae_title == "GATEWAY"
    assert settings.store_port == 11200
    assert settings.node("main") == PacsNode(
        name="main", host="pacs.example.org", port=104, ae_title="MAINPACS", retrieve="c-move")
    research = settings.node()
    assert research.name == "research"
    assert (research.host, research.port, research.retrieve) == ("10.0.0.7", 11112, "c-get")
    assert research.max_associations == 2
    assert research.timeout == 5.5


def test_unknown_node_name_raises_key_error(tmp_path: Path) -> None:
    settings = load_settings(environ={}, config_file=write(tmp_path, TWO_NODES))
    with pytest.raises(KeyError):
        settings.node("nonexistent")


def test_first_node_is_default_without_default_pacs(tmp_path: Path) -> None:
    text = node_toml() + '[pacs.second]\nhost = "h2"\nport = 105\nae_title = "SECOND"\n'
    settings = load_settings(environ={}, config_file=write(tmp_path, text))
    assert settings.default_pacs == "main"
    assert len(settings.nodes) == 2


def test_environment_overrides_only_the_default_node(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "DICOMWEB_GW_PACS_HOST": "override.example.org",
            "DICOMWEB_GW_PACS_PORT": "2000",
            "DICOMWEB_GW_PACS_AE_TITLE": "OVERRIDDEN",
            "DICOMWEB_GW_RETRIEVE": "c-move",
            "DICOMWEB_GW_AE_TITLE": "ENVGW",
        },
        config_file=write(tmp_path, TWO_NODES),
    )
    research = settings.node("research")
    assert (research.host, research.port, research.ae_title, research.retrieve) == (
        "override.example.org", 2000, "OVERRIDDEN", "c-move")
    # what the environment does not mention survives from the file
    assert research.max_associations == 2
    assert research.timeout == 5.5
    # the other node is untouched
    main = settings.node("main")
    assert (main.host, main.port, main.ae_title) == ("pacs.example.org", 104, "MAINPACS")
    assert settings.ae_title == "ENVGW"
    assert len(settings.nodes) == 2


def test_partial_environment_override_keeps_other_file_values(tmp_path: Path) -> None:
    settings = load_settings(environ={"DICOMWEB_GW_PACS_PORT": "4242"},
                             config_file=write(tmp_path, TWO_NODES))
    research = settings.node()
    assert research.port == 4242
    assert research.host == "10.0.0.7"
    assert research.ae_title == "RESEARCH"
    assert research.retrieve == "c-get"


def test_config_file_from_environment_variable(tmp_path: Path) -> None:
    path = write(tmp_path, TWO_NODES)
    settings = load_settings(environ={"DICOMWEB_GW_CONFIG": str(path)})
    assert settings.default_pacs == "research"


def test_explicit_config_file_wins_over_environment_variable(tmp_path: Path) -> None:
    explicit = write(tmp_path, TWO_NODES, "explicit.toml")
    settings = load_settings(environ={"DICOMWEB_GW_CONFIG": str(tmp_path / "missing.toml")},
                             config_file=explicit)
    assert settings.default_pacs == "research"


def test_top_level_file_settings(tmp_path: Path) -> None:
    text = ('cache_dir = "/srv/cache"\ncache_max_bytes = "2GiB"\nqido_max_results = 50\n'
            'store_host = "127.0.0.1"\n' + node_toml())
    settings = load_settings(environ={}, config_file=write(tmp_path, text))
    assert settings.cache_dir == Path("/srv/cache")
    assert settings.cache_max_bytes == 2 * 1024**3
    assert settings.qido_max_results == 50
    assert settings.store_host == "127.0.0.1"


def test_environment_overrides_file_cache_size(tmp_path: Path) -> None:
    text = 'cache_max_bytes = "2GiB"\n' + node_toml()
    settings = load_settings(environ={"DICOMWEB_GW_CACHE_MAX_BYTES": "1048576"},
                             config_file=write(tmp_path, text))
    assert settings.cache_max_bytes == 1048576


def test_integer_cache_size_in_file(tmp_path: Path) -> None:
    text = "cache_max_bytes = 1048576\n" + node_toml()
    settings = load_settings(environ={}, config_file=write(tmp_path, text))
    assert settings.cache_max_bytes == 1048576


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (node_toml(port='"abc"'), "port"),
        (node_toml(port="0"), "port"),
        (node_toml(port="70000"), "port"),
        (node_toml(port="true"), "port"),
        (node_toml(ae_title='"SEVENTEEN_CHARS_X"'), "ae_title"),
        (node_toml(ae_title='"A\\\\B"'), "ae_title"),
        (node_toml(retrieve='"c-find"'), "retrieve"),
        (node_toml(max_associations="0"), "max_associations"),
        (node_toml(timeout="0"), "timeout"),
        (node_toml(timeout='"soon"'), "timeout"),
        (node_toml(host='"two words"'), "host"),
    ],
)
def test_invalid_node_values_name_node_and_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={}, config_file=write(tmp_path, text))
    message = str(caught.value)
    assert "[pacs.main]" in message
    assert named in message


@pytest.mark.parametrize("missing", ["host", "port", "ae_title"])
def test_missing_required_node_key(tmp_path: Path, missing: str) -> None:
    text = node_toml(**{missing: None})
    with pytest.raises(SettingsError, match=rf"\[pacs\.main\].*'{missing}'"):
        load_settings(environ={}, config_file=write(tmp_path, text))


def test_unknown_node_key(tmp_path: Path) -> None:
    text = node_toml(calling_ae='"X"')
    with pytest.raises(SettingsError, match=r"\[pacs\.main\].*calling_ae"):
        load_settings(environ={}, config_file=write(tmp_path, text))


def test_unknown_top_level_keys_are_all_named(tmp_path: Path) -> None:
    text = 'store_prot = 11113\nverbose = true\n' + node_toml()
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={}, config_file=write(tmp_path, text))
    assert "store_prot" in str(caught.value)
    assert "verbose" in str(caught.value)


def test_invalid_top_level_values(tmp_path: Path) -> None:
    cases = {
        "store_port": "store_port = 99999\n",
        "ae_title": 'ae_title = "WAY_TOO_LONG_AE_TITLE"\n',
        "cache_max_bytes": 'cache_max_bytes = "huge"\n',
        "qido_max_results": "qido_max_results = 0\n",
    }
    for index, (name, line) in enumerate(cases.items()):
        path = write(tmp_path, line + node_toml(), f"case{index}.toml")
        with pytest.raises(SettingsError, match=name):
            load_settings(environ={}, config_file=path)


def test_pacs_not_a_table(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="pacs"):
        load_settings(environ={}, config_file=write(tmp_path, "pacs = 5\n"))


def test_node_not_a_table(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"\[pacs\.main\]"):
        load_settings(environ={}, config_file=write(tmp_path, '[pacs]\nmain = "x"\n'))


def test_invalid_node_name(tmp_path: Path) -> None:
    text = '[pacs."bad name"]\nhost = "h"\nport = 104\nae_title = "A"\n'
    with pytest.raises(SettingsError, match="bad name"):
        load_settings(environ={}, config_file=write(tmp_path, text))


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[pacs.main\nhost = \n")
    with pytest.raises(SettingsError, match="not valid TOML") as caught:
        load_settings(environ={}, config_file=path)
    assert str(path) in str(caught.value)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(SettingsError, match=r"nowhere\.toml"):
        load_settings(environ={}, config_file=path)


def test_directory_as_config_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=re.escape(str(tmp_path))):
        load_settings(environ={}, config_file=tmp_path)


def test_bad_environment_value_still_fails_with_a_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="DICOMWEB_GW_PACS_PORT"):
        load_settings(environ={"DICOMWEB_GW_PACS_PORT": "x"},
                      config_file=write(tmp_path, TWO_NODES))


def test_default_pacs_must_name_a_configured_node(tmp_path: Path) -> None:
    text = 'default_pacs = "mian"\n' + node_toml()
    with pytest.raises(SettingsError, match="default_pacs"):
        load_settings(environ={}, config_file=write(tmp_path, text))


# -- one registry: every setting from both sources, messages that say where and what ----


def test_store_host_from_the_environment_as_well_as_the_file(tmp_path: Path) -> None:
    assert load_settings(environ={"DICOMWEB_GW_STORE_HOST": "127.0.0.1"}).store_host == (
        "127.0.0.1")
    text = 'store_host = "10.1.2.3"\n' + node_toml()
    settings = load_settings(environ={"DICOMWEB_GW_STORE_HOST": "127.0.0.1"},
                             config_file=write(tmp_path, text))
    assert settings.store_host == "127.0.0.1"  # the environment wins, as everywhere


def test_a_port_that_is_no_number_is_told_the_accepted_range() -> None:
    with pytest.raises(SettingsError, match="between 1 and 65535"):
        load_settings(environ={"DICOMWEB_GW_STORE_PORT": "abc"})


def test_toml_error_names_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, "cache_ttl = 0\n" + node_toml())
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={}, config_file=path)
    assert str(caught.value).startswith("cache_ttl=0 ")
    assert f"config file {path}" in str(caught.value)


def test_environment_error_names_the_setting() -> None:
    with pytest.raises(SettingsError, match=r"DICOMWEB_GW_RETRIEVE='x' \(environment, setting "
                                            r"retrieve of the default PACS node\)"):
        load_settings(environ={"DICOMWEB_GW_RETRIEVE": "x"})


def test_misspelt_top_level_key_gets_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "store_prot = 11113\n" + node_toml())
    with pytest.raises(SettingsError, match=r"store_prot \(did you mean store_port\?\)"):
        load_settings(environ={}, config_file=path)


def test_unknown_node_key_lists_the_accepted_ones(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="accepted: host, port, ae_title, retrieve"):
        load_settings(environ={}, config_file=write(tmp_path, node_toml(calling_ae='"X"')))


@pytest.mark.parametrize(("text", "expected"), [("0", 0.0), ("0.0", 0.0), ("2.5", 2.5)])
def test_qido_cache_ttl_zero_turns_it_off(text: str, expected: float) -> None:
    assert load_settings(environ={"DICOMWEB_GW_QIDO_CACHE_TTL": text}).qido_cache_ttl == expected


@pytest.mark.parametrize("text", ["-1", "soon", "nan"])
def test_invalid_qido_cache_ttl(text: str) -> None:
    with pytest.raises(SettingsError, match="DICOMWEB_GW_QIDO_CACHE_TTL"):
        load_settings(environ={"DICOMWEB_GW_QIDO_CACHE_TTL": text})


def test_cors_origins_in_the_file_as_a_list(tmp_path: Path) -> None:
    text = 'cors_origins = ["https://a.example.org/", "https://b.example.org"]\n' + node_toml()
    settings = load_settings(environ={}, config_file=write(tmp_path, text))
    assert settings.cors_origins == ("https://a.example.org", "https://b.example.org")
