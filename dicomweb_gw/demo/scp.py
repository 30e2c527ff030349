"""The demo PACS: a pynetdicom Query/Retrieve SCP over a folder of DICOM files.

It serves C-ECHO, C-FIND, C-GET and C-MOVE (Patient Root and Study Root) and
accepts C-STORE, so ``dicomweb-gw demo`` has a PACS with sample data and the
tests have one whose failures they can choose (:class:`Fault`).

pynetdicom's Query/Retrieve service class drives the DIMSE exchange; the
handlers here decide what matches and which instances go out. Two pynetdicom
behaviours are worked around:

* TCP_NODELAY: pynetdicom never sets it, and Nagle plus delayed ACKs add
  ~45 ms to every request/response exchange. Every socket the demo accepts or
  opens gets it from an ``EVT_CONN_OPEN`` handler.
* Move Originator: pynetdicom's C-MOVE SCP sends its sub-operation C-STOREs
  with Move Originator AE Title = *its own* AE title (PS3.7's C-STORE
  parameters want the AE that invoked the C-MOVE) and cannot leave the
  originator out, which the ``omit_move_originator`` fault needs. See
  :class:`_DemoAE`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socketserver
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from hashlib import sha1
from pathlib import Path
from types import TracebackType
from typing import Any, Final, cast

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RLETransferSyntaxes,
)
from pynetdicom import AllStoragePresentationContexts, build_context, evt
from pynetdicom import _config as pynetdicom_config
from pynetdicom.ae import ApplicationEntity
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event, EventHandlerType
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import ThreadedAssociationServer

from dicomweb_gw.demo.index import (
    IndexedInstance,
    InstanceIndex,
    QueryError,
    find,
    query_level,
    read_instance,
    select_instances,
)
from dicomweb_gw.pacs.sockets import set_nodelay

__all__ = ["DemoPacs", "Fault", "set_tcp_nodelay"]

#: One TCP_NODELAY handler for the gateway and the demo PACS alike.
set_tcp_nodelay = set_nodelay

LOGGER = logging.getLogger("dicomweb_gw.demo")

_VERIFICATION: Final = "1.2.840.10008.1.1"
# SOP Class UID -> is it the Patient Root model (which has a PATIENT level)?
_FIND_MODELS: Final = {"1.2.840.10008.5.1.4.1.2.1.1": True, "1.2.840.10008.5.1.4.1.2.2.1": False}
_MOVE_MODELS: Final = {"1.2.840.10008.5.1.4.1.2.1.2": True, "1.2.840.10008.5.1.4.1.2.2.2": False}
_GET_MODELS: Final = {"1.2.840.10008.5.1.4.1.2.1.3": True, "1.2.840.10008.5.1.4.1.2.2.3": False}

_UNCOMPRESSED_LE: Final = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
_MAX_REQUESTED_CONTEXTS: Final = 128  # PS3.8: odd context IDs 1..255
# Transfer syntaxes accepted for storage: every image codec pydicom knows,
# but not the video ones. pynetdicom deep-copies the supported contexts for
# each association: ~170 storage classes x all 40-odd syntaxes cost 80 ms
# per association, these 18 about 30 ms. Explicit VR LE comes first because
# pynetdicom accepts the first syntax of *this* list that the requestor
# offers: offered "Explicit or Implicit", a C-GET then keeps the VRs.
_ACCEPTED_SYNTAXES: Final = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    *JPEGTransferSyntaxes,
    *JPEGLSTransferSyntaxes,
    *JPEG2000TransferSyntaxes,
    *RLETransferSyntaxes,
]

# DIMSE statuses (PS3.4 C.4).
_PENDING: Final = 0xFF00
_CANCEL: Final = 0xFE00
_IDENTIFIER_MISMATCH: Final = 0xA900
_STORE_OUT_OF_RESOURCES: Final = 0xA700
_STORE_CANNOT_UNDERSTAND: Final = 0xC000

# Nobody calls with this AE title, so listing it as the only allowed caller
# makes pynetdicom reject every association ("calling AE title not
# recognised": what a PACS that does not know the gateway answers).
_NO_CALLER: Final = "REFUSE-ALL-AE"

_SHUTDOWN_POLL_SECONDS: Final = 0.1

_SAFE_NAME: Final = re.compile(r"^[0-9.]{1,64}$")


@dataclass(frozen=True)
class Fault:
    """Misbehaviour to inject, for testing how the gateway copes."""

    refuse_association: bool = False
    """Reject every association (A-ASSOCIATE-RJ, permanent, calling AE not recognised)."""
    abort_after_instances: int | None = None
    """During C-GET/C-MOVE, send A-ABORT after this many instances were stored.

    C-MOVE aborts both the sub-association to the destination and the C-MOVE
    association, like a PACS that crashed mid-transfer."""
    stall_seconds: float = 0.0
    """Sleep this long before answering each C-FIND, C-GET or C-MOVE."""
    omit_move_originator: bool = False
    """C-MOVE sub-operation C-STOREs carry no Move Originator AE Title / Message ID."""
    find_failure_status: int | None = None
    """Answer every C-FIND with this (failure) status and no matches, e.g. 0xC000."""
    patient_root_only: bool = False
    """Offer only the Patient Root models, and (like many such PACS) refuse
    queries and retrieves below PATIENT level that carry no Patient ID."""

    def __post_init__(self) -> None:
        if self.abort_after_instances is not None and self.abort_after_instances < 0:
            raise ValueError("abort_after_instances must be >= 0")
        if self.stall_seconds < 0:
            raise ValueError("stall_seconds must be >= 0")
        if self.find_failure_status is not None and not 0 <= self.find_failure_status <= 0xFFFF:
            raise ValueError("find_failure_status must be a 16-bit status code")



# --- C-MOVE sub-association -------------------------------------------------------


@dataclass
class _MovePlan:
    """What one C-MOVE wants of the sub-association pynetdicom opens for it."""

    originator: tuple[str, int] | None
    """(Move Originator AE Title, Move Originator Message ID), None to omit both."""
    association: Association | None = None
    """The real sub-association, once open (the abort fault needs it)."""

    def abort(self) -> None:
        if self.association is not None and self.association.is_established:
            self.association.abort()


class _MoveSubAssociation:
    """The C-MOVE sub-association as pynetdicom's C-MOVE SCP sees it.

    pynetdicom calls ``send_c_store(ds, msg_id=..., originator_aet=<own AE
    title>, originator_id=<C-MOVE Message ID>)`` on it; this stand-in puts the
    plan's originator there instead and forwards everything else (``release``,
    ``is_established``, ``dul``...) to the real association.
    """

    def __init__(self, association: Association, plan: _MovePlan) -> None:
        self._association = association
        self._plan = plan

    def send_c_store(
        self,
        dataset: Dataset,
        msg_id: int = 1,
        priority: int = 2,
        originator_aet: str | None = None,
        originator_id: int | None = None,
    ) -> Dataset:
        aet, message_id = self._plan.originator or (None, None)
        result: Dataset = self._association.send_c_store(
            dataset, msg_id=msg_id, priority=priority, originator_aet=aet, originator_id=message_id
        )
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._association, name)


class _DemoAE(ApplicationEntity):
    """An AE whose C-MOVE sub-associations honour a :class:`_MovePlan`.

    pynetdicom's C-MOVE SCP opens the sub-association with
    ``self.ae.associate(host, port, ae_title=<destination>, **extra)``, where
    ``extra`` is the third item of the destination the handler yields. The
    handler passes ``move_plan`` there; this override takes it out and hands
    pynetdicom a :class:`_MoveSubAssociation`. No other pynetdicom hook lets
    the SCP choose the Move Originator of the sub-operations.
    """

    def associate(  # type: ignore[override]
        self, addr: str, port: int, *args: Any, move_plan: _MovePlan | None = None, **kwargs: Any
    ) -> Any:
        association = super().associate(addr, port, *args, **kwargs)
        if move_plan is None:
            return association
        move_plan.association = association
        return _MoveSubAssociation(association, move_plan)


# --- the SCP -----------------------------------------------------------------------


class DemoPacs:
    """A Query/Retrieve SCP serving the DICOM files in ``storage_dir``.

    >>> with DemoPacs(Path("/tmp/pacs"), move_destinations={"GW": ("127.0.0.1", 11113)}) as pacs:
    ...     print(pacs.port)
    """

    def __init__(
        self,
        storage_dir: Path,
        *,
        ae_title: str = "DEMOPACS",
        host: str = "127.0.0.1",
        port: int = 0,
        move_destinations: Mapping[str, tuple[str, int]] | None = None,
        fault: Fault | None = None,
    ) -> None:
        self._storage_dir = Path(storage_dir)
        self._ae_title = ae_title
        self._host = host
        self._port = port
        self._move_destinations = {
            aet.strip(): (dest_host, int(dest_port))
            for aet, (dest_host, dest_port) in (move_destinations or {}).items()
        }
        self._fault = fault or Fault()
        self._index = InstanceIndex()
        self._stopping = threading.Event()
        self._ae: _DemoAE | None = None
        self._server: ThreadedAssociationServer | None = None

    # --- lifecycle ----------------------------------------------------------------

    @property
    def port(self) -> int:
        """The listening port (the real one once started with ``port=0``)."""
        return self._port

    @property
    def ae_title(self) -> str:
        return self._ae_title

    def start(self) -> None:
        """Index ``storage_dir`` and start listening; returns once bound."""
        if self._server is not None:
            raise RuntimeError("DemoPacs is already running")
        _quiet_pynetdicom()
        self._storage_dir.mkdir(parents=True, exist_ok=True)
        count = self._scan()
        self._stopping.clear()
        self._ae = self._make_ae()
        server = self._ae.make_server(
            (self._host, self._port),
            evt_handlers=self._handlers(),
            server_class=ThreadedAssociationServer,
        )
        # What ae.start_server(block=False) does, but polling for shutdown
        # every 0.1 s instead of 0.5 s: tests start and stop many of these.
        threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _SHUTDOWN_POLL_SECONDS},
            name=f"DemoPacs@{self._ae_title}",
            daemon=True,
        ).start()
        self._server = server
        self._port = int(server.server_address[1])
        LOGGER.info(
            "demo PACS %s listening on %s:%d with %d instances from %s",
            self._ae_title,
            self._host,
            self._port,
            count,
            self._storage_dir,
        )

    def stop(self) -> None:
        """Abort open associations and stop listening. Safe to call twice."""
        self._stopping.set()  # wakes stalled handlers
        if self._server is not None:
            # Not server.shutdown(): pynetdicom's also unregisters the server
            # from its AE, where only start_server() registers it.
            socketserver.BaseServer.shutdown(self._server)
            self._server.server_close()
        if self._ae is not None:
            self._ae.shutdown()  # aborts the associations still open
        self._ae = None
        self._server = None

    def __enter__(self) -> DemoPacs:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- storage ------------------------------------------------------------------

    def add_files(self, paths: Iterable[Path]) -> int:
        """Copy DICOM files into ``storage_dir`` and index them; return how many.

        Files already under ``storage_dir`` are indexed where they are; files
        that are not DICOM instances are skipped (and logged).
        """
        added = 0
        root = self._storage_dir.resolve()
        for path in map(Path, paths):
            instance = read_instance(path)
            if instance is None:
                continue
            if not path.resolve().is_relative_to(root):
                destination = self._destination(instance)
                _atomic_copy(path, destination)
                instance = replace(instance, path=destination)
            self._index.add(instance)
            added += 1
        return added

    def _scan(self) -> int:
        count = 0
        for path in sorted(self._storage_dir.rglob("*")):
            relative = path.relative_to(self._storage_dir)
            if not path.is_file() or any(part.startswith(".") for part in relative.parts):
                continue  # hidden: our temp files
            instance = read_instance(path)
            if instance is not None:
                self._index.add(instance)
                count += 1
        return count

    def _destination(self, instance: IndexedInstance) -> Path:
        """Where an instance is stored: where it already is, else <study>/<sop>.dcm."""
        known = self._index.get(instance.sop_instance_uid)
        if known is not None:
            return known.path
        study = _safe_name(instance.value("StudyInstanceUID") or "unknown-study")
        return self._storage_dir / study / f"{_safe_name(instance.sop_instance_uid)}.dcm"

    def _store_received(self, received: bytes | Path) -> int:
        """Store one received instance (a Part 10 file); return a C-STORE status."""
        incoming = self._storage_dir / ".incoming"
        incoming.mkdir(exist_ok=True)
        fd, name = tempfile.mkstemp(dir=incoming, suffix=".part")
        temp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(received, Path):
                    with received.open("rb") as source:
                        shutil.copyfileobj(source, out)
                else:
                    out.write(received)
            instance = read_instance(temp)
            if instance is None:
                return _STORE_CANNOT_UNDERSTAND
            destination = self._destination(instance)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, destination)
        finally:
            temp.unlink(missing_ok=True)
        self._index.add(replace(instance, path=destination))
        LOGGER.info("stored %s", instance.sop_instance_uid)
        return 0x0000

    # --- pynetdicom wiring ------------------------------------------------------------

    def _make_ae(self) -> _DemoAE:
        ae = _DemoAE(self._ae_title)
        ae.maximum_pdu_size = 0  # unlimited: fewer, larger P-DATA PDUs for throughput
        ae.maximum_associations = 32
        ae.add_supported_context(_VERIFICATION)
        for models in (_FIND_MODELS, _GET_MODELS, _MOVE_MODELS):
            for model, patient_root in models.items():
                if patient_root or not self._fault.patient_root_only:
                    ae.add_supported_context(model)
        # Storage in both roles: SCP for C-STORE uploads, SCU (with the
        # requestor's SCP/SCU role selection) for C-GET sub-operations.
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(
                cast(str, context.abstract_syntax),
                _ACCEPTED_SYNTAXES,
                scu_role=True,
                scp_role=True,
            )
        if self._fault.refuse_association:
            ae.require_calling_aet = [_NO_CALLER]
        return ae

    def _handlers(self) -> list[EventHandlerType]:
        return [
            (evt.EVT_CONN_OPEN, set_tcp_nodelay),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_GET, self._on_get),
            (evt.EVT_C_MOVE, self._on_move),
            (evt.EVT_C_STORE, self._on_store),
        ]

    def _stall(self) -> None:
        if self._fault.stall_seconds > 0:
            self._stopping.wait(self._fault.stall_seconds)  # stop() cuts it short

    # --- C-FIND -----------------------------------------------------------------------

    def _on_find(self, event: Event) -> Iterator[tuple[int, Dataset | None]]:
        self._stall()
        if self._fault.find_failure_status is not None:
            yield self._fault.find_failure_status, None
            return
        identifier = event.identifier
        try:
            level = query_level(identifier, patient_root=_is_patient_root(event, _FIND_MODELS))
            self._check_patient_id(identifier)
        except QueryError as exc:
            LOGGER.info("C-FIND refused: %s", exc)
            yield _IDENTIFIER_MISMATCH, None
            return
        matches = find(self._index.snapshot(), level, identifier, retrieve_ae_title=self._ae_title)
        for match in matches:
            if event.is_cancelled:
                yield _CANCEL, None
                return
            yield _PENDING, match

    def _check_patient_id(self, identifier: Dataset) -> None:
        level = str(identifier.get("QueryRetrieveLevel", ""))
        if self._fault.patient_root_only and level != "PATIENT" \
                and not identifier.get("PatientID", ""):
            raise QueryError(f"Patient ID required at {level} level")

    # --- C-GET / C-MOVE ---------------------------------------------------------------

    def _select(self, event: Event, models: Mapping[str, bool]) -> list[IndexedInstance] | None:
        """The instances a retrieve asks for; None if the identifier is invalid."""
        identifier = event.identifier
        try:
            query_level(identifier, patient_root=_is_patient_root(event, models))
            self._check_patient_id(identifier)
        except QueryError as exc:
            LOGGER.info("retrieve refused: %s", exc)
            return None
        return select_instances(self._index.snapshot(), identifier)

    def _on_get(self, event: Event) -> Iterator[int | tuple[int, Dataset | None]]:
        # pynetdicom protocol: yield the number of sub-operations, then one
        # (status, dataset) per instance; it sends each as a C-STORE on this
        # association, using a context the requestor proposed with the SCP
        # role, converting Explicit <-> Implicit VR LE when it must.
        self._stall()
        instances = self._select(event, _GET_MODELS)
        if instances is None:
            yield 1
            yield _IDENTIFIER_MISMATCH, None
            return
        LOGGER.info("C-GET: %d instances", len(instances))
        yield len(instances)
        yield from self._sub_operations(event, instances, abort=event.assoc.abort)

    def _on_move(self, event: Event) -> Iterator[Any]:
        # pynetdicom protocol: yield the destination (None, None if unknown:
        # it answers 0xA801), then the number of sub-operations, then
        # (status, dataset) pairs that it sends over the sub-association.
        self._stall()
        destination = self._move_destinations.get((event.move_destination or "").strip())
        if destination is None:
            LOGGER.info("C-MOVE to unknown destination %r", event.move_destination)
            yield None, None
            return
        instances = self._select(event, _MOVE_MODELS)
        originator = (event.assoc.requestor.ae_title, event.message_id)
        plan = _MovePlan(None if self._fault.omit_move_originator else originator)
        sub_association = {
            "contexts": _store_contexts(instances or []),
            "max_pdu": 0,
            "evt_handlers": [(evt.EVT_CONN_OPEN, set_tcp_nodelay)],
            "move_plan": plan,
        }
        yield (*destination, sub_association)
        if instances is None:
            yield 1
            yield _IDENTIFIER_MISMATCH, None
            return
        LOGGER.info("C-MOVE to %s: %d instances", event.move_destination, len(instances))
        yield len(instances)

        def abort_both() -> None:
            plan.abort()
            event.assoc.abort()

        yield from self._sub_operations(event, instances, abort=abort_both)

    def _sub_operations(
        self, event: Event, instances: Sequence[IndexedInstance], *, abort: Callable[[], None]
    ) -> Iterator[tuple[int, Dataset | None]]:
        """(status, dataset) per instance, honouring C-CANCEL and the abort fault.

        pynetdicom resumes this generator only after the previous C-STORE was
        answered, so "abort after N" really means N instances were stored.
        """
        for sent, instance in enumerate(instances):
            if event.is_cancelled:
                LOGGER.info("retrieve cancelled after %d instances", sent)
                yield _CANCEL, None
                return
            if self._fault.abort_after_instances == sent:
                LOGGER.info("fault: aborting after %d instances", sent)
                abort()
                return
            yield _PENDING, _load(instance)

    # --- C-STORE ----------------------------------------------------------------------

    def _on_store(self, event: Event) -> int:
        try:
            if pynetdicom_config.STORE_RECV_CHUNKED_DATASET:
                # Process-wide pynetdicom setting (the gateway may turn it on):
                # the dataset was spooled to a Part 10 temp file, not kept in memory.
                return self._store_received(event.dataset_path)
            return self._store_received(event.encoded_dataset(include_meta=True))
        except OSError:
            request = cast(C_STORE, event.request)
            LOGGER.exception("could not store %s", request.AffectedSOPInstanceUID)
            return _STORE_OUT_OF_RESOURCES


def _is_patient_root(event: Event, models: Mapping[str, bool]) -> bool:
    """Whether the request came in on the Patient Root model's context."""
    return models.get(str(getattr(event.request, "AffectedSOPClassUID", "")), False)


def _load(instance: IndexedInstance) -> Dataset:
    """The full dataset to send; a stub that fails the sub-operation if unreadable."""
    try:
        return dcmread(instance.path)
    except (OSError, ValueError, InvalidDicomError) as exc:
        LOGGER.warning("cannot read %s: %s", instance.path, exc)
        # No SOP Class UID: pynetdicom's send_c_store raises, which counts as a
        # failed sub-operation and lists this UID in FailedSOPInstanceUIDList.
        stub = Dataset()
        stub.SOPInstanceUID = instance.sop_instance_uid
        return stub


def _store_contexts(instances: Sequence[IndexedInstance]) -> list[PresentationContext]:
    """Contexts for a C-MOVE sub-association, the way storescu proposes them.

    Per SOP class: one context per stored transfer syntax, so each instance
    can go as stored whichever syntax the destination prefers, plus one
    offering Explicit and Implicit VR LE (which pynetdicom converts between)
    as the fallback. Beyond 128 contexts only the fallbacks are kept.
    """
    syntaxes: dict[str, set[str]] = {}
    for instance in instances:
        syntaxes.setdefault(instance.sop_class_uid, set()).add(instance.transfer_syntax)
    as_stored = [
        build_context(sop_class, [syntax])
        for sop_class, stored in syntaxes.items()
        for syntax in sorted(stored)
    ]
    uncompressed = [build_context(sop_class, list(_UNCOMPRESSED_LE)) for sop_class in syntaxes]
    contexts = as_stored + uncompressed
    if len(contexts) > _MAX_REQUESTED_CONTEXTS:
        LOGGER.warning("C-MOVE of %d SOP classes: offering uncompressed only", len(syntaxes))
        contexts = uncompressed[:_MAX_REQUESTED_CONTEXTS]
    return contexts


def _atomic_copy(source: Path, destination: Path) -> None:
    """Copy so that a reader never sees half a file (temp file, then rename)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=destination.parent, prefix=".", suffix=".part")
    os.close(fd)
    try:
        shutil.copyfile(source, name)
        os.replace(name, destination)
    finally:
        Path(name).unlink(missing_ok=True)


def _safe_name(uid: str) -> str:
    """A UID as a file name; anything that is not a plain UID is hashed (no ``../``)."""
    return uid if _SAFE_NAME.match(uid) else sha1(uid.encode()).hexdigest()


def _quiet_pynetdicom() -> None:
    """pynetdicom logs every association at INFO; keep it to warnings unless configured."""
    pynetdicom_logger = logging.getLogger("pynetdicom")
    if pynetdicom_logger.level == logging.NOTSET:
        pynetdicom_logger.setLevel(logging.WARNING)
