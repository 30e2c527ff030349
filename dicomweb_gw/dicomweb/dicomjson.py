"""DICOM JSON (PS3.18 Annex F) from pydicom datasets."""

from __future__ import annotations

from typing import Any

import orjson
from pydicom.dataset import Dataset

__all__ = ["dumps", "to_dicom_json"]

#: DIMSE bookkeeping that means nothing to a DICOMweb client.
_DIMSE_ONLY = frozenset({0x00080052, 0x00080054, 0x00880130, 0x00880140})
_SPECIFIC_CHARACTER_SET = "00080005"


def to_dicom_json(dataset: Dataset, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dataset as a DICOM JSON object, plus ``extra`` ready-made elements.

    Values were decoded to str by pydicom using the dataset's own character
    set, and JSON is UTF-8, so Specific Character Set is restated as ISO_IR 192.
    """
    for tag in _DIMSE_ONLY & set(dataset.keys()):
        del dataset[tag]
    # suppress_invalid_tags: one malformed value from the PACS must not fail
    # the whole response; the attribute is left out instead.
    result = dataset.to_json_dict(suppress_invalid_tags=True)
    if _SPECIFIC_CHARACTER_SET in result:
        result[_SPECIFIC_CHARACTER_SET] = {"vr": "CS", "Value": ["ISO_IR 192"]}
    if extra:
        result.update(extra)
    return dict(sorted(result.items()))


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)
