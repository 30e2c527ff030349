"""C-STORE a batch of DICOM files over one association: the STOW-RS path into the PACS.

Synchronous and blocking: it runs in a DIMSE worker thread.

Presentation contexts are proposed for the SOP classes and transfer syntaxes
actually present. Each SOP class gets one context offering both uncompressed
syntaxes (so that anything we can decode can be sent somehow) and one
single-syntax context per transfer syntax present (so that the PACS can take an
instance as it is, and DCMTK-style acceptors that pick a syntax by their own
preference cannot force a needless conversion). An instance goes as it is when
its syntax was accepted, else it is converted to an accepted uncompressed one
(decompressing if need be).

Files are sent as they are on disk: pynetdicom streams the data set in
PDU-sized chunks (``STORE_SEND_CHUNKED_DATASET``), so a large instance is never
decoded or held in memory whole.
"""

from __future__ import annotations

import itertools
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom import dcmread, uid
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pynetdicom import _config as pynetdicom_config
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext, build_context

from dicomweb_gw.codecs.part10 import instance_from_file, part10_chunks, to_explicit_little_endian
from dicomweb_gw.pacs.protocol import (  # the Failure Reasons assigned when no status came
    PROCESSING_FAILURE,
    SOP_CLASS_NOT_SUPPORTED,
    TRANSFER_SYNTAX_NOT_SUPPORTED,
    StoreOutcome,
    StoreRequest,
)

__all__ = [
    "PROCESSING_FAILURE",
    "SOP_CLASS_NOT_SUPPORTED",
    "TRANSFER_SYNTAX_NOT_SUPPORTED",
    "StoreInterrupted",
    "StoreOutcome",
    "StoreRequest",
    "plan_contexts",
    "store_batch",
]

log = logging.getLogger(__name__)

_MAX_CONTEXTS = 128  # PS3.8: context IDs are odd numbers 1-255
_UNCOMPRESSED = (uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian)

Handler = tuple[Any, Callable[..., Any]]
#: Opens an association proposing these contexts, with these extra event handlers.
Associate = Callable[[list[PresentationContext], Sequence[Handler]], Association]


class StoreInterrupted(Exception):
    """The association broke (timeout or abort) before the PACS confirmed any instance."""

    def __init__(self, association: Association, last_activity: float) -> None:
        super().__init__("no response to C-STORE")
        self.association = association
        self.last_activity = last_activity


def store_batch(
    associate: Associate,
    requests: Sequence[StoreRequest],
    *,
    release: Callable[[Association], None] | None = None,
    message_id: Callable[[], int] | None = None,
) -> list[StoreOutcome]:
    """C-STORE every request over one association; one outcome per request, in order.

    ``associate`` raises when no association can be made (the caller's error
    mapping applies), except when the PACS accepted the association but none of
    the contexts: every outcome then fails at once with 0x0122, rather than each
    instance waiting for a timeout in turn. ``release`` ends the association
    (default: A-RELEASE). Raises ``StoreInterrupted`` if the association breaks
    before any instance was confirmed stored; after that, the rest are reported
    failed, and never as stored.
    """
    if not requests:
        return []
    # Send files as their bytes are, streamed from disk. Only path-based sends
    # (ours) are affected: everything else in the gateway hands pynetdicom datasets.
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True
    next_id = message_id or itertools.count(1).__next__
    contexts = plan_contexts(requests)
    watch = _AcceptWatch()
    try:
        assoc = associate(contexts, [(evt.EVT_ACCEPTED, watch.on_accepted)])
    except Exception:
        if watch.accepted_none:
            log.warning("PACS accepted none of %d presentation contexts for C-STORE",
                        len(contexts))
            return [_not_sent(request, SOP_CLASS_NOT_SUPPORTED,
                              "the PACS accepted no presentation context for "
                              f"{_name(request.sop_class_uid)} (or any other class in the batch)")
                    for request in requests]
        raise
    try:
        return _send_all(assoc, requests, next_id, proposed={str(cx.abstract_syntax)
                                                             for cx in contexts})
    finally:
        (release or _release)(assoc)


def plan_contexts(requests: Sequence[StoreRequest]) -> list[PresentationContext]:
    """The contexts to propose for these requests (at most 128).

    Every class first gets its uncompressed context, then single-syntax
    contexts for what is present, most common first, while the budget lasts:
    a class whose own syntax did not fit is converted rather than refused.
    """
    present: dict[str, Counter[str]] = {}
    for request in requests:
        present.setdefault(request.sop_class_uid, Counter())[request.transfer_syntax_uid] += 1
    plans: list[list[list[str]]] = [
        [list(_UNCOMPRESSED), *([syntax] for syntax, _ in counts.most_common())]
        for counts in present.values()]
    planned: list[PresentationContext] = []
    for depth in range(max(len(plan) for plan in plans)):
        for sop_class, plan in zip(present, plans, strict=True):
            if depth < len(plan) and len(planned) < _MAX_CONTEXTS:
                planned.append(build_context(sop_class, plan[depth]))
    return planned


def _send_all(
    assoc: Association, requests: Sequence[StoreRequest], next_id: Callable[[], int],
    proposed: set[str],
) -> list[StoreOutcome]:
    """C-STORE each request in turn; when the association breaks, the rest are lost
    (or, before any instance was confirmed, the whole batch: ``StoreInterrupted``)."""
    outcomes: list[StoreOutcome] = []
    with _Sender(assoc, next_id, proposed) as sender:
        for index, request in enumerate(requests):
            if not assoc.is_established:  # the PACS aborted between two C-STOREs
                sender.interrupt_if_nothing_confirmed()
                return outcomes + _lost(requests[index:])
            try:
                outcomes.append(sender.store(index, request))
            except _NoAnswer:
                # pynetdicom has aborted the association (DIMSE timeout, or the PACS aborted).
                sender.interrupt_if_nothing_confirmed()
                outcomes.append(_not_sent(
                    request, PROCESSING_FAILURE,
                    "no answer from the PACS (timeout or abort): it may or may not be stored"))
                return outcomes + _lost(requests[index + 1:])
    return outcomes


class _NotSent(Exception):
    """This request cannot go to the PACS: ``outcome`` says why."""

    def __init__(self, outcome: StoreOutcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


class _NoAnswer(Exception):
    """The association broke while the PACS had a request: it may or may not be stored."""


class _Sender:
    """C-STOREs requests one at a time over ``assoc``, each in a syntax the PACS accepted."""

    def __init__(self, assoc: Association, next_id: Callable[[], int], proposed: set[str]) -> None:
        self._assoc = assoc
        self._next_id = next_id
        self._proposed = proposed
        self._accepted: dict[str, set[str]] = {}
        for context in assoc.accepted_contexts:
            self._accepted.setdefault(str(context.abstract_syntax), set()).add(
                str(context.transfer_syntax[0]))
        self._cleanup = ExitStack()
        self._work: Path | None = None
        #: How many instances the PACS confirmed stored so far.
        self.confirmed = 0
        self.last_activity = time.monotonic()

    def __enter__(self) -> _Sender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._cleanup.close()

    def interrupt_if_nothing_confirmed(self) -> None:
        """Until the PACS has confirmed an instance, a break is the whole batch's failure."""
        if self.confirmed == 0:
            raise StoreInterrupted(self._assoc, self.last_activity)

    def store(self, index: int, request: StoreRequest) -> StoreOutcome:
        """The outcome of C-STORing ``request``; raises ``_NoAnswer`` if none came."""
        try:
            target = self._syntax_for(request)
            status = self._send(self._file_in(target, index, request), request)
        except _NotSent as refused:
            return refused.outcome
        self.last_activity = time.monotonic()
        outcome = _answered(request, int(status.Status), status.get("ErrorComment"))
        self.confirmed += outcome.stored
        return outcome

    def _syntax_for(self, request: StoreRequest) -> str:
        """The syntax to send ``request`` in: its own if accepted, else an uncompressed one."""
        syntaxes = self._accepted.get(request.sop_class_uid)
        if not syntaxes:
            why = ("the PACS accepted no presentation context for it"
                   if request.sop_class_uid in self._proposed
                   else "too many SOP classes in one request to propose them all")
            raise _NotSent(_not_sent(request, SOP_CLASS_NOT_SUPPORTED,
                                     f"{_name(request.sop_class_uid)}: {why}"))
        target = _target_syntax(request.transfer_syntax_uid, syntaxes)
        if target is None:
            raise _NotSent(_not_sent(
                request, TRANSFER_SYNTAX_NOT_SUPPORTED,
                f"the PACS takes {_name(request.sop_class_uid)} only in "
                f"{', '.join(sorted(_name(s) for s in syntaxes))}, not "
                f"{_name(request.transfer_syntax_uid)}"))
        return target

    def _file_in(self, target: str, index: int, request: StoreRequest) -> Path:
        """The file to send: the request's own, or a copy converted to ``target``."""
        if target == request.transfer_syntax_uid:
            return request.path
        if self._work is None:
            self._work = Path(self._cleanup.enter_context(
                tempfile.TemporaryDirectory(prefix="dicomweb-gw-store-")))
        try:
            return convert(request.path, target, self._work / f"{index}.dcm")
        except Exception as exc:  # any decoder error: this instance fails, not the batch
            raise _NotSent(_not_sent(
                request, TRANSFER_SYNTAX_NOT_SUPPORTED,
                f"cannot convert {_name(request.transfer_syntax_uid)} to "
                f"{_name(target)}, the only syntaxes the PACS accepts: {exc}")) from exc

    def _send(self, path: Path, request: StoreRequest) -> Dataset:
        """The PACS's C-STORE response to ``path``; a converted copy is deleted after."""
        self.last_activity = time.monotonic()
        try:
            status = self._assoc.send_c_store(path, msg_id=self._next_id())
        except (OSError, ValueError, AttributeError) as exc:
            # Unreadable file, or File Meta pynetdicom cannot use: nothing was sent.
            raise _NotSent(_not_sent(request, PROCESSING_FAILURE, f"not sent: {exc}")) from exc
        except RuntimeError:  # pynetdicom: the association ended just before the send
            status = Dataset()
        finally:
            if path != request.path:
                path.unlink(missing_ok=True)  # converted copies can be large
        if "Status" not in status:
            raise _NoAnswer
        return status


def convert(source: Path, target: str, destination: Path) -> Path:
    """Write ``source`` re-encoded in the uncompressed ``target`` syntax to ``destination``.

    CPU-bound and holds the instance in memory: used only when the PACS will
    not take the instance as it is.
    """
    instance = to_explicit_little_endian(instance_from_file(source))
    if target == uid.ExplicitVRLittleEndian:
        with destination.open("wb") as out:
            for chunk in part10_chunks(instance):
                out.write(chunk)
    elif target == uid.ImplicitVRLittleEndian:
        dataset = dcmread(BytesIO(b"".join(part10_chunks(instance))))
        dataset.file_meta.TransferSyntaxUID = uid.ImplicitVRLittleEndian
        dcmwrite(destination, dataset, enforce_file_format=True)
    else:
        raise ValueError(f"conversion only to uncompressed syntaxes, not {target}")
    return destination


class _AcceptWatch:
    """Notices an A-ASSOCIATE-AC that accepted no context: pynetdicom then aborts the
    association itself, which the caller would otherwise report as unreachable."""

    def __init__(self) -> None:
        self.accepted_none = False

    def on_accepted(self, event: Any) -> None:
        self.accepted_none = not event.assoc.accepted_contexts


def _target_syntax(current: str, accepted: set[str]) -> str | None:
    if current in accepted:
        return current
    return next((syntax for syntax in _UNCOMPRESSED if syntax in accepted), None)


def _answered(request: StoreRequest, status: int, comment: object) -> StoreOutcome:
    meaning = _meaning(status) + (f": {comment}" if comment else "")
    return StoreOutcome(request.sop_class_uid, request.sop_instance_uid, status,
                        f"{meaning} (0x{status:04X})")


#: PS3.4 B.2.3 and PS3.7 C: C-STORE statuses, by exact code or by their high byte.
_MEANINGS = {0x0000: "stored", 0xB000: "stored with a warning (coercion of data elements)",
             0xB006: "stored with a warning (elements discarded)",
             0xB007: "stored with a warning (data set does not match SOP class)",
             0x0117: "invalid SOP instance", 0x0122: "SOP class not supported",
             0x0124: "not authorised", 0x0210: "duplicate invocation",
             0x0211: "unrecognised operation", 0x0212: "mistyped argument"}
_MEANINGS_BY_HIGH_BYTE = {0xA7: "refused: out of resources",
                          0xA9: "error: data set does not match SOP class"}


def _meaning(status: int) -> str:
    if status in _MEANINGS:
        return _MEANINGS[status]
    if 0xC000 <= status <= 0xCFFF:
        return "error: cannot understand"
    if 0xB000 <= status <= 0xBFFF:
        return "stored with a warning"
    return _MEANINGS_BY_HIGH_BYTE.get(status >> 8, "failed")


def _not_sent(request: StoreRequest, reason: int, message: str) -> StoreOutcome:
    return StoreOutcome(request.sop_class_uid, request.sop_instance_uid, None, message, reason)


def _lost(requests: Sequence[StoreRequest]) -> list[StoreOutcome]:
    return [_not_sent(request, PROCESSING_FAILURE,
                      "not sent: the association to the PACS broke earlier in the batch")
            for request in requests]


def _name(uid_value: str) -> str:
    name = uid.UID(uid_value).name
    return name if name and name != uid_value else uid_value


def _release(assoc: Association) -> None:
    if assoc.is_established:
        assoc.release()
