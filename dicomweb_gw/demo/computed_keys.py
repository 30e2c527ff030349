"""The C-FIND keys the demo PACS computes instead of reading from files.

Counts (NumberOfStudyRelatedInstances...) and lists (ModalitiesInStudy,
SOPClassesInStudy) worked out over the whole index (PS3.4 C.6.1.1, C.6.2.1).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from dicomweb_gw.demo.attribute_matching import element_matches
from dicomweb_gw.demo.index import IndexedInstance
from dicomweb_gw.demo.query_levels import Level, depth

__all__ = ["COMPUTED", "Aggregates", "computed_keys", "computed_matches", "computed_value"]


class Aggregates:
    """Per patient/study/series counts over the whole index, for the computed keys."""

    def __init__(self, instances: Iterable[IndexedInstance]) -> None:
        self.patient_studies: defaultdict[str, set[str]] = defaultdict(set)
        self.patient_series: defaultdict[str, set[str]] = defaultdict(set)
        self.patient_instances: Counter[str] = Counter()
        self.study_series: defaultdict[str, set[str]] = defaultdict(set)
        self.study_instances: Counter[str] = Counter()
        self.study_modalities: defaultdict[str, set[str]] = defaultdict(set)
        self.study_sop_classes: defaultdict[str, set[str]] = defaultdict(set)
        self.series_instances: Counter[str] = Counter()
        for instance in instances:
            patient, study, series = (
                instance.value("PatientID"),
                instance.value("StudyInstanceUID"),
                instance.value("SeriesInstanceUID"),
            )
            self.patient_studies[patient].add(study)
            self.patient_series[patient].add(series)
            self.patient_instances[patient] += 1
            self.study_series[study].add(series)
            self.study_instances[study] += 1
            if modality := instance.value("Modality"):
                self.study_modalities[study].add(modality)
            self.study_sop_classes[study].add(instance.sop_class_uid)
            self.series_instances[series] += 1


_Compute = Callable[[Aggregates, IndexedInstance], "int | list[str]"]


def _count(keyword: str, table: Callable[[Aggregates], Counter[str]]) -> _Compute:
    return lambda agg, inst: int(table(agg)[inst.value(keyword)])


def _size(keyword: str, table: Callable[[Aggregates], defaultdict[str, set[str]]]) -> _Compute:
    return lambda agg, inst: len(table(agg)[inst.value(keyword)])


def _values(keyword: str, table: Callable[[Aggregates], defaultdict[str, set[str]]]) -> _Compute:
    return lambda agg, inst: sorted(table(agg)[inst.value(keyword)])


# keyword -> (the shallowest query level it makes sense at, how to compute it)
COMPUTED: Final[dict[str, tuple[Level, _Compute]]] = {
    "NumberOfPatientRelatedStudies": ("PATIENT", _size("PatientID", lambda a: a.patient_studies)),
    "NumberOfPatientRelatedSeries": ("PATIENT", _size("PatientID", lambda a: a.patient_series)),
    "NumberOfPatientRelatedInstances": (
        "PATIENT",
        _count("PatientID", lambda a: a.patient_instances),
    ),
    "NumberOfStudyRelatedSeries": ("STUDY", _size("StudyInstanceUID", lambda a: a.study_series)),
    "NumberOfStudyRelatedInstances": (
        "STUDY",
        _count("StudyInstanceUID", lambda a: a.study_instances),
    ),
    "ModalitiesInStudy": ("STUDY", _values("StudyInstanceUID", lambda a: a.study_modalities)),
    "SOPClassesInStudy": ("STUDY", _values("StudyInstanceUID", lambda a: a.study_sop_classes)),
    "NumberOfSeriesRelatedInstances": (
        "SERIES",
        _count("SeriesInstanceUID", lambda a: a.series_instances),
    ),
}


def computed_keys(identifier: Dataset, level: Level) -> list[DataElement]:
    """The computed keys asked for that make sense at this level."""
    return [
        elem
        for elem in identifier
        if elem.keyword in COMPUTED and depth(COMPUTED[elem.keyword][0]) <= depth(level)
    ]


def computed_value(keyword: str, aggregates: Aggregates, instance: IndexedInstance) -> object:
    return COMPUTED[keyword][1](aggregates, instance)


def computed_matches(
    keys: Sequence[DataElement], aggregates: Aggregates, instance: IndexedInstance
) -> bool:
    """ModalitiesInStudy/SOPClassesInStudy constrain the match; counts are return keys."""
    for key in keys:
        if key.keyword.startswith("NumberOf"):
            continue
        values = computed_value(key.keyword, aggregates, instance)
        stored = DataElement(key.tag, key.VR, values)
        if not element_matches(key, stored):
            return False
    return True
