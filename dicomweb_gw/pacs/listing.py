"""The instances of a study or series, listed by one IMAGE-level C-FIND before a
retrieve split across associations (``parallel.py``).

The answers give each instance's series and Instance Number (the order to ask
for them in, ``parallel_plan.in_order``), and, for a C-GET, the SOP classes
and stored syntaxes its associations must propose (``holdings.py``), so no
other C-FIND is needed. A Patient Root node's ``Finder`` asks patient by
patient, as it does for any query.

A study-wide IMAGE-level query is relational: a strictly hierarchical PACS
(dcmqrscp among them) refuses it, or answers nothing, without a Series
Instance UID. The series are then listed first and their instances series by
series, and the node is remembered as needing it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicomweb_gw.errors import PacsError, PacsTimeout
from dicomweb_gw.model import QueryLevel, RetrieveKeys
from dicomweb_gw.pacs import contexts
from dicomweb_gw.pacs import holdings as sop_classes
from dicomweb_gw.pacs.find import Finder, identifier_for
from dicomweb_gw.pacs.parallel_plan import Listed, in_order

__all__ = ["Lister", "Listing"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listing:
    """What a study or series holds, instance by instance."""

    #: In the order to retrieve them (``in_order``).
    instances: list[Listed]
    #: Series -> its SOP classes and their stored syntaxes (asked for a C-GET only).
    holdings: dict[str, contexts.Holdings] = field(default_factory=dict)
    #: The one Patient ID the answers gave, if they gave one (a Patient Root retrieve
    #: needs it).
    patient_id: str | None = None


class Lister:
    """Lists the instances under retrieve keys, on one PACS node."""

    def __init__(self, finder: Finder) -> None:
        self._finder = finder
        self._lock = threading.Lock()
        #: Learned: the PACS takes IMAGE-level queries only with a Series Instance UID.
        self._series_by_series = False

    def listing(self, keys: RetrieveKeys, *, holdings: bool) -> Listing:
        """The instances under study or series ``keys`` (``holdings``: with the SOP
        classes and stored syntaxes of each series). A ``PacsError`` if the PACS
        answers neither way."""
        if keys.series_uid is not None:
            return _listing(self._image_query(keys, keys.series_uid, holdings), holdings)
        with self._lock:
            series_by_series = self._series_by_series
        if not series_by_series:
            try:
                answers = self._image_query(keys, None, holdings)
                if answers:
                    return _listing(answers, holdings)
            except PacsTimeout:
                raise
            except PacsError as exc:
                log.debug("PACS '%s' refused a study-wide IMAGE-level C-FIND: %s",
                          self._finder.node.name, exc)
        answers = []
        for series_uid in self._series(keys):
            answers += self._image_query(keys, series_uid, holdings)
        if answers and not series_by_series:
            with self._lock:
                self._series_by_series = True
            log.info("PACS '%s' lists a study's instances only series by series "
                     "(no study-wide IMAGE-level C-FIND)", self._finder.node.name)
        return _listing(answers, holdings)

    def _image_query(self, keys: RetrieveKeys, series_uid: str | None,
                     holdings: bool) -> list[Dataset]:
        query = identifier_for(RetrieveKeys(keys.study_uid))
        query.QueryRetrieveLevel = QueryLevel.IMAGE.value
        query.SeriesInstanceUID = series_uid or ""
        query.SOPInstanceUID = ""
        query.InstanceNumber = ""
        query.SOPClassUID = ""
        if holdings:
            # PS3.4 C.6.1.1.5: the syntaxes the instance is available in (few PACS fill it).
            query.AvailableTransferSyntaxUID = ""
        return self._finder.collect(query)

    def _series(self, keys: RetrieveKeys) -> list[str]:
        query = identifier_for(RetrieveKeys(keys.study_uid))
        query.QueryRetrieveLevel = QueryLevel.SERIES.value
        query.SeriesInstanceUID = ""
        uids = (str(answer.SeriesInstanceUID) for answer in self._finder.collect(query)
                if answer.get("SeriesInstanceUID"))
        return list(dict.fromkeys(uids))


def _listing(answers: list[Dataset], holdings: bool) -> Listing:
    listed = [Listed(str(answer.SOPInstanceUID), str(answer.SeriesInstanceUID),
                     _number(answer.get("InstanceNumber")))
              for answer in answers
              if answer.get("SOPInstanceUID") and answer.get("SeriesInstanceUID")]
    by_series: dict[str, list[Dataset]] = {}
    for answer in answers:
        by_series.setdefault(str(answer.get("SeriesInstanceUID", "")), []).append(answer)
    patients = {str(answer.get("PatientID", "") or "") for answer in answers} - {""}
    return Listing(
        instances=in_order(listed),
        holdings={series: sop_classes.answers_holdings(group)
                  for series, group in by_series.items() if series} if holdings else {},
        patient_id=patients.pop() if len(patients) == 1 else None)


def _number(value: object) -> int | None:
    """Instance Number (IS) as an int; None when missing or not a number."""
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if value else None
    try:
        return int(float(str(value)))
    except (ValueError, OverflowError):
        return None
