"""In-memory index of the demo PACS's files, and C-FIND matching over it.

The files stay on disk. For each instance the index keeps only what matching
needs: the top-level attributes without sequences or bulk data (pixel data is
never read). When a C-FIND asks for something the index left out (a sequence,
say) the response is filled from the file itself, so responses always carry
what the files hold.

Matching follows PS3.4 C.2.2.2 closely enough to be a believable PACS:
single value, wildcard (``*``, ``?``), range (``A-B``, ``A-``, ``-B`` for DA,
TM and DT), list of values (``a\\b``, meant for UIDs, accepted for any VR) and
universal (empty) matching. PN matching ignores case, which PS3.4 allows and
Orthanc does; every other VR is matched literally.

A record at level L matches when one of its instances matches every key, so a
lower-level key at a higher level (``Modality`` at STUDY level) asks whether
any instance has that value, instead of being silently ignored as DCMTK does.

Not supported: sequence matching, combined date-time matching, DT range bounds
with a negative UTC offset (the ``-`` reads as the range separator).
"""

from __future__ import annotations

import copy
import logging
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final, Literal

from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag

__all__ = [
    "LEVELS",
    "IndexedInstance",
    "InstanceIndex",
    "Level",
    "QueryError",
    "find",
    "query_level",
    "read_instance",
    "select_instances",
]

LOGGER = logging.getLogger("dicomweb_gw.demo")

Level = Literal["PATIENT", "STUDY", "SERIES", "IMAGE"]
LEVELS: Final[tuple[Level, ...]] = ("PATIENT", "STUDY", "SERIES", "IMAGE")

# The unique key of each level (PS3.4 C.6, Patient and Study Root models).
_UNIQUE_KEY: Final[dict[Level, str]] = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}

# Elements larger than this (binary VRs) stay out of the index; a C-FIND that
# asks for one gets it from the file.
_MAX_INDEXED_BINARY: Final = 1024
_BINARY_VRS: Final = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_NUMERIC_VRS: Final = frozenset({"DS", "FD", "FL", "IS", "SL", "SS", "SV", "UL", "US", "UV"})
_TEMPORAL_WIDTH: Final = {"DA": 8, "TM": 6, "DT": 14}

# Keys that are never matched against the files: control keys and the
# values the SCP computes or states itself.
_CONTROL_KEYWORDS: Final = frozenset(
    {"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle", "InstanceAvailability"}
)


class QueryError(ValueError):
    """The identifier cannot be answered (the SCP replies 0xA900)."""


@dataclass(frozen=True)
class IndexedInstance:
    """One stored file: where it is and the attributes matching needs."""

    path: Path
    attrs: Dataset
    transfer_syntax: str
    omitted: frozenset[BaseTag]
    """Tags present in the file but left out of ``attrs`` (sequences, bulk data)."""

    def value(self, keyword: str) -> str:
        """The attribute as a stripped string ('' when absent or empty)."""
        value = self.attrs.get(keyword)  # by keyword: the value, not the element
        return "" if value is None else str(value).strip()

    @property
    def sop_instance_uid(self) -> str:
        return self.value("SOPInstanceUID")

    @property
    def sop_class_uid(self) -> str:
        return self.value("SOPClassUID")


def read_instance(path: Path) -> IndexedInstance | None:
    """Index one file; None (logged) if it is not a DICOM instance we can serve."""
    try:
        ds = dcmread(path, stop_before_pixels=True)
        transfer_syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "")
        if not transfer_syntax or not ds.get("SOPInstanceUID") or not ds.get("SOPClassUID"):
            LOGGER.warning("not indexing %s: no transfer syntax, SOP Class or Instance UID", path)
            return None
        attrs, omitted = _searchable(ds)
    except Exception as exc:  # a folder may hold anything: skip it, don't fail the scan
        LOGGER.debug("not indexing %s: %s", path, exc)
        return None
    return IndexedInstance(path, attrs, transfer_syntax, omitted)


def _searchable(ds: Dataset) -> tuple[Dataset, frozenset[BaseTag]]:
    """The top-level attributes worth keeping in memory, and the tags left out."""
    attrs = Dataset()
    omitted: set[BaseTag] = set()
    for elem in ds:  # iterating converts raw elements, decoding text with the file's charset
        if elem.VR == "SQ" or (elem.VR in _BINARY_VRS and _length(elem) > _MAX_INDEXED_BINARY):
            omitted.add(elem.tag)
        else:
            attrs.add(elem)
    return attrs, frozenset(omitted)


def _length(elem: DataElement) -> int:
    value = elem.value
    return len(value) if isinstance(value, bytes | bytearray) else 0


class InstanceIndex:
    """Thread-safe map of SOP Instance UID to indexed file.

    C-STOREs add entries from association threads while C-FINDs read, so
    readers take a snapshot under the lock and match outside it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_uid: dict[str, IndexedInstance] = {}

    def add(self, instance: IndexedInstance) -> None:
        with self._lock:
            self._by_uid[instance.sop_instance_uid] = instance

    def get(self, sop_instance_uid: str) -> IndexedInstance | None:
        with self._lock:
            return self._by_uid.get(sop_instance_uid)

    def snapshot(self) -> list[IndexedInstance]:
        with self._lock:
            return list(self._by_uid.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_uid)


# --- query levels ------------------------------------------------------------


def query_level(identifier: Dataset, *, patient_root: bool) -> Level:
    """The identifier's QueryRetrieveLevel, checked against the information model."""
    raw = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    for level in LEVELS:
        if raw == level:
            if level == "PATIENT" and not patient_root:
                raise QueryError("the Study Root model has no PATIENT level")
            return level
    raise QueryError(f"invalid QueryRetrieveLevel {raw!r}")


def _depth(level: Level) -> int:
    return LEVELS.index(level)


# --- matching ------------------------------------------------------------------


def _strings(value: object) -> list[str]:
    """An element value as a list of strings, one per value."""
    if value is None:
        return []
    items = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    out = []
    for item in items:
        if item is None:
            continue
        text = item.decode("latin-1") if isinstance(item, bytes) else str(item)
        out.append(text.strip().rstrip("\x00"))
    return out


@lru_cache(maxsize=512)
def _wildcard(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile(regex, (re.IGNORECASE if ignore_case else 0) | re.DOTALL)


def _normalise_temporal(value: str, vr: str, *, upper: bool) -> str:
    """A DA/TM/DT value padded to full precision, so strings compare in time order.

    Lower bounds and stored values pad with zeros, upper bounds with nines, which
    makes ``-0800`` include 08:59:59 and ``-202403`` include the whole month.
    """
    value = value.strip().replace(":", "") if vr == "TM" else value.strip()
    if vr == "DA":
        value = value.replace(".", "")  # ACR-NEMA style YYYY.MM.DD
    if vr == "DT":
        value = re.sub(r"[+-]\d{4}$", "", value) if len(value) > 14 else value
    whole, _, fraction = value.partition(".")
    fill = "9" if upper else "0"
    whole = whole.ljust(_TEMPORAL_WIDTH[vr], fill)
    if vr == "DA":
        return whole
    return f"{whole}.{fraction.ljust(6, fill)}"


def _match_temporal(query: str, stored: str, vr: str) -> bool:
    if not stored:
        return False
    value = _normalise_temporal(stored, vr, upper=False)
    if "-" not in query:
        return _normalise_temporal(query, vr, upper=False) == value
    low, _, high = query.partition("-")
    if low and value < _normalise_temporal(low, vr, upper=False):
        return False
    return not (high and value > _normalise_temporal(high, vr, upper=True))


def _match_value(query: str, stored: str, vr: str) -> bool:
    """One query value against one stored value."""
    if vr in _TEMPORAL_WIDTH:
        return _match_temporal(query, stored, vr)
    if vr == "UI":
        return query == stored
    if vr in _NUMERIC_VRS:
        try:
            return float(query) == float(stored)
        except ValueError:
            return query == stored
    ignore_case = vr == "PN"
    if "*" in query or "?" in query:
        return _wildcard(query, ignore_case).fullmatch(stored) is not None
    return query.casefold() == stored.casefold() if ignore_case else query == stored


def _element_matches(query: DataElement, stored: DataElement | None) -> bool:
    """Any query value (a list for UID list matching) against any stored value."""
    queries = [q for q in _strings(query.value) if q]
    if not queries or all(set(q) == {"*"} for q in queries):
        return True  # universal matching: '*' alone is the same as empty
    values = _strings(stored.value) if stored is not None else []
    return any(_match_value(q, s, query.VR) for q in queries for s in values or [""])


def _matching_keys(identifier: Dataset) -> list[DataElement]:
    """The identifier's keys that constrain the match (non-empty, not computed)."""
    keys = []
    for elem in identifier:
        if elem.tag.element == 0 or elem.VR == "SQ":
            continue  # group lengths; sequence matching is not supported
        if elem.keyword in _CONTROL_KEYWORDS or elem.keyword in _COMPUTED:
            continue
        if any(_strings(elem.value)):
            keys.append(elem)
    return keys


def _instance_matches(instance: IndexedInstance, keys: Sequence[DataElement]) -> bool:
    return all(_element_matches(key, instance.attrs.get(key.tag)) for key in keys)


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


def select_instances(
    instances: Iterable[IndexedInstance], identifier: Dataset
) -> list[IndexedInstance]:
    """The instances a C-GET/C-MOVE identifier names, in study/series/instance order."""
    keys = _matching_keys(identifier)
    return sorted((i for i in instances if _instance_matches(i, keys)), key=_sort_key)


# --- computed keys ---------------------------------------------------------------


class _Aggregates:
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


_Compute = Callable[[_Aggregates, IndexedInstance], "int | list[str]"]


def _count(keyword: str, table: Callable[[_Aggregates], Counter[str]]) -> _Compute:
    return lambda agg, inst: int(table(agg)[inst.value(keyword)])


def _size(keyword: str, table: Callable[[_Aggregates], defaultdict[str, set[str]]]) -> _Compute:
    return lambda agg, inst: len(table(agg)[inst.value(keyword)])


def _values(keyword: str, table: Callable[[_Aggregates], defaultdict[str, set[str]]]) -> _Compute:
    return lambda agg, inst: sorted(table(agg)[inst.value(keyword)])


# keyword -> (the shallowest query level it makes sense at, how to compute it)
_COMPUTED: Final[dict[str, tuple[Level, _Compute]]] = {
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


def _computed_keys(identifier: Dataset, level: Level) -> list[DataElement]:
    """The computed keys asked for that make sense at this level."""
    return [
        elem
        for elem in identifier
        if elem.keyword in _COMPUTED and _depth(_COMPUTED[elem.keyword][0]) <= _depth(level)
    ]


def _computed_value(keyword: str, aggregates: _Aggregates, instance: IndexedInstance) -> object:
    return _COMPUTED[keyword][1](aggregates, instance)


def _computed_matches(
    keys: Sequence[DataElement], aggregates: _Aggregates, instance: IndexedInstance
) -> bool:
    """ModalitiesInStudy/SOPClassesInStudy constrain the match; counts are return keys."""
    for key in keys:
        if key.keyword.startswith("NumberOf"):
            continue
        values = _computed_value(key.keyword, aggregates, instance)
        stored = DataElement(key.tag, key.VR, values)
        if not _element_matches(key, stored):
            return False
    return True


# --- C-FIND --------------------------------------------------------------------


def find(
    instances: Iterable[IndexedInstance],
    level: Level,
    identifier: Dataset,
    *,
    retrieve_ae_title: str,
) -> Iterator[Dataset]:
    """C-FIND responses for ``identifier`` at ``level``, one per matching record."""
    keys = _matching_keys(identifier)
    computed = _computed_keys(identifier, level)
    candidates = sorted(instances, key=_sort_key)
    # Only walk the whole index a second time when a computed key needs it.
    aggregates = _Aggregates(candidates) if computed else None
    unique_key = _UNIQUE_KEY[level]
    answered: set[str] = set()
    for instance in candidates:
        record = instance.value(unique_key)
        if record in answered or not _instance_matches(instance, keys):
            continue
        if aggregates is not None and not _computed_matches(computed, aggregates, instance):
            continue
        answered.add(record)
        yield _response(instance, level, identifier, aggregates, retrieve_ae_title)


def _response(
    instance: IndexedInstance,
    level: Level,
    identifier: Dataset,
    aggregates: _Aggregates | None,
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
        if keyword in _COMPUTED:
            if aggregates is not None and _depth(_COMPUTED[keyword][0]) <= _depth(level):
                rsp.add_new(elem.tag, elem.VR, _computed_value(keyword, aggregates, instance))
            else:
                rsp.add_new(elem.tag, elem.VR, None)
            continue
        if elem.tag in instance.omitted and from_file is None:
            from_file = dcmread(instance.path, stop_before_pixels=True)
        rsp[elem.tag] = _copy_element(elem, instance, from_file)
    # The level's unique key is always returned, and so are the UIDs above it
    # (a relational query may omit them, yet the caller needs them to go on).
    for upper in LEVELS[: _depth(level) + 1]:
        keyword = _UNIQUE_KEY[upper]
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
