"""Which attributes a QIDO-RS response carries at each level (PS3.18 10.6.3)."""

from __future__ import annotations

from dicomweb_gw.model import QueryLevel

__all__ = [
    "DERIVABLE",
    "LEVEL_OF_UID",
    "RETRIEVE_URL",
    "SPECIFIC_CHARACTER_SET",
    "UID_OF_LEVEL",
    "is_private_creator",
    "levels_down_to",
    "private_creator",
    "requested_attributes",
    "required_attributes",
]

SPECIFIC_CHARACTER_SET = 0x00080005
RETRIEVE_URL = 0x00081190
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
SOP_INSTANCE_UID = 0x00080018
MODALITIES_IN_STUDY = 0x00080061
MODALITY = 0x00080060
STUDY_RELATED_SERIES = 0x00201206
STUDY_RELATED_INSTANCES = 0x00201208
SERIES_RELATED_INSTANCES = 0x00201209

UID_OF_LEVEL = {
    QueryLevel.STUDY: STUDY_INSTANCE_UID,
    QueryLevel.SERIES: SERIES_INSTANCE_UID,
    QueryLevel.IMAGE: SOP_INSTANCE_UID,
}
LEVEL_OF_UID = {tag: level for level, tag in UID_OF_LEVEL.items()}

#: Attributes the gateway can compute with a further C-FIND when a PACS leaves them out.
DERIVABLE = frozenset(
    {MODALITIES_IN_STUDY, STUDY_RELATED_SERIES, STUDY_RELATED_INSTANCES, SERIES_RELATED_INSTANCES}
)

# Retrieve URL (0008,1190) is added by the gateway, never asked of the PACS.
_STUDY = (
    0x00080020,  # Study Date
    0x00080030,  # Study Time
    0x00080050,  # Accession Number
    0x00080056,  # Instance Availability
    MODALITIES_IN_STUDY,
    0x00080090,  # Referring Physician's Name
    0x00080201,  # Timezone Offset From UTC
    0x00081030,  # Study Description (not required, but every viewer lists it)
    0x00100010,  # Patient's Name
    0x00100020,  # Patient ID
    0x00100030,  # Patient's Birth Date
    0x00100040,  # Patient's Sex
    STUDY_INSTANCE_UID,
    0x00200010,  # Study ID
    STUDY_RELATED_SERIES,
    STUDY_RELATED_INSTANCES,
)
_SERIES = (
    MODALITY,
    0x00080201,  # Timezone Offset From UTC
    0x0008103E,  # Series Description
    SERIES_INSTANCE_UID,
    0x00200011,  # Series Number
    SERIES_RELATED_INSTANCES,
    0x00400244,  # Performed Procedure Step Start Date
    0x00400245,  # Performed Procedure Step Start Time
)
_INSTANCE = (
    0x00080016,  # SOP Class UID
    SOP_INSTANCE_UID,
    0x00080056,  # Instance Availability
    0x00080201,  # Timezone Offset From UTC
    0x00200013,  # Instance Number
    0x00280010,  # Rows
    0x00280011,  # Columns
    0x00280100,  # Bits Allocated
    0x00280008,  # Number of Frames
)
_BY_LEVEL = {QueryLevel.STUDY: _STUDY, QueryLevel.SERIES: _SERIES, QueryLevel.IMAGE: _INSTANCE}
_ORDER = (QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.IMAGE)


def required_attributes(level: QueryLevel, *, scope: frozenset[QueryLevel]) -> tuple[int, ...]:
    """The attributes PS3.18 Tables 10.6.3-3/4/5 require in a result at ``level``.

    ``scope`` holds the levels whose UID the URL path fixes (``/studies/{study}/series``
    fixes the study). A level above ``level`` that the path does not fix is required
    too: All Series (``/series``) carries the study attributes, All Instances both the
    study and the series ones, Study's Instances the series ones. Which query keys
    the client sent does not matter: ``/series?StudyInstanceUID=X`` is still All Series.
    """
    tags: list[int] = []
    for upper in levels_down_to(level):
        if upper is level or upper not in scope:
            tags.extend(_BY_LEVEL[upper])
    for upper in scope:  # the fixed UIDs are still returned, so the results are self-describing
        tags.append(UID_OF_LEVEL[upper])
    return tuple(dict.fromkeys(tags))


def requested_attributes(level: QueryLevel) -> tuple[int, ...]:
    """The return keys of a C-FIND at ``level``: its own attributes and those of every level
    above, whatever the scope. Viewers read the parents' attributes from scoped results
    too (OHIF takes Modality and PatientName from series and instance results); they are
    returned whenever the PACS supplies them."""
    tags = [tag for upper in levels_down_to(level) for tag in _BY_LEVEL[upper]]
    return tuple(dict.fromkeys(tags))


def private_creator(tag: int) -> int | None:
    """The Private Creator of a private data element (PS3.5 7.8.1): (gggg,xxyy) with xx in
    10-FF belongs to the block reserved by (gggg,00xx). None for anything else."""
    group, element = tag >> 16, tag & 0xFFFF
    if group & 1 and group > 0x0008 and element >= 0x1000:
        return group << 16 | element >> 8
    return None


def is_private_creator(tag: int) -> bool:
    group, element = tag >> 16, tag & 0xFFFF
    return bool(group & 1) and group > 0x0008 and 0x0010 <= element <= 0x00FF


def levels_down_to(level: QueryLevel) -> tuple[QueryLevel, ...]:
    """The levels from the study down to ``level``, top first."""
    return _ORDER[: _ORDER.index(level) + 1]


def parent_level(level: QueryLevel) -> QueryLevel | None:
    index = _ORDER.index(level)
    return _ORDER[index - 1] if index else None


def level_attributes(level: QueryLevel) -> tuple[int, ...]:
    return _BY_LEVEL[level]
