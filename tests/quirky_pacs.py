"""A quirky PACS for the tests: the demo PACS with one switch per behaviour of real PACS.

:class:`QuirkyPacs` is :class:`dicomweb_gw.demo.DemoPacs` (a real pynetdicom
Query/Retrieve SCP over a folder of files, PS3.4 matching) whose answers are
bent the way commercial PACS bend them, one :class:`Quirks` field per behaviour,
each documented with the public report it stands for. The real PACS of the suite
(dcmqrscp, Orthanc) stay the main targets; this double reproduces what they
cannot. ``tests/test_quirky_pacs.py`` checks every switch with a plain pynetdicom
SCU, so a gateway test that passes against a switch passes against the behaviour.

Where pynetdicom's SCP cannot send what a quirky PACS sends (a Pending C-FIND
response without an identifier, a Pending C-GET/C-MOVE response before any
sub-operation), the handler sends the DIMSE message itself on the request's
presentation context: the handlers run on the association's own thread, between
two of the messages pynetdicom sends, so the order on the wire is the handler's.

Entry points: :func:`quirky_gateway` (a gateway, node ``quirky``, in front of the
PACS), :func:`quirky_pacs` (just the PACS), :func:`latin1_study` and
:func:`sample_studies` (data to serve).
"""

from __future__ import annotations

import codecs
import copy
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal, cast

import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import generate_uid
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_FIND, C_GET, C_MOVE
from pynetdicom.events import Event, EventHandlerType

from dicomweb_gw.demo import DemoPacs, Fault
from dicomweb_gw.demo.dimse import (
    CANCEL,
    FIND_MODELS,
    GET_MODELS,
    IDENTIFIER_MISMATCH,
    MOVE_MODELS,
    PENDING,
    VERIFICATION,
    is_patient_root,
)
from dicomweb_gw.demo.move_subassociation import DemoAE
from dicomweb_gw.demo.query_levels import LEVELS
from dicomweb_gw.settings import PacsNode
from gateway_fixtures import RunningGateway, make_settings, running_gateway
from pacs_fixtures import GATEWAY_AE_TITLE, free_port
from testdata import pydicom_file

__all__ = [
    "CHINESE_DESCRIPTION",
    "CHINESE_NAME",
    "LATIN1_DESCRIPTION",
    "LATIN1_NAME",
    "NODE",
    "OUT_OF_RESOURCES",
    "PACS_AE_TITLE",
    "QuirkSetup",
    "Quirks",
    "QuirkyPacs",
    "QuirkySetup",
    "SampleStudy",
    "charset_study",
    "chinese_study",
    "latin1_study",
    "quirky_gateway",
    "quirky_pacs",
    "sample_studies",
]

NODE: Final = "quirky"
PACS_AE_TITLE: Final = "QUIRKYPACS"
OUT_OF_RESOURCES: Final = 0xA700  # C-FIND "Refused: Out of Resources" (PS3.4 C.4.1.1.4)

_QR_MODELS: Final = frozenset({*FIND_MODELS, *GET_MODELS, *MOVE_MODELS})
# Value representations whose text (0008,0005) governs (PS3.5 6.1.2.3).
_CHARSET_VRS: Final = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC"})
# A-ASSOCIATE-RJ: rejected-transient, DUL service provider (presentation), local limit exceeded.
_REJECT_LOCAL_LIMIT: Final = (0x02, 0x03, 0x02)
_CT_IMAGE_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.2"
_PENDING_TICK: Final = 0.05  # how often a delay looks for a C-CANCEL or a stop


@dataclass(frozen=True)
class Quirks:
    """One switch per behaviour of real PACS; each field's docstring names the public report."""

    no_c_get: bool = False
    """C-GET not supported, C-MOVE only: no C-GET context is accepted at association
    (knopkem/dicomweb-proxy#3, GoogleCloudPlatform/healthcare-dicom-dicomweb-adapter#130)."""

    match_limit: int | None = None
    """C-FIND returns at most this many matches; when more exist it then ends as
    ``match_limit_status`` says (pydicom/pynetdicom#467, dcm4che/dcm4chee-arc-light#1446)."""

    match_limit_status: Literal["refused", "truncated"] = "refused"
    """After ``match_limit`` matches: ``"refused"`` ends with 0xA700 (Refused: Out of
    Resources), ``"truncated"`` with Success as if there were no more."""

    pending_without_identifier: bool = False
    """Before each real match, one extra Pending C-FIND response that carries no
    identifier (Command Data Set Type 0x0101) (openradx/adit dimse_connector:
    "Missing identifier for pending C-FIND")."""

    name_encoding: str | None = None
    """Python codec (``"latin_1"``, ``"gbk"``): the text values of C-FIND responses
    (PN, LO, SH, ST, LT, UT, UC) are sent as raw bytes in this encoding, labelled with
    ``declared_charset`` (fo-dicom/fo-dicom#659, cornerstonejs/dicomParser#89)."""

    declared_charset: str | None = None
    """The (0008,0005) Specific Character Set sent with ``name_encoding``'s bytes;
    None omits the element. E.g. ``"ISO_IR 6"`` or ``"ISO_IR 192"`` for a wrong one.
    Used only with ``name_encoding``."""

    hierarchical_only: bool = False
    """SERIES/IMAGE-level C-FIND, C-GET and C-MOVE (and STUDY level in Patient Root)
    refused with ``hierarchical_status`` unless every parent unique key is given with
    one non-empty value: no relational queries (dcm4che/dcm4chee-arc-light#2032,
    pydicom/pynetdicom#474)."""

    hierarchical_status: int = IDENTIFIER_MISMATCH
    """The status of ``hierarchical_only``'s refusals: 0xA900 (Identifier does not
    match SOP Class) or e.g. 0xC000 (Unable to process)."""

    ignored_keys: tuple[str, ...] = ()
    """Matching keys (keywords, e.g. ``"ModalitiesInStudy"``, ``"StudyDescription"``)
    the PACS does not match on: every candidate comes back as if the key were
    universal, with the key's real value (openradx/adit dicom_operator, Fuji Synapse)."""

    patient_root_only: bool = False
    """Only the Patient Root models; queries and retrieves below PATIENT level without
    a Patient ID refused with 0xA900 (knopkem/dicomweb-proxy#124). The demo PACS's
    ``Fault(patient_root_only=True)``."""

    ignore_cancel: bool = False
    """C-CANCEL is ignored for C-FIND, C-GET and C-MOVE: the PACS keeps sending until
    done (openradx/adit, pydicom/pynetdicom#553)."""

    first_store_delay: float = 0.0
    """Seconds a C-GET/C-MOVE waits before its first C-STORE (for a C-MOVE, before it
    even opens the sub-association) (pydicom/pynetdicom#382, Sectra)."""

    pending_every: float | None = None
    """During ``first_store_delay``, a Pending C-GET/C-MOVE response (0 completed, N
    remaining) every this many seconds, the first one at once; None: silent."""

    registered_destinations: Mapping[str, tuple[str, int]] | None = None
    """C-MOVE only to these AE titles, at these (host, port), whatever the requestor
    listens on; an unknown AE gets 0xA801 (pydicom/pynetdicom#417, GE Centricity).
    None: the demo's ``move_destinations`` (:func:`quirky_gateway`: the gateway's AE
    title at its store port)."""

    max_associations_per_ae: int | None = None
    """An association beyond this many open from one calling AE title is rejected
    (A-ASSOCIATE-RJ rejected-transient, local limit exceeded) (knopkem/dicomweb-proxy#23)."""

    reject_echo_with_queries: bool = False
    """The Verification context is rejected when proposed together with Q/R contexts,
    so C-ECHO works only on an association of its own (DICOM-RST changelog 0.3.1)."""

    retrieve_levels: frozenset[str] | None = None
    """If set, C-GET/C-MOVE at any other level refused with 0xA900; e.g.
    ``frozenset({"STUDY", "SERIES"})``: a PACS that refuses IMAGE-level retrieves
    (and so lists of SOP Instance UIDs)."""

    find_match_delay: float = 0.0
    """Seconds between two C-FIND matches: a slow PACS, so a C-CANCEL can land while
    a query is still answering."""

    def __post_init__(self) -> None:
        if self.match_limit is not None and self.match_limit < 0:
            raise ValueError("match_limit must be >= 0")
        if self.match_limit_status not in ("refused", "truncated"):
            raise ValueError('match_limit_status must be "refused" or "truncated"')
        if self.name_encoding is not None:
            codecs.lookup(self.name_encoding)  # LookupError for an unknown codec
        if self.first_store_delay < 0 or self.find_match_delay < 0:
            raise ValueError("delays must be >= 0")
        if self.pending_every is not None and self.pending_every <= 0:
            raise ValueError("pending_every must be > 0")
        if self.max_associations_per_ae is not None and self.max_associations_per_ae < 1:
            raise ValueError("max_associations_per_ae must be >= 1")
        if self.retrieve_levels is not None and not self.retrieve_levels <= set(LEVELS):
            raise ValueError(f"retrieve_levels must be among {LEVELS}")
        if not 0 <= self.hierarchical_status <= 0xFFFF:
            raise ValueError("hierarchical_status must be a 16-bit status code")


class _WatchedEvent:
    """The pynetdicom event as the demo handlers see it: with the identifier the
    quirks leave of it, and a C-CANCEL that is counted, remembered and maybe ignored."""

    def __init__(self, event: Event, pacs: QuirkyPacs, identifier: Dataset) -> None:
        self._event = event
        self._pacs = pacs
        self._identifier = identifier
        self._cancelled = False

    @property
    def identifier(self) -> Dataset:
        return self._identifier

    @property
    def cancel_received(self) -> bool:
        """Whether a C-CANCEL came for this request (pynetdicom forgets it once asked)."""
        if not self._cancelled and self._event.is_cancelled:
            self._cancelled = True
            self._pacs._count("cancels_received")
        return self._cancelled

    @property
    def is_cancelled(self) -> bool:
        return self.cancel_received and not self._pacs.quirks.ignore_cancel

    def __getattr__(self, name: str) -> Any:
        return getattr(self._event, name)


class QuirkyPacs(DemoPacs):
    """The demo PACS with :class:`Quirks`; counts what it was asked and what it refused.

    The counters are safe to read from the test's thread while the PACS serves.
    """

    def __init__(self, storage_dir: Path, *, quirks: Quirks = Quirks(), **kwargs: Any) -> None:
        fault = kwargs.pop("fault", None) or Fault()
        if quirks.patient_root_only:
            fault = replace(fault, patient_root_only=True)
        if quirks.registered_destinations is not None:
            kwargs["move_destinations"] = quirks.registered_destinations
        kwargs.setdefault("ae_title", PACS_AE_TITLE)
        super().__init__(storage_dir, fault=fault, **kwargs)
        self.quirks = quirks
        self._lock = threading.Lock()
        self.cancels_received = 0
        """C-CANCELs received for C-FIND, C-GET or C-MOVE requests (ignored or not)."""
        self.associations_rejected = 0
        """Associations rejected by ``max_associations_per_ae``."""
        self.echo_contexts_rejected = 0
        """Associations whose Verification context ``reject_echo_with_queries`` rejected."""
        self.finds: list[Dataset] = []
        """The C-FIND identifiers received, in order."""
        self.retrieves: list[tuple[str, Dataset]] = []
        """("C-GET" or "C-MOVE", identifier) of every retrieve received, in order."""
        self._open: dict[str, list[object]] = {}  # calling AE title -> its open associations

    # --- association ----------------------------------------------------------------

    def _make_ae(self) -> DemoAE:
        ae = super()._make_ae()
        if self.quirks.no_c_get:
            for model in GET_MODELS:
                ae.remove_supported_context(model)
        return ae

    def _handlers(self) -> list[EventHandlerType]:
        return [
            *super()._handlers(),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_CONN_CLOSE, self._on_conn_close),
        ]

    def _on_requested(self, event: Event) -> None:
        # EVT_REQUESTED comes before pynetdicom negotiates: the last point where an
        # association can still be rejected, or its supported contexts changed.
        assoc = event.assoc
        request = assoc.requestor.primitive
        assert request is not None  # the A-ASSOCIATE-RQ that triggered the event
        calling = str(request.calling_ae_title).strip()
        limit = self.quirks.max_associations_per_ae
        with self._lock:
            open_ = self._open.setdefault(calling, [])
            reject = limit is not None and len(open_) >= limit
            if reject:
                self.associations_rejected += 1
            else:
                open_.append(assoc)
        if reject:
            assoc.acse.send_reject(*_REJECT_LOCAL_LIMIT)
            # What pynetdicom does after its own rejections: wait until the DUL has
            # sent the A-ASSOCIATE-RJ, before run_reactor() shuts the socket down.
            assoc.kill()
            return
        if self.quirks.reject_echo_with_queries:
            proposed = {str(cx.abstract_syntax)
                        for cx in request.presentation_context_definition_list}
            if VERIFICATION in proposed and proposed & _QR_MODELS:
                assoc.acceptor.supported_contexts = [
                    cx for cx in assoc.acceptor.supported_contexts
                    if cx.abstract_syntax != VERIFICATION]
                self._count("echo_contexts_rejected")

    def _on_conn_close(self, event: Event) -> None:
        with self._lock:
            for open_ in self._open.values():
                if event.assoc in open_:
                    open_.remove(event.assoc)

    def open_associations(self, calling_ae_title: str) -> int:
        """How many associations ``calling_ae_title`` has open (as this PACS counts them)."""
        with self._lock:
            return len(self._open.get(calling_ae_title.strip(), []))

    def _count(self, counter: str) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)

    # --- C-FIND ---------------------------------------------------------------------

    def _on_find(self, event: Event) -> Iterator[tuple[int, Dataset | None]]:
        identifier = event.identifier
        with self._lock:
            self.finds.append(copy.deepcopy(identifier))
        if self.quirks.hierarchical_only and _relational(
                identifier, patient_root=is_patient_root(event, FIND_MODELS)):
            yield self.quirks.hierarchical_status, None
            return
        watched = _WatchedEvent(event, self, self._without_ignored_keys(identifier))
        matches = super()._on_find(cast(Event, watched))
        try:
            yield from self._bend_matches(event, watched, matches)
        finally:
            _ = watched.cancel_received  # count a C-CANCEL that came after the last check

    def _without_ignored_keys(self, identifier: Dataset) -> Dataset:
        """The identifier with the ignored keys made universal (still returned)."""
        if not self.quirks.ignored_keys:
            return identifier
        bent = copy.deepcopy(identifier)
        for keyword in self.quirks.ignored_keys:
            if keyword in bent:
                bent[keyword].value = None
        return bent

    def _bend_matches(self, event: Event, watched: _WatchedEvent,
                      matches: Iterator[tuple[int, Dataset | None]],
                      ) -> Iterator[tuple[int, Dataset | None]]:
        quirks = self.quirks
        for sent, (status, match) in enumerate(matches):
            if status != PENDING or match is None:
                yield status, match
                return
            if quirks.match_limit is not None and sent >= quirks.match_limit:
                if quirks.match_limit_status == "refused":
                    yield OUT_OF_RESOURCES, None
                return  # "truncated": pynetdicom ends with Success
            if sent and quirks.find_match_delay:
                self._stopping.wait(quirks.find_match_delay)
                if watched.is_cancelled:
                    yield CANCEL, None
                    return
            if quirks.pending_without_identifier:
                _send_pending(event, C_FIND())
            if quirks.name_encoding is not None:
                match = _foreign_text(match, quirks.name_encoding, quirks.declared_charset,
                                      implicit=_is_implicit(event))
            yield status, match

    # --- C-GET and C-MOVE -----------------------------------------------------------

    def _retrieve_refusal(self, event: Event, models: Mapping[str, bool]) -> int | None:
        """The failure status the quirks answer this retrieve with, if any."""
        identifier = event.identifier
        level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
        if self.quirks.retrieve_levels is not None and level not in self.quirks.retrieve_levels:
            return IDENTIFIER_MISMATCH
        if self.quirks.hierarchical_only and _relational(
                identifier, patient_root=is_patient_root(event, models)):
            return self.quirks.hierarchical_status
        return None

    def _on_get(self, event: Event) -> Iterator[int | tuple[int, Dataset | None]]:
        with self._lock:
            self.retrieves.append(("C-GET", copy.deepcopy(event.identifier)))
        refusal = self._retrieve_refusal(event, GET_MODELS)
        if refusal is not None:
            yield 1
            yield refusal, None
            return
        watched = _WatchedEvent(event, self, event.identifier)
        sub_operations = super()._on_get(cast(Event, watched))
        try:
            count = cast(int, next(sub_operations))
            self._before_first_store(event, watched, C_GET, count)
            yield count
            yield from sub_operations
        finally:
            _ = watched.cancel_received

    def _on_move(self, event: Event) -> Iterator[Any]:
        with self._lock:
            self.retrieves.append(("C-MOVE", copy.deepcopy(event.identifier)))
        watched = _WatchedEvent(event, self, event.identifier)
        sub_operations = super()._on_move(cast(Event, watched))
        try:
            destination = next(sub_operations)
            if None in destination[:2]:
                yield destination  # pynetdicom answers 0xA801
                return
            yield destination
            refusal = self._retrieve_refusal(event, MOVE_MODELS)
            if refusal is not None:
                yield 1
                yield refusal, None
                return
            count = cast(int, next(sub_operations))
            # Before yielding the count: pynetdicom opens the sub-association right after.
            self._before_first_store(event, watched, C_MOVE, count)
            yield count
            yield from sub_operations
        finally:
            _ = watched.cancel_received

    def _before_first_store(self, event: Event, watched: _WatchedEvent,
                            primitive: Callable[[], C_GET | C_MOVE], count: int) -> None:
        """Wait ``first_store_delay``, sending Pending responses every ``pending_every``.

        A C-CANCEL (not ignored) cuts the wait short; the demo handler then
        answers it with Cancel before the first sub-operation.
        """
        delay = self.quirks.first_store_delay
        if delay <= 0 or count < 1:
            return
        every = self.quirks.pending_every
        waited = 0.0
        next_pending = 0.0
        while waited < delay and not self._stopping.is_set():
            if every is not None and waited >= next_pending:
                rsp = primitive()
                rsp.NumberOfRemainingSuboperations = count
                rsp.NumberOfCompletedSuboperations = 0
                rsp.NumberOfFailedSuboperations = 0
                rsp.NumberOfWarningSuboperations = 0
                _send_pending(event, rsp)
                next_pending += every
            if watched.is_cancelled:
                return
            tick = min(_PENDING_TICK, delay - waited)
            self._stopping.wait(tick)
            waited += tick


def _relational(identifier: Dataset, *, patient_root: bool) -> bool:
    """Whether the identifier lacks a single non-empty value for a parent unique key."""
    level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    if level not in LEVELS:
        return False  # the demo PACS refuses it anyway
    parents = {"PATIENT": [], "STUDY": ["PatientID"],
               "SERIES": ["PatientID", "StudyInstanceUID"],
               "IMAGE": ["PatientID", "StudyInstanceUID", "SeriesInstanceUID"]}[level]
    if not patient_root:
        parents = [keyword for keyword in parents if keyword != "PatientID"]
    for keyword in parents:
        value = identifier.get(keyword)
        values = list(value) if isinstance(value, MultiValue) else [value]
        if len(values) != 1 or not str(values[0] or "").strip():
            return True
        if "\\" in str(values[0]):
            return True
    return False


def _is_implicit(event: Event) -> bool:
    return bool(event.context.transfer_syntax == "1.2.840.10008.1.2")


def _send_pending(event: Event, rsp: C_FIND | C_GET | C_MOVE) -> None:
    """Send a Pending response without an identifier on the request's context."""
    request = event.request
    rsp.MessageIDBeingRespondedTo = request.MessageID
    rsp.AffectedSOPClassUID = request.AffectedSOPClassUID
    rsp.Status = PENDING
    event.assoc.dimse.send_msg(rsp, event.context.context_id)


def _foreign_text(match: Dataset, encoding: str, declared: str | None, *,
                  implicit: bool) -> Dataset:
    """``match`` with its text values as raw ``encoding`` bytes, labelled ``declared``.

    pydicom would encode text by (0008,0005); raw elements are written as they
    are, so the bytes on the wire are the ones a mislabelled PACS sends.
    """
    bent = Dataset()
    for elem in match:
        if elem.keyword == "SpecificCharacterSet":
            continue
        if elem.VR in _CHARSET_VRS and not elem.is_empty:
            bent[elem.tag] = _raw_text(elem, encoding, implicit=implicit)
        else:
            bent.add(elem)
    if declared is not None:
        bent.SpecificCharacterSet = declared
    # Tell pydicom the dataset is already in the wire's encoding and character set:
    # otherwise its writer decodes the raw elements (with ``declared``) and encodes
    # them again, which repairs or mangles exactly the bytes this quirk is about.
    bent.set_original_encoding(implicit, True, bent._character_set)
    return bent


def _raw_text(elem: DataElement, encoding: str, *, implicit: bool) -> RawDataElement:
    values = elem.value if isinstance(elem.value, MultiValue) else [elem.value]
    raw = "\\".join(str(value) for value in values).encode(encoding, errors="replace")
    if len(raw) % 2:
        raw += b" "
    return RawDataElement(elem.tag, elem.VR, len(raw), raw, 0, implicit, True)


# --- data -----------------------------------------------------------------------------------


def _ct_small() -> Dataset:
    return pydicom.dcmread(pydicom_file("CT_small.dcm"))


def _write(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path


LATIN1_NAME: Final = "Müller^Jürgen"
LATIN1_DESCRIPTION: Final = "Hüfte röntgen"
CHINESE_NAME: Final = "王^小明"
CHINESE_DESCRIPTION: Final = "胸部平扫"


def latin1_study(tmp_path: Path) -> list[Path]:
    """A study of 2 series (1 + 2 instances, from pydicom's CT_small) whose PatientName
    is ``Müller^Jürgen`` (:data:`LATIN1_NAME`) and StudyDescription ``Hüfte röntgen``,
    in ISO_IR 100 files (PatientID ``LATIN1-1``)."""
    return charset_study(tmp_path / "latin1", charset="ISO_IR 100", patient_name=LATIN1_NAME,
                         description=LATIN1_DESCRIPTION, patient_id="LATIN1-1")


def chinese_study(tmp_path: Path) -> list[Path]:
    """Like :func:`latin1_study` with PatientName ``王^小明`` (:data:`CHINESE_NAME`) and a
    Chinese StudyDescription, in ISO_IR 192 (UTF-8) files (PatientID ``GBK-1``): what
    ``Quirks(name_encoding="gbk")`` sends as GBK bytes."""
    return charset_study(tmp_path / "chinese", charset="ISO_IR 192", patient_name=CHINESE_NAME,
                         description=CHINESE_DESCRIPTION, patient_id="GBK-1")


def charset_study(folder: Path, *, charset: str, patient_name: str, description: str,
                  patient_id: str) -> list[Path]:
    """A study of 2 series (1 + 2 instances) with these texts, written as proper
    ``charset`` files (pydicom encodes the text by (0008,0005))."""
    template = _ct_small()
    study_uid = generate_uid()
    paths = []
    for series_number, count in ((1, 1), (2, 2)):
        series_uid = generate_uid()
        for instance_number in range(1, count + 1):
            ds = copy.deepcopy(template)
            ds.SpecificCharacterSet = charset
            ds.PatientName = patient_name
            ds.PatientID = patient_id
            ds.StudyDescription = description
            ds.SeriesDescription = f"{description} {series_number}"
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.SOPInstanceUID = generate_uid()
            ds.SeriesNumber = series_number
            ds.InstanceNumber = instance_number
            ds.StudyDate = "20210304"
            paths.append(_write(ds, folder / f"{ds.SOPInstanceUID}.dcm"))
    return paths


@dataclass(frozen=True)
class SampleStudy:
    """One study :func:`sample_studies` wrote: its UIDs, attributes and files."""

    study_uid: str
    patient_id: str
    description: str
    modality: str
    series_uids: tuple[str, ...]
    paths: tuple[Path, ...] = field(repr=False)


def sample_studies(tmp_path: Path, count: int = 4) -> list[SampleStudy]:
    """``count`` small studies (from CT_small), each 2 series of 1 instance.

    Studies alternate Modality CT/MR and StudyDescription ``Chest``/``Head``, one
    patient each (``QUIRKY-<n>``) and StudyDate 2020-01-0<n+1>, so match limits,
    ignored keys and hierarchical walks have something to tell apart.
    """
    template = _ct_small()
    studies = []
    for number in range(count):
        modality, description = (("CT", "Chest"), ("MR", "Head"))[number % 2]
        study_uid = generate_uid()
        series_uids = (generate_uid(), generate_uid())
        paths = []
        for series_number, series_uid in enumerate(series_uids, start=1):
            ds = copy.deepcopy(template)
            ds.PatientName = f"Quirky^Patient{number}"
            ds.PatientID = f"QUIRKY-{number}"
            ds.StudyDescription = description
            ds.Modality = modality
            ds.StudyDate = f"202001{number + 1:02d}"
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = series_number
            ds.InstanceNumber = 1
            ds.SOPInstanceUID = generate_uid()
            paths.append(_write(ds, tmp_path / "sample" / f"{ds.SOPInstanceUID}.dcm"))
        studies.append(SampleStudy(study_uid, f"QUIRKY-{number}", description, modality,
                                   series_uids, tuple(paths)))
    return studies


# --- running it ------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuirkySetup:
    gateway: RunningGateway
    pacs: QuirkyPacs
    store_port: int


QuirkSetup = QuirkySetup  # an alias: both names are in use


@contextmanager
def quirky_pacs(tmp_path: Path, files: Iterable[Path], *, quirks: Quirks = Quirks(),
                move_destinations: Mapping[str, tuple[str, int]] | None = None,
                ) -> Iterator[QuirkyPacs]:
    """Just the PACS (AE title ``QUIRKYPACS``, on 127.0.0.1), started, holding ``files``."""
    pacs = QuirkyPacs(tmp_path / "quirky-pacs", quirks=quirks,
                      move_destinations=move_destinations)
    pacs.add_files(files)
    pacs.start()
    try:
        yield pacs
    finally:
        pacs.stop()


@contextmanager
def quirky_gateway(tmp_path: Path, files: Iterable[Path], *, quirks: Quirks = Quirks(),
                   retrieve: str = "c-get", node: Mapping[str, object] | None = None,
                   **settings: object) -> Iterator[QuirkySetup]:
    """Like ``demo_gateway.demo_gateway``, over a :class:`QuirkyPacs`: the gateway
    (node ``quirky``, extra ``PacsNode`` fields in ``node``, extra ``Settings`` fields
    as keywords). The PACS moves to the gateway's AE title at its store port, unless
    ``quirks.registered_destinations`` says otherwise."""
    store_port = free_port()
    destinations = {GATEWAY_AE_TITLE: ("127.0.0.1", store_port)}
    with quirky_pacs(tmp_path, files, quirks=quirks, move_destinations=destinations) as pacs:
        pacs_node = PacsNode(name=NODE, host="127.0.0.1", port=pacs.port,
                             ae_title=pacs.ae_title, retrieve=retrieve,  # type: ignore[arg-type]
                             timeout=15.0, **dict(node or {}))  # type: ignore[arg-type]
        settings_ = make_settings((pacs_node,), store_port=store_port, tmp=tmp_path,
                                  **settings)  # type: ignore[arg-type]
        with running_gateway(settings_) as gateway:
            yield QuirkySetup(gateway, pacs, store_port)
