"""The probe under ``dicomweb-gw doctor``: the character set judge, the findings'
JSON and storage, and a probe that ends (with findings, never an exception) whatever
the PACS does: silence, refusals, failures. The quirks themselves: test_admin_doctor.py.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from dicomweb_gw.demo import DemoPacs, Fault
from dicomweb_gw.pacs.probe import probe_node, recommended_settings
from dicomweb_gw.pacs.probe_charset import judge_charset
from dicomweb_gw.pacs.probe_findings import (
    Finding,
    ProbeReport,
    findings_path,
    load_report,
    save_report,
)
from dicomweb_gw.pacs.probe_query import Facts
from dicomweb_gw.pacs.probe_retrieve import _holdings
from dicomweb_gw.pacs.probe_target import ProbeTarget
from dicomweb_gw.settings import PacsNode
from pacs_fixtures import GATEWAY_AE_TITLE, free_port
from quirky_pacs import sample_studies

# -- the character set ---------------------------------------------------------------------------


def answer(raw: dict[str, bytes], declared: str | None = None, *,
           implicit: bool = False) -> Dataset:
    """A C-FIND answer as pynetdicom decodes it: raw elements, bytes as sent."""
    ds = Dataset()
    if declared is not None:
        value = declared.encode("ascii")
        ds[0x00080005] = RawDataElement(Tag(0x00080005), None if implicit else "CS",  # type: ignore[assignment]
                                        len(value), value, 0, implicit, True)
    for keyword, value in raw.items():
        tag = Tag(keyword)
        vr = None if implicit else {"PatientName": "PN", "StudyDescription": "LO"}[keyword]
        ds[tag] = RawDataElement(tag, vr, len(value), value, 0, implicit, True)  # type: ignore[assignment]
    return ds


LATIN1 = {"PatientName": "Müller^Jürgen".encode("latin_1"),
          "StudyDescription": "Hüfte röntgen".encode("latin_1")}
GBK = {"PatientName": "王^小明".encode("gbk"), "StudyDescription": "胸部平扫".encode("gbk")}
UTF8 = {"PatientName": "Müller^Jürgen".encode(), "StudyDescription": "Hüfte röntgen".encode()}


@pytest.mark.parametrize(("raw", "declared", "guess"), [
    (LATIN1, None, "ISO_IR 100"),
    (LATIN1, "ISO_IR 192", "ISO_IR 100"),  # declared UTF-8, sent Latin-1
    (LATIN1, "ISO_IR 6", "ISO_IR 100"),  # declared ASCII
    (GBK, None, "GB18030"),
    (GBK, "ISO_IR 192", "GB18030"),
    (UTF8, None, "ISO_IR 192"),
    (LATIN1, "ISO_IR 999", "ISO_IR 100"),  # unknown: pydicom would read its default
], ids=["latin1-none", "latin1-as-utf8", "latin1-as-ascii", "gbk-none", "gbk-as-utf8",
        "utf8-none", "latin1-as-unknown"])
@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_text_that_does_not_decode_as_declared_gets_a_guess(
        raw: dict[str, bytes], declared: str | None, guess: str, implicit: bool) -> None:
    verdict = judge_charset([answer(raw, declared, implicit=implicit)])
    assert verdict.non_ascii == 2
    assert not verdict.decodes
    assert verdict.guess == guess


@pytest.mark.parametrize(("raw", "declared"), [
    (LATIN1, "ISO_IR 100"),
    (GBK, "GB18030"),
    (UTF8, "ISO_IR 192"),
    ({"PatientName": "Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B".encode("latin_1")},
     "\\ISO 2022 IR 87"),
])
def test_text_declared_correctly_decodes(raw: dict[str, bytes], declared: str) -> None:
    verdict = judge_charset([answer(raw, declared)])
    assert verdict.decodes
    assert verdict.guess is None


def test_plain_ascii_tells_nothing() -> None:
    verdict = judge_charset([answer({"PatientName": b"DOE^JOHN"})])
    assert (verdict.values, verdict.non_ascii, verdict.decodes) == (1, 0, True)
    assert verdict.declared == ()


# -- findings: JSON and storage -------------------------------------------------------------------


def report(node: str = "main") -> ProbeReport:
    findings = (
        Finding("match limit", "quirk", "0xA700 after 500", "split by date",
                setting="max_matches", value=500),
        Finding("retrieve path", "failed", "no C-GET", "register", setting="retrieve",
                value="c-move", blocking=True),
    )
    return ProbeReport(node=node, address="PACS@pacs.example:104",
                       probed_at=datetime(2024, 5, 1, 10, 0, tzinfo=UTC), findings=findings,
                       settings=recommended_settings(findings), seconds=1.5)


def test_report_round_trips_through_json(tmp_path: Path) -> None:
    original = report()
    assert not original.usable  # a blocking finding
    path = save_report(tmp_path, original)
    assert path == findings_path(tmp_path, "main") == tmp_path / "doctor" / "main.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["probed_at"] == "2024-05-01T10:00:00+00:00"
    assert data["usable"] is False
    assert data["settings"] == {"max_matches": 500, "retrieve": "c-move"}
    assert load_report(tmp_path, "main") == original
    assert [p.name for p in path.parent.iterdir()] == ["main.json"]  # no temp file left


def test_missing_or_unreadable_findings_are_none(tmp_path: Path) -> None:
    assert load_report(tmp_path, "main") is None
    findings_path(tmp_path, "main").parent.mkdir()
    findings_path(tmp_path, "main").write_text("{not json", encoding="utf-8")
    assert load_report(tmp_path, "main") is None


def test_later_findings_override_earlier_recommendations() -> None:
    findings = [Finding("C-GET", "quirk", "", "", setting="retrieve", value="c-move"),
                Finding("charset", "ok", "", "", setting="fallback_charset"),
                Finding("retrieve path", "ok", "", "", setting="retrieve", value="c-get")]
    assert recommended_settings(findings) == {"retrieve": "c-get"}


def test_registration_names_the_address_the_pacs_sees() -> None:
    wildcard = ProbeTarget("GW", "0.0.0.0", 11113)
    assert wildcard.register("10.1.2.3").startswith("AE title 'GW', host 10.1.2.3, port 11113")
    assert ProbeTarget("GW", "192.0.2.7", 104).register("10.1.2.3").startswith(
        "AE title 'GW', host 192.0.2.7, port 104")


# -- a probe always ends, with findings -----------------------------------------------------------


def node_at(port: int, *, ae_title: str = "DEMOPACS", timeout: float = 2.0) -> PacsNode:
    return PacsNode(name="main", host="127.0.0.1", port=port, ae_title=ae_title,
                    retrieve="c-get", timeout=timeout)


def target() -> ProbeTarget:
    return ProbeTarget(GATEWAY_AE_TITLE, "127.0.0.1", free_port())


def only(found: ProbeReport, check: str) -> Finding:
    matches = [finding for finding in found.findings if finding.check == check]
    assert len(matches) == 1, found.findings
    return matches[0]


@contextmanager
def demo_pacs(tmp_path: Path, fault: Fault) -> Iterator[DemoPacs]:
    pacs = DemoPacs(tmp_path / "pacs", fault=fault)
    pacs.add_files(path for study in sample_studies(tmp_path, 2) for path in study.paths)
    pacs.start()
    try:
        yield pacs
    finally:
        pacs.stop()


def test_closed_port_is_one_blocking_finding() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    found = probe_node(node_at(port), target())
    assert [finding.check for finding in found.findings] == ["connection"]
    assert not found.usable
    assert f"cannot connect to 127.0.0.1:{port}" in only(found, "connection").result


def test_a_listener_that_never_answers_ends_the_probe() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        found = probe_node(node_at(listener.getsockname()[1], timeout=1.0), target())
    association = only(found, "association")
    assert association.blocking
    assert "no association answer" in association.result


def test_a_refused_association_names_both_ae_titles(tmp_path: Path) -> None:
    with demo_pacs(tmp_path, Fault(refuse_association=True)) as pacs:
        found = probe_node(node_at(pacs.port), target())
    association = only(found, "association")
    assert association.blocking
    assert "rejected the association" in association.result
    assert f"'{GATEWAY_AE_TITLE}'" in association.meaning
    assert "'DEMOPACS'" in association.meaning


def test_searches_that_all_fail_make_the_node_unusable(tmp_path: Path) -> None:
    with demo_pacs(tmp_path, Fault(find_failure_status=0xC000)) as pacs:
        found = probe_node(node_at(pacs.port), target())
    models = only(found, "Q/R models")
    assert models.blocking
    assert "0xC000" in models.result
    assert only(found, "C-ECHO").status == "ok"


def test_a_pacs_that_stalls_every_answer_gives_failed_findings_not_an_error(
        tmp_path: Path) -> None:
    with demo_pacs(tmp_path, Fault(stall_seconds=3.0)) as pacs:
        found = probe_node(node_at(pacs.port, timeout=1.0), target())
    assert only(found, "C-ECHO").status == "ok"  # C-ECHO is not stalled
    models = only(found, "Q/R models")
    assert models.blocking
    assert "no answer" in models.result


def test_holdings_read_every_available_syntax() -> None:
    """What a C-GET proposes comes from the IMAGE answers' AvailableTransferSyntaxUID,
    one value or several (a MultiValue, which is no list)."""
    one, several = Dataset(), Dataset()
    one.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    one.AvailableTransferSyntaxUID = "1.2.840.10008.1.2.4.70"
    several.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    several.AvailableTransferSyntaxUID = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.90"]
    facts = Facts(instances=[one, several, Dataset()])
    assert _holdings(facts) == {
        "1.2.840.10008.5.1.4.1.1.2": {"1.2.840.10008.1.2.4.70"},
        "1.2.840.10008.5.1.4.1.1.4": {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.90"},
    }
