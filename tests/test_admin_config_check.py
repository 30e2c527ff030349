"""``dicomweb-gw config check``: settings, C-ECHO, cache folder, storage port, registration."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cli_fixtures import clean_environment, restore_logging  # noqa: F401 (autouse)
from cluster_fixtures import RedisServer
from dicomweb_gw.admin.config_check import local_addresses
from dicomweb_gw.cli import main
from dicomweb_gw.pacs.storescp import MoveReceiver
from pacs_fixtures import GATEWAY_AE_TITLE, RunningPacs, free_port

API_KEY = "config-check-secret-key-42"


def write_config(tmp_path: Path, store_port: int, nodes: dict[str, tuple[int, str, str]],
                 extra: str = "") -> Path:
    """``nodes``: name -> (port on 127.0.0.1, AE title, retrieve method)."""
    lines = [f'ae_title = "{GATEWAY_AE_TITLE}"', f"store_port = {store_port}",
             'store_host = "127.0.0.1"', f'cache_dir = "{tmp_path / "cache"}"', extra]
    for name, (port, ae_title, retrieve) in nodes.items():
        lines += [f"[pacs.{name}]", 'host = "127.0.0.1"', f"port = {port}",
                  f'ae_title = "{ae_title}"', f'retrieve = "{retrieve}"', "timeout = 5"]
    path = tmp_path / "gw.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_row(out: str, starts: str) -> str:
    rows = [line.strip() for line in out.splitlines() if line.strip().startswith(starts)]
    assert len(rows) == 1, out
    return rows[0]


@pytest.mark.pacs
def test_all_good_against_running_pacs(
    tmp_path: Path, dcmqrscp_pacs: RunningPacs, orthanc_pacs: RunningPacs,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store_port = free_port()
    config = write_config(tmp_path, store_port, {
        "dcmqrscp": (dcmqrscp_pacs.port, dcmqrscp_pacs.ae_title, "c-move"),
        "orthanc": (orthanc_pacs.port, orthanc_pacs.ae_title, "c-get"),
    })
    assert main(["config", "check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    node_row = check_row(out, "dcmqrscp (default)").split()
    assert node_row == ["dcmqrscp", "(default)", f"127.0.0.1:{dcmqrscp_pacs.port}",
                        dcmqrscp_pacs.ae_title, "c-move", "4", "5", "s"]
    echo = check_row(out, "C-ECHO dcmqrscp")
    assert f"{dcmqrscp_pacs.ae_title}@127.0.0.1:{dcmqrscp_pacs.port}" in echo
    assert " OK " in echo
    assert "answered in" in echo
    assert " OK " in check_row(out, "C-ECHO orthanc")
    assert " OK " in check_row(out, f"cache folder {tmp_path / 'cache'}")
    assert " OK " in check_row(out, f"storage SCP port 127.0.0.1:{store_port}")
    # What the PACS administrator registers: our AE title, address and store port.
    assert "register on dcmqrscp (DCMQRSCP) this destination" in out
    assert check_row(out, "AE title").split() == ["AE", "title", GATEWAY_AE_TITLE]
    assert check_row(out, "port").split() == ["port", str(store_port)]
    assert check_row(out, "address(es)").split()[-1] == "127.0.0.1"  # store_host is set
    assert "Service" in out  # the Kubernetes note
    assert check_row(out, "authentication").split()[1] == "off:"
    assert out.rstrip().endswith("all checks passed")


def test_closed_port_fails_naming_the_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    config = write_config(tmp_path, free_port(), {"archive": (port, "ARCHIVE", "c-get")})
    assert main(["config", "check", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    row = check_row(out, "C-ECHO archive")
    assert f"ARCHIVE@127.0.0.1:{port}" in row
    assert "FAILED" in row
    assert f"cannot connect to 127.0.0.1:{port}" in row
    assert out.rstrip().endswith(f"1 check(s) failed: C-ECHO archive (ARCHIVE@127.0.0.1:{port})")
    # C-GET only: nothing to register, no storage port to check.
    assert "nothing to register" in out
    assert "storage SCP port" not in out

    assert main(["config", "check", "--no-echo", "--config", str(config)]) == 0
    assert "C-ECHO" not in capsys.readouterr().out


def test_invalid_settings_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gw.toml"
    config.write_text('[pacs.main]\nhost = "127.0.0.1"\nport = 104\nae_title = "MAIN"\n'
                      'retrieve = "c-find"\n', encoding="utf-8")
    assert main(["config", "check", "--config", str(config)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("dicomweb-gw: invalid settings: [pacs.main] retrieve")
    assert captured.out == ""


def test_busy_store_port_fails_and_a_running_gateway_is_recognised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_port = free_port()
    config = write_config(tmp_path, store_port, {"main": (closed_port(), "MAIN", "c-move")})
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", store_port))
        squatter.listen()
        assert main(["config", "check", "--no-echo", "--config", str(config)]) == 1
    row = check_row(capsys.readouterr().out, "storage SCP port")
    assert "FAILED" in row
    assert "DICOMWEB_GW_STORE_PORT" in row

    receiver = MoveReceiver(GATEWAY_AE_TITLE, host="127.0.0.1", port=store_port)
    receiver.start()
    try:
        assert main(["config", "check", "--no-echo", "--config", str(config)]) == 0
    finally:
        receiver.stop()
    row = check_row(capsys.readouterr().out, "storage SCP port")
    assert "WARNING" in row
    assert f"answering as {GATEWAY_AE_TITLE}" in row


def test_unwritable_cache_folder_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be", encoding="utf-8")
    config = write_config(tmp_path, free_port(), {"main": (closed_port(), "MAIN", "c-get")})
    assert main(["config", "check", "--no-echo", "--config", str(config)]) == 1
    row = check_row(capsys.readouterr().out, f"cache folder {blocker}")
    assert "FAILED" in row
    assert "is not a folder" in row


def test_auth_summary_counts_keys_without_showing_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, free_port(), {"main": (closed_port(), "MAIN", "c-get")},
                          extra=f'api_keys = ["{API_KEY}", "{API_KEY}-2"]')
    assert main(["config", "check", "--no-echo", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "2 API keys" in check_row(out, "authentication")
    assert API_KEY not in out


def test_local_addresses_are_not_loopback() -> None:
    addresses = local_addresses()
    assert all(not address.startswith(("127.", "::1")) for address in addresses)
    assert len(addresses) == len(set(addresses))


def test_cluster_settings_are_checked(tmp_path: Path, dcmqrscp_pacs: RunningPacs,
                                      redis_server: RedisServer,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    shared = tmp_path / "shared"
    config = write_config(
        tmp_path, free_port(), {"main": (dcmqrscp_pacs.port, dcmqrscp_pacs.ae_title, "c-get")},
        extra=f'redis_url = "{redis_server.url}"\nshared_store = "file://{shared}"')

    assert main(["config", "check", "--config", str(config), "--no-echo"]) == 0
    out = capsys.readouterr().out
    assert "answered PING" in check_row(out, "Redis")
    assert "read back" in check_row(out, "shared store")
    assert list(shared.rglob("config-check/*")) == []  # the probe object was deleted


def test_unreachable_redis_fails_the_check(tmp_path: Path, dcmqrscp_pacs: RunningPacs,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(
        tmp_path, free_port(), {"main": (dcmqrscp_pacs.port, dcmqrscp_pacs.ae_title, "c-get")},
        extra=f'redis_url = "redis://127.0.0.1:{closed_port()}/0"')

    assert main(["config", "check", "--config", str(config), "--no-echo"]) == 1
    out = capsys.readouterr().out
    assert "no answer" in check_row(out, "Redis")
