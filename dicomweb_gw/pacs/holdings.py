"""What a C-GET will bring back, asked of the PACS before it is sent.

A C-GET association has to propose every SOP class (and stored transfer syntax)
the PACS will send back up front; ``contexts.get_plans`` turns what is found
here into one association or several.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicomweb_gw.errors import PacsError
from dicomweb_gw.model import QueryLevel, RetrieveKeys
from dicomweb_gw.pacs import contexts
from dicomweb_gw.pacs.find import Finder, identifier_for

__all__ = ["answers_holdings", "discover_holdings", "series_holdings"]

log = logging.getLogger(__name__)

_AVAILABLE_TRANSFER_SYNTAX_UID = 0x00083002
_TRANSFER_SYNTAX_UID = 0x00020010


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
        value = answer[tag].value if tag in answer else None
        values = value if isinstance(value, MultiValue | list) else [value]
        syntaxes.update(str(syntax) for syntax in values if syntax)
    return syntaxes
