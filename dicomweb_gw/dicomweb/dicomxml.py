"""DICOM XML: the Native DICOM Model (PS3.19 A.1) from DICOM JSON (PS3.18 F.2).

The gateway builds every metadata and search answer as DICOM JSON first; the
XML is converted from those very objects, so the two media types cannot
disagree (same attributes, same values, same BulkDataURIs).

What the JSON model says differently, and how it is written here:

- Private data elements carry a ``privateCreator`` attribute and the tag
  ``gggg00ee`` (PS3.19 Table A.1.5-2: the block is not sent); the Private
  Creator elements themselves are therefore not written. A private element
  whose creator is missing from its data set keeps its full tag, without
  ``privateCreator``, rather than being dropped.
- A person name's groups become ``Alphabetic``/``Ideographic``/``Phonetic``
  with one element per component the value has, empty ones included, so
  ``Doe^John^^^`` reads back as written.
- An empty value in a multi-valued element (JSON ``null`` or ``""``) is an
  empty ``Value`` (or ``PersonName``) element with its number, as in the
  PS3.19 example ``MPG\\\\XR3``; a zero-length element has no children.
- Characters XML 1.0 cannot carry (control characters other than tab, LF and
  CR) become U+FFFD: a malformed value must not make the document unreadable.
  A CR is written as ``&#13;``, or an XML parser would turn CR LF (the DICOM
  text line break) into LF (XML 1.0 2.11).

The document is written as text rather than through ElementTree, whose
serializer writes a CR in character data as is.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from pydicom.datadict import keyword_for_tag

__all__ = ["MEDIA_TYPE", "NAMESPACE", "to_native_xml"]

MEDIA_TYPE = "application/dicom+xml"
#: The default namespace of the PS3.19 A.1.6 schema.
NAMESPACE = "http://dicom.nema.org/PS3.19/models/NativeDICOM"
_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
_PN_COMPONENTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTRIBUTE_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                                    "\r": "&#13;", "\n": "&#10;", "\t": "&#9;"})

# Any character that needs escaping or replacing: most values have none (the fast path).
_SPECIAL = re.compile('[&<>"\t\n\r]|' + _NOT_XML.pattern)

DicomJson = dict[str, Any]


def to_native_xml(dataset: DicomJson) -> bytes:
    """One DICOM JSON object as one ``<NativeDicomModel>`` document, UTF-8 encoded."""
    out = [_DECLARATION, f'<NativeDicomModel xmlns="{NAMESPACE}" xml:space="preserve">']
    _write_data_set(out, dataset)
    out.append("</NativeDicomModel>")
    return "".join(out).encode("utf-8")


def _attribute(value: str) -> str:
    if _SPECIAL.search(value) is None:
        return value
    return _xml_chars(value).translate(_ATTRIBUTE_ESCAPES)


def _text(text: str) -> str:
    if _SPECIAL.search(text) is None:
        return text
    return _xml_chars(text).translate(_TEXT_ESCAPES)


def _xml_chars(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _leaf(out: list[str], name: str, text: str | None, attributes: str = "") -> None:
    """``<name attributes>text</name>``, or ``<name attributes/>`` without text;
    ``attributes`` is rendered already (leading space, values escaped)."""
    if text:
        out.append(f"<{name}{attributes}>{_text(text)}</{name}>")
    else:
        out.append(f"<{name}{attributes}/>")


def _write_data_set(out: list[str], dataset: DicomJson) -> None:
    """One ``DicomAttribute`` per element of ``dataset`` (a data set or an item), in tag order."""
    creators = _PrivateCreators(dataset)
    for key in sorted(dataset):
        tag = int(key, 16)
        if tag & 0xFFFF == 0 or _is_creator(tag):
            continue  # group lengths (PS3.19 A.1.1) and private creators (conveyed per element)
        _write_attribute(out, tag, dataset[key], creators)


class _PrivateCreators:
    """The Private Creator elements of one data set: their scope is that data set (PS3.5 7.8.1)."""

    def __init__(self, dataset: DicomJson) -> None:
        self._by_block: dict[tuple[int, int], str] = {}
        for key, element in dataset.items():
            tag = int(key, 16)
            if _is_creator(tag):
                values = element.get("Value") or [""]
                self._by_block[(tag >> 16, tag & 0xFF)] = str(values[0] or "")

    def of(self, tag: int) -> str | None:
        """The creator of a private data element; None for any other element, or an orphan."""
        group, element = tag >> 16, tag & 0xFFFF
        if group % 2 == 0 or element < 0x1000:
            return None
        return self._by_block.get((group, element >> 8))


def _is_creator(tag: int) -> bool:
    return (tag >> 16) % 2 == 1 and 0x10 <= tag & 0xFFFF <= 0xFF


@cache
def _keyword(tag: int) -> str:
    return keyword_for_tag(tag) if (tag >> 16) % 2 == 0 else ""


def _write_attribute(out: list[str], tag: int, element: DicomJson,
                     creators: _PrivateCreators) -> None:
    vr = str(element.get("vr", "UN"))
    creator = creators.of(tag)
    if creator is not None:
        named = (f' tag="{tag & 0xFFFF00FF:08X}" vr="{_attribute(vr)}"'
                 f' privateCreator="{_attribute(creator)}"')
    elif keyword := _keyword(tag):
        named = f' tag="{tag:08X}" vr="{_attribute(vr)}" keyword="{keyword}"'
    else:
        named = f' tag="{tag:08X}" vr="{_attribute(vr)}"'
    values = element.get("Value") or []
    if not values and "BulkDataURI" not in element and "InlineBinary" not in element:
        _leaf(out, "DicomAttribute", None, named)  # zero length: no Value, Item or PersonName
        return
    out.append(f"<DicomAttribute{named}>")
    if "BulkDataURI" in element:
        _leaf(out, "BulkData", None, f' uri="{_attribute(str(element["BulkDataURI"]))}"')
    elif "InlineBinary" in element:
        _leaf(out, "InlineBinary", str(element["InlineBinary"]))
    elif vr == "SQ":
        _write_items(out, values)
    elif vr == "PN":
        _write_person_names(out, values)
    else:
        for number, value in enumerate(values, start=1):
            _leaf(out, "Value", _value_text(value), f' number="{number}"')
    out.append("</DicomAttribute>")


def _write_items(out: list[str], items: list[Any]) -> None:
    for number, item in enumerate(items, start=1):
        if not item:
            _leaf(out, "Item", None, f' number="{number}"')
            continue
        out.append(f'<Item number="{number}">')
        _write_data_set(out, item)
        out.append("</Item>")


def _value_text(value: Any) -> str | None:
    """A JSON value as XML character data: a number as Python (and JSON) writes it,
    the shortest text that reads back the same; null as no text."""
    return None if value is None else str(value)


def _write_person_names(out: list[str], names: list[Any]) -> None:
    """The groups each PN value has, each split into its components (PS3.5 6.2)."""
    for number, name in enumerate(names, start=1):
        groups = [g for g in _PN_GROUPS if g in name] if isinstance(name, dict) else []
        if not groups:  # null: an empty value in a multi-valued element
            _leaf(out, "PersonName", None, f' number="{number}"')
            continue
        out.append(f'<PersonName number="{number}">')
        for group in groups:
            _write_name_group(out, group, str(name[group] or ""))
        out.append("</PersonName>")


def _write_name_group(out: list[str], group: str, text: str) -> None:
    components = text.split("^") if text else []
    if not components:
        _leaf(out, group, None)
        return
    # More than five components is malformed; keep the excess in the suffix, losing nothing.
    if len(components) > len(_PN_COMPONENTS):
        components[4:] = ["^".join(components[4:])]
    out.append(f"<{group}>")
    for component, value in zip(_PN_COMPONENTS, components, strict=False):
        _leaf(out, component, value)
    out.append(f"</{group}>")
