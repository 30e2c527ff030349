"""C-FIND over the node's association pool, in the query model the node allows.

The per-node ``query_model`` switch forces Study or Patient Root; ``auto``
prefers Study Root, which needs no Patient ID, and falls back to Patient Root
for a PACS that offers only that. Below PATIENT level a Patient Root query goes
patient by patient (``Finder._find_per_patient``).

What a C-FIND left unsaid in its matches goes into the ``FindReport``:

* a Pending response without an identifier (pynetdicom hands over an empty
  data set) is skipped and counted, not turned into an empty match;
* a match limit: Refused: Out of Resources (0xA700) after some matches, or
  Success after exactly the node's ``max_matches``, ends the C-FIND with the
  matches received and ``limit_reached``. 0xA700 before any match stays an
  error (503), and so do other failures after some matches (0xCxxx "unable to
  process" says nothing about a limit: taking it for one would hide real faults).

Text the PACS sends in a character set other than the one it declares is
decoded with the node's ``fallback_charset`` (``charsets.py``). A C-FIND the
client no longer wants, or that ran past ``total_timeout``, is stopped with
C-CANCEL, then aborted if the PACS keeps sending (``cancelling.py``).

Runs in a DIMSE worker thread (see ``workers.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pydicom.dataset import Dataset
from pynetdicom.association import Association

from dicomweb_gw.errors import PacsFailure, PacsMisconfigured
from dicomweb_gw.model import FindReport, QueryLevel, RetrieveKeys
from dicomweb_gw.pacs import contexts
from dicomweb_gw.pacs.associations import Associations
from dicomweb_gw.pacs.bridge import Cancelled, Channel
from dicomweb_gw.pacs.cancelling import Stopper
from dicomweb_gw.pacs.charsets import CharsetRepair, repair_charset
from dicomweb_gw.pacs.failures import Failures
from dicomweb_gw.pacs.status import CANCELLED, PENDING, SUCCESS
from dicomweb_gw.settings import PacsNode

__all__ = ["OUT_OF_RESOURCES", "Finder", "identifier_for", "query_model"]

log = logging.getLogger(__name__)

_PATIENT_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
#: Refused: Out of Resources (PS3.4 C.4.1.1.4): what a PACS with a match limit
#: answers once it is reached (pynetdicom#467, dcm4chee-arc-light#1446).
OUT_OF_RESOURCES = 0xA700
#: Elements that are no match by themselves: an identifier of only these is empty.
_BOOKKEEPING = frozenset({0x00080005, 0x00080052, 0x00080054, 0x00080056,
                          0x00880130, 0x00880140})


class Finder:
    """The C-FINDs of one PACS node: for the HTTP client, and for the gateway's own look-ups."""

    def __init__(
        self, node: PacsNode, associations: Associations, failures: Failures,
        message_id: Callable[[], int],
    ) -> None:
        self.node = node
        self._associations = associations
        self._failures = failures
        self._message_id = message_id
        self._told: set[str] = set()

    def stream(self, level: QueryLevel, identifier: Dataset, channel: Channel[Dataset],
               report: FindReport) -> None:
        """The worker of ``PacsClient.find``: each match onto ``channel``."""
        query = Dataset()
        query.update(identifier)
        query.QueryRetrieveLevel = level.value
        self.find(query, channel.put, stop=lambda: channel.cancelled, report=report)

    def collect(self, query: Dataset, *, first_only: bool = False) -> list[Dataset]:
        """A C-FIND into a list, for the gateway's own look-ups; ``first_only``
        C-CANCELs it after the first match. A match limit is an error here: the
        gateway's look-ups need every match, not the first N."""
        results: list[Dataset] = []

        def keep(dataset: Dataset) -> None:
            if first_only and results:
                raise Cancelled
            results.append(dataset)

        self.find(query, keep, stop=lambda: first_only and bool(results))
        return results

    def find(
        self, query: Dataset, deliver: Callable[[Dataset], None], stop: Callable[[], bool],
        report: FindReport | None = None,
    ) -> None:
        """``deliver`` each match; ``deliver`` raises ``Cancelled`` to C-CANCEL, and
        ``stop`` ends a query that goes patient by patient before the next patient.
        Without a ``report``, a match limit reached is an error."""
        run = _Run(report, self.node.total_timeout)
        for attempt in range(2):
            with self._associations.pooled() as (assoc, reused):
                try:
                    model = query_model(self.node, assoc, contexts.FIND_MODELS, "C-FIND")
                    if model == contexts.PATIENT_FIND_MODEL and _needs_patient_id(query):
                        self._find_per_patient(assoc, query, deliver, stop, run)
                    else:
                        self._run_find(assoc, model, query, deliver, run)
                    return
                except _NoResponse as silence:
                    # A reused association that died while idle: retry once on a fresh one.
                    if not (reused and attempt == 0 and not silence.delivered):
                        raise self._failures.silent("C-FIND", silence.last_activity) from None

    def _find_per_patient(
        self, assoc: Association, query: Dataset, deliver: Callable[[Dataset], None],
        stop: Callable[[], bool], run: _Run,
    ) -> None:
        """Patient Root below PATIENT level: many PACS insist on the Patient ID,
        so list the matching patients first, then ask once per patient."""
        patients = Dataset()
        patients.QueryRetrieveLevel = "PATIENT"
        patients.PatientID = ""
        for keyword in ("SpecificCharacterSet", *_PATIENT_KEYS):
            if keyword in query:
                patients[keyword] = query[keyword]
        found: list[Dataset] = []
        self._run_find(assoc, contexts.PATIENT_FIND_MODEL, patients, found.append, run)
        for patient in found:
            if stop():
                return
            patient_id = str(patient.get("PatientID", ""))
            if not patient_id:
                continue
            per_patient = Dataset()
            per_patient.update(query)
            per_patient.PatientID = patient_id
            self._run_find(assoc, contexts.PATIENT_FIND_MODEL, per_patient, deliver, run)

    def _run_find(
        self, assoc: Association, model: str, query: Dataset,
        deliver: Callable[[Dataset], None], run: _Run,
    ) -> None:
        # Pending responses are DIMSE messages too: each one starts this wait again.
        assoc.dimse_timeout = self.node.dimse_idle_timeout
        msg_id = self._message_id()
        stopper = Stopper(assoc, msg_id, model, method=self.node.cancel,
                          node_name=self.node.name, operation="C-FIND")
        deadline = run.arm(stopper)
        delivered = 0
        last = time.monotonic()
        previous: Dataset | None = None
        try:
            if run.expired:  # spent walking the patients before this one
                raise self._failures.over_total("C-FIND")
            for status, identifier in assoc.send_c_find(query, model, msg_id=msg_id):
                if "Status" not in status:
                    if run.expired:
                        raise self._failures.over_total("C-FIND")
                    if stopper.aborted:
                        return  # aborted by us, after the client had its answer
                    raise _NoResponse(last, delivered > 0 or stopper.requested)
                last = time.monotonic()
                code = int(status.Status)
                if code in PENDING:
                    # pynetdicom yields an identifier it could not decode twice, with the
                    # same status: one response.
                    if stopper.requested or status is previous:
                        continue
                    previous = status
                    if identifier is None or _is_empty(identifier):
                        self._skip_empty(run)
                        continue
                    self._fix_charset(identifier)
                    try:
                        deliver(identifier)
                        delivered += 1
                    except Cancelled:
                        # The client has enough (limit reached) or went away.
                        stopper.stop()
                        if stopper.aborted:
                            return
                    continue
                if run.expired:
                    raise self._failures.over_total("C-FIND")
                if stopper.requested:
                    return  # whatever ends a C-FIND we cancelled, the client has its answer
                if code == SUCCESS:
                    if 0 < self.node.max_matches == delivered:
                        self._limit_reached(run, code)
                    return
                if code == CANCELLED:
                    return
                if code == OUT_OF_RESOURCES and delivered:
                    self._limit_reached(run, code)
                    return
                raise self._failures.for_status("C-FIND", code)
        finally:
            if deadline is not None:
                deadline.cancel()
            stopper.close()

    def _skip_empty(self, run: _Run) -> None:
        if run.report is not None:
            run.report.empty_pending += 1
        self._tell_once("empty_pending", logging.INFO,
                        "PACS '%s' sends Pending C-FIND responses without an identifier; "
                        "they are skipped (logged once)", self.node.name)

    def _fix_charset(self, identifier: Dataset) -> None:
        repair = repair_charset(identifier, self.node.fallback_charset)
        if repair is not None:
            self._tell_charset(repair)

    def _tell_charset(self, repair: CharsetRepair) -> None:
        declared = f"'{repair.declared}'" if repair.declared else "none"
        if repair.fallback_fits:
            self._tell_once("charset", logging.WARNING,
                            "PACS '%s' sends text its Specific Character Set (declared: %s) "
                            "cannot decode; such answers are read as %s (fallback_charset; "
                            "logged once)", self.node.name, declared, repair.fallback)
        else:
            self._tell_once("charset_misfit", logging.WARNING,
                            "PACS '%s' sends text neither its Specific Character Set "
                            "(declared: %s) nor fallback_charset %s decodes: set "
                            "fallback_charset to the PACS's character set (logged once)",
                            self.node.name, declared, repair.fallback)

    def _limit_reached(self, run: _Run, code: int) -> None:
        """The PACS stopped at its match limit: fine for a search, which says so
        (``FindReport.limit_reached``), not for the gateway's own look-ups."""
        if run.report is not None:
            run.report.limit_reached = True
            return
        if code != SUCCESS:
            raise self._failures.for_status("C-FIND", code)
        raise PacsFailure(self.node.name,
                          f"C-FIND stopped at the node's max_matches ({self.node.max_matches}):"
                          " the gateway needs every match here")

    def _tell_once(self, what: str, level: int, message: str, *args: object) -> None:
        # Per node, for the life of the gateway: these are properties of the PACS,
        # not events, and one line tells the administrator as much as a thousand.
        if what in self._told:
            return
        self._told.add(what)
        log.log(level, message, *args)


def query_model(
    node: PacsNode, assoc: Association, models: tuple[str, str], operation: str
) -> str:
    """Study Root (``models[0]``) or Patient Root (``models[1]``), as the node's
    ``query_model`` allows and the PACS accepted."""
    allowed = {"auto": models, "study": models[:1], "patient": models[1:]}
    model = _first_accepted(assoc, allowed[node.query_model])
    if model is not None:
        return model
    if node.query_model == "auto":
        raise PacsMisconfigured(
            node.name, f"accepts neither Study Root nor Patient Root {operation}")
    root = "Study Root" if node.query_model == "study" else "Patient Root"
    raise PacsMisconfigured(node.name, f"does not accept {root} {operation} "
                            f"(query_model = \"{node.query_model}\")")


def identifier_for(keys: RetrieveKeys) -> Dataset:
    """The identifier that names ``keys`` at their level."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = keys.level.value
    identifier.StudyInstanceUID = keys.study_uid
    if keys.series_uid is not None:
        identifier.SeriesInstanceUID = keys.series_uid
    if keys.instance_uid is not None:
        identifier.SOPInstanceUID = keys.instance_uid
    return identifier


class _Run:
    """One ``Finder.find``: its report, and its ``total_timeout`` deadline (several
    C-FINDs when a Patient Root query goes patient by patient)."""

    def __init__(self, report: FindReport | None, total_timeout: float) -> None:
        self.report = report
        self._deadline = time.monotonic() + total_timeout if total_timeout > 0 else None
        self._expired = threading.Event()

    @property
    def expired(self) -> bool:
        return self._expired.is_set()

    def arm(self, stopper: Stopper) -> threading.Timer | None:
        """A timer that stops the C-FIND at the deadline (None: no ``total_timeout``)."""
        if self._deadline is None:
            return None
        left = self._deadline - time.monotonic()
        if left <= 0:
            self._expired.set()
            return None

        def expire() -> None:
            self._expired.set()
            stopper.stop()

        timer = threading.Timer(left, expire)
        timer.daemon = True
        timer.start()
        return timer


class _NoResponse(Exception):
    """The association ended without a final response (timeout or abort)."""

    def __init__(self, last_activity: float, delivered: bool) -> None:
        super().__init__("no response")
        self.last_activity = last_activity
        self.delivered = delivered


def _first_accepted(assoc: Association, models: tuple[str, ...]) -> str | None:
    """The first of ``models`` the PACS accepted, else None."""
    accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
    return next((model for model in models if model in accepted), None)


def _is_empty(identifier: Dataset) -> bool:
    """No attributes (how pynetdicom hands over a missing identifier), or only bookkeeping."""
    # keys(), not iteration: iterating a Dataset converts (decodes) every element.
    return _BOOKKEEPING.issuperset(identifier.keys())


def _needs_patient_id(query: Dataset) -> bool:
    return query.QueryRetrieveLevel != "PATIENT" and not query.get("PatientID", "")
