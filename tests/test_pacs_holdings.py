"""HoldingsFinder: what a C-GET will bring, per series at IMAGE level or by the study's
SOP Classes in Study once the node has shown that is as good.

The finder stands in for a PACS: it answers C-FINDs from a table and records them,
so each test sees which queries a retrieve's look-up cost.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from dicomweb_gw.errors import PacsFailure
from dicomweb_gw.model import RetrieveKeys
from dicomweb_gw.pacs import contexts
from dicomweb_gw.pacs.holdings import HoldingsFinder
from dicomweb_gw.settings import PacsNode

CT = "1.2.840.10008.5.1.4.1.1.2"
SR = "1.2.840.10008.5.1.4.1.1.88.11"
JPEG_LS = "1.2.840.10008.1.2.4.80"
STUDY = "1.2.3"
SERIES = ("1.2.3.1", "1.2.3.2")


class TablePacs:
    """``Finder.collect`` over a study of two series (CT, SR)."""

    def __init__(self, *, study_classes: bool = True, syntax: str | None = None,
                 fails: bool = False) -> None:
        self.node = PacsNode("table", "127.0.0.1", 104, "TABLE")
        self.levels: list[str] = []
        self.study_classes = study_classes
        self.syntax = syntax
        self.fails = fails

    def collect(self, query: Dataset, *, first_only: bool = False) -> list[Dataset]:
        level = str(query.QueryRetrieveLevel)
        self.levels.append(level)
        if self.fails:
            raise PacsFailure(self.node.name, "C-FIND failed")
        if level == "STUDY":
            answer = Dataset()
            answer.StudyInstanceUID = STUDY
            if self.study_classes and "SOPClassesInStudy" in query:
                answer.SOPClassesInStudy = [CT, SR]
            return [answer]
        if level == "SERIES":
            return [_series(uid) for uid in SERIES]
        answer = _series(str(query.SeriesInstanceUID))
        answer.SOPClassUID = CT if query.SeriesInstanceUID == SERIES[0] else SR
        if self.syntax is not None:
            answer.AvailableTransferSyntaxUID = self.syntax
        return [answer]


def _series(uid: str) -> Dataset:
    answer = Dataset()
    answer.StudyInstanceUID, answer.SeriesInstanceUID = STUDY, uid
    return answer


def _classes(found: dict[str, contexts.Holdings]) -> set[str]:
    return {sop_class for holdings in found.values() for sop_class in holdings}


def test_the_first_look_up_is_per_series_and_later_ones_ask_the_study() -> None:
    pacs = TablePacs()
    finder = HoldingsFinder(pacs)  # type: ignore[arg-type]
    first = finder.discover(RetrieveKeys(STUDY))
    assert pacs.levels == ["SERIES", "IMAGE", "IMAGE"]
    assert _classes(first) == {CT, SR}
    pacs.levels.clear()
    for keys in (RetrieveKeys(STUDY), RetrieveKeys(STUDY, SERIES[1])):
        found = finder.discover(keys)
        assert _classes(found) == {CT, SR}  # a series gets its study's classes: a superset
        assert all(not stored for holdings in found.values() for stored in holdings.values())
        assert len(contexts.get_plans(found)) == 1
    assert pacs.levels == ["STUDY", "STUDY"]  # one C-FIND each, none at IMAGE level


def test_a_pacs_naming_stored_syntaxes_is_always_asked_per_series() -> None:
    pacs = TablePacs(syntax=JPEG_LS)
    finder = HoldingsFinder(pacs)  # type: ignore[arg-type]
    for _ in range(2):
        found = finder.discover(RetrieveKeys(STUDY))
        assert found[SERIES[0]] == {CT: {JPEG_LS}}
    assert pacs.levels == ["SERIES", "IMAGE", "IMAGE"] * 2


def test_a_pacs_without_sop_classes_in_study_is_asked_per_series_after_one_try() -> None:
    pacs = TablePacs(study_classes=False)  # dcmqrscp
    finder = HoldingsFinder(pacs)  # type: ignore[arg-type]
    for _ in range(3):
        assert _classes(finder.discover(RetrieveKeys(STUDY))) == {CT, SR}
    per_study = ["SERIES", "IMAGE", "IMAGE"]
    assert pacs.levels == [*per_study, "STUDY", *per_study, *per_study]


def test_a_failed_look_up_leaves_the_common_classes() -> None:
    pacs = TablePacs(fails=True)
    finder = HoldingsFinder(pacs)  # type: ignore[arg-type]
    assert finder.discover(RetrieveKeys(STUDY)) == {}  # get_contexts proposes the common ones
    assert finder.discover(RetrieveKeys(STUDY)) == {}
    assert "STUDY" not in pacs.levels  # nothing learned from a failure
