"""Level-by-level C-FINDs for a PACS that answers hierarchical queries only.

PS3.4 C.4.1.2.1 lets a PACS refuse a SERIES or IMAGE query that does not give a
single UID for every level above it (dcm4chee-arc without relational queries,
dcmqrscp for IMAGE queries without the series). All Series (``/series``), All
Instances (``/instances``) and Study's Instances (``/studies/{uid}/instances``)
are then walked: the matching parents first, then one C-FIND per parent with
its UID, the child's own keys and the parent's attributes copied into each match
(a relational answer carries them; a client of ``/series`` expects them).

The node's ``relational`` setting: True never walks (a refusal is an error),
False always walks without asking first, None (auto) asks once per level and,
on a refusal, walks from then on (remembered per node and level).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing

from pydicom.dataset import Dataset

from dicomweb_gw.dicomweb import attributes as attrs
from dicomweb_gw.dicomweb.search_finds import SearchFinds
from dicomweb_gw.errors import PacsFailure
from dicomweb_gw.model import QueryLevel

__all__ = ["LevelWalk", "StudyFind"]

log = logging.getLogger(__name__)

#: How a STUDY-level identifier is searched (one C-FIND, or split by StudyDate).
StudyFind = Callable[[Dataset], AsyncGenerator[Dataset, None]]


class LevelWalk:
    """C-FINDs at any level, walking from the parents for a PACS that wants their UIDs."""

    def __init__(self) -> None:
        #: (node, level) pairs where the PACS refused a relational query.
        self._hierarchical: set[tuple[str, QueryLevel]] = set()

    async def find(
        self, finds: SearchFinds, level: QueryLevel, identifier: Dataset, *,
        relational: bool | None, studies: StudyFind, buffered: bool = False,
    ) -> AsyncGenerator[Dataset, None]:
        """The matches of ``identifier`` at ``level``. ``buffered`` reads each C-FIND to
        its end before passing its matches on: a walk runs its child C-FINDs between
        them, and holding the parent's C-FIND open would take a second association."""
        if level is QueryLevel.STUDY:
            async with aclosing(_passed_on(studies(identifier), buffered)) as found:
                async for dataset in found:
                    yield dataset
            return
        known = (finds.pacs.name, level) in self._hierarchical
        if not _lacks_parent_uid(identifier, level) or relational is True or (
                relational is None and not known):
            yielded = False
            try:
                direct = _passed_on(finds.run(level, identifier), buffered)
                async with aclosing(direct) as found:
                    async for dataset in found:
                        yielded = True
                        yield dataset
                return
            except PacsFailure as refusal:
                if yielded or relational is True or not _lacks_parent_uid(identifier, level):
                    raise
                self._remember(finds.pacs.name, level, refusal)
        finds.report.walked = True
        async with aclosing(self._walk(finds, level, identifier, relational, studies)) as found:
            async for dataset in found:
                yield dataset

    async def _walk(
        self, finds: SearchFinds, level: QueryLevel, identifier: Dataset,
        relational: bool | None, studies: StudyFind,
    ) -> AsyncGenerator[Dataset, None]:
        parent = attrs.parent_level(level)
        assert parent is not None  # STUDY is never walked
        parents = self.find(finds, parent, _restrict(identifier, parent),
                            relational=relational, studies=studies, buffered=True)
        async with aclosing(parents) as found:
            async for parent_dataset in found:
                query = _child_query(identifier, level, parent_dataset)
                if query is None:
                    continue  # a parent without its UIDs cannot be asked about
                # Read to the end: the caller may walk below these while we wait.
                children = [ds async for ds in finds.run(level, query)]
                for dataset in children:
                    for element in parent_dataset:
                        if element.tag not in dataset:
                            dataset.add(element)
                    yield dataset

    def _remember(self, node: str, level: QueryLevel, refusal: PacsFailure) -> None:
        self._hierarchical.add((node, level))
        log.info("PACS '%s' refused a %s-level C-FIND without every parent UID (%s): "
                 "walking level by level from now on (set relational = false for node '%s' "
                 "to skip asking)", node, level.value,
                 refusal.message.removeprefix(f"PACS '{node}': "), node)


async def _passed_on(
    results: AsyncGenerator[Dataset, None], buffered: bool,
) -> AsyncGenerator[Dataset, None]:
    async with aclosing(results) as found:
        if buffered:
            collected = [dataset async for dataset in found]
            for dataset in collected:
                yield dataset
        else:
            async for dataset in found:
                yield dataset


def _single_uid(dataset: Dataset, tag: int) -> str:
    """The one UID ``dataset`` gives for ``tag``; "" if none, empty, or a list."""
    element = dataset.get(tag)
    if element is None or element.value is None or element.VM != 1:
        return ""
    text = str(element.value).strip()
    return "" if "\\" in text else text


def _lacks_parent_uid(identifier: Dataset, level: QueryLevel) -> bool:
    """Whether a hierarchical PACS would refuse this: some level above ``level`` is not
    pinned to one UID (an empty element is a return key, not a UID)."""
    return any(not _single_uid(identifier, attrs.UID_OF_LEVEL[upper])
               for upper in attrs.levels_down_to(level)[:-1])


def _child_query(identifier: Dataset, level: QueryLevel, parent: Dataset) -> Dataset | None:
    """``identifier`` for the children of ``parent``: the UIDs above pinned, the keys
    of the levels above left out (the parent matched them; its attributes are copied
    into the results instead)."""
    uids: dict[int, str] = {}
    for upper in attrs.levels_down_to(level)[:-1]:
        tag = attrs.UID_OF_LEVEL[upper]
        uids[tag] = _single_uid(parent, tag) or _single_uid(identifier, tag)
        if not uids[tag]:
            return None
    own = set(attrs.level_attributes(level))
    above = {tag for upper in attrs.levels_down_to(level)[:-1]
             for tag in attrs.level_attributes(upper)} - own
    query = Dataset()
    for element in identifier:
        if element.tag not in above:
            query.add(element)
    for tag, uid in uids.items():
        query.add_new(tag, "UI", uid)
    return query


def _restrict(identifier: Dataset, level: QueryLevel) -> Dataset:
    """The part of ``identifier`` that belongs to ``level`` and the levels above it."""
    keep = {tag for upper in attrs.levels_down_to(level) for tag in attrs.level_attributes(upper)}
    query = Dataset()
    for element in identifier:
        if element.tag in keep or element.tag == attrs.SPECIFIC_CHARACTER_SET:
            query.add(element)
    return query
