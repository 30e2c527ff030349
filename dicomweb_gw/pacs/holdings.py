"""What a C-GET will bring back, asked of the PACS before it is sent.

A C-GET association has to propose every SOP class (and stored transfer syntax)
the PACS will send back up front; ``contexts.get_plans`` turns what is found
here into one association or several.

Asked per series at IMAGE level (``discover_holdings``), or, once a node has
shown that its IMAGE answers name no stored syntax, by the study's SOP Classes
in Study (``HoldingsFinder``): Orthanc with ``StorageAccessOnFind: Always``
opens every file of a series to answer the IMAGE query, however early it is
cancelled (0.35 s of a 100-instance series before the first instance came).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicomweb_gw.errors import PacsError
from dicomweb_gw.model import QueryLevel, RetrieveKeys
from dicomweb_gw.pacs import contexts
from dicomweb_gw.pacs.find import Finder, identifier_for

__all__ = ["HoldingsFinder", "answers_holdings", "discover_holdings", "series_holdings",
           "study_sop_classes"]

log = logging.getLogger(__name__)

_AVAILABLE_TRANSFER_SYNTAX_UID = 0x00083002
_TRANSFER_SYNTAX_UID = 0x00020010
#: More classes than this in one study: the per-series look-up, which can split them
#: over several associations (``contexts.get_plans``); a study's classes all go in one.
_MOST_STUDY_CLASSES = 32


class HoldingsFinder:
    """``discover_holdings`` of one node, by one STUDY-level C-FIND once that says as much.

    The IMAGE-level look-up tells the SOP classes and, from a few PACS, the syntaxes
    each is stored in. Where it names no syntax, the study's SOP Classes in Study
    (0008,0062) tell the same in one cheaper C-FIND. Both are learned per node on
    its first retrieves: whether its IMAGE answers name stored syntaxes (then it
    keeps being asked per series), and whether it answers SOP Classes in Study
    (dcmqrscp does not: then the per-series look-up, as before).
    """

    def __init__(self, finder: Finder) -> None:
        self._finder = finder
        self._lock = threading.Lock()
        #: Learned: the IMAGE answers name stored syntaxes (None: not seen yet).
        self._syntaxes_named: bool | None = None
        #: Learned: the PACS answers SOP Classes in Study (None: not asked yet).
        self._study_classes: bool | None = None

    def discover(self, keys: RetrieveKeys) -> dict[str, contexts.Holdings]:
        with self._lock:
            by_study = self._syntaxes_named is False and self._study_classes is not False
        if by_study:
            classes = study_sop_classes(self._finder, keys)
            if classes is not None:
                with self._lock:
                    self._study_classes = bool(classes)
            if classes and len(classes) <= _MOST_STUDY_CLASSES:
                # One entry: a study's few classes always fit one association.
                return {keys.series_uid or keys.study_uid: {uid: set() for uid in classes}}
        found = discover_holdings(self._finder, keys)
        named = [bool(stored) for holdings in found.values() for stored in holdings.values()]
        if named:
            with self._lock:
                if self._syntaxes_named is None:
                    self._syntaxes_named = any(named)
        return found


def study_sop_classes(finder: Finder, keys: RetrieveKeys) -> list[str] | None:
    """The SOP Classes in Study of the study of ``keys`` (PS3.4 C.6.1.1.2.1), [] when the
    PACS answers without them, None when it could not be asked."""
    query = identifier_for(RetrieveKeys(keys.study_uid))
    query.SOPClassesInStudy = ""
    try:
        answers = finder.collect(query)
    except PacsError as exc:
        log.debug("SOP Classes in Study of %s on '%s' failed: %s", keys.study_uid,
                  finder.node.name, exc)
        return None
    classes: dict[str, None] = {}  # in order, each once
    for answer in answers:
        classes.update(dict.fromkeys(_uids(answer.get("SOPClassesInStudy"))))
    return list(classes)


def discover_holdings(finder: Finder, keys: RetrieveKeys) -> dict[str, contexts.Holdings]:
    """For each series under ``keys``, its SOP classes and, where the PACS says, their
    stored syntaxes; empty when the PACS does not answer.

    One instance per series is enough (a series holds one kind of object in
    practice), and asking for every instance of a large series costs more
    than the retrieve itself: each series' IMAGE query is cancelled after
    its first answer. Not every PACS answers an IMAGE-level query (dcmqrscp
    needs the series UID, and omits SOP Class UID): the common classes are
    the fallback, for a series that does not say and when no series does.
    """
    try:
        if keys.series_uid is not None:
            series_uids = [keys.series_uid]
        else:
            query = identifier_for(keys)
            query.QueryRetrieveLevel = QueryLevel.SERIES.value
            query.SeriesInstanceUID = ""
            series_uids = [str(ds.SeriesInstanceUID) for ds in finder.collect(query)
                           if ds.get("SeriesInstanceUID")]
        return {series_uid: series_holdings(finder, keys, series_uid)
                for series_uid in series_uids}
    except PacsError as exc:
        log.debug("SOP class discovery failed on '%s': %s", finder.node.name, exc)
        return {}


def series_holdings(finder: Finder, keys: RetrieveKeys, series_uid: str) -> contexts.Holdings:
    """The SOP classes of one series (from its first instance) and their stored syntaxes."""
    query = identifier_for(RetrieveKeys(keys.study_uid, series_uid, keys.instance_uid))
    query.QueryRetrieveLevel = QueryLevel.IMAGE.value
    query.SOPClassUID = ""
    query.SOPInstanceUID = keys.instance_uid or ""
    # PS3.4 C.6.1.1.5: the syntaxes the instance is available in (few PACS fill it).
    query.AvailableTransferSyntaxUID = ""
    return answers_holdings(finder.collect(query, first_only=True))


def answers_holdings(answers: Iterable[Dataset]) -> contexts.Holdings:
    """The SOP classes IMAGE-level C-FIND answers name, with their stored syntaxes;
    the common classes when none names one."""
    holdings: dict[str, set[str]] = {}
    for answer in answers:
        if answer.get("SOPClassUID"):
            holdings.setdefault(str(answer.SOPClassUID), set()).update(
                _stored_syntaxes(answer))
    return holdings or {sop_class: set() for sop_class in contexts.COMMON_STORAGE_SOP_CLASSES}


def _stored_syntaxes(answer: Dataset) -> set[str]:
    """Available Transfer Syntax UID, or the (0002,0010) some PACS put in C-FIND answers."""
    syntaxes: set[str] = set()
    for tag in (_AVAILABLE_TRANSFER_SYNTAX_UID, _TRANSFER_SYNTAX_UID):
        syntaxes.update(_uids(answer[tag].value if tag in answer else None))
    return syntaxes


def _uids(value: object) -> list[str]:
    """The non-empty UIDs of an element's value, one or several (or none)."""
    values = value if isinstance(value, MultiValue | list) else [value]
    return [str(uid) for uid in values if uid]
