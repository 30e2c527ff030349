"""QIDO-RS: a search becomes one or more C-FINDs, then DICOM JSON.

Results are bounded: at most ``max_results`` per request (the client's limit
is capped to it) and the C-FIND is cancelled as soon as the page is full, so
a broad query on a big PACS never pulls everything into memory.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset

from dicomweb_gw.dicomweb import attributes as attrs
from dicomweb_gw.dicomweb.date_split import split_by_study_date
from dicomweb_gw.dicomweb.dicomjson import to_dicom_json
from dicomweb_gw.dicomweb.matching import Verdict
from dicomweb_gw.dicomweb.post_filter import PostFilter, verdict
from dicomweb_gw.dicomweb.query import FLOAT_VRS, INTEGER_RANGES, QidoQuery, vr_of
from dicomweb_gw.dicomweb.search_finds import SearchFinds
from dicomweb_gw.dicomweb.walk import LevelWalk
from dicomweb_gw.model import FindReport, QueryLevel
from dicomweb_gw.pacs.protocol import PacsClient
from dicomweb_gw.settings import PacsNode

__all__ = ["QidoResult", "QidoService"]

#: PS3.18 8.3.4 (limit and offset): the Warning when more results exist than a response carries.
MORE_RESULTS = ("The number of results exceeded the maximum supported by the server. "
                "Additional results can be requested.")
#: Candidates kept while waiting for a further C-FIND to settle a key the PACS ignored.
_CANDIDATE_FACTOR = 4
#: C-FINDs at once while deriving attributes (a PACS node allows 4 associations by default).
_DERIVE_CONCURRENCY = 4
_BINARY_NUMBERS = frozenset(INTEGER_RANGES) | FLOAT_VRS
#: Extra attributes for ``includefield=all`` beyond the required ones.
_ALL_EXTRA = {
    QueryLevel.STUDY: (0x00081030, 0x00080020, 0x00100010, 0x00101010, 0x00080080, 0x00321060),
    QueryLevel.SERIES: (0x00080021, 0x00080031, 0x00180015, 0x00200060, 0x00080070),
    QueryLevel.IMAGE: (0x00080008, 0x00080023, 0x00080033, 0x00200020, 0x00280004),
}


@dataclass
class QidoResult:
    items: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    #: What the search's C-FINDs left unsaid (match limit, empty Pending responses, walked).
    report: FindReport = field(default_factory=FindReport)


class QidoService:
    def __init__(self, *, max_results: int) -> None:
        self._max_results = max_results
        self._walk = LevelWalk()
        self._post_filter = PostFilter()

    async def search(
        self, pacs: PacsClient, query: QidoQuery, *, base_url: str, fresh: bool = False
    ) -> QidoResult:
        """Search ``pacs``. ``fresh`` (the client sent ``Cache-Control: no-cache``) is
        for services that cache answers; this one always asks the PACS."""
        warnings: list[str] = []
        limit = self._max_results if query.limit is None else min(query.limit, self._max_results)
        if query.limit is not None and query.limit > self._max_results:
            warnings.append(f"limit capped to {self._max_results} results per request")
        if query.fuzzy:
            warnings.append("fuzzy matching is not supported; only literal matching was done")

        quirks = pacs.node
        finds = SearchFinds(pacs, max_matches=quirks.max_matches)
        wanted = query.offset + limit + 1  # one more than the page tells us if there is more
        derivable_keys = [tag for tag in query.match if tag in attrs.DERIVABLE]
        if not quirks.post_filter:
            derivable_keys = []  # the PACS is trusted: nothing to derive for matching
        cap = wanted if not derivable_keys else wanted * _CANDIDATE_FACTOR
        candidates: list[Dataset] = []
        received, failed = 0, Counter[int]()
        found = self._find(finds, quirks, query.level, self._identifier(query))
        async with aclosing(found) as results:
            async for dataset in results:
                received += 1
                failing = (PostFilter.failed_keys(dataset, query.match)
                           if quirks.post_filter else [])
                if failing:
                    failed.update(failing)
                    continue
                candidates.append(dataset)
                if len(candidates) >= cap:
                    break
        hit_cap = len(candidates) >= cap

        derived = _Deriver(finds)
        # Deriving means a C-FIND per candidate (a PACS that cannot match on
        # ModalitiesInStudy returns every study): a few at once, not one by one.
        gate = asyncio.Semaphore(_DERIVE_CONCURRENCY)

        async def failing_after_deriving(dataset: Dataset) -> int | None:
            if not quirks.post_filter:
                return None
            async with gate:
                return await self._failing_after_deriving(dataset, query, derived)

        judged = await asyncio.gather(*(failing_after_deriving(ds) for ds in candidates))
        matches = [ds for ds, failing in zip(candidates, judged, strict=True) if failing is None]
        failed.update(tag for tag in judged if tag is not None)
        dropped = received - len(matches)  # by the first check, or once derived
        self._post_filter.report(pacs.name, dropped, received, failed)
        more = len(matches) > query.offset + limit or (hit_cap and derivable_keys != [])
        page = matches[query.offset : query.offset + limit]
        asked = set(query.include) | (attrs.DERIVABLE if query.include_all else set())
        parents = _Parents(finds, query)
        items = []
        for dataset in page:
            await derived.fill(dataset, query.level, asked)
            await parents.fill(dataset)
            items.append(to_dicom_json(dataset, _retrieve_url(dataset, query.level, base_url)))
        # Last: deriving and the parents' attributes take C-FINDs that may hit a limit too.
        if more or finds.report.limit_reached:
            warnings.append(MORE_RESULTS)
        if finds.report.limit_reached:
            warnings.append(_limit_warning(pacs.name, query.level, quirks))
        return QidoResult(items=items, warnings=warnings, report=finds.report)

    async def _failing_after_deriving(
        self, dataset: Dataset, query: QidoQuery, derived: _Deriver
    ) -> int | None:
        """The first matching key ``dataset`` fails once what the PACS left out is
        derived, or None if it matches."""
        for tag, value in query.match.items():
            result = verdict(dataset, tag, value)
            if result == Verdict.UNKNOWN and tag in attrs.DERIVABLE:
                await derived.fill(dataset, query.level, {tag})
                result = verdict(dataset, tag, value)
            if result == Verdict.NO_MATCH:
                return tag
        return None

    def _identifier(self, query: QidoQuery) -> Dataset:
        tags = list(attrs.requested_attributes(query.level))
        tags.extend(query.include)
        if query.include_all:
            tags.extend(tag for level in attrs.levels_down_to(query.level)
                        for tag in _ALL_EXTRA[level])
        tags.extend(_creators_of([*tags, *query.match]))
        identifier = Dataset()
        for tag in dict.fromkeys(tags):
            _set(identifier, tag, None)
        for tag, value in query.match.items():
            _set(identifier, tag, value)
        if any(not value.isascii() for value in query.match.values()):
            identifier.SpecificCharacterSet = "ISO_IR 192"
        return identifier

    def _find(
        self, finds: SearchFinds, quirks: PacsNode, level: QueryLevel, identifier: Dataset,
    ) -> AsyncGenerator[Dataset, None]:
        """The C-FINDs of a search: study searches split by StudyDate for a PACS with a
        match limit, lower levels walked from their parents for a hierarchical PACS."""
        def studies(study_identifier: Dataset) -> AsyncGenerator[Dataset, None]:
            if quirks.max_matches > 0:
                return split_by_study_date(finds, study_identifier, quirks.max_matches)
            return finds.run(QueryLevel.STUDY, study_identifier)

        return self._walk.find(finds, level, identifier, relational=quirks.relational,
                               studies=studies)


def _limit_warning(node: str, level: QueryLevel, quirks: PacsNode) -> str:
    """Why results are missing, and what helps: PS3.18's Warning text alone suggests paging,
    which cannot get past a PACS's match limit."""
    text = f"PACS '{node}' stopped at its match limit, so some matches are missing"
    if level is not QueryLevel.STUDY:
        return f"{text}; narrow the query"
    if quirks.max_matches > 0:
        return f"{text} even with the search split by StudyDate; narrow the query"
    return (f"{text}; narrow the query, or set max_matches for node '{node}' to split "
            "study searches by StudyDate")


class _Deriver:
    """Computes counts and modalities a PACS left out, with further C-FINDs (cached per request)."""

    def __init__(self, finds: SearchFinds) -> None:
        self._finds = finds
        self._series: dict[str, list[Dataset]] = {}

    async def fill(self, dataset: Dataset, level: QueryLevel, asked: set[int]) -> None:
        missing = {tag for tag in asked & attrs.DERIVABLE if tag not in dataset}
        study_uid = str(dataset.get("StudyInstanceUID", ""))
        if not missing or not study_uid:
            return
        if level is QueryLevel.STUDY:
            await self._fill_study(dataset, study_uid, missing)
        elif level is QueryLevel.SERIES and attrs.SERIES_RELATED_INSTANCES in missing:
            series_uid = str(dataset.get("SeriesInstanceUID", ""))
            if series_uid:
                dataset.NumberOfSeriesRelatedInstances = await self._count_instances(
                    study_uid, series_uid)

    async def _fill_study(self, dataset: Dataset, study_uid: str, missing: set[int]) -> None:
        series = await self._series_of(study_uid)
        if attrs.MODALITIES_IN_STUDY in missing:
            modalities = sorted({str(s.Modality) for s in series if s.get("Modality")})
            dataset.ModalitiesInStudy = modalities
        if attrs.STUDY_RELATED_SERIES in missing:
            dataset.NumberOfStudyRelatedSeries = len(series)
        if attrs.STUDY_RELATED_INSTANCES in missing:
            total = 0
            for item in series:
                count = item.get("NumberOfSeriesRelatedInstances")
                if count is None or count == "":
                    count = await self._count_instances(study_uid, str(item.SeriesInstanceUID))
                total += int(count)
            dataset.NumberOfStudyRelatedInstances = total

    async def _series_of(self, study_uid: str) -> list[Dataset]:
        if study_uid not in self._series:
            query = Dataset()
            query.StudyInstanceUID = study_uid
            query.SeriesInstanceUID = ""
            query.Modality = ""
            query.NumberOfSeriesRelatedInstances = None
            self._series[study_uid] = [
                ds async for ds in self._finds.run(QueryLevel.SERIES, query)
                if ds.get("SeriesInstanceUID")
            ]
        return self._series[study_uid]

    async def _count_instances(self, study_uid: str, series_uid: str) -> int:
        query = Dataset()
        query.StudyInstanceUID = study_uid
        query.SeriesInstanceUID = series_uid
        query.SOPInstanceUID = ""
        return len([ds async for ds in self._finds.run(QueryLevel.IMAGE, query)])


class _Parents:
    """The parent attributes an All Series or All Instances result must carry (PS3.18
    Tables 10.6.3-3/4/5), fetched when the PACS left them out: a strictly hierarchical
    SCP answers only the keys of the query level. One C-FIND per parent, per request."""

    def __init__(self, finds: SearchFinds, query: QidoQuery) -> None:
        self._finds = finds
        self._found: dict[tuple[QueryLevel, str], Dataset | None] = {}
        self._required = _required_parent_keys(query)

    async def fill(self, dataset: Dataset) -> None:
        for upper, own in self._required:
            if any(tag in dataset for tag in own):
                continue  # the PACS does return this level's keys
            parent = await self._parent(dataset, upper)
            for element in parent or ():
                if element.tag not in dataset:
                    dataset.add(element)

    async def _parent(self, dataset: Dataset, level: QueryLevel) -> Dataset | None:
        uids = {attrs.UID_OF_LEVEL[upper]: _text(dataset, attrs.UID_OF_LEVEL[upper])
                for upper in attrs.levels_down_to(level)}
        if not all(uids.values()):
            return None
        key = (level, uids[attrs.UID_OF_LEVEL[level]])
        if key not in self._found:
            identifier = Dataset()
            for tag in attrs.level_attributes(level):
                _set(identifier, tag, None)
            for tag, uid in uids.items():
                _set(identifier, tag, uid)
            async with aclosing(self._finds.run(level, identifier)) as results:
                self._found[key] = await anext(results, None)
        return self._found[key]


def _text(dataset: Dataset, tag: int) -> str:
    element = dataset.get(tag)
    return "" if element is None or element.value is None else str(element.value)


def _required_parent_keys(query: QidoQuery) -> list[tuple[QueryLevel, list[int]]]:
    """Each parent level whose own attributes the result must carry, nearest parent first,
    with those attributes: the same for every result of a query, so worked out once."""
    # A parent the URL names (/studies/{study}/series) only has its UID required.
    required = set(attrs.required_attributes(query.level, scope=query.scope))
    levels = attrs.levels_down_to(query.level)
    found: list[tuple[QueryLevel, list[int]]] = []
    for index in range(len(levels) - 2, -1, -1):
        upper = levels[index]
        # Timezone Offset and the like belong to several levels: the lower ones decide.
        below = {tag for lower in levels[index + 1:] for tag in attrs.level_attributes(lower)}
        own = [tag for tag in attrs.level_attributes(upper)
               if tag in required and tag not in below
               and tag != attrs.UID_OF_LEVEL[upper] and tag not in attrs.DERIVABLE]
        if own:
            found.append((upper, own))
    return found


def _creators_of(tags: list[int]) -> list[int]:
    """The Private Creators of the private elements among ``tags``: without its creator
    a private element can neither be matched nor interpreted by the client."""
    creators = (attrs.private_creator(tag) for tag in tags)
    return [creator for creator in creators if creator is not None]


def _set(dataset: Dataset, tag: int, value: str | None) -> None:
    vr = vr_of(tag)
    if vr == "SQ":
        dataset.add_new(tag, vr, [])
    elif value in (None, ""):
        # Universal matching; binary VRs are encoded empty from None, not "".
        dataset.add_new(tag, vr, None if vr in _BINARY_NUMBERS else value)
    elif vr in INTEGER_RANGES:
        dataset.add_new(tag, vr, int(value))  # checked by parse_query
    elif vr in FLOAT_VRS:
        dataset.add_new(tag, vr, float(value))
    elif vr == "UN":  # a private attribute: its value goes as bytes, of even length
        raw = value.encode()
        dataset.add_new(tag, vr, raw + b" " * (len(raw) % 2))
    else:
        dataset.add_new(tag, vr, value)


def _retrieve_url(dataset: Dataset, level: QueryLevel, base_url: str) -> dict[str, Any]:
    study = str(dataset.get("StudyInstanceUID", ""))
    if not study:
        return {}
    url = f"{base_url}/studies/{study}"
    if level is not QueryLevel.STUDY:
        series = str(dataset.get("SeriesInstanceUID", ""))
        if not series:
            return {}
        url += f"/series/{series}"
        if level is QueryLevel.IMAGE:
            instance = str(dataset.get("SOPInstanceUID", ""))
            if not instance:
                return {}
            url += f"/instances/{instance}"
    return {f"{attrs.RETRIEVE_URL:08X}": {"vr": "UR", "Value": [url]}}
