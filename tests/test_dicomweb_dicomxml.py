"""Unit tests for dicomweb_gw.dicomweb.dicomxml: DICOM JSON -> Native DICOM Model XML."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomweb_gw.dicomweb.dicomjson import to_dicom_json
from dicomweb_gw.dicomweb.dicomxml import NAMESPACE, to_native_xml
from dicomweb_gw.dicomweb.metadata import instance_metadata
from dicomxml_helpers import NS, canonical_json, check_schema, from_native_xml

BASE = "studies/1.2/series/3.4/instances/5.6"


def convert(dataset: dict[str, Any]) -> ET.Element:
    document = to_native_xml(dataset)
    check_schema(document)
    return ET.fromstring(document)


def attribute(root: ET.Element, tag: str, creator: str | None = None) -> ET.Element:
    found = [a for a in root.findall(f"{NS}DicomAttribute")
             if a.get("tag") == tag and a.get("privateCreator") == creator]
    assert len(found) == 1, f"{tag}/{creator}: {len(found)} found"
    return found[0]


def values(node: ET.Element) -> list[tuple[str | None, str | None]]:
    return [(v.get("number"), v.text) for v in node]


def test_document_is_one_native_dicom_model_in_utf8() -> None:
    document = to_native_xml({"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Müller"}]}})
    assert document.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<NativeDicomModel ')
    assert "Müller".encode() in document
    root = ET.fromstring(document)
    assert root.tag == f"{{{NAMESPACE}}}NativeDicomModel"
    assert root.get("{http://www.w3.org/XML/1998/namespace}space") == "preserve"


def test_attribute_carries_tag_vr_and_keyword() -> None:
    root = convert({"0020000D": {"vr": "UI", "Value": ["1.2.3"]}})
    node = attribute(root, "0020000D")
    assert node.attrib == {"tag": "0020000D", "vr": "UI", "keyword": "StudyInstanceUID"}
    assert values(node) == [("1", "1.2.3")]


def test_attributes_are_in_tag_order() -> None:
    root = convert({"00200013": {"vr": "IS", "Value": [1]},
                    "00080060": {"vr": "CS", "Value": ["CT"]},
                    "00100020": {"vr": "LO", "Value": ["P"]}})
    assert [a.get("tag") for a in root] == ["00080060", "00100020", "00200013"]


def test_person_name_groups_and_components() -> None:
    root = convert({"00100010": {"vr": "PN", "Value": [{
        "Alphabetic": "Yamada^Tarou^Jr^Dr^III",
        "Ideographic": "山田^太郎",
        "Phonetic": "やまだ^たろう",
    }]}})
    (name,) = attribute(root, "00100010")
    assert name.tag == f"{NS}PersonName"
    assert name.get("number") == "1"
    groups = {group.tag[len(NS):]: [(c.tag[len(NS):], c.text) for c in group] for group in name}
    assert groups == {
        "Alphabetic": [("FamilyName", "Yamada"), ("GivenName", "Tarou"), ("MiddleName", "Jr"),
                       ("NamePrefix", "Dr"), ("NameSuffix", "III")],
        "Ideographic": [("FamilyName", "山田"), ("GivenName", "太郎")],
        "Phonetic": [("FamilyName", "やまだ"), ("GivenName", "たろう")],
    }
    assert [group.tag[len(NS):] for group in name] == ["Alphabetic", "Ideographic", "Phonetic"]


def test_person_name_keeps_empty_components_and_groups() -> None:
    """``Doe^John^^^`` and an empty alphabetic group must read back exactly as in JSON."""
    dataset = {"00101001": {"vr": "PN", "Value": [
        {"Alphabetic": "Doe^John^^^"},
        {"Alphabetic": "^Given"},
        {"Alphabetic": "", "Ideographic": "C^D", "Phonetic": "E"},
    ]}}
    root = convert(dataset)
    first, second, third = attribute(root, "00101001")
    assert [(c.tag[len(NS):], c.text) for c in first[0]] == [
        ("FamilyName", "Doe"), ("GivenName", "John"), ("MiddleName", None),
        ("NamePrefix", None), ("NameSuffix", None)]
    assert [(c.tag[len(NS):], c.text) for c in second[0]] == [
        ("FamilyName", None), ("GivenName", "Given")]
    assert third[0].tag == f"{NS}Alphabetic"
    assert list(third[0]) == []
    assert from_native_xml(to_native_xml(dataset)) == dataset


def test_person_name_with_too_many_components_loses_nothing() -> None:
    dataset = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "A^B^C^D^E^F"}]}}
    root = convert(dataset)
    suffix = attribute(root, "00100010")[0][0][4]
    assert (suffix.tag, suffix.text) == (f"{NS}NameSuffix", "E^F")
    assert from_native_xml(to_native_xml(dataset)) == dataset


def test_multi_valued_element_numbers_each_value_including_empty_ones() -> None:
    """PS3.19 A.1.5: ``MPG\\\\XR3`` is three Value elements, the second empty."""
    root = convert({"00080008": {"vr": "CS", "Value": ["MPG", "", "XR3"]},
                    "00280030": {"vr": "DS", "Value": [0.5, None, 0.4]}})
    assert values(attribute(root, "00080008")) == [("1", "MPG"), ("2", None), ("3", "XR3")]
    assert values(attribute(root, "00280030")) == [("1", "0.5"), ("2", None), ("3", "0.4")]


def test_numbers_and_tags_are_written_as_text() -> None:
    root = convert({"00181050": {"vr": "FD", "Value": [1 / 3]},
                    "00280010": {"vr": "US", "Value": [512]},
                    "00281052": {"vr": "DS", "Value": [-1024]},
                    "00209165": {"vr": "AT", "Value": ["00100010", "7FE00010"]}})
    assert values(attribute(root, "00181050")) == [("1", repr(1 / 3))]
    assert values(attribute(root, "00280010")) == [("1", "512")]
    assert values(attribute(root, "00281052")) == [("1", "-1024")]
    assert values(attribute(root, "00209165")) == [("1", "00100010"), ("2", "7FE00010")]


def test_zero_length_element_has_no_children() -> None:
    root = convert({"00200013": {"vr": "IS"}, "00100010": {"vr": "PN"},
                    "00081140": {"vr": "SQ"}, "00081030": {"vr": "LO", "Value": []}})
    for tag in ("00200013", "00100010", "00081140", "00081030"):
        node = attribute(root, tag)
        assert list(node) == []
        assert not node.text
        assert node.get("keyword")


def test_empty_person_name_in_a_multi_valued_element_is_an_empty_person_name() -> None:
    root = convert({"00101001": {"vr": "PN", "Value": [{"Alphabetic": "A"}, None]}})
    _first, second = attribute(root, "00101001")
    assert second.attrib == {"number": "2"}
    assert list(second) == []


def test_sequence_items_are_numbered_and_nest() -> None:
    root = convert({"00081115": {"vr": "SQ", "Value": [
        {"0020000E": {"vr": "UI", "Value": ["1.1"]},
         "00081140": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": ["9.9"]}}]}},
        {},
        {"0020000E": {"vr": "UI", "Value": ["1.3"]}},
    ]}})
    items = list(attribute(root, "00081115"))
    assert [(i.tag, i.get("number")) for i in items] == [(f"{NS}Item", str(n)) for n in (1, 2, 3)]
    assert values(attribute(items[0], "0020000E")) == [("1", "1.1")]
    nested = attribute(attribute(items[0], "00081140")[0], "00081155")
    assert nested.get("keyword") == "ReferencedSOPInstanceUID"
    assert values(nested) == [("1", "9.9")]
    assert list(items[1]) == []
    assert values(attribute(items[2], "0020000E")) == [("1", "1.3")]


def test_inline_binary_is_one_element_with_the_base64_value() -> None:
    encoded = base64.b64encode(bytes(range(40))).decode()
    root = convert({"00282000": {"vr": "OB", "InlineBinary": encoded}})
    (inline,) = attribute(root, "00282000")
    assert inline.tag == f"{NS}InlineBinary"
    assert inline.attrib == {}
    assert base64.b64decode(inline.text or "") == bytes(range(40))


def test_bulk_data_uri_is_a_bulk_data_element_with_the_same_uri() -> None:
    uri = "https://gw.example/dicom-web/studies/1/series/2/instances/3/bulkdata/7FE00010?a=1&b=2"
    root = convert({"7FE00010": {"vr": "OW", "BulkDataURI": uri}})
    (bulk,) = attribute(root, "7FE00010")
    assert bulk.tag == f"{NS}BulkData"
    assert bulk.attrib == {"uri": uri}


def test_private_elements_carry_their_creator_and_no_block() -> None:
    """PS3.19 Table A.1.5-2: tag gggg00ee plus privateCreator; the creator elements go."""
    root = convert({
        "00090010": {"vr": "LO", "Value": ["ACME 1.0"]},
        "00090011": {"vr": "LO", "Value": ["OTHER"]},
        "00091001": {"vr": "LO", "Value": ["acme value"]},
        "00091101": {"vr": "US", "Value": [7]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "X"}]},
    })
    assert [(a.get("tag"), a.get("privateCreator")) for a in root] == [
        ("00090001", "ACME 1.0"), ("00090001", "OTHER"), ("00100010", None)]
    acme = attribute(root, "00090001", "ACME 1.0")
    assert acme.attrib == {"tag": "00090001", "vr": "LO", "privateCreator": "ACME 1.0"}
    assert values(acme) == [("1", "acme value")]
    assert values(attribute(root, "00090001", "OTHER")) == [("1", "7")]


def test_private_creators_are_scoped_to_their_item() -> None:
    root = convert({
        "00090010": {"vr": "LO", "Value": ["TOP"]},
        "00091001": {"vr": "LO", "Value": ["top"]},
        "00081140": {"vr": "SQ", "Value": [{
            "00090010": {"vr": "LO", "Value": ["INNER"]},
            "00091001": {"vr": "LO", "Value": ["inner"]},
        }]},
    })
    assert values(attribute(root, "00090001", "TOP")) == [("1", "top")]
    (item,) = attribute(root, "00081140")
    assert values(attribute(item, "00090001", "INNER")) == [("1", "inner")]


def test_private_element_without_its_creator_keeps_its_full_tag() -> None:
    root = convert({"00111001": {"vr": "LO", "Value": ["orphan"]}})
    assert attribute(root, "00111001").attrib == {"tag": "00111001", "vr": "LO"}


def test_group_lengths_are_left_out() -> None:
    """PS3.19 A.1.1: Group Length attributes shall not be included."""
    root = convert({"00080000": {"vr": "UL", "Value": [10]},
                    "00080060": {"vr": "CS", "Value": ["CT"]}})
    assert [a.get("tag") for a in root] == ["00080060"]


def test_characters_xml_cannot_carry_become_replacement_characters() -> None:
    root = convert({"00081030": {"vr": "LO", "Value": ["a\x00b\x1bc\td"]}})
    assert values(attribute(root, "00081030")) == [("1", "a\ufffdb\ufffdc\td")]


def test_whitespace_in_values_is_kept() -> None:
    root = convert({"00081030": {"vr": "LO", "Value": ["  two  spaces  "]},
                    "00324000": {"vr": "LT", "Value": ["line 1\r\nline 2\n"]}})
    assert values(attribute(root, "00081030")) == [("1", "  two  spaces  ")]
    # XML parsers turn CR LF into LF (XML 1.0 2.11); the CR is written as a character reference.
    assert values(attribute(root, "00324000")) == [("1", "line 1\r\nline 2\n")]


def _rich_dataset(directory: Path) -> Path:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Hans^^Dr^"
    ds.OtherPatientNames = ["Yamada^Tarou=山田^太郎=やまだ^たろう", "Doe^Jane"]
    ds.PatientID = "ID-1"
    ds.ImageType = ["ORIGINAL", "", "AXIAL"]
    ds.PixelSpacing = [0.5, 0.25]
    ds.InstanceNumber = ""
    ds.Rows, ds.Columns = 48, 48
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(48 * 48)
    ds.RedPaletteColorLookupTableData = bytes(range(256)) * 8  # bulk: over the threshold
    ds.ICCProfile = bytes(range(64))  # inline: under it
    ds.FrameIncrementPointer = [0x00181063, 0x00181065]
    ds.private_block(0x0009, "ACME 1.0", create=True).add_new(0x01, "LO", "private value")
    referenced = Dataset()
    referenced.ReferencedSOPInstanceUID = "1.2.3"
    referenced.private_block(0x0011, "INNER", create=True).add_new(0x02, "US", 42)
    ds.ReferencedImageSequence = Sequence([referenced, Dataset()])
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = directory / "rich.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_instance_metadata_reads_back_equal_to_its_json(tmp_path: Path) -> None:
    """The gateway's own metadata JSON, through XML and back: nothing lost or changed."""
    metadata = instance_metadata(_rich_dataset(tmp_path), BASE)
    assert metadata["7FE00010"] == {"vr": "OB", "BulkDataURI": f"{BASE}/bulkdata/7FE00010"}
    assert "InlineBinary" in metadata["00282000"]
    assert "BulkDataURI" in metadata["00281201"]
    document = to_native_xml(metadata)
    check_schema(document)
    assert from_native_xml(document) == canonical_json(metadata)


def test_qido_style_json_reads_back_equal() -> None:
    ds = Dataset()
    ds.PatientName = "Doe^John"
    ds.StudyDate = "20240101"
    ds.ModalitiesInStudy = ["CT", "MR"]
    ds.NumberOfStudyRelatedInstances = 4
    dataset = to_dicom_json(ds, {"00081190": {"vr": "UR", "Value": ["http://gw/studies/1"]}})
    document = to_native_xml(dataset)
    check_schema(document)
    assert from_native_xml(document) == dataset


@pytest.mark.parametrize("broken", [
    b'<?xml version="1.0" encoding="UTF-8"?>\n<NativeDicomModel xml:space="preserve"/>',
    (b'<?xml version="1.0" encoding="UTF-8"?>\n<NativeDicomModel xmlns="' + NAMESPACE.encode()
     + b'" xml:space="preserve"><DicomAttribute tag="00080008" vr="CS">'
     + b'<Value number="2">A</Value></DicomAttribute></NativeDicomModel>'),
    (b'<?xml version="1.0" encoding="UTF-8"?>\n<NativeDicomModel xmlns="' + NAMESPACE.encode()
     + b'" xml:space="preserve"><DicomAttribute tag="00100010" vr="PN">'
     + b'<Value number="1">A</Value></DicomAttribute></NativeDicomModel>'),
])
def test_schema_check_catches_what_the_schema_forbids(broken: bytes) -> None:
    """The helper the tests rely on does reject documents that break PS3.19 A.1.6."""
    with pytest.raises(AssertionError):
        check_schema(broken)
