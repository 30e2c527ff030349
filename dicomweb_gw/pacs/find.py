"""C-FIND over the node's association pool, in the query model the node allows.

The per-node ``query_model`` switch forces Study or Patient Root; ``auto``
prefers Study Root, which needs no Patient ID, and falls back to Patient Root
for a PACS that offers only that. Below PATIENT level a Patient Root query goes
patient by patient (``Finder._find_per_patient``).

Runs in a DIMSE worker thread (see ``workers.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pydicom.dataset import Dataset
from pynetdicom.association import Association

from dicomweb_gw.errors import PacsMisconfigured
from dicomweb_gw.model import FindReport, QueryLevel, RetrieveKeys
from dicomweb_gw.pacs import contexts
from dicomweb_gw.pacs.associations import Associations
from dicomweb_gw.pacs.bridge import Cancelled, Channel
from dicomweb_gw.pacs.failures import Failures
from dicomweb_gw.pacs.status import CANCELLED, PENDING, SUCCESS
from dicomweb_gw.settings import PacsNode

__all__ = ["Finder", "identifier_for", "query_model"]

_PATIENT_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")


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

    def stream(self, level: QueryLevel, identifier: Dataset, channel: Channel[Dataset],
               report: FindReport) -> None:
        """The worker of ``PacsClient.find``: each match onto ``channel``."""
        query = Dataset()
        query.update(identifier)
        query.QueryRetrieveLevel = level.value
        self.find(query, channel.put, stop=lambda: channel.cancelled)

    def collect(self, query: Dataset, *, first_only: bool = False) -> list[Dataset]:
        """A C-FIND into a list, for the gateway's own look-ups; ``first_only``
        C-CANCELs it after the first match."""
        results: list[Dataset] = []

        def keep(dataset: Dataset) -> None:
            if first_only and results:
                raise Cancelled
            results.append(dataset)

        self.find(query, keep, stop=lambda: first_only and bool(results))
        return results

    def find(
        self, query: Dataset, deliver: Callable[[Dataset], None], stop: Callable[[], bool]
    ) -> None:
        """``deliver`` each match; ``deliver`` raises ``Cancelled`` to C-CANCEL, and
        ``stop`` ends a query that goes patient by patient before the next patient."""
        for attempt in range(2):
            with self._associations.pooled() as (assoc, reused):
                try:
                    model = query_model(self.node, assoc, contexts.FIND_MODELS, "C-FIND")
                    if model == contexts.PATIENT_FIND_MODEL and _needs_patient_id(query):
                        self._find_per_patient(assoc, query, deliver, stop)
                    else:
                        self._run_find(assoc, model, query, deliver)
                    return
                except _NoResponse as silence:
                    # A reused association that died while idle: retry once on a fresh one.
                    if not (reused and attempt == 0 and not silence.delivered):
                        raise self._failures.no_response(
                            "C-FIND", silence.last_activity) from None

    def _find_per_patient(
        self, assoc: Association, query: Dataset, deliver: Callable[[Dataset], None],
        stop: Callable[[], bool],
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
        self._run_find(assoc, contexts.PATIENT_FIND_MODEL, patients, found.append)
        for patient in found:
            if stop():
                return
            patient_id = str(patient.get("PatientID", ""))
            if not patient_id:
                continue
            per_patient = Dataset()
            per_patient.update(query)
            per_patient.PatientID = patient_id
            self._run_find(assoc, contexts.PATIENT_FIND_MODEL, per_patient, deliver)

    def _run_find(
        self, assoc: Association, model: str, query: Dataset,
        deliver: Callable[[Dataset], None],
    ) -> None:
        msg_id = self._message_id()
        delivered = 0
        cancel_sent = False
        last = time.monotonic()
        for status, identifier in assoc.send_c_find(query, model, msg_id=msg_id):
            if "Status" not in status:
                raise _NoResponse(last, delivered > 0 or cancel_sent)
            last = time.monotonic()
            code = int(status.Status)
            if code in PENDING:
                if identifier is None or cancel_sent:
                    continue
                try:
                    deliver(identifier)
                    delivered += 1
                except Cancelled:
                    # The client has enough (limit reached) or went away.
                    assoc.send_c_cancel(msg_id, query_model=model)
                    cancel_sent = True
            elif code in (SUCCESS, CANCELLED):
                return
            else:
                raise self._failures.for_status("C-FIND", code)


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


def _needs_patient_id(query: Dataset) -> bool:
    return query.QueryRetrieveLevel != "PATIENT" and not query.get("PatientID", "")
