"""Queries over the demo PACS's index: which records a C-FIND identifier matches
and what each response holds, and which instances a C-GET/C-MOVE names.

A record at level L matches when one of its instances matches every key, so a
lower-level key at a higher level (``Modality`` at STUDY level) asks whether
any instance has that value, instead of being silently ignored as DCMTK does.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag

from dicomweb_gw.demo.attribute_matching import element_matches, strings
from dicomweb_gw.demo.computed_keys import (
    COMPUTED,
    Aggregates,
    computed_keys,
    computed_matches,
    computed_value,
)
from dicomweb_gw.demo.index import IndexedInstance
from dicomweb_gw.demo.query_levels import LEVELS, UNIQUE_KEY, Level, depth

__all__ = ["find", "select_instances"]

# Keys that are never matched against the files: control keys and the
# values the SCP computes or states itself.
_CONTROL_KEYWORDS: Final = frozenset(
    {"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle", "InstanceAvailability"}
)


def select_instances(
    instances: Iterable[IndexedInstance], identifier: Dataset
) -> list[IndexedInstance]:
    """The instances a C-GET/C-MOVE identifier names, in study/series/instance order."""
    keys = _matching_keys(identifier)
    return sorted((i for i in instances if _instance_matches(i, keys)), key=_sort_key)


def find(
    instances: Iterable[IndexedInstance],
    level: Level,
    identifier: Dataset,
    *,
    retrieve_ae_title: str,
) -> Iterator[Dataset]:
    """C-FIND responses for ``identifier`` at ``level``, one per matching record."""
    keys = _matching_keys(identifier)
    computed = computed_keys(identifier, level)
    candidates = sorted(instances, key=_sort_key)
    # Only walk the whole index a second time when a computed key needs it.
    aggregates = Aggregates(candidates) if computed else None
    unique_key = UNIQUE_KEY[level]
    answered: set[str] = set()
    for instance in candidates:
        record = instance.value(unique_key)
        if record in answered or not _instance_matches(instance, keys):
            continue
        if aggregates is not None and not computed_matches(computed, aggregates, instance):
            continue
        answered.add(record)
        yield _response(instance, level, identifier, aggregates, retrieve_ae_title)


def _matching_keys(identifier: Dataset) -> list[DataElement]:
    """The identifier's keys that constrain the match (non-empty, not computed)."""
    keys = []
    for elem in identifier:
        if elem.tag.element == 0 or elem.VR == "SQ":
            continue  # group lengths; sequence matching is not supported
        if elem.keyword in _CONTROL_KEYWORDS or elem.keyword in COMPUTED:
            continue
        if any(strings(elem.value)):
            keys.append(elem)
    return keys


def _instance_matches(instance: IndexedInstance, keys: Sequence[DataElement]) -> bool:
    return all(element_matches(key, instance.attrs.get(key.tag)) for key in keys)


def _sort_key(instance: IndexedInstance) -> tuple[str, str, str, str, int, int, str]:
    def number(keyword: str) -> int:
        try:
            return int(float(instance.value(keyword) or 0))
        except ValueError:
            return 0

    return (
        instance.value("PatientID"),
        instance.value("StudyDate"),
        instance.value("StudyTime"),
        instance.value("StudyInstanceUID"),
        number("SeriesNumber"),
        number("InstanceNumber"),
        instance.sop_instance_uid,
    )


def _response(
    instance: IndexedInstance,
    level: Level,
    identifier: Dataset,
    aggregates: Aggregates | None,
    retrieve_ae_title: str,
) -> Dataset:
    """The requested keys, filled from ``instance`` (or its file), plus the unique keys."""
    rsp = Dataset()
    charset = instance.attrs.get("SpecificCharacterSet")
    if charset:
        rsp.SpecificCharacterSet = charset
    from_file: Dataset | None = None
    for elem in identifier:
        keyword = elem.keyword
        if elem.tag.element == 0 or keyword in _CONTROL_KEYWORDS:
            continue
        if keyword in COMPUTED:
            if aggregates is not None and depth(COMPUTED[keyword][0]) <= depth(level):
                rsp.add_new(elem.tag, elem.VR, computed_value(keyword, aggregates, instance))
            else:
                rsp.add_new(elem.tag, elem.VR, None)
            continue
        if elem.tag in instance.omitted and from_file is None:
            from_file = dcmread(instance.path, stop_before_pixels=True)
        rsp[elem.tag] = _copy_element(elem, instance, from_file)
    # The level's unique key is always returned, and so are the UIDs above it
    # (a relational query may omit them, yet the caller needs them to go on).
    for upper in LEVELS[: depth(level) + 1]:
        keyword = UNIQUE_KEY[upper]
        if upper == "PATIENT" and level != "PATIENT":
            continue  # PatientID is a unique key only at PATIENT level (Patient Root)
        if keyword not in rsp and keyword in instance.attrs:
            rsp[keyword] = copy.deepcopy(instance.attrs[keyword])
    rsp.QueryRetrieveLevel = level
    rsp.RetrieveAETitle = retrieve_ae_title
    if "InstanceAvailability" in identifier:
        rsp.InstanceAvailability = "ONLINE"
    return rsp


def _copy_element(
    requested: DataElement, instance: IndexedInstance, from_file: Dataset | None
) -> DataElement:
    tag = Tag(requested.tag)
    if tag in instance.attrs:
        return copy.deepcopy(instance.attrs[tag])
    if from_file is not None and tag in from_file:
        return copy.deepcopy(from_file[tag])
    # Asked for but not in the file: the key comes back zero length, as PS3.4 asks.
    vr = requested.VR if requested.VR != "UN" or tag.is_private else _dictionary_vr(tag)
    return DataElement(tag, vr, None)


def _dictionary_vr(tag: BaseTag) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"
