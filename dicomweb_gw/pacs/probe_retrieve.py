"""The probe's retrieve checks: C-GET support, the C-MOVE destination, a sample
retrieve (syntaxes, throughput, the wait for the first instance), C-CANCEL, and
IMAGE-level retrieves; then which retrieve the node should use.

The sample retrieve and the checks after it go the way the gateway would:
the node's configured ``retrieve`` if it works, else the other one. A C-MOVE
needs a storage SCP listening as our AE title: the running gateway's when the
probe runs inside it, else one the probe starts on the store port for the time
of its retrieves.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from pydicom import uid
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicomweb_gw.pacs import contexts, probe_transfer
from dicomweb_gw.pacs.probe_dimse import CANCEL_GRACE, ProbeError, Session
from dicomweb_gw.pacs.probe_findings import Finding
from dicomweb_gw.pacs.probe_query import Facts, retrieve_identifier
from dicomweb_gw.pacs.probe_target import ProbeTarget
from dicomweb_gw.pacs.probe_transfer import Recorder, TransferOutcome, accepted
from dicomweb_gw.pacs.status import CANCELLED, MOVE_DESTINATION_UNKNOWN, PENDING, SUCCESS
from dicomweb_gw.pacs.storescp import MoveReceiver

__all__ = [
    "Paths",
    "ReceiverSlot",
    "check_cancel",
    "check_get",
    "check_image_level",
    "check_move",
    "check_retrieve_path",
    "check_sample",
    "choose_method",
]

#: The sample retrieve stops (C-CANCEL) after this many instances or seconds.
SAMPLE_INSTANCES = 50
SAMPLE_SECONDS = 20.0
_PLACEHOLDER_PATIENT = "DOCTOR-NO-SUCH-PATIENT"


class ReceiverSlot:
    """The storage SCP C-MOVEs of the probe land on, started on first need.

    The running gateway's when the probe runs inside it (started now if no node
    needed it yet); otherwise one of the probe's own on the store port, stopped
    by ``close``. None, with ``problem`` saying why, when the port is taken.
    """

    def __init__(self, target: ProbeTarget) -> None:
        self._target = target
        self._receiver: MoveReceiver | None = None
        self._own = False
        self._tried = False
        self.problem: str | None = None

    def get(self) -> MoveReceiver | None:
        if self._tried:
            return self._receiver
        self._tried = True
        target = self._target
        receiver = target.receiver or MoveReceiver(target.ae_title, host=target.store_host,
                                                   port=target.store_port)
        try:
            receiver.ensure_started()
        except OSError as exc:
            self.problem = (f"port {target.store_port} is taken ({exc.strerror or exc}): a "
                            "running gateway? Probe from it: POST /admin/pacs/NODE/probe")
            return None
        self._receiver, self._own = receiver, target.receiver is None
        return receiver

    def close(self) -> None:
        if self._own and self._receiver is not None:
            self._receiver.stop()
        self._receiver, self._own = None, False


@dataclass
class Paths:
    """The ways to retrieve from the node, as the checks find them."""

    receivers: ReceiverSlot
    #: (model, patient root) of the C-GET and C-MOVE models accepted, if any.
    get: tuple[str, bool] | None = None
    move: tuple[str, bool] | None = None
    #: True: a C-MOVE's instances reached us; False: the PACS refused our AE title or
    #: could not reach us; None: not verified.
    move_works: bool | None = None
    #: The C-MOVE that verified it: the sample retrieve when the node moves.
    move_sample: tuple[Recorder, TransferOutcome] | None = None
    #: "c-get" or "c-move": what the sample and the checks after it use.
    method: str | None = None


def _pick(models: list[str], pair: tuple[str, str], facts: Facts) -> tuple[str, bool] | None:
    """The accepted model of the root the queries used, else the other one."""
    study, patient = pair
    order = [patient, study] if facts.patient_root else [study, patient]
    for model in order:
        if model in models:
            return model, model == patient
    return None


def _holdings(facts: Facts) -> dict[str, Collection[str]]:
    holdings: dict[str, set[str]] = {}
    for instance in facts.instances:
        sop_class = str(instance.get("SOPClassUID", "") or "")
        if sop_class:
            stored = instance.get("AvailableTransferSyntaxUID") or []
            values = [stored] if isinstance(stored, str) else list(stored)  # str or MultiValue
            holdings.setdefault(sop_class, set()).update(str(value) for value in values if value)
    return dict(holdings)


# -- what the PACS accepts ------------------------------------------------------------------------


def check_get(session: Session, facts: Facts, paths: Paths) -> Finding:
    requested, roles = contexts.get_contexts(_holdings(facts))
    why = ""
    try:
        with session.association(requested, ext_neg=list(roles)) as assoc:
            models = accepted(assoc, contexts.GET_MODELS)
    except ProbeError as exc:
        if exc.kind not in ("no-context", "rejected"):
            raise
        models, why = [], f" ({exc.message})"
    paths.get = _pick(models, contexts.GET_MODELS, facts)
    if paths.get is not None:
        root = "Patient Root" if paths.get[1] else "Study Root"
        return Finding("C-GET", "ok", f"{root} C-GET accepted",
                       "the gateway can retrieve by C-GET: nothing to register on the PACS",
                       setting="retrieve")
    return Finding("C-GET", "quirk", f"no C-GET model accepted{why}",
                   "retrieve by C-MOVE: the PACS must know the gateway's AE title, address "
                   "and port as a move destination", setting="retrieve", value="c-move")


def check_move(session: Session, facts: Facts, paths: Paths, target: ProbeTarget) -> Finding:
    """C-MOVE to our AE title: first of a study that does not exist (0xA801 says at once
    that the PACS does not know us), then of the smallest series, whose instances must
    reach our storage SCP. A PACS may check the destination only when it has something
    to send (dcmqrscp answers Success, Orthanc 0xC000 for a study it does not hold)."""
    with session.association(contexts.move_contexts()) as assoc:
        paths.move = _pick(accepted(assoc, contexts.MOVE_MODELS), contexts.MOVE_MODELS, facts)
        if paths.move is None:
            paths.move_works = False
            return Finding("C-MOVE destination", "failed", "no C-MOVE model accepted",
                           "the gateway cannot retrieve by C-MOVE", setting="retrieve",
                           value="c-get" if paths.get else None)
        model, patient_root = paths.move
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        if patient_root:
            identifier.PatientID = facts.patient_id or _PLACEHOLDER_PATIENT
        identifier.StudyInstanceUID = generate_uid()
        first = _final_status(assoc.send_c_move(identifier, session.ae_title, model,
                                                msg_id=session.message_id()))
    register = f"register on the PACS: {_at(session, target)}"
    other = "c-get" if paths.get else None
    if first == MOVE_DESTINATION_UNKNOWN:
        paths.move_works = False
        return Finding("C-MOVE destination", "failed",
                       f"a C-MOVE to '{session.ae_title}': 0xA801 (move destination unknown)",
                       f"to retrieve by C-MOVE, {register}", setting="retrieve", value=other)
    empty = f"a C-MOVE to '{session.ae_title}' of a study that does not exist: " + (
        "no answer" if first is None else "Success" if first == SUCCESS else f"0x{first:04X}")
    receiver = paths.receivers.get() if facts.series is not None else None
    if receiver is None:
        why = paths.receivers.problem or "no series to move"
        if first == SUCCESS:
            return Finding("C-MOVE destination", "ok", f"{empty}; not verified with instances "
                           f"({why})", f"the PACS accepts '{session.ae_title}' as a move "
                           "destination; whether it reaches the gateway is unverified")
        return Finding("C-MOVE destination", "skipped", f"{empty}; no C-MOVE of instances "
                       f"({why})", f"unknown whether C-MOVE works; if not, {register}")
    recorder = Recorder(cancel_after=SAMPLE_INSTANCES)
    outcome = _transfer(session, facts, paths, "SERIES", recorder, receiver=receiver,
                        method="c-move")
    paths.move_sample = (recorder, outcome)
    moved = f"a C-MOVE of a series to '{session.ae_title}'"
    if recorder.received:
        paths.move_works = True
        return Finding("C-MOVE destination", "ok",
                       f"{moved}: {recorder.received} instance(s) arrived",
                       f"the PACS knows the gateway as a move destination and reaches it at "
                       f"port {target.store_port}", setting="retrieve")
    paths.move_works = False
    return Finding("C-MOVE destination", "failed",
                   f"{moved}: nothing arrived ({_said(outcome, session)})",
                   "the PACS does not know the gateway's AE title, or not at this address and "
                   f"port (Orthanc answers 0xC000 to both): {register}",
                   setting="retrieve", value=other)


def _final_status(responses: Iterator[tuple[Dataset, Dataset | None]]) -> int | None:
    for status, _ in responses:
        if "Status" not in status:
            return None
        code = int(status.Status)
        if code not in PENDING:
            return code
    return None


def choose_method(session: Session, paths: Paths) -> None:
    """The configured retrieve if it works, else the other one."""
    works = {"c-get": paths.get is not None, "c-move": paths.move_works is True}
    configured = session.node.retrieve
    paths.method = configured if works[configured] else next(
        (method for method in ("c-get", "c-move") if works[method]), None)


def _transfer(session: Session, facts: Facts, paths: Paths, level: str, recorder: Recorder, *,
              uncompressed_only: bool = False, receiver: MoveReceiver | None = None,
              method: str | None = None) -> TransferOutcome:
    if (method or paths.method) == "c-get" and paths.get is not None:
        model, patient_root = paths.get
        identifier = retrieve_identifier(facts, level, patient_root=patient_root)
        return probe_transfer.get(session, identifier, model, recorder,
                                  holdings=_holdings(facts), uncompressed_only=uncompressed_only)
    receiver = receiver or paths.receivers.get()
    assert paths.move is not None
    assert receiver is not None
    model, patient_root = paths.move
    identifier = retrieve_identifier(facts, level, patient_root=patient_root)
    return probe_transfer.move(session, identifier, model, recorder, receiver=receiver)


def _cannot_transfer(facts: Facts, paths: Paths) -> str | None:
    """Why no sample retrieve can run, if it cannot."""
    if facts.study is None or facts.series is None:
        return "no series found to retrieve"
    if paths.method is None:
        return "no retrieve method works"
    return None


# -- the sample retrieve -------------------------------------------------------------------------


def check_sample(session: Session, facts: Facts, paths: Paths,
                 target: ProbeTarget) -> list[Finding]:
    """The smallest series of the first study: what arrives, in which syntaxes, how fast.
    Over C-MOVE, the move that verified the destination is the sample."""
    problem = _cannot_transfer(facts, paths)
    if problem is not None:
        return [Finding("sample retrieve", "skipped", problem, "no retrieve was tried")]
    method = paths.method.upper() if paths.method else ""
    if paths.method == "c-move" and paths.move_sample is not None:
        recorder, outcome = paths.move_sample
    else:
        recorder = Recorder(cancel_after=SAMPLE_INSTANCES)
        outcome = _transfer(session, facts, paths, "SERIES", recorder)
    if recorder.received == 0:
        return _sample_failed(session, facts, paths, target, outcome)
    rate = recorder.bytes / max(outcome.seconds, 1e-6) / 1e6
    capped = " (stopped there)" if recorder.cancel_sent else ""
    return [
        Finding("sample retrieve", "ok",
                f"{method} of a series: {recorder.received} instance(s){capped}, "
                f"{recorder.bytes / 1e6:.2f} MB in {outcome.seconds:.2f} s "
                f"({rate:.1f} MB/s)", f"retrieves by {method} work"),
        Finding("transfer syntaxes", "ok", "received: " + ", ".join(
            f"{_syntax_name(syntax)} ({count})" for syntax, count in recorder.syntaxes.items()),
                "instances are served as stored in these; others are transcoded on request",
                setting="compressed", value=session.node.compressed),
        _first_instance(session, recorder, outcome),
    ]


def _sample_failed(session: Session, facts: Facts, paths: Paths, target: ProbeTarget,
                   outcome: TransferOutcome) -> list[Finding]:
    said = _said(outcome, session)
    method = (paths.method or "").upper()
    if outcome.silent:
        return [Finding("sample retrieve", "failed", f"C-GET of a series: {said}",
                        "the PACS said nothing for that long before a first instance: raise "
                        "idle_timeout above the time it needs", setting="idle_timeout")]
    # Nothing arrived over C-GET: a PACS that fails to send what it stores compressed
    # may manage with the uncompressed syntaxes only.
    retry = Recorder(cancel_after=SAMPLE_INSTANCES)
    second = _transfer(session, facts, paths, "SERIES", retry, uncompressed_only=True)
    if retry.received:
        return [Finding("sample retrieve", "quirk",
                        f"C-GET of a series: nothing arrived ({said}); offering only "
                        f"uncompressed syntaxes, {retry.received} instance(s) did",
                        "the PACS fails to send compressed data: offer it uncompressed syntaxes "
                        "only (the gateway compresses when a client asks)",
                        setting="compressed", value=False)]
    return [Finding("sample retrieve", "failed",
                    f"{method} of a series: nothing arrived ({said}; uncompressed only: "
                    f"{_said(second, session)})", "retrieves fail: see the PACS's log")]


def _first_instance(session: Session, recorder: Recorder, outcome: TransferOutcome) -> Finding:
    wait = recorder.first_after or 0.0
    idle = session.node.dimse_idle_timeout
    pending = outcome.pending_before_first
    seen = f"first instance after {wait:.2f} s"
    if pending:
        return Finding("wait for the first instance", "ok",
                       f"{seen}, {pending} Pending response(s) before it",
                       "Pending responses reset the idle timeout: a slow start is fine",
                       setting="idle_timeout")
    if wait >= idle / 2:
        value = math.ceil(max(4 * wait, idle))
        return Finding("wait for the first instance", "quirk",
                       f"{seen}, with no message meanwhile",
                       f"a silent start that long comes near the idle timeout ({idle:g} s)",
                       setting="idle_timeout", value=value)
    return Finding("wait for the first instance", "ok", seen, "well within the idle timeout",
                   setting="idle_timeout")


# -- C-CANCEL and IMAGE level --------------------------------------------------------------------


def check_cancel(session: Session, facts: Facts, paths: Paths) -> Finding:
    """A study retrieve C-CANCELled after its first instance."""
    problem = _cannot_transfer(facts, paths)
    if problem is not None:
        return Finding("C-CANCEL", "skipped", problem, "not checked", setting="cancel")
    recorder = Recorder(cancel_after=1)
    outcome = _transfer(session, facts, paths, "STUDY", recorder)
    if not recorder.cancel_sent:
        return Finding("C-CANCEL", "skipped", f"the study retrieve sent nothing to cancel "
                       f"({_said(outcome, session)})", "not checked", setting="cancel")
    # Over C-MOVE the instances come on another association: one may already be on its way.
    enough = 1 if paths.method == "c-get" else 2
    if recorder.aborted:
        return Finding("C-CANCEL", "quirk",
                       f"still sending {CANCEL_GRACE:g} s after the C-CANCEL "
                       f"({recorder.after_cancel} more instance(s)): aborted",
                       "the PACS ignores C-CANCEL: stop retrieves with A-ABORT at once",
                       setting="cancel", value="abort")
    if outcome.status == CANCELLED:
        return Finding("C-CANCEL", "ok", "the retrieve ended with Cancel (0xFE00) after "
                       f"{recorder.received} instance(s)",
                       "retrieves nobody waits for stop cleanly", setting="cancel",
                       value=session.node.cancel)
    if outcome.status == SUCCESS and recorder.after_cancel >= enough:
        return Finding("C-CANCEL", "quirk",
                       f"{recorder.after_cancel} more instance(s) after the C-CANCEL, then "
                       "Success", "the PACS ignores C-CANCEL: stop retrieves with A-ABORT",
                       setting="cancel", value="abort")
    return Finding("C-CANCEL", "skipped",
                   f"the retrieve ended with {_said(outcome, session)} after "
                   f"{recorder.received} instance(s): too few to tell", "not checked",
                   setting="cancel")


def check_image_level(session: Session, facts: Facts, paths: Paths) -> Finding:
    problem = _cannot_transfer(facts, paths)
    if problem is not None or not facts.instances:
        return Finding("IMAGE-level retrieve", "skipped", problem or "no instance found",
                       "not checked")
    recorder = Recorder(cancel_after=None)
    outcome = _transfer(session, facts, paths, "IMAGE", recorder)
    if recorder.received:
        return Finding("IMAGE-level retrieve", "ok", "one instance retrieved on its own",
                       "single instances are retrieved without their series")
    return Finding("IMAGE-level retrieve", "quirk",
                   f"a retrieve of one instance: nothing arrived ({_said(outcome, session)})",
                   "the PACS retrieves whole series only: requests for one instance that is "
                   "not cached fail (no setting changes this)")


def check_retrieve_path(session: Session, paths: Paths, target: ProbeTarget) -> Finding:
    """The verdict: a way to retrieve, or none (then the node is not usable)."""
    if paths.get is not None and (session.node.retrieve == "c-get"
                                  or paths.move_works is not True):
        return Finding("retrieve path", "ok", "C-GET", "the gateway retrieves by C-GET",
                       setting="retrieve", value="c-get")
    if paths.move_works:
        return Finding("retrieve path", "ok", "C-MOVE (instances arrived)",
                       "the gateway retrieves by C-MOVE to its storage SCP",
                       setting="retrieve", value="c-move")
    register = f"register on the PACS: {_at(session, target)}"
    if paths.move_works is None and paths.move is not None:
        return Finding("retrieve path", "skipped", "no C-GET; C-MOVE not verified",
                       f"retrieves by C-MOVE work if the PACS reaches the gateway; {register}",
                       setting="retrieve", value="c-move")
    return Finding("retrieve path", "failed",
                   "no C-GET, and C-MOVE instances do not reach the gateway", register,
                   setting="retrieve", value="c-move", blocking=True)


def _at(session: Session, target: ProbeTarget) -> str:
    """The move destination to register, at the address the PACS sees us at."""
    return target.register(session.local_host)


def _said(outcome: TransferOutcome, session: Session) -> str:
    if outcome.silent:
        return f"no message within {session.timeout:g} s"
    if outcome.status is None:
        return "no final response"
    counts = f", {outcome.failed} failed" if outcome.failed else ""
    return f"0x{outcome.status:04X}{counts}"


def _syntax_name(syntax: str) -> str:
    name = uid.UID(syntax).name
    return name if name and name != syntax else syntax
