"""DICOM JSON (PS3.18 Annex F) from pydicom datasets.

pydicom converts each element; this module walks the dataset itself so that
two things come out as PS3.18 F.2 says rather than as pydicom does:

* Person Name values: only the non-empty component groups are encoded
  (F.2.2), and an empty value of a multi-valued PN is ``null`` (F.2.5).
  pydicom writes ``"Ideographic": ""`` for an empty group between two others,
  and fails on an empty value ("Doe^John\\") or on "=", which used to drop
  the whole attribute from the response.
* Empty values of other multi-valued attributes are ``null`` (F.2.5), not "".

Specific Character Set (0008,0005) keeps the source's value: it describes the
source encoding, not the JSON's, which is always UTF-8 (F.2.2 Note 3).

Elements still undecoded (a data set just read) of a plain value representation
are encoded from their bytes by ``raw_json``, without pydicom's objects: most of
a header's elements, at a fraction of the cost.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.jsonrep import convert_to_python_number
from pydicom.valuerep import PersonName

from dicomweb_gw.dicomweb.raw_json import raw_json

__all__ = ["dumps", "to_dicom_json"]

log = logging.getLogger(__name__)

#: DIMSE bookkeeping that means nothing to a DICOMweb client.
_DIMSE_ONLY = frozenset({0x00080052, 0x00080054, 0x00880130, 0x00880140})
#: PS3.18 F.2.2: the names of a PN value's component groups, in the order PS3.5 6.2 gives them.
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
#: Numbers as strings: JSON numbers in DICOM JSON, each converted by pydicom.
_DECIMAL_STRINGS = frozenset({"IS", "DS"})


def to_dicom_json(dataset: Dataset, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dataset as a DICOM JSON object, plus ``extra`` ready-made elements.

    Values were decoded to str by pydicom using the dataset's own character
    set; the JSON is UTF-8 whatever Specific Character Set says (F.2.2 Note 3).
    """
    for tag in _DIMSE_ONLY & set(dataset.keys()):
        del dataset[tag]
    # One malformed value from the PACS leaves out that attribute only (see
    # _json_dataset) instead of failing the whole response. (Not pydicom's
    # strict_reading(): it is process-wide, and would make the worker threads
    # parsing other instances at the same moment raise on what they tolerate.)
    result = _json_dataset(dataset)
    if extra:
        result.update(extra)
    return dict(sorted(result.items()))


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def _json_dataset(dataset: Dataset) -> dict[str, Any]:
    result: dict[str, Any] = {}
    encodings: list[str] | None = None

    def character_set() -> list[str]:
        nonlocal encodings
        if encodings is None:  # once per data set, and only for text that depends on it
            try:
                found = dataset._character_set  # what pydicom itself decodes it with
            except Exception:  # a malformed (0008,0005): pydicom's path decides, as before
                found = []
            encodings = [found] if isinstance(found, str) else list(found)
        return encodings

    for tag in list(dataset.keys()):
        key = f"{tag:08X}"
        item = dataset.get_item(tag, keep_deferred=True)
        if isinstance(item, RawDataElement) and (encoded := raw_json(item, character_set)):
            result[key] = encoded
            continue
        try:
            result[key] = _json_element(dataset[tag])
        except Exception as exc:  # whatever pydicom raises on a value it cannot convert
            log.warning("attribute %s left out of the DICOM JSON: %s", key, exc)
    return result


def _json_element(element: DataElement) -> dict[str, Any]:
    if element.VR == "SQ":
        # Items are walked here too, so a bad value deep in a sequence costs
        # only that value, not the whole sequence.
        return {"vr": "SQ", "Value": [_json_dataset(item) for item in element.value]}
    if element.VR == "PN":
        return _person_name_element(element)
    if element.VR in _DECIMAL_STRINGS and element.VM > 1 and "" in element.value:
        # pydicom fails on an empty value (`1.5\\2`: it converts "" to a number), and the
        # attribute used to be left out.
        return {"vr": element.VR, "Value": [
            None if value == "" else convert_to_python_number(value, element.VR)
            for value in element.value]}
    encoded: dict[str, Any] = element.to_json_dict(
        bulk_data_element_handler=None, bulk_data_threshold=0)
    values = encoded.get("Value")
    if isinstance(values, list) and len(values) > 1:
        encoded["Value"] = [None if value == "" else value for value in values]
    return encoded


def _person_name_element(element: DataElement) -> dict[str, Any]:
    """{"vr": "PN", "Value": [...]}, each value an object of its non-empty groups, or null."""
    encoded: dict[str, Any] = {"vr": "PN"}
    if element.is_empty:
        return encoded
    names: Sequence[PersonName] = element.value if element.VM > 1 else [element.value]
    values = [_person_name(name) for name in names]
    # A value made of delimiters only ("=", "==") is as empty as no value at all.
    if any(value is not None for value in values):
        encoded["Value"] = values
    return encoded


def _person_name(name: PersonName | str | None) -> dict[str, str] | None:
    """One PN value as F.2.2 wants it: the non-empty component groups by name; None if none."""
    if name is None:
        return None
    groups = name.components if isinstance(name, PersonName) else PersonName(name).components
    named = {label: group for label, group in zip(_PN_GROUPS, groups, strict=False) if group}
    return named or None
