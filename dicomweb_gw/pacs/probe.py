"""Probe a PACS node like an experienced integrator: ``dicomweb-gw doctor``'s engine.

``probe_node`` runs the checks in order and returns a ``ProbeReport``: one
``Finding`` per check, each naming the per-node setting that handles what it
found and the value to give it, and the settings that follow. It blocks
(pynetdicom), so callers on an event loop run it in a thread.

The order matters: associations are counted first, while nothing else of ours
is open; the queries then find a study, its smallest series and that series'
instances, which the retrieve checks use. Each check opens its own
associations and bounds every wait (``probe_dimse``); a check that fails
becomes a finding, never an exception, and only three things make the node
unusable: it cannot be reached, it refuses the association (or every search),
or there is no way to retrieve (no C-GET, and C-MOVE cannot reach the gateway).

The checks live by kind in ``probe_query`` (C-FIND) and ``probe_retrieve``
(C-GET, C-MOVE); findings and their storage in ``probe_findings``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from functools import partial

from pynetdicom.association import Association
from pynetdicom.presentation import build_context

from dicomweb_gw.pacs import contexts, probe_query, probe_retrieve
from dicomweb_gw.pacs.probe_dimse import ProbeError, Session, close
from dicomweb_gw.pacs.probe_findings import Finding, ProbeReport, TomlValue
from dicomweb_gw.pacs.probe_query import Facts
from dicomweb_gw.pacs.probe_retrieve import Paths, ReceiverSlot
from dicomweb_gw.pacs.probe_target import ProbeTarget
from dicomweb_gw.pacs.probe_transfer import accepted
from dicomweb_gw.pacs.status import SUCCESS
from dicomweb_gw.settings import PacsNode

__all__ = ["MAX_PROBED_ASSOCIATIONS", "probe_node", "recommended_settings"]

log = logging.getLogger(__name__)

#: The association count stops here, whatever the node's ``max_associations``.
MAX_PROBED_ASSOCIATIONS = 8

Check = Callable[[], Finding | list[Finding]]


def probe_node(node: PacsNode, target: ProbeTarget) -> ProbeReport:
    """Every check against ``node``; never raises for what the PACS does."""
    probed_at = datetime.now(UTC)
    started = time.monotonic()
    session = Session(node, target.ae_title)
    findings: list[Finding] = []

    def run(name: str, check: Check) -> None:
        try:
            found = check()
        except ProbeError as exc:
            found = Finding(name, "failed", exc.message, "the check could not run")
        except Exception as exc:  # a probe bug or a PACS we did not foresee: say, go on
            log.warning("doctor: check %r of PACS '%s' failed", name, node.name, exc_info=True)
            found = Finding(name, "failed", f"{type(exc).__name__}: {exc}",
                            "the check could not run")
        findings.extend(found if isinstance(found, list) else [found])

    if _reach(session, findings):
        facts, paths = Facts(), Paths(ReceiverSlot(target))
        run("Q/R association", lambda: _query_association(session, facts))
        if facts.accepted_models:
            run("Q/R models", lambda: probe_query.check_queries(session, facts))
        if facts.find_model is not None:
            for name, query_check in (
                    ("query levels", probe_query.check_levels),
                    ("match limit", probe_query.check_match_limit),
                    ("relational queries", probe_query.check_relational),
                    ("matching keys", probe_query.check_matching),
                    ("empty Pending responses", probe_query.check_empty_pending),
                    ("character set", probe_query.check_charset)):
                run(name, partial(query_check, session, facts))
        _retrieves(session, facts, paths, target, run)
    return ProbeReport(node=node.name, address=f"{node.ae_title}@{node.host}:{node.port}",
                       probed_at=probed_at, findings=tuple(findings),
                       settings=recommended_settings(findings),
                       seconds=time.monotonic() - started)


def recommended_settings(findings: list[Finding] | tuple[Finding, ...]) -> dict[str, TomlValue]:
    """Setting -> value from the findings; a later finding overrides an earlier one
    (the "retrieve path" verdict comes last)."""
    settings: dict[str, TomlValue] = {}
    for finding in findings:
        if finding.setting is not None and finding.value is not None:
            settings[finding.setting] = finding.value
    return settings


def _retrieves(session: Session, facts: Facts, paths: Paths, target: ProbeTarget,
               run: Callable[[str, Check], None]) -> None:
    try:
        run("C-GET", lambda: probe_retrieve.check_get(session, facts, paths))
        run("C-MOVE destination",
            lambda: probe_retrieve.check_move(session, facts, paths, target))
        probe_retrieve.choose_method(session, paths)
        run("sample retrieve", lambda: probe_retrieve.check_sample(session, facts, paths, target))
        run("C-CANCEL", lambda: probe_retrieve.check_cancel(session, facts, paths))
        run("IMAGE-level retrieve",
            lambda: probe_retrieve.check_image_level(session, facts, paths))
    finally:
        paths.receivers.close()
    run("retrieve path", lambda: probe_retrieve.check_retrieve_path(session, paths, target))


# -- reaching the PACS ---------------------------------------------------------------------------


def _reach(session: Session, findings: list[Finding]) -> bool:
    """TCP, then a Verification association, kept open while more are counted.

    False when the node cannot be reached or refuses us: nothing else is tried.
    """
    try:
        session.connect()
    except ProbeError as exc:
        findings.append(Finding("connection", "failed", exc.message,
                                "the gateway cannot reach the PACS: check its host and port "
                                "(and firewalls between)", blocking=True))
        return False
    verification = [build_context(contexts.VERIFICATION)]
    try:
        first = session.open(verification)
    except ProbeError as exc:
        if exc.kind == "no-context":
            # No Verification service: the queries can still tell whether the node is usable.
            findings.append(Finding("C-ECHO", "quirk", "the Verification service is not offered",
                                    "C-ECHO fails: /readyz and `dicomweb-gw echo` will report "
                                    "the node down"))
            return True
        findings.append(_refused(session, exc))
        return False
    opened = [first]
    try:
        findings.append(_echo(session, first))
        findings.append(_count_associations(session, opened))
    finally:
        for assoc in opened:
            close(assoc)
    return True


def _refused(session: Session, exc: ProbeError) -> Finding:
    node = session.node
    if exc.kind == "rejected":
        meaning = (f"the PACS must know the gateway's AE title '{session.ae_title}' (calling AE) "
                   f"and be called '{node.ae_title}' (the node's ae_title)")
    else:
        meaning = "the PACS accepts connections but does not complete an association"
    return Finding("association", "failed", exc.message, meaning, blocking=True)


def _echo(session: Session, assoc: Association) -> Finding:
    started = time.perf_counter()
    status = assoc.send_c_echo(msg_id=session.message_id())
    millis = (time.perf_counter() - started) * 1000
    if "Status" in status and int(status.Status) == SUCCESS:
        return Finding("C-ECHO", "ok", f"answered in {millis:.0f} ms",
                       "the PACS knows the gateway's AE title")
    said = f"0x{int(status.Status):04X}" if "Status" in status else "no answer"
    return Finding("C-ECHO", "failed", said, "the PACS does not answer C-ECHO: /readyz and "
                   "`dicomweb-gw echo` will report the node down")


def _count_associations(session: Session, opened: list[Association]) -> Finding:
    """Open more Verification associations, up to one past ``max_associations``."""
    node = session.node
    tried = min(node.max_associations + 1, MAX_PROBED_ASSOCIATIONS)
    refusal = ""
    while len(opened) < tried:
        try:
            opened.append(session.open([build_context(contexts.VERIFICATION)], retry=False))
        except ProbeError as exc:
            refusal = exc.message
            break
    count = len(opened)
    if count == tried:
        return Finding("max associations", "ok", f"{count} at once accepted (all tried)",
                       f"max_associations = {node.max_associations} is within the PACS's limit",
                       setting="max_associations", value=node.max_associations)
    seen = f"{count} at once accepted, association {count + 1} refused: {refusal}"
    if count >= node.max_associations:
        return Finding("max associations", "ok", seen,
                       f"max_associations = {node.max_associations} is within the PACS's limit",
                       setting="max_associations", value=node.max_associations)
    return Finding("max associations", "quirk", seen,
                   f"the PACS allows {count} association(s) from our AE title (those of a "
                   "running gateway with the same AE title count too): the gateway must not "
                   "open more", setting="max_associations", value=count)


def _query_association(session: Session, facts: Facts) -> Finding:
    """The gateway's query association (FIND models and Verification): what it accepts."""
    try:
        assoc = session.open(contexts.find_contexts())
    except ProbeError as exc:
        if exc.kind == "no-context":
            return Finding("Q/R association", "failed", "no Query/Retrieve FIND model accepted",
                           "the gateway cannot search this PACS", blocking=True)
        return _refused(session, exc)
    try:
        facts.accepted_models = set(accepted(assoc, contexts.FIND_MODELS))
        echo_ok = bool(accepted(assoc, (contexts.VERIFICATION,)))
        if echo_ok:
            with suppress(Exception):
                status = assoc.send_c_echo(msg_id=session.message_id())
                echo_ok = "Status" in status and int(status.Status) == SUCCESS
    finally:
        close(assoc)
    if not facts.accepted_models:
        return Finding("Q/R association", "failed", "no Query/Retrieve FIND model accepted",
                       "the gateway cannot search this PACS", blocking=True)
    if not echo_ok:
        return Finding("Q/R association", "quirk",
                       "Verification rejected when proposed with the Q/R contexts",
                       "C-ECHO works only on an association of its own (no setting)")
    return Finding("Q/R association", "ok", "FIND and Verification accepted together",
                   "C-ECHO and C-FIND share the gateway's pooled associations")
