"""``dicomweb-gw find`` against the real dcmqrscp and Orthanc."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import httpx
import pytest

from cli_fixtures import clean_environment, restore_logging  # noqa: F401 (autouse)
from corpus import Corpus
from dicomweb_gw.cli import main
from gateway_fixtures import RunningGateway
from pacs_fixtures import GATEWAY_AE_TITLE, RunningPacs

pytestmark = pytest.mark.pacs


def write_config(tmp_path: Path, nodes: dict[str, tuple[str, int, str]]) -> Path:
    """A TOML config with ``nodes`` (name -> host, port, AE title); the first is the default."""
    lines = [f'ae_title = "{GATEWAY_AE_TITLE}"', f'cache_dir = "{tmp_path / "cache"}"']
    for name, (host, port, ae_title) in nodes.items():
        lines += [f"[pacs.{name}]", f'host = "{host}"', f"port = {port}",
                  f'ae_title = "{ae_title}"', "timeout = 10"]
    path = tmp_path / "gw.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def config(tmp_path: Path, dcmqrscp_pacs: RunningPacs, orthanc_pacs: RunningPacs) -> Path:
    return write_config(tmp_path, {
        "dcmqrscp": (dcmqrscp_pacs.host, dcmqrscp_pacs.port, dcmqrscp_pacs.ae_title),
        "orthanc": (orthanc_pacs.host, orthanc_pacs.port, orthanc_pacs.ae_title),
    })


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_json(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict]:
    assert main(["find", "--json", *argv]) == 0
    items = json.loads(capsys.readouterr().out)
    assert isinstance(items, list)
    return items


def uids(items: list[dict], tag: str) -> set[str]:
    return {item[tag]["Value"][0] for item in items}


@pytest.mark.parametrize("node", ["dcmqrscp", "orthanc"])
def test_find_by_patient_id_prints_the_study_row(
    config: Path, corpus: Corpus, capsys: pytest.CaptureFixture[str], node: str
) -> None:
    study = corpus.study("ct_small")
    assert main(["find", "--config", str(config), "--node", node,
                 f"PatientID={study.patient_id}"]) == 0
    out = capsys.readouterr().out
    assert f"1 study on PACS '{node}'" in out
    rows = [line for line in out.splitlines() if study.study_uid in line]
    assert len(rows) == 1
    cells = re.split(r"\s{2,}", rows[0].strip())  # columns are two spaces apart at least
    assert cells[:6] == [study.patient_name, study.patient_id, study.study_date, "CT",
                         study.study_description, study.study_uid]
    # Series: derived by the gateway when the PACS leaves it out (dcmqrscp); instances
    # only when the PACS says (Orthanc does).
    assert cells[6:] == (["2"] if node == "dcmqrscp" else ["2", "4"])
    for other in corpus.studies:
        if other is not study:
            assert other.study_uid not in out


@pytest.mark.parametrize("node", ["dcmqrscp", "orthanc"])
def test_find_json_matches_the_corpus(
    config: Path, corpus: Corpus, capsys: pytest.CaptureFixture[str], node: str
) -> None:
    ct, mr = corpus.study("ct_small"), corpus.study("mr_implicit")
    items = find_json(capsys, "--config", str(config), "--node", node,
                      f"StudyInstanceUID={ct.study_uid},{mr.study_uid}")
    assert uids(items, "0020000D") == {ct.study_uid, mr.study_uid}
    names = {item["00100010"]["Value"][0]["Alphabetic"] for item in items}
    assert names == {ct.patient_name, mr.patient_name}
    # Retrieve URLs point into the node's DICOMweb root (relative without DICOMWEB_GW_URL).
    root = "/dicom-web" if node == "dcmqrscp" else f"/pacs/{node}/dicom-web"
    assert {item["00081190"]["Value"][0] for item in items} == {
        f"{root}/studies/{ct.study_uid}", f"{root}/studies/{mr.study_uid}"}


def test_find_series_and_instances_of_a_study(
    config: Path, corpus: Corpus, capsys: pytest.CaptureFixture[str]
) -> None:
    study = corpus.study("ct_small")
    items = find_json(capsys, "--config", str(config), "--study", study.study_uid)
    assert uids(items, "0020000E") == {series.series_uid for series in study.series}

    # Orthanc: dcmqrscp leaves SOP Class UID, Rows and Columns out of its answers.
    axial = study.series[1]
    assert main(["find", "--config", str(config), "--node", "orthanc", "--study",
                 study.study_uid, "--series", axial.series_uid]) == 0
    out = capsys.readouterr().out
    assert f"{len(axial.instances)} instances on PACS 'orthanc'" in out
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()
            if any(i.sop_instance_uid in line for i in axial.instances)]
    # InstanceNumber, SOP class by name, Rows, Columns, (Frames: none), SOPInstanceUID
    assert sorted(rows) == [[str(number), "CT Image", "128", "128", instance.sop_instance_uid]
                            for number, instance in enumerate(axial.instances, 1)]


def test_find_limit_and_level(config: Path, corpus: Corpus,
                              capsys: pytest.CaptureFixture[str]) -> None:
    study = corpus.study("big_ct")
    assert main(["find", "--json", "--config", str(config), "--level", "instances",
                 "--limit", "7", f"StudyInstanceUID={study.study_uid}",
                 f"SeriesInstanceUID={study.series[0].series_uid}"]) == 0
    captured = capsys.readouterr()
    items = json.loads(captured.out)
    assert len(items) == 7
    assert uids(items, "00080018") <= {i.sop_instance_uid for i in study.instances}
    # There are more: said on stderr, so the JSON on stdout stays parseable.
    assert "exceeded" in captured.err


def test_find_nothing_found_exits_0(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["find", "--config", str(config), "PatientID=NOBODY-AT-ALL"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no studies found on PACS 'dcmqrscp'" in captured.err


def test_bad_query_key_gives_the_http_apis_message(
    config: Path, gateway: RunningGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    for term, param in (("PatientNam=X", {"PatientNam": "X"}),
                        ("StudyDate=2024-13-01", {"StudyDate": "2024-13-01"})):
        response = httpx.get(f"{gateway.dicomweb()}/studies", params=param, timeout=10)
        assert response.status_code == 400
        assert main(["find", "--config", str(config), term]) == 2
        err = capsys.readouterr().err
        assert err == f"dicomweb-gw: {response.json()['message']}\n"


def test_term_without_equals_and_bad_uid_exit_2(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["find", "--config", str(config), "PatientID"]) == 2
    assert "'PatientID' is not KEY=VALUE" in capsys.readouterr().err
    assert main(["find", "--config", str(config), "--study", "not-a-uid"]) == 2
    assert "StudyInstanceUID" in capsys.readouterr().err


def test_unknown_node_exits_2(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["find", "--config", str(config), "--node", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "nosuch" in err
    assert "dcmqrscp, orthanc" in err


def test_pacs_down_is_one_line_naming_node_and_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    config = write_config(tmp_path, {"archive": ("127.0.0.1", port, "ARCHIVE")})
    assert main(["find", "--config", str(config), "PatientID=X"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("dicomweb-gw: search on archive (ARCHIVE@127.0.0.1:")
    assert f"127.0.0.1:{port}" in lines[0]
    assert "Traceback" not in captured.err
