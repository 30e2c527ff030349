"""Reading DICOM XML (PS3.19 A.1) back into the DICOM JSON model, for tests.

``from_native_xml`` parses a Native DICOM Model document with ElementTree
into a DICOM JSON object, and ``canonical_json`` puts a DICOM JSON object
into the same form, so a test can assert that both answers of the gateway
carry the same data. The one difference the standard makes on purpose is
private elements: XML conveys the private creator and not the block
(tag ``gggg00ee`` with ``privateCreator``), so both sides key them as
``gggg:creator:ee`` and leave out the Private Creator elements.

``check_schema`` enforces the content model of the PS3.19 A.1.6 schema
(no RELAX NG validator is installed here, so its rules are written out).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

NAMESPACE = "http://dicom.nema.org/PS3.19/models/NativeDICOM"
NS = f"{{{NAMESPACE}}}"
XML_SPACE = "{http://www.w3.org/XML/1998/namespace}space"
NUMBER_VRS = frozenset({"DS", "IS", "FL", "FD", "SL", "SS", "SV", "UL", "US", "UV"})
VRS = frozenset({"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT",
                 "OB", "OD", "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST",
                 "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV"})
PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
PN_COMPONENTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")

DicomJson = dict[str, Any]


# -- XML -> DICOM JSON ----------------------------------------------------------


def from_native_xml(document: bytes) -> DicomJson:
    root = ET.fromstring(document)
    assert root.tag == NS + "NativeDicomModel", root.tag
    return _dataset(root)


def _dataset(node: ET.Element) -> DicomJson:
    result: DicomJson = {}
    for attribute in node:
        tag = attribute.attrib["tag"]
        creator = attribute.attrib.get("privateCreator")
        key = tag if creator is None else private_key(int(tag[:4], 16), creator, tag[6:])
        assert key not in result, f"{key} twice"
        result[key] = _element(attribute)
    return result


def private_key(group: int, creator: str, element: str) -> str:
    return f"{group:04X}:{creator}:{element.upper()}"


def _element(node: ET.Element) -> DicomJson:
    vr = node.attrib["vr"]
    element: DicomJson = {"vr": vr}
    children = list(node)
    if not children:
        return element
    kind = _local(children[0])
    if kind == "BulkData":
        element["BulkDataURI"] = children[0].attrib["uri"]
    elif kind == "InlineBinary":
        element["InlineBinary"] = children[0].text or ""
    elif kind == "Item":
        element["Value"] = [_dataset(item) for item in children]
    elif kind == "PersonName":
        element["Value"] = [_person_name(name) for name in children]
    else:
        element["Value"] = [_value(value.text, vr) for value in children]
    return element


def _local(node: ET.Element) -> str:
    assert node.tag.startswith(NS), node.tag
    return node.tag[len(NS):]


def _person_name(node: ET.Element) -> dict[str, str] | None:
    if not list(node):
        return None
    return {_local(group): "^".join(c.text or "" for c in group) for group in node}


def _value(text: str | None, vr: str) -> Any:
    """An empty Value is JSON null, as pydicom writes an empty value read from a file."""
    if not text:
        return None
    if vr not in NUMBER_VRS:
        return text
    try:
        return int(text)
    except ValueError:
        return float(text)


# -- DICOM JSON in the same form ---------------------------------------------------


def canonical_json(dataset: DicomJson) -> DicomJson:
    """``dataset`` with private elements keyed by creator and its Private Creators left out."""
    creators = {}
    for key, element in dataset.items():
        tag = int(key, 16)
        if (tag >> 16) % 2 == 1 and 0x10 <= tag & 0xFFFF <= 0xFF:
            creators[(tag >> 16, tag & 0xFF)] = (element.get("Value") or [""])[0]
    result: DicomJson = {}
    for key, element in dataset.items():
        tag = int(key, 16)
        group, number = tag >> 16, tag & 0xFFFF
        if number == 0 or (group % 2 == 1 and (group, number & 0xFF) in creators
                           and number <= 0xFF):
            continue
        creator = creators.get((group, number >> 8)) if group % 2 == 1 else None
        if creator is not None and number >= 0x1000:
            key = private_key(group, creator, f"{number & 0xFF:02X}")
        result[key] = _canonical_element(element)
    return result


def _canonical_element(element: DicomJson) -> DicomJson:
    if element.get("vr") == "SQ" and "Value" in element:
        return {**element, "Value": [canonical_json(item) for item in element["Value"]]}
    return element


# -- the PS3.19 A.1.6 content model ----------------------------------------------


def check_schema(document: bytes) -> None:
    """AssertionError unless ``document`` follows the Native DICOM Model schema."""
    assert document.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(document)
    assert root.tag == NS + "NativeDicomModel"
    assert root.attrib == {XML_SPACE: "preserve"}  # PS3.19 A.1.5: shall be included
    assert not (root.text or "").strip()
    _check_data_set(root)


def _check_data_set(node: ET.Element) -> None:
    for attribute in node:
        assert attribute.tag == NS + "DicomAttribute", attribute.tag
        _check_attribute(attribute)


def _check_attribute(node: ET.Element) -> None:
    attrib = node.attrib
    assert set(attrib) <= {"tag", "vr", "keyword", "privateCreator"}, attrib
    assert re.fullmatch("[0-9A-F]{8}", attrib["tag"]), attrib
    assert attrib.get("vr", "UN") in VRS, attrib
    if "privateCreator" in attrib:  # private: odd group, block not sent (gggg00ee)
        assert int(attrib["tag"][:4], 16) % 2 == 1, attrib
        assert attrib["tag"][4:6] == "00", attrib
        assert "keyword" not in attrib
    children = list(node)
    kinds = {_local(child) for child in children}
    assert len(kinds) <= 1, f"mixed content in {attrib}: {kinds}"
    if not kinds:
        return
    (kind,) = kinds
    vr = attrib.get("vr")
    if kind in ("BulkData", "InlineBinary"):
        assert len(children) == 1
        _check_leaf(children[0], {"uri"} if kind == "BulkData" else set())
        if kind == "InlineBinary":
            assert re.fullmatch("[A-Za-z0-9+/]*={0,2}", children[0].text or "")
        return
    assert [child.attrib.get("number") for child in children] == [
        str(n) for n in range(1, len(children) + 1)]
    expected = {"SQ": "Item", "PN": "PersonName"}.get(vr or "", "Value")
    assert kind == expected, f"{kind} in a {vr} attribute"
    for child in children:
        if kind == "Item":
            _check_data_set(child)
        elif kind == "PersonName":
            _check_person_name(child)
        else:
            _check_leaf(child, {"number"})


def _check_leaf(node: ET.Element, attributes: set[str]) -> None:
    assert set(node.attrib) == attributes, node.attrib
    assert not list(node)


def _check_person_name(node: ET.Element) -> None:
    groups = [_local(group) for group in node]
    assert groups == [g for g in PN_GROUPS if g in groups], groups
    for group in node:
        assert not group.attrib
        components = [_local(component) for component in group]
        assert components == [c for c in PN_COMPONENTS if c in components], components
        for component in group:
            _check_leaf(component, set())
