"""Unit tests for dicomweb_gw.cli: exit codes and one-line errors, no PACS needed."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cli_fixtures import clean_environment, restore_logging  # noqa: F401 (autouse)
from dicomweb_gw import __version__, cli
from dicomweb_gw.cli import main
from dicomweb_gw.settings import Settings


@pytest.fixture(autouse=True)
def never_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail fast instead of blocking in uvicorn if settings were wrongly accepted."""

    def refuse(settings: Settings, host: str, port: int) -> int:
        raise AssertionError(f"the gateway would have started with {settings}")

    monkeypatch.setattr(cli, "_run_gateway", refuse)


def closed_port() -> int:
    """A local TCP port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {lines!r}"
    return lines[0]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DICOMWEB_GW_PACS_PORT", "abc"),
        ("DICOMWEB_GW_PACS_AE_TITLE", "MUCH_TOO_LONG_AE_TITLE"),
        ("DICOMWEB_GW_RETRIEVE", "c-find"),
        ("DICOMWEB_GW_CACHE_MAX_BYTES", "lots"),
    ],
)
def test_serve_with_invalid_setting_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str,
    value: str,
) -> None:
    monkeypatch.setenv(variable, value)
    assert main(["serve", "--port", str(closed_port())]) == 2
    captured = capsys.readouterr()
    line = one_line(captured.err)
    assert variable in line
    assert "Traceback" not in captured.err
    assert line.startswith("dicomweb-gw:")


def test_serve_with_invalid_config_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("[pacs.main\n", encoding="utf-8")
    assert main(["serve", "--config", str(config)]) == 2
    captured = capsys.readouterr()
    assert "broken.toml" in one_line(captured.err)
    assert "Traceback" not in captured.err


def test_serve_with_missing_config_from_environment_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DICOMWEB_GW_CONFIG", str(tmp_path / "absent.toml"))
    assert main(["serve"]) == 2
    assert "absent.toml" in one_line(capsys.readouterr().err)


def test_echo_against_closed_port_fails_naming_the_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    config = tmp_path / "gw.toml"
    config.write_text(
        f'[pacs.archive]\nhost = "127.0.0.1"\nport = {port}\nae_title = "ARCHIVE"\n'
        "timeout = 5\n",
        encoding="utf-8",
    )
    assert main(["-q", "echo", "--config", str(config)]) == 1
    captured = capsys.readouterr()
    assert "archive" in captured.err
    assert str(port) in captured.err
    assert "succeeded" not in captured.out
    assert "Traceback" not in captured.err


def test_echo_from_environment_against_closed_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    monkeypatch.setenv("DICOMWEB_GW_PACS_HOST", "127.0.0.1")
    monkeypatch.setenv("DICOMWEB_GW_PACS_PORT", str(port))
    monkeypatch.setenv("DICOMWEB_GW_PACS_AE_TITLE", "NOBODY")
    assert main(["-q", "echo"]) == 1
    err = capsys.readouterr().err
    assert f"NOBODY@127.0.0.1:{port}" in err
    assert "failed" in err


def test_echo_unknown_node_exits_2_listing_known_nodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(
        '[pacs.main]\nhost = "127.0.0.1"\nport = 104\nae_title = "MAIN"\n'
        '[pacs.research]\nhost = "127.0.0.1"\nport = 105\nae_title = "RES"\n',
        encoding="utf-8",
    )
    assert main(["-q", "echo", "--config", str(config), "--pacs", "nosuch"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "nosuch" in line
    assert "main" in line
    assert "research" in line


def test_echo_with_invalid_setting_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DICOMWEB_GW_STORE_PORT", "0")
    assert main(["echo"]) == 2
    assert "DICOMWEB_GW_STORE_PORT" in one_line(capsys.readouterr().err)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"dicomweb-gw {__version__}"


def test_version_matches_package_metadata() -> None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("dicomweb-gw")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        pytest.skip("dicomweb-gw is not installed")
    assert installed == __version__


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["serve", "--port", "http"],
                                  ["config"], ["prefetch"], ["find", "--level", "patients"],
                                  ["find", "--limit", "many"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage:" in capsys.readouterr().err
