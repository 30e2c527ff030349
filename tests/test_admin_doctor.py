"""``dicomweb-gw doctor``: each quirk of the quirky PACS is found and named with the
setting that handles it, the written config loads and serves, the real PACS of
the suite come out usable, and an unreachable one does not.

Against the quirky PACS (``tests/quirky_pacs.py``) one test per switch runs the
probe at function level (``probe_node``) and writes the config the way
``--write`` does; the CLI tests run ``dicomweb-gw doctor`` itself.
"""

from __future__ import annotations

import socket
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli_fixtures import clean_environment, restore_logging  # noqa: F401 (autouse)
from dicomweb_gw.admin.doctor_toml import config_toml
from dicomweb_gw.cli import main
from dicomweb_gw.pacs.probe import probe_node
from dicomweb_gw.pacs.probe_findings import Finding, ProbeReport, load_report
from dicomweb_gw.pacs.probe_target import ProbeTarget
from dicomweb_gw.settings import PacsNode, Settings, load_settings
from dicomweb_gw.settings.registry import NODE_SETTINGS
from gateway_fixtures import KEEPALIVE_EXPIRY, RunningGateway, node_for, running_gateway
from pacs_fixtures import GATEWAY_AE_TITLE, UNKNOWN_AE_TITLE, RunningPacs, free_port
from quirky_pacs import (
    NODE,
    Quirks,
    QuirkyPacs,
    chinese_study,
    latin1_study,
    quirky_gateway,
    quirky_pacs,
    sample_studies,
)
from test_http_auth import (  # the auth tests' OIDC issuer: JWKS server and keys (fixtures)
    AUDIENCE,
    ISSUER,
    Jwks,
    _token,
    ec_key,  # noqa: F401
    jwks,  # noqa: F401
    rsa_key,  # noqa: F401
)

NO_QUIRKS = Quirks()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp_path: Path, store_port: int, port: int, ae_title: str, *,
                 retrieve: str = "c-get", name: str = NODE, timeout: float = 5) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(
        f'ae_title = "{GATEWAY_AE_TITLE}"\nstore_port = {store_port}\n'
        f'store_host = "127.0.0.1"\ncache_dir = "{tmp_path / "cache"}"\n\n'
        f'[pacs.{name}]\nhost = "127.0.0.1"\nport = {port}\nae_title = "{ae_title}"\n'
        f'retrieve = "{retrieve}"\ntimeout = {timeout}\n', encoding="utf-8")
    return path


@dataclass(frozen=True)
class Probed:
    report: ProbeReport
    settings: Settings
    pacs: QuirkyPacs
    store_port: int
    written: Path

    def finding(self, check: str) -> Finding:
        found = [finding for finding in self.report.findings if finding.check == check]
        assert len(found) == 1, [f.check for f in self.report.findings]
        return found[0]

    def node(self) -> PacsNode:
        """The node as ``load_settings`` reads it back from the written config."""
        return load_settings(environ={}, config_file=self.written).node(NODE)


@contextmanager
def probed(tmp_path: Path, quirks: Quirks = NO_QUIRKS, *, files: list[Path] | None = None,
           retrieve: str = "c-get", timeout: float = 5) -> Iterator[Probed]:
    """The quirky PACS (moving to our AE at our store port), probed as configured."""
    store_port = free_port()
    if files is None:
        files = [path for study in sample_studies(tmp_path) for path in study.paths]
    destinations = {GATEWAY_AE_TITLE: ("127.0.0.1", store_port)}
    with quirky_pacs(tmp_path, files, quirks=quirks, move_destinations=destinations) as pacs:
        config = write_config(tmp_path, store_port, pacs.port, pacs.ae_title,
                              retrieve=retrieve, timeout=timeout)
        settings = load_settings(environ={}, config_file=config)
        node = settings.node(NODE)
        report = probe_node(node, ProbeTarget(settings.ae_title, settings.store_host,
                                              settings.store_port))
        written = tmp_path / "written.toml"
        written.write_text(config_toml(settings, [node], {NODE: report}), encoding="utf-8")
        yield Probed(report, settings, pacs, store_port, written)


@dataclass(frozen=True)
class Switch:
    quirks: Quirks
    check: str
    status: str
    setting: str | None = None
    #: The value recommended (and written), or a predicate on it.
    value: Any = None
    usable: bool = True
    data: Callable[[Path], list[Path]] | None = None
    timeout: float = 5
    retrieve: str = "c-get"


SWITCHES = {
    "no_c_get": Switch(Quirks(no_c_get=True), "C-GET", "quirk", "retrieve", "c-move"),
    "match_limit refused": Switch(Quirks(match_limit=2), "match limit", "quirk",
                                  "max_matches", 2),
    "match_limit truncated": Switch(Quirks(match_limit=2, match_limit_status="truncated"),
                                    "match limit", "quirk", "max_matches", 2),
    "pending_without_identifier": Switch(Quirks(pending_without_identifier=True),
                                         "empty Pending responses", "quirk"),
    "latin-1 undeclared": Switch(Quirks(name_encoding="latin_1"), "character set", "quirk",
                                 "fallback_charset", "ISO_IR 100", data=latin1_study),
    "latin-1 declared as UTF-8": Switch(
        Quirks(name_encoding="latin_1", declared_charset="ISO_IR 192"), "character set",
        "quirk", "fallback_charset", "ISO_IR 100", data=latin1_study),
    "gbk undeclared": Switch(Quirks(name_encoding="gbk"), "character set", "quirk",
                             "fallback_charset", "GB18030", data=chinese_study),
    "hierarchical_only": Switch(Quirks(hierarchical_only=True), "relational queries", "quirk",
                                "relational", False),
    "ignored_keys": Switch(Quirks(ignored_keys=("ModalitiesInStudy", "StudyDescription")),
                           "matching keys", "quirk", "post_filter", True),
    "patient_root_only": Switch(Quirks(patient_root_only=True), "Q/R models", "quirk",
                                "query_model", "auto"),
    "ignore_cancel": Switch(Quirks(ignore_cancel=True), "C-CANCEL", "quirk", "cancel", "abort"),
    "first_store_delay": Switch(Quirks(first_store_delay=1.2), "wait for the first instance",
                                "quirk", "idle_timeout", lambda value: value >= 2 * 1.2,
                                timeout=2),
    "first_store_delay with pending_every": Switch(
        Quirks(first_store_delay=1.2, pending_every=0.2), "wait for the first instance", "ok",
        "idle_timeout", None, timeout=2),
    "max_associations_per_ae": Switch(Quirks(max_associations_per_ae=2), "max associations",
                                      "quirk", "max_associations", 2),
    "reject_echo_with_queries": Switch(Quirks(reject_echo_with_queries=True),
                                       "Q/R association", "quirk"),
    "retrieve_levels": Switch(Quirks(retrieve_levels=frozenset({"STUDY", "SERIES"})),
                              "IMAGE-level retrieve", "quirk"),
}


@pytest.mark.parametrize("name", list(SWITCHES))
def test_each_switch_is_found_with_its_setting(tmp_path: Path, name: str) -> None:
    switch = SWITCHES[name]
    files = switch.data(tmp_path) if switch.data is not None else None
    with probed(tmp_path, switch.quirks, files=files, timeout=switch.timeout,
                retrieve=switch.retrieve) as run:
        finding = run.finding(switch.check)
        assert finding.status == switch.status, finding
        assert run.report.usable is switch.usable, run.report.findings
        assert finding.setting == switch.setting, finding
        if switch.value is None:
            return
        recommended = run.report.settings[finding.setting or ""]
        if callable(switch.value):
            assert switch.value(recommended), finding
        else:
            assert recommended == switch.value, finding
        # The written config loads, with the recommendation in the node.
        setting = next(entry for entry in NODE_SETTINGS if entry.name == finding.setting)
        assert getattr(run.node(), setting.name) == setting.parse(recommended)


@pytest.mark.parametrize("data", [None, latin1_study, chinese_study],
                         ids=["ascii", "latin-1", "chinese"])
def test_the_quirky_pacs_with_no_switch_is_all_ok(
        tmp_path: Path, data: Callable[[Path], list[Path]] | None) -> None:
    """Without a switch every check passes: each finding above is its switch's doing."""
    with probed(tmp_path, files=data(tmp_path) if data is not None else None) as run:
        assert run.report.usable
        statuses = {finding.check: finding.status for finding in run.report.findings}
        assert set(statuses.values()) == {"ok"}, statuses
        assert run.finding("retrieve path").result == "C-GET"
        assert "Explicit VR Little Endian" in run.finding("transfer syntaxes").result
        assert "MB/s" in run.finding("sample retrieve").result
        # Nothing differs from the defaults but what identifies the node.
        written = tomllib.loads(run.written.read_text())
        assert set(written["pacs"][NODE]) == {"host", "port", "ae_title", "retrieve", "timeout"}
        assert written["ae_title"] == GATEWAY_AE_TITLE
        assert written["store_port"] == run.store_port


def test_a_move_destination_the_pacs_does_not_know_is_named_for_registration(
        tmp_path: Path) -> None:
    quirks = Quirks(no_c_get=True, registered_destinations={"SOME_OTHER_AE": ("127.0.0.1", 9)})
    with probed(tmp_path, quirks) as run:
        assert not run.report.usable
        move = run.finding("C-MOVE destination")
        assert move.status == "failed"
        assert "0xA801" in move.result
        path = run.finding("retrieve path")
        assert path.blocking
        # What to register: our AE title, the address the PACS sees us at, the store port.
        for part in (f"AE title '{GATEWAY_AE_TITLE}'", "127.0.0.1", f"port {run.store_port}"):
            assert part in path.meaning, path


def test_a_destination_registered_at_another_port_fails_the_sample_move(
        tmp_path: Path) -> None:
    quirks = Quirks(no_c_get=True,
                    registered_destinations={GATEWAY_AE_TITLE: ("127.0.0.1", closed_port())})
    with probed(tmp_path, quirks, retrieve="c-move") as run:
        move = run.finding("C-MOVE destination")
        assert move.status == "failed"
        assert "nothing arrived" in move.result
        assert f"port {run.store_port}" in move.meaning
        assert run.finding("retrieve path").blocking
        assert not run.report.usable


def test_c_move_only_pacs_is_usable_and_its_sample_arrives_by_c_move(tmp_path: Path) -> None:
    with probed(tmp_path, Quirks(no_c_get=True)) as run:
        assert run.report.usable
        assert run.finding("sample retrieve").result.startswith("C-MOVE of a series: 1 instance")
        assert run.finding("retrieve path").result == "C-MOVE (instances arrived)"
        assert run.node().retrieve == "c-move"


# -- the written config serves -------------------------------------------------------------------


@pytest.mark.parametrize("quirks", [
    Quirks(no_c_get=True),
    Quirks(match_limit=2),
    Quirks(hierarchical_only=True),
], ids=["no_c_get", "match_limit", "hierarchical_only"])
def test_a_gateway_started_from_the_written_config_answers(tmp_path: Path,
                                                          quirks: Quirks) -> None:
    studies = sample_studies(tmp_path)
    files = [path for study in studies for path in study.paths]
    with probed(tmp_path, quirks, files=files) as run, \
            running_gateway(load_settings(environ={}, config_file=run.written)) as gateway, \
            httpx.Client(timeout=30, limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY)) \
            as client:
        response = client.get(f"{gateway.dicomweb()}/studies")
        assert response.status_code == 200, response.text
        assert response.json()
        study = studies[0]
        response = client.get(f"{gateway.dicomweb()}/studies/{study.study_uid}/series")
        assert response.status_code == 200, response.text
        assert len(response.json()) == len(study.series_uids)
        response = client.get(f"{gateway.dicomweb()}/studies/{study.study_uid}",
                              headers={"Accept": 'multipart/related; type="application/dicom"'})
        assert response.status_code == 200, response.text


# -- the command ----------------------------------------------------------------------------------


def test_cli_prints_the_findings_saves_them_and_writes_a_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store_port = free_port()
    files = [path for study in sample_studies(tmp_path) for path in study.paths]
    destinations = {GATEWAY_AE_TITLE: ("127.0.0.1", store_port)}
    with quirky_pacs(tmp_path, files, quirks=Quirks(match_limit=2),
                     move_destinations=destinations) as pacs:
        config = write_config(tmp_path, store_port, pacs.port, pacs.ae_title)
        written = tmp_path / "doctor.toml"
        assert main(["doctor", "--config", str(config), "--write", str(written)]) == 0
        out = capsys.readouterr().out
        row = next(line for line in out.splitlines() if line.strip().startswith("match limit"))
        assert "QUIRK" in row
        assert "max_matches = 2 (now 0)" in row
        assert f"{NODE}: usable; set max_matches = 2" in out
        assert f"wrote {written}" in out
        settings = load_settings(environ={}, config_file=written)
        assert settings.node(NODE).max_matches == 2
        assert (settings.ae_title, settings.store_port) == (GATEWAY_AE_TITLE, store_port)
        saved = load_report(tmp_path / "cache", NODE)
        assert saved is not None
        assert saved.usable
        assert saved.settings["max_matches"] == 2

        # config check shows the last findings, and that the old config disagrees.
        assert main(["config", "check", "--no-echo", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        row = findings_row(out, NODE)
        assert f"{saved.probed_at:%Y-%m-%d %H:%M:%S} UTC" in row
        assert "usable" in row
        assert "set max_matches = 2" in row
        assert main(["config", "check", "--no-echo", "--config", str(written)]) == 0
        assert "the configuration fits" in capsys.readouterr().out


def findings_row(out: str, node: str) -> str:
    """``node``'s row in config check's "Doctor findings" table."""
    section = out.split("Doctor findings", 1)[1]
    return next(line for line in section.splitlines() if line.strip().startswith(f"{node} "))


def test_config_check_says_when_a_node_was_never_probed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, free_port(), closed_port(), "ARCHIVE", name="archive")
    assert main(["config", "check", "--no-echo", "--config", str(config)]) == 0
    row = findings_row(capsys.readouterr().out, "archive")
    assert "never probed: run dicomweb-gw doctor" in row


def test_cli_against_a_closed_port_exits_1_naming_the_node(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = closed_port()
    config = write_config(tmp_path, free_port(), port, "ARCHIVE", name="archive")
    written = tmp_path / "doctor.toml"
    assert main(["doctor", "--config", str(config), "--write", str(written)]) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.strip().startswith("connection"))
    assert "FAILED" in row
    assert f"cannot connect to 127.0.0.1:{port}" in row
    assert f"archive: NOT usable: connection: cannot connect to 127.0.0.1:{port}" in out
    # Nothing else was tried; the config is written all the same (and loads).
    assert "C-GET" not in out
    assert load_settings(environ={}, config_file=written).node("archive").port == port
    report = load_report(tmp_path / "cache", "archive")
    assert report is not None
    assert not report.usable


def test_cli_unknown_node_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, free_port(), closed_port(), "ARCHIVE", name="archive")
    assert main(["doctor", "--config", str(config), "--node", "elsewhere"]) == 2
    assert "no PACS node named 'elsewhere' (known: archive)" in capsys.readouterr().err


# -- the admin endpoint ---------------------------------------------------------------------------


def test_admin_endpoint_lists_findings_and_probes_with_the_admin_scope(
        tmp_path: Path, jwks: Jwks, rsa_key: Any) -> None:  # noqa: F811 (fixtures)
    files = [path for study in sample_studies(tmp_path) for path in study.paths]
    auth = {"oidc_issuer": ISSUER, "oidc_audience": AUDIENCE, "oidc_jwks_url": jwks.url}
    read = {"Authorization": f"Bearer {_token(rsa_key, scope='dicomweb.read')}"}
    write = {"Authorization": f"Bearer {_token(rsa_key)}"}
    admin = {"Authorization": "Bearer " + _token(
        rsa_key, scope="dicomweb.read dicomweb.write dicomweb.admin")}
    with quirky_gateway(tmp_path, files, quirks=Quirks(match_limit=2), **auth) as setup, \
            httpx.Client(base_url=setup.gateway.url, timeout=120,
                         limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY)) as client:
        assert client.get("/admin/pacs").status_code == 401
        # The findings describe the PACS and the gateway: for administrators only.
        assert client.get("/admin/pacs", headers=read).status_code == 403
        assert client.get("/admin/pacs", headers=write).status_code == 403
        response = client.get("/admin/pacs", headers=admin)
        assert response.status_code == 200, response.text
        assert response.json() == {"nodes": {NODE: {"probed_at": None, "usable": None,
                                                    "findings": [], "settings": {}}}}
        assert client.post(f"/admin/pacs/{NODE}/probe", headers=write).status_code == 403
        assert client.post("/admin/pacs/elsewhere/probe", headers=admin).status_code == 404
        # A browser logged in by Basic auth, led to post here by another web site.
        for browser in ({"sec-fetch-site": "cross-site"}, {"origin": "https://elsewhere.example"},
                        {"origin": "null"}):
            refused = client.post(f"/admin/pacs/{NODE}/probe", headers={**admin, **browser})
            assert refused.status_code == 403, browser
            assert "another web site" in refused.text

        response = client.post(f"/admin/pacs/{NODE}/probe", headers=admin)
        assert response.status_code == 200, response.text
        probed = response.json()
        assert probed["usable"] is True
        assert probed["settings"]["max_matches"] == 2
        limit = next(item for item in probed["findings"] if item["check"] == "match limit")
        assert (limit["status"], limit["setting"], limit["value"]) == ("quirk", "max_matches", 2)
        # The gateway's own storage SCP received the probe's C-MOVE.
        move = next(item for item in probed["findings"]
                    if item["check"] == "C-MOVE destination")
        assert move["status"] == "ok", move

        listed = client.get("/admin/pacs", headers=admin).json()["nodes"][NODE]
        assert listed == probed
        assert load_report(tmp_path / "cache", NODE) is not None
        # The gateway still serves after being probed.
        response = client.get(f"{setup.gateway.dicomweb()}/studies", headers=read)
        assert response.status_code == 200


# -- the real PACS of the suite -------------------------------------------------------------------


# The session gateway holds the store port both PACS move to: the probe uses its storage
# SCP, as POST /admin/pacs/{pacs}/probe does.


@pytest.mark.parametrize("retrieve", ["c-get", "c-move"])
def test_orthanc_is_usable(orthanc_pacs: RunningPacs, gateway: RunningGateway,
                           retrieve: str) -> None:
    report = _probe_real(orthanc_pacs, gateway, retrieve)
    _assert_usable(report)
    statuses = {finding.check: finding.status for finding in report.findings}
    assert statuses["C-GET"] == "ok"
    assert statuses["C-MOVE destination"] == "ok"
    assert report.settings["retrieve"] == retrieve


@pytest.mark.parametrize("retrieve", ["c-get", "c-move"])
def test_dcmqrscp_is_usable(dcmqrscp_pacs: RunningPacs, gateway: RunningGateway,
                            retrieve: str) -> None:
    report = _probe_real(dcmqrscp_pacs, gateway, retrieve)
    _assert_usable(report)
    statuses = {finding.check: finding.status for finding in report.findings}
    assert statuses["C-MOVE destination"] == "ok"
    assert report.settings["retrieve"] == retrieve


@pytest.mark.parametrize("pacs_name", ["dcmqrscp", "orthanc"])
def test_real_pacs_do_not_know_an_unknown_ae_as_move_destination(
        request: pytest.FixtureRequest, pacs_name: str, gateway: RunningGateway) -> None:
    pacs: RunningPacs = request.getfixturevalue(f"{pacs_name}_pacs")
    report = _probe_real(pacs, gateway, "c-move", ae_title=UNKNOWN_AE_TITLE)
    move = next(finding for finding in report.findings if finding.check == "C-MOVE destination")
    assert move.status == "failed", move
    assert f"AE title '{UNKNOWN_AE_TITLE}'" in move.meaning
    # C-GET still works: the node stays usable, by C-GET.
    assert report.usable
    assert report.settings["retrieve"] == "c-get"


def _probe_real(pacs: RunningPacs, gateway: RunningGateway, retrieve: str, *,
                ae_title: str = GATEWAY_AE_TITLE) -> ProbeReport:
    settings = gateway.settings
    receiver = gateway.app.state.gateway.receiver
    node = node_for(pacs, pacs.name, retrieve)
    return probe_node(node, ProbeTarget(ae_title, settings.store_host, settings.store_port,
                                        receiver=receiver))


def _assert_usable(report: ProbeReport) -> None:
    assert report.usable, report.findings
    statuses = {finding.check: finding.status for finding in report.findings}
    for check in ("C-ECHO", "Q/R association", "Q/R models", "query levels", "sample retrieve",
                  "retrieve path"):
        assert statuses[check] == "ok", report.findings
