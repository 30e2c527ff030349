"""Checking each C-FIND match against the QIDO query, for a PACS that ignores some keys.

Some PACS silently ignore matching keys (Fuji Synapse ModalitiesInStudy and
StudyDescription, dcmqrscp keys it does not index) and return every candidate.
With the node's ``post_filter`` on (the default), each match is checked by the
gateway's own PS3.4 matching (``matching.check``) before offset and limit are
applied; a key whose value did not come back cannot be checked and keeps the
match (counts and modalities are derived by ``qido.py`` instead). Off, the PACS
is trusted. Dropped matches are logged, as a warning the first time per node.
"""

from __future__ import annotations

import logging
from collections import Counter

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset

from dicomweb_gw.dicomweb import attributes as attrs
from dicomweb_gw.dicomweb.matching import Verdict, check

__all__ = ["PostFilter", "verdict"]

log = logging.getLogger(__name__)


def verdict(dataset: Dataset, tag: int, wanted: str) -> str:
    """``matching.check``, except that an empty count or ModalitiesInStudy means the PACS
    did not compute it (PS3.4 C.2.2.1.3 lets it return a key it does not support
    empty): the element is removed, so that it is derived, and the verdict is UNKNOWN."""
    element = dataset.get(tag)
    if tag in attrs.DERIVABLE and element is not None and element.value in (None, "", []):
        del dataset[tag]
    return check(dataset, tag, wanted)


class PostFilter:
    """Counts the matches each node's PACS should not have returned, for the log."""

    def __init__(self) -> None:
        self._warned: set[str] = set()

    @staticmethod
    def failed_keys(dataset: Dataset, match: dict[int, str]) -> list[int]:
        """The matching keys ``dataset`` certainly does not satisfy."""
        return [tag for tag, wanted in match.items()
                if verdict(dataset, tag, wanted) == Verdict.NO_MATCH]

    def report(self, node: str, dropped: int, total: int, failed: Counter[int]) -> None:
        """Log the ``dropped`` of ``total`` matches of one search; ``failed`` counts the
        keys they failed."""
        if not dropped:
            return
        keys = ", ".join(f"{keyword_for_tag(tag) or f'{tag:08X}'} ({count})"
                         for tag, count in failed.most_common())
        message = ("PACS '%s' returned %d of %d match(es) that do not satisfy the query "
                   "(failed keys: %s); the gateway dropped them")
        if node in self._warned:
            log.debug(message, node, dropped, total, keys)
            return
        self._warned.add(node)
        log.warning(message + ". It ignores or loosens these matching keys; set "
                    "post_filter = false for node '%s' only to trust it as it is",
                    node, dropped, total, keys, node)
