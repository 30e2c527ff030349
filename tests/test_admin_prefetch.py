"""``dicomweb-gw prefetch``: in-process into a fresh cache, and through a running gateway."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from cli_fixtures import clean_environment, restore_logging  # noqa: F401 (autouse)
from corpus import Corpus
from dicomweb_gw.admin.prefetch import PartCounter
from dicomweb_gw.cache.disk import DiskInstanceStore
from dicomweb_gw.cli import main
from dicomweb_gw.http.multipart import MultipartWriter
from gateway_fixtures import RunningGateway, make_settings, node_for, running_gateway
from pacs_fixtures import GATEWAY_AE_TITLE, RunningPacs, free_port

API_KEY = "prefetch-test-key-0123456789"


@pytest.fixture
def orthanc_config(tmp_path: Path, orthanc_pacs: RunningPacs) -> Path:
    """Orthanc by C-GET: no storage SCP, so no clash with the session gateway's port."""
    path = tmp_path / "gw.toml"
    path.write_text(
        f'ae_title = "{GATEWAY_AE_TITLE}"\nstore_port = {free_port()}\n'
        f'cache_dir = "{tmp_path / "cache"}"\n'
        f'[pacs.orthanc]\nhost = "{orthanc_pacs.host}"\nport = {orthanc_pacs.port}\n'
        f'ae_title = "{orthanc_pacs.ae_title}"\nretrieve = "c-get"\ntimeout = 15\n',
        encoding="utf-8")
    return path


def summary(out: str, study_uid: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith(f"{study_uid}:")]
    assert len(lines) == 1, out
    return lines[0]


def cached_instances(capsys: pytest.CaptureFixture[str], config: Path) -> int:
    assert main(["cache", "--config", str(config), "stats"]) == 0
    match = re.search(r"orthanc: (\d+) instances", capsys.readouterr().out)
    assert match is not None
    return int(match.group(1))


# -- the multipart counter ------------------------------------------------------------------


def test_part_counter_counts_parts_whatever_the_chunking() -> None:
    writer = MultipartWriter("application/dicom")
    bodies = [b"a" * 300, b"\r\n--not-the-boundary\r\n" * 3, b"", b"z" * 1000]
    body = b"".join(chunk for data in bodies
                    for chunk in writer.part("application/dicom", (data,))) + writer.close()
    for size in (1, 2, 3, 7, 64, len(body)):
        counter = PartCounter(writer.boundary)
        completed = sum(counter.feed(body[i : i + size]) for i in range(0, len(body), size))
        assert (completed, counter.parts, counter.closed) == (4, 4, True), size


def test_part_counter_sees_a_body_cut_off_before_its_close_delimiter() -> None:
    writer = MultipartWriter("application/dicom")
    body = b"".join(chunk for data in (b"x" * 100, b"y" * 100)
                    for chunk in writer.part("application/dicom", (data,)))
    counter = PartCounter(writer.boundary)
    counter.feed(body)
    assert counter.parts == 1  # the second part never ended
    assert not counter.closed


# -- in-process -----------------------------------------------------------------------------


@pytest.mark.pacs
def test_prefetch_in_process_fills_a_fresh_cache(
    orthanc_config: Path, corpus: Corpus, capsys: pytest.CaptureFixture[str]
) -> None:
    ct, mr = corpus.study("ct_small"), corpus.study("mr_implicit")
    assert main(["prefetch", "--config", str(orthanc_config), ct.study_uid, mr.study_uid]) == 0
    out = capsys.readouterr().out
    assert summary(out, ct.study_uid).startswith(f"{ct.study_uid}: 4 instances, ")
    assert summary(out, mr.study_uid).startswith(f"{mr.study_uid}: 3 instances, ")
    assert "MB/s" in summary(out, ct.study_uid)
    assert "prefetched 2 of 2 studies from PACS 'orthanc'" in out
    assert cached_instances(capsys, orthanc_config) == 7

    # Again: the cache answers alone, and says so.
    assert main(["prefetch", "--config", str(orthanc_config), ct.study_uid]) == 0
    line = summary(capsys.readouterr().out, ct.study_uid)
    assert line.startswith(f"{ct.study_uid}: 4 instances, ")
    assert "already cached" in line


@pytest.mark.pacs
def test_prefetch_in_process_unknown_study_is_not_found(
    orthanc_config: Path, corpus: Corpus, capsys: pytest.CaptureFixture[str]
) -> None:
    known, unknown = corpus.study("jpeg_colour").study_uid, "1.2.3.4.5.6.7.8.9"
    assert main(["prefetch", "--config", str(orthanc_config), unknown, known]) == 1
    out = capsys.readouterr().out
    assert summary(out, unknown) == f"{unknown}: not found on PACS 'orthanc'"
    assert summary(out, known).startswith(f"{known}: 1 instance, ")  # the others still go
    assert out.splitlines()[-1].startswith("prefetched 1 of 2 studies from PACS 'orthanc' ")
    assert out.splitlines()[-1].endswith("; 1 failed")
    assert cached_instances(capsys, orthanc_config) == 1


@pytest.mark.pacs
def test_prefetch_in_process_refuses_a_cache_in_use(
    orthanc_config: Path, tmp_path: Path, corpus: Corpus, capsys: pytest.CaptureFixture[str]
) -> None:
    # What a running gateway holds: the lock on the node's cache folder.
    with DiskInstanceStore(tmp_path / "cache" / "orthanc", 10**9):
        assert main(["prefetch", "--config", str(orthanc_config),
                     corpus.study("ct_small").study_uid]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "in use by a running gateway" in lines[0]
    assert "--url" in lines[0]
    assert captured.out == ""


def test_prefetch_in_process_pacs_down_stops_at_the_first_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "gw.toml"
    config.write_text(f'cache_dir = "{tmp_path / "cache"}"\n[pacs.archive]\nhost = "127.0.0.1"\n'
                      f'port = {port}\nae_title = "ARCHIVE"\nretrieve = "c-get"\n',
                      encoding="utf-8")
    assert main(["prefetch", "--config", str(config), "1.2.3", "1.2.4"]) == 1
    out = capsys.readouterr().out
    assert summary(out, "1.2.3") == (f"1.2.3: failed: PACS 'archive': cannot connect to "
                                     f"127.0.0.1:{port}")
    assert summary(out, "1.2.4") == "1.2.4: not tried: the PACS is not available"


def test_prefetch_bad_uid_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prefetch", "--url", "http://127.0.0.1:9", "1.2.3", "not-a-uid"]) == 2
    assert "not-a-uid" in capsys.readouterr().err


# -- through a running gateway --------------------------------------------------------------


@pytest.mark.pacs
@pytest.mark.parametrize(("node", "label"), [(None, "mr_implicit"),
                                             ("orthanc", "us_multiframe_jpeg")])
def test_prefetch_via_url_counts_the_instances_and_warms_the_gateway(
    gateway: RunningGateway, corpus: Corpus, capsys: pytest.CaptureFixture[str],
    node: str | None, label: str,
) -> None:
    study = corpus.study(label)
    node_args = ["--node", node] if node else []
    assert main(["prefetch", "--url", gateway.url, *node_args, study.study_uid]) == 0
    line = summary(capsys.readouterr().out, study.study_uid)
    noun = "instance" if len(study.instances) == 1 else "instances"
    assert line.startswith(f"{study.study_uid}: {len(study.instances)} {noun}, ")
    # Counted from the multipart stream; the gateway's cache now holds each of them.
    store = gateway.app.state.gateway.store(node or gateway.settings.default_pacs)
    for instance in study.instances:
        assert store.get(instance.sop_instance_uid) is not None


@pytest.mark.pacs
def test_prefetch_via_env_url_unknown_study_is_not_found(
    gateway: RunningGateway, corpus: Corpus, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DICOMWEB_GW_URL", gateway.url)
    unknown, known = "1.2.3.4.5.6.7.8.10", corpus.study("charset").study_uid
    assert main(["prefetch", unknown, known]) == 1
    out = capsys.readouterr().out
    assert "not found" in summary(out, unknown)
    assert summary(out, known).startswith(f"{known}: 1 instance, ")


def test_prefetch_via_url_of_nothing_listening(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["prefetch", "--url", f"http://127.0.0.1:{port}", "1.2.3", "1.2.4"]) == 1
    out = capsys.readouterr().out
    assert f"cannot reach the gateway at http://127.0.0.1:{port}/dicom-web" in summary(out,
                                                                                      "1.2.3")
    assert summary(out, "1.2.4") == "1.2.4: not tried: the gateway did not answer"


@pytest.mark.pacs
def test_prefetch_via_url_unknown_node(gateway: RunningGateway, corpus: Corpus,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    ct, mr = corpus.study("ct_small").study_uid, corpus.study("mr_implicit").study_uid
    assert main(["prefetch", "--url", gateway.url, "--node", "nosuch", ct, mr]) == 1
    out = capsys.readouterr().out
    assert f"{gateway.url}/pacs/nosuch/dicom-web is not a DICOMweb root" in summary(out, ct)
    assert summary(out, mr) == f"{mr}: not tried: no such DICOMweb root"


@pytest.mark.pacs
def test_prefetch_in_process_while_the_gateway_holds_the_storage_port(
    gateway: RunningGateway, dcmqrscp_pacs: RunningPacs, gateway_store_port: int,
    tmp_path: Path, corpus: Corpus, capsys: pytest.CaptureFixture[str],
) -> None:
    """C-MOVE needs our storage SCP, whose port the running gateway has: say so, point at --url."""
    config = tmp_path / "gw.toml"
    config.write_text(
        f'ae_title = "{GATEWAY_AE_TITLE}"\nstore_port = {gateway_store_port}\n'
        f'store_host = "127.0.0.1"\ncache_dir = "{tmp_path / "cache"}"\n'
        f'[pacs.dcmqrscp]\nhost = "{dcmqrscp_pacs.host}"\nport = {dcmqrscp_pacs.port}\n'
        f'ae_title = "{dcmqrscp_pacs.ae_title}"\nretrieve = "c-move"\n', encoding="utf-8")
    assert main(["prefetch", "--config", str(config), corpus.study("ct_small").study_uid]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"cannot listen for C-MOVE on port {gateway_store_port}" in lines[0]
    assert "--url" in lines[0]


@pytest.mark.pacs
def test_prefetch_via_url_sends_the_token(
    orthanc_pacs: RunningPacs, corpus: Corpus, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings((node_for(orthanc_pacs, "orthanc", "c-get"),),
                             store_port=free_port(), tmp=tmp_path, api_keys=(API_KEY,))
    study = corpus.study("jpeg_colour")
    with running_gateway(settings) as secured:
        assert main(["prefetch", "--url", secured.url, study.study_uid]) == 1
        line = summary(capsys.readouterr().out, study.study_uid)
        assert "HTTP 401" in line
        assert "--token" in line

        monkeypatch.setenv("DICOMWEB_GW_TOKEN", API_KEY)
        assert main(["prefetch", "--url", secured.url, study.study_uid]) == 0
        out = capsys.readouterr().out
        assert summary(out, study.study_uid).startswith(f"{study.study_uid}: 1 instance, ")
        assert API_KEY not in out
