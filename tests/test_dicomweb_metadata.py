"""Unit tests for dicomweb_gw.dicomweb.metadata: DICOM JSON with BulkDataURIs from files."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pydicom.filereader
import pytest
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from dicomweb_gw.codecs.bulkdata import locate, read_range
from dicomweb_gw.dicomweb.metadata import (
    BULK_THRESHOLD,
    instance_metadata,
    tag_path_from_uri,
)
from dicomweb_gw.errors import BadRequest
from testdata import charset_file, pydicom_file

BASE = "studies/1.2/series/3.4/instances/5.6"
PRIVATE_OB = 0x00091010


def write(directory: Path, ds: Dataset, *, implicit: bool = False) -> Path:
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    path = directory / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def bulk_uris(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if "BulkDataURI" in node:
            yield node["BulkDataURI"]
        for value in node.values():
            yield from bulk_uris(value)
    elif isinstance(node, list):
        for value in node:
            yield from bulk_uris(value)


@pytest.fixture
def nested(tmp_path: Path) -> tuple[Path, Dataset]:
    ds = Dataset()
    ds.PatientName = "Nested^Test"
    ds.add_new(0x00090010, "LO", "GW TEST")
    ds.add_new(PRIVATE_OB, "OB", b"\x01\x02\x03\x04")
    items = []
    for size in (2000, 16):
        item = Dataset()
        item.add_new(0x00181072, "TM", "120000")
        item.add_new(0x00420011, "OB", os.urandom(size))
        items.append(item)
    ds.RadiopharmaceuticalInformationSequence = Sequence(items)
    ds.PixelData = os.urandom(4096)
    ds["PixelData"].VR = "OB"
    return write(tmp_path, ds), ds


@pytest.fixture
def deferred_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Tags whose deferred (large) values pydicom went back to the file for."""
    tags: list[int] = []
    read_deferred = pydicom.filereader.read_deferred_data_element

    def spy(*args: Any, **kwargs: Any) -> RawDataElement:
        element = read_deferred(*args, **kwargs)
        tags.append(int(element.tag))
        return element

    monkeypatch.setattr(pydicom.filereader, "read_deferred_data_element", spy)
    return tags


def test_multiframe_instance(deferred_reads: list[int]) -> None:
    path = pydicom_file("emri_small.dcm")
    result = instance_metadata(path, BASE)
    assert 0x7FE00010 not in deferred_reads  # pixel data was never read
    assert result["7FE00010"] == {"vr": "OW", "BulkDataURI": f"{BASE}/bulkdata/7FE00010"}
    assert not [key for key in result if key.startswith("0002")]  # no File Meta
    assert result["00280008"] == {"vr": "IS", "Value": [10]}
    assert result["00280010"] == {"vr": "US", "Value": [64]}
    assert result["00180088"]["Value"] == [1.2]  # DS as a number
    assert result["00080005"] == {"vr": "CS", "Value": ["ISO_IR 100"]}  # the file's own
    assert list(result) == sorted(result)
    assert "InlineBinary" not in str(result)


def test_person_name_is_an_object() -> None:
    result = instance_metadata(pydicom_file("CT_small.dcm"), BASE)
    assert result["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "CompressedSamples^CT1"}]}
    assert result["00200032"]["Value"] == [-158.135803, -179.035797, -75.699997]


# PS3.18 F.2.2 Note 3: Specific Character Set "reflects the character encoding of the
# source DICOM dataset and does not indicate the character encoding of the JSON
# representation, which is UTF-8": kept as the source has it, not restated as ISO_IR 192.
@pytest.mark.parametrize(("name", "charset", "patient"), [
    # chrRuss mixes Cyrillic with Latin look-alikes ("c", "e", "y", "p"), as the file has it.
    ("chrRuss.dcm", ["ISO_IR 144"], {"Alphabetic": "\u041b\u044e\u043ace\u043c\u0431yp\u0433"}),
    ("chrFren.dcm", ["ISO_IR 100"], {"Alphabetic": "Buc^Jérôme"}),
    ("chrX2.dcm", ["GB18030"], {"Alphabetic": "Wang^XiaoDong", "Ideographic": "王^小东"}),
    # An empty first value (the default repertoire) is null, as F.2.5 has it.
    ("chrH31.dcm", [None, "ISO 2022 IR 87"], {
        "Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}),
])
def test_character_set_is_the_source_s_and_values_are_decoded(
        name: str, charset: list[str | None], patient: dict[str, str]) -> None:
    path = charset_file(name)
    result = instance_metadata(path, BASE)
    assert result["00080005"] == {"vr": "CS", "Value": charset}
    assert result["00100010"] == {"vr": "PN", "Value": [patient]}
    # The JSON itself is UTF-8 whatever the source's character set.
    assert orjson.loads(orjson.dumps(result))["00100010"]["Value"] == [patient]


def test_an_empty_phonetic_group_is_left_out() -> None:
    # chrX1 holds "Wang^XiaoDong=<ideographic>=": F.2.2 encodes the non-empty groups only.
    result = instance_metadata(charset_file("chrX1.dcm"), BASE)
    assert result["00100010"] == {"vr": "PN", "Value": [
        {"Alphabetic": "Wang^XiaoDong", "Ideographic": "王^小東"}]}


@pytest.mark.parametrize(("stored", "expected"), [
    ("Yamada^Tarou", {"Alphabetic": "Yamada^Tarou"}),
    ("Yamada^Tarou=", {"Alphabetic": "Yamada^Tarou"}),
    ("Yamada^Tarou==", {"Alphabetic": "Yamada^Tarou"}),
    # pydicom writes "Ideographic": "" here; F.2.2 names the non-empty groups only.
    ("Yamada^Tarou==やまだ^たろう", {"Alphabetic": "Yamada^Tarou", "Phonetic": "やまだ^たろう"}),
    ("=山田^太郎", {"Ideographic": "山田^太郎"}),
    ("^^^^", {"Alphabetic": "^^^^"}),  # a group of empty components is still written
])
def test_person_name_component_groups(tmp_path: Path, stored: str,
                                      expected: dict[str, str]) -> None:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = stored
    result = instance_metadata(write(tmp_path, ds), BASE)
    assert result["00100010"] == {"vr": "PN", "Value": [expected]}
    # What a DICOMweb client rebuilds from it is the same name.
    rebuilt = Dataset.from_json({"00100010": result["00100010"]})
    assert str(rebuilt.PatientName).rstrip("=") == stored.rstrip("=")


def test_empty_values_of_multivalued_attributes_are_null(tmp_path: Path) -> None:
    # PS3.18 F.2.5: 'If a multi-valued attribute has one or more empty values these are
    # represented as "null" array elements'. pydicom fails on the PN and DS ones, which
    # used to drop the whole attribute (and, in a sequence, the whole sequence).
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ReferringPhysicianName = "Doe^John\\"
    ds.PerformingPhysicianName = "="  # delimiters only: no name at all
    ds.ImageType = ["ORIGINAL", "", "AXIAL"]
    ds.PixelSpacing = ["0.5", ""]
    item = Dataset()
    item.PatientName = "\\Doe^Jane"
    item.PatientID = "ID-1"
    ds.OtherPatientIDsSequence = Sequence([item])
    result = instance_metadata(write(tmp_path, ds), BASE)
    assert result["00080090"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}, None]}
    assert result["00081050"] == {"vr": "PN"}
    assert result["00080008"] == {"vr": "CS", "Value": ["ORIGINAL", None, "AXIAL"]}
    assert result["00280030"] == {"vr": "DS", "Value": [0.5, None]}
    assert result["00101002"]["Value"] == [{
        "00100010": {"vr": "PN", "Value": [None, {"Alphabetic": "Doe^Jane"}]},
        "00100020": {"vr": "LO", "Value": ["ID-1"]},
    }]


@pytest.mark.parametrize("name", ["emri_small_jpeg_2k_lossless.dcm", "SC_rgb_rle_2frame.dcm"])
def test_compressed_pixel_data(name: str) -> None:
    path = pydicom_file(name)
    # the VR as the file has it (pydicom's J2K sample says OW, against PS3.5 A.4)
    stored_vr = dcmread(path, defer_size=64).get_item(0x7FE00010, keep_deferred=True).VR
    result = instance_metadata(path, BASE)
    assert result["7FE00010"] == {"vr": stored_vr, "BulkDataURI": f"{BASE}/bulkdata/7FE00010"}


def test_implicit_vr_pixel_data_is_ow(tmp_path: Path) -> None:
    ds = Dataset()
    ds.BitsAllocated = 8
    ds.PixelData = os.urandom(2048)
    result = instance_metadata(write(tmp_path, ds, implicit=True), BASE)
    assert result["7FE00010"]["vr"] == "OW"


def test_small_and_nested_binary_values(nested: tuple[Path, Dataset]) -> None:
    path, _ = nested
    result = instance_metadata(path, BASE)
    assert result["00091010"] == {
        "vr": "OB",
        "InlineBinary": base64.b64encode(b"\x01\x02\x03\x04").decode(),
    }
    items = result["00540016"]["Value"]
    assert items[0]["00420011"] == {
        "vr": "OB",
        "BulkDataURI": f"{BASE}/bulkdata/00540016/0/00420011",
    }
    assert list(items[0]) == ["00181072", "00420011"]  # tag order kept after insertion
    assert "InlineBinary" in items[1]["00420011"]  # 16 bytes stay inline
    assert items[1]["00181072"]["Value"] == ["120000"]


def test_every_bulk_uri_resolves_to_the_value(nested: tuple[Path, Dataset]) -> None:
    path, original = nested
    result = instance_metadata(path, BASE)
    uris = sorted(bulk_uris(result))
    assert uris == [f"{BASE}/bulkdata/00540016/0/00420011", f"{BASE}/bulkdata/7FE00010"]
    expected = [
        original.RadiopharmaceuticalInformationSequence[0].EncapsulatedDocument,
        original.PixelData,
    ]
    for uri, value in zip(uris, expected, strict=True):
        tag_path = tag_path_from_uri(uri.removeprefix(f"{BASE}/bulkdata/"))
        assert read_range(path, locate(path, tag_path)) == value


def test_threshold_boundary(tmp_path: Path, deferred_reads: list[int]) -> None:
    ds = Dataset()
    ds.add_new(0x00090010, "LO", "GW TEST")
    ds.add_new(0x00091010, "OB", b"\x00" * BULK_THRESHOLD)
    ds.add_new(0x00091011, "OB", b"\x00" * (BULK_THRESHOLD + 2))
    ds.add_new(0x00091012, "UN", b"\x00" * (BULK_THRESHOLD + 2))
    ds.add_new(0x00091013, "LT", "x" * 3000)  # long but not binary: stays a value
    result = instance_metadata(write(tmp_path, ds), BASE)
    assert "InlineBinary" in result["00091010"]
    assert result["00091011"] == {"vr": "OB", "BulkDataURI": f"{BASE}/bulkdata/00091011"}
    assert result["00091012"] == {"vr": "UN", "BulkDataURI": f"{BASE}/bulkdata/00091012"}
    assert result["00091013"]["Value"] == ["x" * 3000]
    assert deferred_reads == [0x00091013]  # the spy works: only the long text was read back


def test_small_pixel_data_is_still_bulk(tmp_path: Path) -> None:
    ds = Dataset()
    ds.PixelData = b"\x00\x01"
    ds["PixelData"].VR = "OB"
    result = instance_metadata(write(tmp_path, ds), BASE)
    assert result["7FE00010"] == {"vr": "OB", "BulkDataURI": f"{BASE}/bulkdata/7FE00010"}


def test_metadata_of_a_real_compressed_multiframe_matches_dcmread() -> None:
    path = pydicom_file("examples_ybr_color.dcm")
    result = instance_metadata(path, BASE)
    ds = dcmread(path, stop_before_pixels=True)
    expected = {f"{element.tag:08X}" for element in ds if element.tag.element}
    assert set(result) == expected | {"7FE00010"}
    assert result["00280004"]["Value"] == ["YBR_FULL_422"]


@pytest.mark.parametrize(
    ("segment", "expected"),
    [
        ("7FE00010", [0x7FE00010]),
        ("7fe00010", [0x7FE00010]),
        ("00540016/0/00181072", [0x00540016, 0, 0x00181072]),
        ("00540016/12/00880200/1/00420011", [0x00540016, 12, 0x00880200, 1, 0x00420011]),
    ],
)
def test_tag_path_from_uri(segment: str, expected: list[int | str]) -> None:
    assert tag_path_from_uri(segment) == expected


@pytest.mark.parametrize(
    "segment",
    ["", "7FE0001", "7FE000100", "GGGG0010", "00540016/0", "00540016/x/00181072",
     "00540016/-1/00181072", "00540016//00181072", "/7FE00010", "7FE00010/"],
)
def test_tag_path_from_uri_rejects(segment: str) -> None:
    with pytest.raises(BadRequest):
        tag_path_from_uri(segment)
