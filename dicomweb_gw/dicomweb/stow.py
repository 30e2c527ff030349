"""STOW-RS (PS3.18 10.5): check each uploaded instance, C-STORE them, report per instance.

The whole body is read (and each instance spooled to a file) before anything
is sent, so a 400 or 413 on the body never leaves a partial store behind. Only
what the PACS confirmed is reported stored (PS3.18 Annex I); afterwards the
gateway's cache forgets every study that was sent to the PACS, so that metadata
and series completeness are rebuilt with the new instances.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from pydicom import dcmread

from dicomweb_gw.cache.blobs import COPY_CHUNK
from dicomweb_gw.cache.protocol import InstanceStore
from dicomweb_gw.dicomweb.uploads import UploadedPart
from dicomweb_gw.errors import BadRequest, PacsFailure
from dicomweb_gw.pacs.protocol import (  # the Failure Reason table is shared with pacs/
    CANNOT_UNDERSTAND,
    DOES_NOT_MATCH_SOP_CLASS,
    PROCESSING_FAILURE,
    STUDY_MISMATCH,
    PacsClient,
    StoreOutcome,
    StoreRequest,
)

__all__ = [
    "CANNOT_UNDERSTAND",
    "DOES_NOT_MATCH_SOP_CLASS",
    "PROCESSING_FAILURE",
    "STUDY_MISMATCH",
    "StowResult",
    "StowService",
]

log = logging.getLogger(__name__)

_REFERENCED_SOP_CLASS = "00081150"
_REFERENCED_SOP_INSTANCE = "00081155"
_RETRIEVE_URL = "00081190"
_WARNING_REASON = "00081196"
_FAILURE_REASON = "00081197"
_FAILED_SOP_SEQUENCE = "00081198"
_REFERENCED_SOP_SEQUENCE = "00081199"
_IDENTITY = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


@dataclass
class StowResult:
    """The response: HTTP status and the Store Instances Response Module as DICOM JSON.

    ``warnings`` are one human-readable line per failed instance (for a log or a
    ``Warning`` header): the DICOM JSON body only has room for the codes.
    """

    status_code: int
    body: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Accepted:
    index: int
    request: StoreRequest
    study_uid: str
    series_uid: str


@dataclass(frozen=True)
class _Refused:
    index: int
    sop_class_uid: str | None
    sop_instance_uid: str | None
    reason: int
    message: str


class StowService:
    def __init__(
        self, store: Callable[[], InstanceStore] | None, *, spool_dir: Path | None = None
    ) -> None:
        # A factory, like InstanceSource's: the store is opened by the app's lifespan.
        self._open_store = store
        self._spool_dir = spool_dir

    async def store(
        self,
        pacs: PacsClient,
        parts: AsyncIterator[UploadedPart],
        *,
        study_uid: str | None,
        base_url: str,
    ) -> StowResult:
        work = tempfile.TemporaryDirectory(prefix="dicomweb-gw-stow-", dir=self._spool_dir)
        try:
            accepted, refused = await self._receive(parts, Path(work.name), study_uid)
            if not accepted and not refused:
                raise BadRequest("the multipart body holds no parts: nothing to store")
            outcomes = await self._forward(pacs, accepted)
        finally:
            with anyio.CancelScope(shield=True):  # a disconnect must not leak the spool
                await anyio.to_thread.run_sync(work.cleanup)
        return _result(accepted, outcomes, refused, base_url.rstrip("/"))

    async def _receive(
        self, parts: AsyncIterator[UploadedPart], work: Path, study_uid: str | None
    ) -> tuple[list[_Accepted], list[_Refused]]:
        """Every part checked and moved into ``work``, each as soon as it has arrived.

        Moving it to a named file closes the part's own temp file at once, so a
        request of thousands of parts does not hold thousands of descriptors;
        pynetdicom also needs a path to stream from.
        """
        accepted: list[_Accepted] = []
        refused: list[_Refused] = []
        index = 0
        try:
            async for part in parts:
                try:
                    verdict = await anyio.to_thread.run_sync(
                        _check_part, part, index, work / f"{index:06d}.dcm", study_uid)
                finally:
                    part.file.close()
                if isinstance(verdict, _Accepted):
                    accepted.append(verdict)
                else:
                    log.info("STOW-RS part %d refused: %s", index + 1, verdict.message)
                    refused.append(verdict)
                index += 1
        finally:
            closer = getattr(parts, "aclose", None)
            if closer is not None:  # close the reader now, not when it is collected
                await closer()
        return accepted, refused

    async def _forward(
        self, pacs: PacsClient, accepted: Sequence[_Accepted]
    ) -> list[StoreOutcome]:
        if not accepted:
            return []
        try:
            outcomes = await pacs.store([item.request for item in accepted])
        finally:
            # Also after a failure: the PACS may hold instances it never confirmed.
            with anyio.CancelScope(shield=True):
                await self._purge({item.study_uid for item in accepted})
        if len(outcomes) != len(accepted):
            raise PacsFailure(pacs.name, f"C-STORE gave {len(outcomes)} outcomes for "
                                         f"{len(accepted)} instances")
        return outcomes

    async def _purge(self, study_uids: set[str]) -> None:
        if self._open_store is None:
            return
        store = self._open_store()
        for study_uid in sorted(study_uids):
            try:
                await anyio.to_thread.run_sync(store.purge, study_uid)
            except Exception:  # a stale cache is bad; failing a done store is worse
                log.exception("could not purge study %s from the cache after STOW-RS", study_uid)


def _check_part(
    part: UploadedPart, index: int, destination: Path, study_uid: str | None
) -> _Accepted | _Refused:
    """Worker thread: is this a DICOM instance we can send? If so, spool it to ``destination``."""
    try:
        # Only the identity is parsed; values of other elements are skipped, not read.
        dataset = dcmread(part.file, force=False, stop_before_pixels=True,
                          specific_tags=list(_IDENTITY))
    except Exception as exc:  # untrusted bytes: any parser error means "not DICOM"
        return _Refused(index, None, None, CANNOT_UNDERSTAND,
                        f"not a DICOM Part 10 instance ({exc})")
    sop_class = str(dataset.get("SOPClassUID", "")) or None
    sop_instance = str(dataset.get("SOPInstanceUID", "")) or None

    def refuse(reason: int, message: str) -> _Refused:
        return _Refused(index, sop_class, sop_instance, reason, message)

    meta = dataset.file_meta
    syntax = str(meta.get("TransferSyntaxUID", ""))
    if not syntax:
        return refuse(CANNOT_UNDERSTAND, "no Transfer Syntax UID in its File Meta Information")
    if sop_class is None:
        return refuse(CANNOT_UNDERSTAND, "no SOP Class UID")
    missing = [name for name in _IDENTITY[1:] if not dataset.get(name)]
    if missing:
        return refuse(DOES_NOT_MATCH_SOP_CLASS, f"no {', '.join(missing)}")
    assert sop_instance is not None
    # pynetdicom puts the File Meta UIDs on the C-STORE request: they must be the data set's.
    if (str(meta.get("MediaStorageSOPClassUID", "")) != sop_class
            or str(meta.get("MediaStorageSOPInstanceUID", "")) != sop_instance):
        return refuse(CANNOT_UNDERSTAND, "its File Meta Information (0002,0002)/(0002,0003) "
                                         "does not match its SOP Class/Instance UID")
    study = str(dataset.StudyInstanceUID)
    if study_uid is not None and study != study_uid:
        return refuse(STUDY_MISMATCH, f"belongs to study {study}, not {study_uid}")
    part.file.seek(0)
    with destination.open("wb") as out:
        shutil.copyfileobj(part.file, out, COPY_CHUNK)
    return _Accepted(index, StoreRequest(destination, sop_class, sop_instance, syntax),
                     study, str(dataset.SeriesInstanceUID))


def _result(
    accepted: Sequence[_Accepted], outcomes: Sequence[StoreOutcome],
    refused: Sequence[_Refused], base_url: str,
) -> StowResult:
    referenced: list[dict[str, Any]] = []
    failed: list[tuple[int, dict[str, Any]]] = [
        (item.index, _failed_item(item.sop_class_uid, item.sop_instance_uid, item.reason))
        for item in refused]
    warnings = [f"part {item.index + 1}: {item.message}" for item in refused]
    stored_studies: set[str] = set()
    any_warning = False
    for item, outcome in zip(accepted, outcomes, strict=True):
        request = item.request
        if outcome.stored:
            url = (f"{base_url}/studies/{item.study_uid}/series/{item.series_uid}"
                   f"/instances/{request.sop_instance_uid}")
            entry = _reference(request.sop_class_uid, request.sop_instance_uid)
            entry[_RETRIEVE_URL] = {"vr": "UR", "Value": [url]}
            if outcome.warning:
                any_warning = True
                entry[_WARNING_REASON] = {"vr": "US", "Value": [outcome.status]}
            referenced.append(dict(sorted(entry.items())))
            stored_studies.add(item.study_uid)
        else:
            reason = outcome.status if outcome.status is not None else (
                outcome.failure_reason or PROCESSING_FAILURE)
            failed.append((item.index, _failed_item(request.sop_class_uid,
                                                    request.sop_instance_uid, reason)))
            warnings.append(f"part {item.index + 1} ({request.sop_instance_uid}): "
                            f"{outcome.message}")
    if warnings:
        log.warning("STOW-RS: %d of %d instance(s) not stored: %s", len(failed),
                    len(failed) + len(referenced), "; ".join(warnings[:5]))
    body: dict[str, Any] = {_RETRIEVE_URL: {"vr": "UR"}}  # Type 2: present, maybe empty
    if len(stored_studies) == 1:
        body[_RETRIEVE_URL]["Value"] = [f"{base_url}/studies/{stored_studies.pop()}"]
    if failed:
        body[_FAILED_SOP_SEQUENCE] = {"vr": "SQ", "Value": [item for _, item in sorted(
            failed, key=lambda pair: pair[0])]}
    if referenced:
        body[_REFERENCED_SOP_SEQUENCE] = {"vr": "SQ", "Value": referenced}
    if not referenced:
        status = 409  # PS3.18 10.5.3.1: none stored (conflict, or a mixture of reasons)
    elif failed or any_warning:
        status = 202  # stored some, "but warnings or failures exist for others"
    else:
        status = 200
    return StowResult(status, body, warnings)


def _reference(sop_class_uid: str | None, sop_instance_uid: str | None) -> dict[str, Any]:
    """The SOP Instance Reference Macro, leaving out what could not be read."""
    entry: dict[str, Any] = {}
    if sop_class_uid:
        entry[_REFERENCED_SOP_CLASS] = {"vr": "UI", "Value": [sop_class_uid]}
    if sop_instance_uid:
        entry[_REFERENCED_SOP_INSTANCE] = {"vr": "UI", "Value": [sop_instance_uid]}
    return entry


def _failed_item(
    sop_class_uid: str | None, sop_instance_uid: str | None, reason: int
) -> dict[str, Any]:
    entry = _reference(sop_class_uid, sop_instance_uid)
    entry[_FAILURE_REASON] = {"vr": "US", "Value": [reason]}
    return entry
