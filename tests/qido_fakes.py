"""A fake ``PacsClient`` for the QIDO unit tests: relational, or hierarchical only, with a
match limit and ignored keys, answering from a list of instance records.

(No name here starts with ``test``: pytest would collect it in every module importing it.)
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Mapping
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicomweb_gw.dicomweb.matching import Verdict, check
from dicomweb_gw.errors import PacsFailure
from dicomweb_gw.model import FindReport, QueryLevel
from dicomweb_gw.settings import PacsNode

UNIQUE = {QueryLevel.STUDY: "StudyInstanceUID", QueryLevel.SERIES: "SeriesInstanceUID",
          QueryLevel.IMAGE: "SOPInstanceUID"}
_PARENTS = {QueryLevel.STUDY: (), QueryLevel.SERIES: ("StudyInstanceUID",),
            QueryLevel.IMAGE: ("StudyInstanceUID", "SeriesInstanceUID")}


def instance(study: int, series: int, number: int, *, date: str = "20200101",
             modality: str = "CT", description: str = "Chest", **extra: str) -> dict[str, str]:
    """One instance record: study ``study``, its series ``series``, instance ``number``."""
    return {"StudyInstanceUID": f"1.2.{study}", "SeriesInstanceUID": f"1.2.{study}.{series}",
            "SOPInstanceUID": f"1.2.{study}.{series}.{number}", "StudyDate": date,
            "PatientName": f"Doe^{study}", "PatientID": f"P{study}",
            "StudyDescription": description, "Modality": modality,
            "InstanceNumber": str(number), **extra}


@dataclass
class FakePacs:
    """Answers C-FIND from ``records`` (one dict of keyword -> value per instance)."""

    records: list[dict[str, str]]
    #: At most this many matches per C-FIND, then 0xA700 (``refuse``) or plain Success.
    limit: int | None = None
    refuse: bool = True
    #: SERIES/IMAGE C-FINDs without one UID for every parent level fail (0xA900).
    hierarchical: bool = False
    #: Matching keys (keywords) ignored: every candidate comes back.
    ignored: tuple[str, ...] = ()
    node_settings: Mapping[str, object] | None = None
    name: str = "fake"
    finds: list[tuple[QueryLevel, Dataset]] = field(default_factory=list)

    @property
    def node(self) -> PacsNode:
        return PacsNode(name=self.name, host="127.0.0.1", port=104, ae_title="FAKE",
                        **dict(self.node_settings or {}))  # type: ignore[arg-type]

    def levels_asked(self) -> list[QueryLevel]:
        return [level for level, _ in self.finds]

    async def find(self, level: QueryLevel, identifier: Dataset, *,
                   report: FindReport | None = None) -> AsyncGenerator[Dataset, None]:
        asked = Dataset()
        asked.update(identifier)
        self.finds.append((level, asked))
        if self.hierarchical and any(not _single(identifier, keyword)
                                     for keyword in _PARENTS[level]):
            raise PacsFailure(self.name, "C-FIND failed: identifier does not match (0xA900)")
        for count, answer in enumerate(self._answers(level, identifier)):
            if self.limit is not None and count >= self.limit:
                if self.refuse and report is not None:
                    report.limit_reached = True
                return
            yield answer

    def _answers(self, level: QueryLevel, identifier: Dataset) -> Iterable[Dataset]:
        seen: set[str] = set()
        for record in self.records:
            key = record[UNIQUE[level]]
            if key in seen or not self._matches(record, identifier):
                continue
            seen.add(key)
            answer = Dataset()
            held = _dataset(record)
            for element in identifier:
                if element.keyword in held:
                    answer[element.tag] = held[element.tag]
            for keyword in (*_PARENTS[level], UNIQUE[level]):
                setattr(answer, keyword, record[keyword])
            yield answer

    def _matches(self, record: dict[str, str], identifier: Dataset) -> bool:
        held = _dataset(record)
        for element in identifier:
            if element.keyword in self.ignored or element.keyword not in record:
                continue
            wanted = _text(element.value)
            if check(held, element.tag, wanted) == Verdict.NO_MATCH:
                return False
        return True


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        return "\\".join(str(item) for item in value)
    return str(value)


def _single(identifier: Dataset, keyword: str) -> bool:
    text = _text(identifier.get(keyword))
    return bool(text) and "\\" not in text


def _dataset(record: dict[str, str]) -> Dataset:
    ds = Dataset()
    for keyword, value in record.items():
        setattr(ds, keyword, value.split("\\") if "\\" in value else value)
    return ds
