"""Unit tests for dicomweb_gw.codecs.bulkdata: locating element values in Part 10 files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from dicomweb_gw.codecs.bulkdata import BulkLocation, iter_range, locate, read_range
from dicomweb_gw.errors import BadRequest, GatewayError, NotFound
from testdata import pydicom_file

RADIOPHARMACEUTICAL = 0x00540016
DOCUMENT = 0x00420011  # Encapsulated Document, OB
ICON = 0x00880200  # Icon Image Sequence


def nested_file(
    directory: Path, *, implicit: bool, outer_undefined: bool, inner_undefined: bool
) -> tuple[Path, Dataset]:
    """A file with binary values at depth 0, 1 and 2, sequences of either length encoding."""
    inner = Dataset()
    inner.add_new(DOCUMENT, "OB", os.urandom(1500))
    items = []
    for size in (2000, 3000):
        item = Dataset()
        item.add_new(0x00181072, "TM", "120000")
        item.add_new(DOCUMENT, "OB", os.urandom(size))
        item.IconImageSequence = Sequence([inner])
        item["IconImageSequence"].is_undefined_length = inner_undefined
        items.append(item)
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = "Nested^Test"
    ds.RadiopharmaceuticalInformationSequence = Sequence(items)
    ds["RadiopharmaceuticalInformationSequence"].is_undefined_length = outer_undefined
    ds.PixelData = os.urandom(4096)
    ds["PixelData"].VR = "OB"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    name = f"nested_{implicit}_{outer_undefined}_{inner_undefined}.dcm"
    ds.save_as(directory / name, enforce_file_format=True)
    return directory / name, ds


def test_native_pixel_data() -> None:
    path = pydicom_file("emri_small.dcm")
    location = locate(path, [0x7FE00010])
    assert location.length == 64 * 64 * 2 * 10
    assert read_range(path, location) == dcmread(path).PixelData


@pytest.mark.parametrize("name", ["emri_small_jpeg_2k_lossless.dcm", "emri_small_RLE.dcm"])
def test_encapsulated_pixel_data_is_the_whole_value(name: str) -> None:
    path = pydicom_file(name)
    location = locate(path, ["PixelData"])  # keywords work as tags too
    value = read_range(path, location)
    assert value == dcmread(path).PixelData
    assert value[:4] == b"\xfe\xff\x00\xe0"  # starts with the Basic Offset Table item


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("outer_undefined", [False, True])
@pytest.mark.parametrize("inner_undefined", [False, True])
def test_nested_values(
    tmp_path: Path, implicit: bool, outer_undefined: bool, inner_undefined: bool
) -> None:
    path, original = nested_file(
        tmp_path, implicit=implicit, outer_undefined=outer_undefined,
        inner_undefined=inner_undefined,
    )
    items = original.RadiopharmaceuticalInformationSequence
    for index, item in enumerate(items):
        location = locate(path, [RADIOPHARMACEUTICAL, index, DOCUMENT])
        assert read_range(path, location) == item.EncapsulatedDocument
        deeper = locate(path, [RADIOPHARMACEUTICAL, index, ICON, 0, DOCUMENT])
        assert read_range(path, deeper) == item.IconImageSequence[0].EncapsulatedDocument
    assert read_range(path, locate(path, [0x7FE00010])) == original.PixelData


def test_hex_string_path(tmp_path: Path) -> None:
    path, original = nested_file(
        tmp_path, implicit=False, outer_undefined=False, inner_undefined=True
    )
    location = locate(path, ["00540016", "1", "00420011"])
    expected = original.RadiopharmaceuticalInformationSequence[1].EncapsulatedDocument
    assert read_range(path, location) == expected


def test_ranges(tmp_path: Path) -> None:
    path, original = nested_file(tmp_path, implicit=False, outer_undefined=True,
                                 inner_undefined=True)
    location = locate(path, [0x7FE00010])
    value = original.PixelData
    assert read_range(path, location, 0, 10) == value[:10]
    assert read_range(path, location, 100) == value[100:]
    assert read_range(path, location, 4000, 99999) == value[4000:]
    assert read_range(path, location, 5000) == b""
    assert b"".join(iter_range(path, location, 7, 3000, chunk_size=100)) == value[7:3000]
    with pytest.raises(ValueError, match="negative"):
        read_range(path, location, -1)


def test_absent_things_are_not_found(tmp_path: Path) -> None:
    path, _ = nested_file(tmp_path, implicit=False, outer_undefined=True, inner_undefined=False)
    for tag_path in (
        [0x00420011],  # not at the top level
        [RADIOPHARMACEUTICAL, 2, DOCUMENT],  # only two items
        [RADIOPHARMACEUTICAL, 0, 0x00282000],  # absent inside the item
        [0x00100010, 0, DOCUMENT],  # Patient's Name is not a sequence
        [0x00990010, 0, DOCUMENT],  # no such sequence
        [RADIOPHARMACEUTICAL],  # a sequence is not bulk data
    ):
        with pytest.raises(NotFound) as raised:
            locate(path, tag_path)
        assert raised.value.status_code == 404


@pytest.mark.parametrize(
    "tag_path", [[], [0x7FE00010, 0], [0x00540016, -1, 0x00420011], ["NotAKeyword"], ["12"]]
)
def test_malformed_paths_are_bad_requests(tag_path: list[int | str]) -> None:
    with pytest.raises(BadRequest):
        locate(pydicom_file("emri_small.dcm"), tag_path)


def test_deflated_files_are_refused(tmp_path: Path) -> None:
    ds = dcmread(pydicom_file("emri_small.dcm"))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(tmp_path / "deflated.dcm", enforce_file_format=True)
    with pytest.raises(GatewayError, match="Deflated"):
        locate(tmp_path / "deflated.dcm", [0x7FE00010])


def test_location_is_plain_data() -> None:
    assert BulkLocation(10, 20) == BulkLocation(offset=10, length=20)
