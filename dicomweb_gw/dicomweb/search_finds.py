"""The C-FINDs of one QIDO search, and what the node's settings say about them.

A search may take many C-FINDs: one per StudyDate range for a PACS with a match
limit (``date_split.py``), one per parent for a PACS that answers hierarchical
queries only (``walk.py``), more to derive counts and parents' attributes. Each
gets a ``FindReport`` of its own; ``SearchFinds.report`` sums them up, so the
search can tell its client that a PACS stopped at its match limit somewhere.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

from pydicom.dataset import Dataset

from dicomweb_gw.model import FindReport, QueryLevel
from dicomweb_gw.pacs.protocol import PacsClient

__all__ = ["SearchFinds", "add_report"]


def add_report(total: FindReport, part: FindReport, *, limit: bool = True) -> None:
    """Add what one C-FIND reported to a search's ``total``; ``limit=False`` leaves out a
    match limit that the caller got round (a date range it split further)."""
    total.limit_reached |= limit and part.limit_reached
    total.empty_pending += part.empty_pending
    total.walked |= part.walked


class SearchFinds:
    """Runs the C-FINDs of one search on ``pacs``, each with its own ``FindReport``."""

    def __init__(self, pacs: PacsClient, *, max_matches: int = 0) -> None:
        self.pacs = pacs
        self._max_matches = max_matches
        #: What every C-FIND of the search left unsaid, summed up.
        self.report = FindReport()

    async def run(
        self, level: QueryLevel, identifier: Dataset, *, report: FindReport | None = None,
    ) -> AsyncGenerator[Dataset, None]:
        """One C-FIND. With ``report`` the caller reads it and adds it to ``self.report``
        itself (``add_report``); without, it is added here once the C-FIND ends."""
        own = FindReport() if report is None else report
        received = 0
        try:
            async with aclosing(self.pacs.find(level, identifier, report=own)) as results:
                async for dataset in results:
                    received += 1
                    yield dataset
            # Ended by the PACS, not by us: exactly its known limit means it stopped there
            # (the PACS client says so too; another backend may not).
            if 0 < self._max_matches <= received:
                own.limit_reached = True
        finally:
            if report is None:
                add_report(self.report, own)
