"""Unit tests for dicomweb_gw.codecs.part10: Part 10 framing and conversion to Explicit VR LE."""

from __future__ import annotations

import struct
from collections.abc import Callable
from io import BytesIO

import numpy as np
import pytest
from pydicom import dcmread, uid
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

from dicomweb_gw.codecs.part10 import (
    IMPLEMENTATION_CLASS_UID,
    part10_chunks,
    to_explicit_little_endian,
)
from dicomweb_gw.model import RetrievedInstance
from testdata import pydicom_file

#: VRs whose explicit-VR header has 2 reserved bytes and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT",
             b"SV", b"UV"}


def data_set_offset(part10: bytes) -> int:
    """Where the data set starts, found by walking the group 0002 elements one by one."""
    assert part10[128:132] == b"DICM"
    position = 132
    while position < len(part10):
        group, _ = struct.unpack_from("<HH", part10, position)
        if group != 0x0002:
            return position
        vr = part10[position + 4 : position + 6]
        if vr in _LONG_VRS:
            length = struct.unpack_from("<I", part10, position + 8)[0]
            position += 12 + length
        else:
            length = struct.unpack_from("<H", part10, position + 6)[0]
            position += 8 + length
    return position


def instance_from_file(name: str) -> RetrievedInstance:
    """A RetrievedInstance holding the data set bytes of a test file exactly as stored."""
    raw = pydicom_file(name).read_bytes()
    ds = dcmread(BytesIO(raw))
    return RetrievedInstance(
        sop_class_uid=str(ds.SOPClassUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
        dataset=raw[data_set_offset(raw) :],
    )


def implicit_instance(name: str) -> RetrievedInstance:
    """The data set of a test file re-encoded in Implicit VR Little Endian, as DIMSE may deliver."""
    ds = dcmread(pydicom_file(name))
    buffer = DicomBytesIO()
    buffer.is_implicit_VR = True
    buffer.is_little_endian = True
    write_dataset(buffer, ds)
    return RetrievedInstance(
        sop_class_uid=str(ds.SOPClassUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        transfer_syntax_uid=uid.ImplicitVRLittleEndian,
        dataset=buffer.getvalue(),
    )


def read_part10(instance: RetrievedInstance) -> Dataset:
    return dcmread(BytesIO(b"".join(part10_chunks(instance))))


def parse_strictly_explicit_le(data: bytes) -> Dataset:
    """Parse data set bytes as Explicit VR Little Endian, with no guessing by pydicom."""
    return read_dataset(BytesIO(data), is_implicit_VR=False, is_little_endian=True)


def assert_explicit_vr_encoding(data: bytes) -> None:
    """Walk the top-level elements checking each has a two-letter VR in the explicit layout."""
    position = 0
    while position < len(data):
        vr = data[position + 4 : position + 6]
        where = f"no explicit VR at offset {position}: {data[position:position + 8]!r}"
        assert len(vr) == 2, where
        assert vr.isalpha(), where
        assert vr.isupper(), where
        if vr in _LONG_VRS:
            length = struct.unpack_from("<I", data, position + 8)[0]
            header = 12
        else:
            length = struct.unpack_from("<H", data, position + 6)[0]
            header = 8
        if length == 0xFFFFFFFF:  # undefined-length sequence: stop at the first one
            return
        position += header + length
    assert position == len(data)


# -- part10_chunks ----------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: instance_from_file("CT_small.dcm"),
        lambda: implicit_instance("MR_small.dcm"),
        lambda: instance_from_file("MR_small_bigendian.dcm"),
        lambda: instance_from_file("SC_rgb_jpeg_dcmtk.dcm"),
    ],
    ids=["explicit-le", "implicit-le", "big-endian", "jpeg-baseline"],
)
def test_part10_file_keeps_the_data_set_bytes(make: Callable[[], RetrievedInstance]) -> None:
    instance = make()
    header, body = part10_chunks(instance)
    assert header[:132] == b"\x00" * 128 + b"DICM"
    assert body is instance.dataset  # not copied
    encoded = header + body
    assert data_set_offset(encoded) == len(header)
    assert encoded[len(header) :] == instance.dataset

    ds = dcmread(BytesIO(encoded))
    meta = ds.file_meta
    assert meta.TransferSyntaxUID == instance.transfer_syntax_uid
    assert meta.MediaStorageSOPClassUID == instance.sop_class_uid
    assert meta.MediaStorageSOPInstanceUID == instance.sop_instance_uid
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.FileMetaInformationVersion == b"\x00\x01"
    assert 1 <= len(str(meta.ImplementationVersionName)) <= 16
    # the group length announces exactly the meta elements that follow it
    assert meta.FileMetaInformationGroupLength == len(header) - 132 - 12
    assert ds.SOPInstanceUID == instance.sop_instance_uid


def test_part10_of_stored_file_reads_like_the_original() -> None:
    original = dcmread(pydicom_file("CT_small.dcm"))
    ds = read_part10(instance_from_file("CT_small.dcm"))
    assert ds.PatientName == original.PatientName
    assert ds.StudyInstanceUID == original.StudyInstanceUID
    np.testing.assert_array_equal(ds.pixel_array, original.pixel_array)


def test_implementation_class_uid_is_a_valid_uid() -> None:
    assert IMPLEMENTATION_CLASS_UID.is_valid
    assert len(IMPLEMENTATION_CLASS_UID) <= 64


# -- to_explicit_little_endian ------------------------------------------------------


def test_explicit_little_endian_is_returned_unchanged() -> None:
    instance = instance_from_file("CT_small.dcm")
    assert to_explicit_little_endian(instance) is instance


def test_implicit_to_explicit() -> None:
    source = implicit_instance("MR_small.dcm")
    original = dcmread(pydicom_file("MR_small.dcm"))
    result = to_explicit_little_endian(source)

    assert result.transfer_syntax_uid == uid.ExplicitVRLittleEndian
    assert result.sop_class_uid == source.sop_class_uid
    assert result.sop_instance_uid == source.sop_instance_uid
    assert_explicit_vr_encoding(result.dataset)

    ds = parse_strictly_explicit_le(result.dataset)
    assert ds.PixelData == original.PixelData  # byte for byte
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "Rows", "Columns",
                    "BitsAllocated", "PixelRepresentation", "ImagePositionPatient",
                    "SmallestImagePixelValue", "LargestImagePixelValue"):
        assert ds[keyword].value == original[keyword].value, keyword
        assert ds[keyword].VR == original[keyword].VR, keyword

    full = read_part10(result)
    assert full.file_meta.TransferSyntaxUID == uid.ExplicitVRLittleEndian
    np.testing.assert_array_equal(full.pixel_array, original.pixel_array)


def test_implicit_to_explicit_with_private_elements() -> None:
    source = implicit_instance("CT_small.dcm")
    original = dcmread(pydicom_file("CT_small.dcm"))
    result = to_explicit_little_endian(source)
    ds = parse_strictly_explicit_le(result.dataset)
    assert ds.PixelData == original.PixelData
    assert {elem.tag for elem in ds} == {elem.tag for elem in original}
    np.testing.assert_array_equal(read_part10(result).pixel_array, original.pixel_array)


def test_big_endian_to_little_endian() -> None:
    source = instance_from_file("MR_small_bigendian.dcm")
    big = dcmread(pydicom_file("MR_small_bigendian.dcm"))
    little = dcmread(pydicom_file("MR_small.dcm"))  # the same image, stored little endian
    result = to_explicit_little_endian(source)

    assert result.transfer_syntax_uid == uid.ExplicitVRLittleEndian
    assert_explicit_vr_encoding(result.dataset)
    ds = parse_strictly_explicit_le(result.dataset)
    # binary numbers are re-encoded, not left in big endian byte order
    assert ds.Rows == big.Rows == 64
    assert ds.Columns == big.Columns == 64
    assert ds.SmallestImagePixelValue == big.SmallestImagePixelValue
    assert ds.LargestImagePixelValue == big.LargestImagePixelValue
    # the pixel words were swapped: the raw bytes now read as little endian values
    words = np.frombuffer(ds.PixelData, dtype="<u2")
    expected = np.frombuffer(big.PixelData, dtype=">u2")
    np.testing.assert_array_equal(words, expected)
    assert ds.PixelData != big.PixelData

    pixels = read_part10(result).pixel_array
    np.testing.assert_array_equal(pixels, big.pixel_array)
    np.testing.assert_array_equal(pixels, little.pixel_array)


def test_jpeg_is_decompressed() -> None:
    source = instance_from_file("SC_rgb_jpeg_dcmtk.dcm")
    compressed = dcmread(pydicom_file("SC_rgb_jpeg_dcmtk.dcm"))
    try:
        expected = compressed.pixel_array
    except Exception as exc:  # pragma: no cover - depends on the installed decoders
        pytest.skip(f"no JPEG decoder: {exc}")
    result = to_explicit_little_endian(source)

    assert result.transfer_syntax_uid == uid.ExplicitVRLittleEndian
    assert_explicit_vr_encoding(result.dataset)
    ds = parse_strictly_explicit_le(result.dataset)
    rows, columns, samples = ds.Rows, ds.Columns, ds.SamplesPerPixel
    assert (rows, columns, samples) == (100, 100, 3)
    # native (not encapsulated) pixel data of the right size
    assert len(ds.PixelData) == rows * columns * samples * ds.BitsAllocated // 8
    assert not ds.PixelData.startswith(b"\xfe\xff\x00\xe0")  # no Basic Offset Table item
    # the decoded colours are described correctly: a YBR_FULL JPEG decodes to
    # YBR_FULL samples, as the frames resource sends them (codecs/photometric.py)
    assert ds.PhotometricInterpretation == "YBR_FULL"

    pixels = read_part10(result).pixel_array
    assert pixels.shape == (100, 100, 3)
    np.testing.assert_array_equal(pixels, expected)


def test_jpeg_result_is_a_valid_part10_file() -> None:
    result = to_explicit_little_endian(instance_from_file("SC_rgb_jpeg_dcmtk.dcm"))
    header, body = part10_chunks(result)
    ds = dcmread(BytesIO(header + body))
    assert ds.file_meta.TransferSyntaxUID == uid.ExplicitVRLittleEndian
    assert not ds.file_meta.TransferSyntaxUID.is_compressed
    assert ds.file_meta.MediaStorageSOPInstanceUID == result.sop_instance_uid


def test_decompression_keeps_the_sop_instance_uid() -> None:
    source = instance_from_file("SC_rgb_jpeg_dcmtk.dcm")
    result = to_explicit_little_endian(source)
    ds = parse_strictly_explicit_le(result.dataset)
    assert ds.SOPInstanceUID == source.sop_instance_uid
