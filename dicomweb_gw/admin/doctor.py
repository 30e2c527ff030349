"""``dicomweb-gw doctor``: probe the configured PACS nodes and say what to set.

For each node (or the one named), ``pacs.probe`` runs its checks; this prints
one table of findings per node (what was seen, what it means, the setting that
handles it with the recommended value, and ``(now X)`` where the configuration
says otherwise), then a verdict. The report is saved under the cache folder,
where ``config check`` and ``GET /admin/pacs`` show it. ``--write FILE``
writes a config with the findings applied (``doctor_toml``).

Exit 0 when every probed node is usable, 1 when one is not (unreachable,
association refused, no search or no retrieve path), 2 for an unknown node.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dicomweb_gw.admin.doctor_toml import config_toml, configured, differs, toml_text
from dicomweb_gw.admin.tables import (
    data_table,
    error,
    heading,
    node_address,
    resolve_node,
    stdout_console,
)
from dicomweb_gw.pacs.probe import probe_node
from dicomweb_gw.pacs.probe_findings import Finding, ProbeReport, save_report
from dicomweb_gw.pacs.probe_target import ProbeTarget
from dicomweb_gw.settings import PacsNode, Settings, load_settings

__all__ = ["STATUS_LABELS", "DoctorRequest", "findings_table", "run_doctor", "setting_text"]

log = logging.getLogger(__name__)

STATUS_LABELS = {"ok": ("OK", "green"), "quirk": ("QUIRK", "yellow"),
                 "failed": ("FAILED", "bold red"), "skipped": ("SKIPPED", "dim")}


@dataclass(frozen=True)
class DoctorRequest:
    config: Path | None = None
    #: Only this node (None: every node).
    node: str | None = None
    #: Write a TOML config with the findings applied here.
    write: Path | None = None


def run_doctor(request: DoctorRequest) -> int:
    settings = load_settings(config_file=request.config)  # invalid: exit 2, in cli.main
    if request.node is not None:
        found = resolve_node(settings, request.node)
        if found is None:
            return 2
        nodes = [found]
    else:
        nodes = list(settings.nodes)
    out = stdout_console()
    target = ProbeTarget(settings.ae_title, settings.store_host, settings.store_port)
    reports: dict[str, ProbeReport] = {}
    for node in nodes:
        heading(out, f"PACS node {node.name} ({node_address(node)}), as {settings.ae_title}")
        report = probe_node(node, target)
        reports[node.name] = report
        out.print(findings_table(report, node))
        _print_verdict(out, node, report)
        _save(settings, report)
    written = request.write is None or _write(out, request.write, settings, nodes, reports)
    unusable = [name for name, report in reports.items() if not report.usable]
    return 1 if unusable or not written else 0


def findings_table(report: ProbeReport, node: PacsNode | None = None) -> Table:
    table = data_table(["check", "result", "found", "what it means", "setting"], [],
                       wrap=frozenset({"found", "what it means", "setting"}))
    for finding in report.findings:
        label, style = STATUS_LABELS[finding.status]
        table.add_row(Text(finding.check), Text(label, style=style), Text(finding.result),
                      Text(finding.meaning), Text(setting_text(finding, node)))
    return table


def setting_text(finding: Finding, node: PacsNode | None = None) -> str:
    """``max_matches = 500 (now 0)``: the setting, the value to give it, what is configured."""
    if finding.setting is None:
        return ""
    if finding.value is None:
        return finding.setting
    text = f"{finding.setting} = {toml_text(finding.value)}"
    current = configured(node, finding.setting) if node is not None else None
    if node is not None and current is not None and differs(node, finding.setting,
                                                            finding.value):
        text += f" (now {toml_text(current)})"
    return text


def _print_verdict(out: Console, node: PacsNode, report: ProbeReport) -> None:
    if report.usable:
        changes = [f"{name} = {toml_text(value)}" for name, value in report.settings.items()
                   if differs(node, name, value)]
        advice = ("; set " + ", ".join(changes)) if changes else "; the configuration fits"
        out.print(Text(f"{node.name}: usable{advice}", style="bold green"))
    else:
        blocking = "; ".join(f"{finding.check}: {finding.result}"
                             for finding in report.findings if finding.blocking)
        out.print(Text(f"{node.name}: NOT usable: {blocking}", style="bold red"))
    out.print("")


def _save(settings: Settings, report: ProbeReport) -> None:
    try:
        save_report(settings.cache_dir, report)
    except OSError as exc:
        error(f"could not save the findings of '{report.node}' under {settings.cache_dir}: "
              f"{exc.strerror or exc} (DICOMWEB_GW_CACHE_DIR)")


def _write(out: Console, path: Path, settings: Settings, nodes: list[PacsNode],
           reports: dict[str, ProbeReport]) -> bool:
    try:
        path.write_text(config_toml(settings, nodes, reports), encoding="utf-8")
    except OSError as exc:
        error(f"could not write {path}: {exc.strerror or exc}")
        return False
    out.print(f"wrote {path}: dicomweb-gw serve --config {path}", markup=False)
    return True
