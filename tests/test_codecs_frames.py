"""Unit tests for dicomweb_gw.codecs.frames, on pydicom's real multi-frame test files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, encapsulate_extended, generate_frames, get_frame
from pydicom.pixels import pack_bits, pixel_array, unpack_bits
from pydicom.pixels.decoders.base import DecodeRunner
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    generate_uid,
)

from dicomweb_gw.codecs.frames import (
    FrameDecodeError,
    FrameNotFound,
    FrameReader,
)
from testdata import pydicom_file

J2K_CODESTREAM = b"\xff\x4f\xff\x51"
JP2_BOX = b"\x00\x00\x00\x0cjP  "
JPEG_SOI = b"\xff\xd8"


@pytest.fixture(scope="module")
def emri() -> np.ndarray[Any, Any]:
    """The 10 frames of the uncompressed MR that every lossless variant encodes."""
    return pixel_array(pydicom_file("emri_small.dcm"))


def compressed_frames(name: str) -> list[bytes]:
    ds = dcmread(pydicom_file(name))
    return list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))


def rewrite(source: str, target: Path, syntax: str, pixel_data: bytes, **extra: Any) -> Path:
    """``source`` with new pixel data in another transfer syntax, saved to ``target``."""
    ds = dcmread(pydicom_file(source))
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = pixel_data
    ds["PixelData"].VR = "OB"
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    ds.save_as(target, enforce_file_format=True)
    return target


@pytest.mark.parametrize(
    "name",
    [
        "emri_small.dcm",
        "emri_small_big_endian.dcm",
        "emri_small_RLE.dcm",
        "emri_small_jpeg_ls_lossless.dcm",
        "emri_small_jpeg_2k_lossless.dcm",
    ],
)
def test_frame_n_of_each_lossless_variant_is_frame_n(name: str, emri: np.ndarray[Any, Any]) -> None:
    reader = FrameReader(pydicom_file(name))
    assert reader.info.number_of_frames == 10
    assert (reader.info.rows, reader.info.columns, reader.info.bits_allocated) == (64, 64, 16)
    for number in (1, 2, 5, 9, 10):
        native = reader.native(number)
        assert native == emri[number - 1].astype("<u2").tobytes()
        if number < 10:
            assert native != emri[number].astype("<u2").tobytes()
    info = reader.native_info()
    assert info.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert info.photometric_interpretation == "MONOCHROME2"


@pytest.mark.parametrize(
    ("name", "marker"),
    [
        ("emri_small_jpeg_ls_lossless.dcm", JPEG_SOI),
        ("emri_small_jpeg_2k_lossless.dcm", J2K_CODESTREAM),
        ("examples_ybr_color.dcm", JPEG_SOI),
        ("SC_rgb_rle_2frame.dcm", b"\x03\x00\x00\x00"),  # RLE header: 3 segments (RGB 8-bit)
        ("emri_small_RLE.dcm", b"\x02\x00\x00\x00"),  # 2 segments (16-bit)
    ],
)
def test_stored_compressed_frame_is_pydicoms_frame(name: str, marker: bytes) -> None:
    path = pydicom_file(name)
    ds = dcmread(path)
    reader = FrameReader(path)
    count = reader.info.number_of_frames
    for number in sorted({1, 2, count}):
        stored = reader.stored(number)
        assert stored == get_frame(ds.PixelData, number - 1, number_of_frames=count)
        assert stored.startswith(marker)
    assert reader.stored(1) != reader.stored(2)


@pytest.mark.parametrize(
    "name", ["emri_small.dcm", "liver.dcm", "SC_ybr_full_422_uncompressed.dcm"]
)
def test_stored_native_frame_is_a_slice_of_pixel_data(name: str) -> None:
    path = pydicom_file(name)
    ds = dcmread(path)
    reader = FrameReader(path)
    info = reader.info
    bits = info.rows * info.columns * info.samples_per_pixel * info.bits_allocated
    size = bits // 8 * 2 // 3 if info.photometric_interpretation == "YBR_FULL_422" else bits // 8
    for number in range(1, info.number_of_frames + 1):
        assert reader.stored(number) == ds.PixelData[size * (number - 1) : size * number]
        assert reader.native(number) == reader.stored(number)


@pytest.mark.parametrize(
    ("big_endian", "little_endian"),
    [
        ("SC_rgb_expb_32bit_2frame.dcm", "SC_rgb_32bit_2frame.dcm"),
        ("SC_rgb_expb_16bit_2frame.dcm", "SC_rgb_16bit_2frame.dcm"),
        ("OBXXXX1A_expb_2frame.dcm", "OBXXXX1A_2frame.dcm"),  # 8-bit pixels in OW words
    ],
)
def test_big_endian_frames_come_out_little_endian(big_endian: str, little_endian: str) -> None:
    reader = FrameReader(pydicom_file(big_endian))
    expected = dcmread(pydicom_file(little_endian)).PixelData
    size = len(expected) // 2
    assert reader.stored(1) == expected[:size]
    assert reader.stored(2) == expected[size:]


def test_out_of_range_frame_is_not_found() -> None:
    reader = FrameReader(pydicom_file("emri_small_RLE.dcm"))
    for number in (0, -1, 11):
        with pytest.raises(FrameNotFound) as raised:
            reader.stored(number)
        assert raised.value.status_code == 404
        assert f"frame {number}" in raised.value.message
        assert "10 frames" in raised.value.message
    with pytest.raises(FrameNotFound):
        reader.native(11)


def test_instance_without_pixel_data_has_no_frames(tmp_path: Path) -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    with pytest.raises(FrameNotFound, match="no pixel data"):
        FrameReader(tmp_path / "sr.dcm")


@pytest.mark.parametrize(
    ("fragments_per_frame", "has_bot"), [(2, False), (3, False), (3, True), (1, False)]
)
def test_frames_split_over_fragments(
    tmp_path: Path, emri: np.ndarray[Any, Any], fragments_per_frame: int, has_bot: bool
) -> None:
    frames = compressed_frames("emri_small_jpeg_2k_lossless.dcm")
    data = encapsulate(frames, fragments_per_frame=fragments_per_frame, has_bot=has_bot)
    path = rewrite("emri_small.dcm", tmp_path / "split.dcm", JPEG2000Lossless, data)
    reader = FrameReader(path)
    for number in (1, 4, 10):
        stored = reader.stored(number)
        assert stored == get_frame(data, number - 1, number_of_frames=10)
        # fragment_frame pads odd frames to even fragments; the codestream is intact
        assert stored.rstrip(b"\x00") == frames[number - 1].rstrip(b"\x00")
        assert reader.native(number) == emri[number - 1].astype("<u2").tobytes()


def test_extended_offset_table(tmp_path: Path, emri: np.ndarray[Any, Any]) -> None:
    frames = compressed_frames("emri_small_jpeg_ls_lossless.dcm")
    data, offsets, lengths = encapsulate_extended(frames)
    path = rewrite(
        "emri_small.dcm",
        tmp_path / "eot.dcm",
        "1.2.840.10008.1.2.4.80",
        data,
        ExtendedOffsetTable=offsets,
        ExtendedOffsetTableLengths=lengths,
    )
    reader = FrameReader(path)
    assert reader.stored(7) == frames[6]
    assert reader.native(7) == emri[6].astype("<u2").tobytes()


def test_single_frame_spread_over_fragments() -> None:
    path = pydicom_file("examples_jpeg2k.dcm")  # one colour frame in three fragments, no offsets
    reader = FrameReader(path)
    stored = reader.stored(1)
    assert stored == get_frame(dcmread(path).PixelData, 0, number_of_frames=1)
    assert stored.startswith(J2K_CODESTREAM) or stored.startswith(JP2_BOX)
    assert reader.native_info().photometric_interpretation == "RGB"  # was YBR_RCT
    assert reader.native(1) == pixel_array(path).tobytes()


def test_ybr_full_422_jpeg_decodes_to_rgb() -> None:
    path = pydicom_file("examples_ybr_color.dcm")
    reader = FrameReader(path)
    assert reader.info.photometric_interpretation == "YBR_FULL_422"
    info = reader.native_info()
    assert (info.photometric_interpretation, info.samples_per_pixel) == ("RGB", 3)
    for number in (3, 30):
        native = reader.native(number)
        assert len(native) == 240 * 320 * 3
        assert native == pixel_array(path, index=number - 1).tobytes()


def test_rle_colour_frames() -> None:
    path = pydicom_file("SC_rgb_rle_2frame.dcm")
    reader = FrameReader(path)
    expected = pixel_array(path)
    assert reader.native(1) == expected[0].tobytes()
    assert reader.native(2) == expected[1].tobytes()
    assert reader.native(1) != reader.native(2)


def test_native_decodes_only_the_requested_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    path = pydicom_file("color3d_jpeg_baseline.dcm")  # 120 frames
    reader = FrameReader(path)
    assert reader.info.number_of_frames == 120
    seen: list[bytes] = []
    decode_frame = DecodeRunner._decode_frame

    def spy(runner: DecodeRunner, src: bytes) -> bytes | bytearray:
        seen.append(bytes(src))
        return decode_frame(runner, src)

    monkeypatch.setattr(DecodeRunner, "_decode_frame", spy)
    native = reader.native(77)
    assert seen == [reader.stored(77)]  # one decode, of frame 77's bytes only
    monkeypatch.undo()
    assert native == pixel_array(path, index=76).tobytes()


def test_bit_packed_frames_not_on_byte_boundaries(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2, size=(3, 3, 5), dtype=np.uint8)  # 15 bits a frame
    ds = dcmread(pydicom_file("liver.dcm"))
    ds.Rows, ds.Columns, ds.NumberOfFrames = 3, 5, 3
    ds.PixelData = pack_bits(bits)
    ds.save_as(tmp_path / "bits.dcm", enforce_file_format=True)
    reader = FrameReader(tmp_path / "bits.dcm")
    for number in (1, 2, 3):
        frame = reader.stored(number)
        assert len(frame) == 2
        unpacked = unpack_bits(frame)[:15].reshape(3, 5)
        assert np.array_equal(unpacked, bits[number - 1])


def test_deflated_file(tmp_path: Path, emri: np.ndarray[Any, Any]) -> None:
    ds = dcmread(pydicom_file("emri_small.dcm"))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(tmp_path / "deflated.dcm", enforce_file_format=True)
    reader = FrameReader(tmp_path / "deflated.dcm")
    assert reader.native(3) == emri[2].astype("<u2").tobytes()


def test_encapsulated_uncompressed(tmp_path: Path, emri: np.ndarray[Any, Any]) -> None:
    frames = [frame.astype("<u2").tobytes() for frame in emri]
    path = rewrite(
        "emri_small.dcm", tmp_path / "enc.dcm", "1.2.840.10008.1.2.1.98", encapsulate(frames)
    )
    reader = FrameReader(path)
    assert reader.native(4) == frames[3]
    assert reader.native_info().transfer_syntax_uid == "1.2.840.10008.1.2.1"


def test_corrupt_frame_is_a_decode_error(tmp_path: Path) -> None:
    frames = compressed_frames("emri_small_jpeg_ls_lossless.dcm")
    frames[1] = b"\xff\xd8" + b"\x00" * 62  # an SOI and nothing decodable
    path = rewrite("emri_small.dcm", tmp_path / "bad.dcm", "1.2.840.10008.1.2.4.80",
                   encapsulate(frames))
    reader = FrameReader(path)
    assert len(reader.native(1)) == 64 * 64 * 2
    with pytest.raises(FrameDecodeError) as raised:
        reader.native(2)
    assert raised.value.status_code == 406
    assert "frame 2" in raised.value.message


def test_syntax_without_decoder_is_a_decode_error(tmp_path: Path) -> None:
    frames = compressed_frames("emri_small_jpeg_2k_lossless.dcm")
    # JPEG 2000 Part 2 multi-component: valid to store and send, pydicom cannot decode it
    path = rewrite("emri_small.dcm", tmp_path / "jpx.dcm", "1.2.840.10008.1.2.4.92",
                   encapsulate(frames))
    reader = FrameReader(path)
    assert reader.stored(2) == frames[1]
    with pytest.raises(FrameDecodeError, match="no decoder"):
        reader.native(2)




def test_only_a_deflated_reader_holds_pixel_data() -> None:
    assert FrameReader(pydicom_file("image_dfl.dcm")).holds_pixel_data
    assert not FrameReader(pydicom_file("CT_small.dcm")).holds_pixel_data
