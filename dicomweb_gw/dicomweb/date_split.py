"""Splitting a broad study search by StudyDate, for a PACS with a match limit.

A PACS that answers at most ``max_matches`` matches per C-FIND (the node setting)
either refuses after them (0xA700) or just stops: a broad search such as
``/studies?ModalitiesInStudy=CT`` would lose everything past the limit. So:

1. One C-FIND with the query as it is. Fewer than ``max_matches`` matches and no
   limit reported: that is the answer. A narrow query costs nothing more, and
   studies without a StudyDate are found.
2. Otherwise the StudyDate range (the client's, or 1900-01-01 to today where it
   is open) is searched piece by piece: dates before 1900 and after today as one
   open range each, the rest bisected, newest half first, whenever a C-FIND hits
   the limit again. Each piece is read to its end before its matches are passed
   on, and a study found twice is passed on once (by StudyInstanceUID).
3. At most ``MAX_FINDS`` C-FINDs per search: a piece that still hits the limit
   when it is a single day, an open range, or when splitting would exceed the
   budget is passed on as received and the search reports the limit (the client
   gets a ``Warning``).

A range query cannot find studies without a StudyDate: a search that had to be
split misses them. A single StudyDate cannot be split: it is searched once.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass

from pydicom.dataset import Dataset

from dicomweb_gw.dicomweb.search_finds import SearchFinds, add_report
from dicomweb_gw.model import FindReport, QueryLevel

__all__ = ["MAX_FINDS", "DateRange", "pieces", "split_by_study_date"]

log = logging.getLogger(__name__)

#: C-FINDs one split search may take: a PACS with a limit of 500 studies and 20 years
#: of 20,000 studies a year needs many more, but a page of results needs about 2 per
#: halving of the range (log2 of 46,000 days is 16): 64 leave room for both ends.
MAX_FINDS = 64
#: Where an open range starts being bisected: older dates are rare enough to go as one.
EARLIEST = datetime.date(1900, 1, 1)
_STUDY_DATE = 0x00080020
_STUDY_UID = 0x0020000D
_DATE = re.compile(r"\d{8}")
_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class DateRange:
    """Dates from ``low`` to ``high``, both included; None is an open end."""

    low: datetime.date | None
    high: datetime.date | None

    @property
    def text(self) -> str:
        """As a DA range matching key: ``A-B``, ``A-`` or ``-B``."""
        return "-".join(day.strftime("%Y%m%d") if day else "" for day in (self.low, self.high))

    def halves(self) -> tuple[DateRange, DateRange] | None:
        """(older, newer) halves, or None for a single day or an open range."""
        if self.low is None or self.high is None or self.low >= self.high:
            return None
        middle = self.low + (self.high - self.low) // 2
        return DateRange(self.low, middle), DateRange(middle + _DAY, self.high)


def parse_range(value: str) -> DateRange | None:
    """The range a StudyDate matching key covers: everything for universal matching,
    None for a single date (nothing to split) or anything unexpected."""
    value = value.strip()
    if value in ("", "*"):
        return DateRange(None, None)
    start, sep, end = value.partition("-")
    if not sep or not all(_DATE.fullmatch(part) for part in (start, end) if part):
        return None
    try:
        low, high = (datetime.date(int(p[:4]), int(p[4:6]), int(p[6:])) if p else None
                     for p in (start, end))
    except ValueError:
        return None
    if low is not None and high is not None and low > high:
        return None
    return DateRange(low, high)


def pieces(whole: DateRange, today: datetime.date) -> list[DateRange]:
    """The ranges ``whole`` is first searched in, newest first: an open end becomes an
    open range of its own beyond 1900-01-01 or ``today``, the rest one bounded range."""
    low = whole.low
    if low is None:
        low = EARLIEST if whole.high is None else min(EARLIEST, whole.high)
    high = whole.high if whole.high is not None else max(today, low)
    found = []
    if whole.high is None:
        found.append(DateRange(high + _DAY, None))
    found.append(DateRange(low, high))
    if whole.low is None:
        found.append(DateRange(None, low - _DAY))
    return found


async def split_by_study_date(
    finds: SearchFinds, identifier: Dataset, max_matches: int, *, budget: int = MAX_FINDS,
    today: datetime.date | None = None,
) -> AsyncGenerator[Dataset, None]:
    """The STUDY-level matches for ``identifier``, in as many C-FINDs as the PACS's
    ``max_matches`` requires (see the module's description)."""
    matches, report = await _collect(finds, identifier, max_matches)
    element = identifier.get(_STUDY_DATE)
    whole = parse_range("" if element is None or not element.value else str(element.value))
    if not _hit(matches, report, max_matches) or whole is None:
        _settle(finds, report, hit=_hit(matches, report, max_matches))
        for dataset in matches:
            yield dataset
        return
    add_report(finds.report, report, limit=False)  # got round by splitting
    used = 1
    waiting = list(reversed(pieces(whole, today or datetime.date.today())))
    seen: set[str] = set()
    while waiting:
        piece = waiting.pop()
        matches, report = await _collect(finds, _with_date(identifier, piece), max_matches)
        used += 1
        hit = _hit(matches, report, max_matches)
        halves = piece.halves() if hit else None
        # Split only while every range still waiting can get its C-FIND within the budget.
        if halves is not None and used + len(waiting) + 2 <= budget:
            add_report(finds.report, report, limit=False)
            waiting.extend(halves)  # the newer half is taken first
            continue
        if hit:
            log.debug("PACS '%s': StudyDate %s still hits max_matches (%d) after %d C-FINDs",
                      finds.pacs.name, piece.text, max_matches, used)
        _settle(finds, report, hit=hit)
        for dataset in matches:
            uid = dataset.get(_STUDY_UID)
            key = "" if uid is None or uid.value is None else str(uid.value)
            if key and key in seen:
                continue
            seen.add(key)
            yield dataset


def _hit(matches: list[Dataset], report: FindReport, max_matches: int) -> bool:
    return report.limit_reached or len(matches) >= max_matches


def _settle(finds: SearchFinds, report: FindReport, *, hit: bool) -> None:
    """Add a C-FIND whose matches are passed on as they are: a limit hit there means
    the search is incomplete, whether the PACS said so or just sent ``max_matches``."""
    report.limit_reached |= hit
    add_report(finds.report, report)


async def _collect(
    finds: SearchFinds, identifier: Dataset, max_matches: int,
) -> tuple[list[Dataset], FindReport]:
    """One C-FIND read to its end, or cancelled past ``max_matches`` (the setting may
    be lower than the PACS's real limit: no use reading thousands to split them)."""
    report = FindReport()
    matches: list[Dataset] = []
    async with aclosing(finds.run(QueryLevel.STUDY, identifier, report=report)) as results:
        async for dataset in results:
            matches.append(dataset)
            if len(matches) > max_matches:
                break
    return matches, report


def _with_date(identifier: Dataset, piece: DateRange) -> Dataset:
    query = Dataset()
    query.update(identifier)  # a new data set: the caller's keeps its StudyDate
    query.add_new(_STUDY_DATE, "DA", piece.text)
    return query
