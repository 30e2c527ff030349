"""Photometric Interpretation matches the pixels in every representation (issue #18, part 5).

The rule is in dicomweb_gw/codecs/photometric.py: metadata describes the
instance as stored; a decoded frame is in that colour space when it has an
uncompressed form (RGB, YBR_FULL, PALETTE COLOR, MONOCHROME), and RGB for the
interpretations only a codestream has (YBR_FULL_422 JPEG, YBR_RCT, YBR_ICT);
a transcoded instance's own pixel module says what its pixels are.

Every check reads the gateway's bytes the way a client would, through
pydicom, with only the attributes the client has (the metadata, or the
instance's own header), and compares with pydicom's decoding of the file.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread, uid
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels import pixel_array

from colour_reference import CODESTREAM_ONLY, as_client_reads
from dicomweb_gw.codecs import transcode
from dicomweb_gw.codecs.encoders import ENCODABLE, TranscodeError
from dicomweb_gw.codecs.frames import FrameInfo, FrameReader
from dicomweb_gw.codecs.part10 import instance_from_file, part10_chunks
from dicomweb_gw.dicomweb.metadata import instance_metadata
from testdata import pydicom_file

Pixels = np.ndarray[Any, Any]

#: Lossy targets the gateway may encode (HTJ2K, .203): compared by PSNR.
LOSSY = ("1.2.840.10008.1.2.4.203",)

#: Colour instances as stored: (file, what it is). Lossy ones are compared with
#: pydicom's decoding of the same codestream, so exactly too.
COLOUR_FILES = [
    "SC_rgb.dcm",  # RGB, native
    "color-pl.dcm",  # US RGB, Planar Configuration 1
    "SC_ybr_full_uncompressed.dcm",  # YBR_FULL, native
    "SC_ybr_full_422_uncompressed.dcm",  # YBR_FULL_422, native (subsampled)
    "SC_rgb_jpeg_dcmtk.dcm",  # YBR_FULL JPEG baseline
    "SC_rgb_dcmtk_+eb+cy+n1.dcm",  # YBR_FULL JPEG baseline
    "SC_rgb_dcmtk_+eb+cy+s2.dcm",  # YBR_FULL_422 JPEG baseline
    "SC_rgb_dcmtk_+eb+cr.dcm",  # RGB JPEG baseline (no colour transform)
    "color3d_jpeg_baseline.dcm",  # US YBR_FULL_422 JPEG, 120 frames
    "US1_J2KR.dcm",  # US YBR_RCT, JPEG 2000 lossless
    "US1_J2KI.dcm",  # US YBR_ICT, JPEG 2000
    "SC_rgb_rle.dcm",  # RGB RLE
    "OBXXXX1A.dcm",  # US PALETTE COLOR
    "OBXXXX1A_rle.dcm",  # US PALETTE COLOR, RLE
]


def _path(name: str, tmp_path: Path) -> Path:
    if name == "ybr_full_rle":
        return _ybr_full_rle(tmp_path)
    if name == "rgb_rle_planar":
        return _rgb_rle_planar(tmp_path)
    return pydicom_file(name)


def _rgb_rle_planar(tmp_path: Path) -> Path:
    """RGB in RLE saying Planar Configuration 1, as the gateway's own RLE does."""
    instance = transcode.transcode_instance(instance_from_file(pydicom_file("SC_rgb.dcm")),
                                            uid.RLELossless)
    path = tmp_path / "rgb_rle_planar.dcm"
    path.write_bytes(b"".join(part10_chunks(instance)))
    assert dcmread(path).PlanarConfiguration == 1
    return path


def _ybr_full_rle(tmp_path: Path) -> Path:
    """YBR_FULL in RLE (pydicom keeps the colour space when it compresses)."""
    ds = dcmread(pydicom_file("SC_ybr_full_uncompressed.dcm"))
    ds.compress(uid.RLELossless)
    path = tmp_path / "ybr_full_rle.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _reference(path: Path, index: int = 0) -> Pixels:
    """pydicom's decoding of the stored file, converted to RGB (its default)."""
    return pixel_array(dcmread(path), index=index)


def _metadata(path: Path) -> dict[str, Any]:
    return instance_metadata(path, "studies/1/series/2/instances/3")


@pytest.mark.parametrize("name", [*COLOUR_FILES, "ybr_full_rle", "rgb_rle_planar"])
def test_octet_stream_frames_are_what_the_metadata_says(name: str, tmp_path: Path) -> None:
    path = _path(name, tmp_path)
    metadata = _metadata(path)
    stored = dcmread(path, stop_before_pixels=True)
    assert metadata["00280004"]["Value"] == [stored.PhotometricInterpretation]  # as stored
    reader = FrameReader(path)
    frame = reader.native(1)
    photometric = stored.PhotometricInterpretation
    if photometric in CODESTREAM_ONLY and stored.file_meta.TransferSyntaxUID.is_compressed:
        # No uncompressed form: RGB, 3 full-size samples (not 2, as YBR_FULL_422 has).
        assert reader.native_info().photometric_interpretation == "RGB"
        assert len(frame) == stored.Rows * stored.Columns * 3
        decoded = np.frombuffer(frame, np.uint8).reshape(stored.Rows, stored.Columns, 3)
    else:
        assert reader.native_info().photometric_interpretation == photometric
        decoded = as_client_reads(frame, metadata)
    assert np.array_equal(decoded, _reference(path))


def test_a_ybr_full_jpeg_frame_stays_ybr_full() -> None:
    # The case that showed wrong colours: the metadata says YBR_FULL, so a client
    # converts the octet-stream frame from YBR; an RGB frame was converted twice.
    path = pydicom_file("SC_rgb_jpeg_dcmtk.dcm")
    frame = np.frombuffer(FrameReader(path).native(1), np.uint8).reshape(100, 100, 3)
    ybr = pixel_array(dcmread(path), as_rgb=False)
    assert np.array_equal(frame, ybr)
    assert abs(int(frame[5, 50, 0]) - 76) <= 2  # red's luminance, not red


def test_multiframe_ybr_full_422_jpeg_frames_are_rgb() -> None:
    path = pydicom_file("color3d_jpeg_baseline.dcm")
    reader = FrameReader(path)
    for number in (1, 60, 120):
        frame = np.frombuffer(reader.native(number), np.uint8).reshape(480, 640, 3)
        assert np.array_equal(frame, _reference(path, number - 1))


def _read(instance: Any) -> Dataset:
    return dcmread(io.BytesIO(b"".join(part10_chunks(instance))))


def _psnr(actual: Pixels, expected: Pixels) -> float:
    error = np.mean((actual.astype(float) - expected.astype(float)) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(255**2 / error))


@pytest.mark.parametrize("syntax", list(ENCODABLE))
@pytest.mark.parametrize("name", [n for n in COLOUR_FILES
                                  if n not in ("SC_ybr_full_422_uncompressed.dcm",
                                               "color3d_jpeg_baseline.dcm")]
                         + ["ybr_full_rle"])
def test_transcoded_instances_describe_their_own_pixels(name: str, syntax: str,
                                                        tmp_path: Path) -> None:
    path = _path(name, tmp_path)
    source = instance_from_file(path)
    result = _read(transcode.transcode_instance(source, syntax))
    stored = dcmread(path, stop_before_pixels=True)
    photometric = str(result.PhotometricInterpretation)
    if syntax != source.transfer_syntax_uid:
        stored_as = str(stored.PhotometricInterpretation)
        expected = "RGB" if stored_as in CODESTREAM_ONLY else stored_as
        if syntax not in (uid.JPEG2000Lossless, uid.HTJ2KLossless, uid.HTJ2KLosslessRPCL,
                          uid.HTJ2K) or expected != "RGB":
            assert photometric == expected
        else:  # RGB, or YBR_RCT / YBR_ICT if the encoder transformed the colours
            assert photometric in ("RGB", "YBR_RCT", "YBR_ICT")
        if int(stored.SamplesPerPixel) == 3:
            assert int(result.PlanarConfiguration) == (1 if syntax == uid.RLELossless else 0)
    assert int(result.SamplesPerPixel) == int(stored.SamplesPerPixel)
    # pydicom reads the result with its own header only and gets the same image.
    decoded, reference = pixel_array(result), _reference(path)
    if syntax in LOSSY and syntax != source.transfer_syntax_uid:
        assert _psnr(decoded, reference) >= 40
    else:
        assert np.array_equal(decoded, reference)


@pytest.mark.parametrize("name", ["SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_dcmtk_+eb+cy+s2.dcm",
                                  "US1_J2KR.dcm", "ybr_full_rle"])
def test_a_decompressed_instance_holds_the_octet_stream_frames(name: str,
                                                               tmp_path: Path) -> None:
    path = _path(name, tmp_path)
    result = _read(transcode.transcode_instance(instance_from_file(path),
                                                uid.ExplicitVRLittleEndian))
    reader = FrameReader(path)
    assert result.PhotometricInterpretation == reader.native_info().photometric_interpretation
    assert bytes(result.PixelData)[:len(reader.native(1))] == reader.native(1)


def test_subsampled_ybr_full_422_is_refused_by_name_not_by_size() -> None:
    source = instance_from_file(pydicom_file("SC_ybr_full_422_uncompressed.dcm"))
    with pytest.raises(TranscodeError, match="YBR_FULL_422 pixels cannot be encoded as RLE"):
        transcode.transcode_instance(source, uid.RLELossless)


# -- JPEG 2000 colour transform ---------------------------------------------------


def _first_frame(name: str) -> bytes:
    ds = dcmread(pydicom_file(name))
    return next(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1))))


@pytest.mark.parametrize(("name", "expected"), [
    ("US1_J2KR.dcm", "YBR_RCT"),  # 5/3 wavelet with the colour transform
    ("US1_J2KI.dcm", "YBR_ICT"),  # 9/7 with it
    ("GDCMJ2K_TextGBR.dcm", "YBR_RCT"),
    ("SC_rgb_gdcm_KY.dcm", "RGB"),  # no colour transform
])
def test_encoded_photometric_reads_the_codestream(name: str, expected: str) -> None:
    from dicomweb_gw.codecs.photometric import encoded_photometric  # new in this change

    assert encoded_photometric(uid.JPEG2000Lossless, _first_frame(name), "RGB") == expected
    assert encoded_photometric(uid.HTJ2KLossless, _first_frame(name), "RGB") == expected
    # Not JPEG 2000, or not RGB pixels: the interpretation is left alone.
    assert encoded_photometric(uid.RLELossless, _first_frame(name), "RGB") == "RGB"
    assert encoded_photometric(uid.JPEG2000Lossless, _first_frame(name),
                               "YBR_FULL") == "YBR_FULL"


def test_truncated_codestreams_leave_the_interpretation_alone() -> None:
    from dicomweb_gw.codecs.photometric import encoded_photometric  # new in this change

    frame = _first_frame("US1_J2KR.dcm")
    for cut in (0, 2, 6, 40, 60):
        assert encoded_photometric(uid.JPEG2000Lossless, frame[:cut], "RGB") in (
            "RGB", "YBR_RCT")
    assert encoded_photometric(uid.JPEG2000Lossless, b"\xff\x4f\xff\x51\x00", "RGB") == "RGB"


def test_an_encoder_that_transforms_colours_makes_the_instance_ybr_rct(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The installed encoders keep RGB components; one that applies the
    # reversible colour transform (as an HTJ2K encoder may) must be labelled.
    transformed = _first_frame("US1_J2KR.dcm")

    def encode(native: bytes, info: FrameInfo, syntax: str, sample: object = None) -> bytes:
        return transformed

    monkeypatch.setattr(transcode, "encode_frame", encode)
    source = instance_from_file(pydicom_file("US1_UNCR.dcm"))
    result = _read(transcode.transcode_instance(source, uid.JPEG2000Lossless))
    assert result.PhotometricInterpretation == "YBR_RCT"
    assert np.array_equal(pixel_array(result), pixel_array(dcmread(pydicom_file("US1_UNCR.dcm"))))


# -- YBR_FULL_422 labels over RGB samples (a PACS that decompressed and forgot) -----


def _mislabelled(tmp_path: Path, syntax: str = uid.ExplicitVRLittleEndian) -> tuple[Path, Pixels]:
    """Two RGB frames under YBR_FULL_422: what a PACS sends after decompressing a
    YBR_FULL_422 JPEG to RGB without updating the label (3 samples a pixel)."""
    ds = dcmread(pydicom_file("SC_rgb_2frame.dcm"))
    rgb = pixel_array(ds)
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.file_meta.TransferSyntaxUID = syntax
    path = tmp_path / "mislabelled.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path, rgb


def test_a_ybr_full_422_label_over_rgb_samples_is_read_as_rgb(tmp_path: Path) -> None:
    path, rgb = _mislabelled(tmp_path)
    reader = FrameReader(path)
    assert reader.native_info().photometric_interpretation == "RGB"
    # Frame 2 starts after 3 full-size samples a pixel, not 2.
    frame = np.frombuffer(reader.native(2), np.uint8).reshape(100, 100, 3)
    assert np.array_equal(frame, rgb[1])
    metadata = _metadata(path)
    assert metadata["00280004"]["Value"] == ["RGB"]
    assert np.array_equal(as_client_reads(reader.native(1), metadata), rgb[0])


def test_true_ybr_full_422_keeps_its_label() -> None:
    path = pydicom_file("SC_ybr_full_422_uncompressed.dcm")  # 2 samples a pixel
    assert FrameReader(path).native_info().photometric_interpretation == "YBR_FULL_422"
    assert _metadata(path)["00280004"]["Value"] == ["YBR_FULL_422"]


@pytest.mark.parametrize(("stored", "syntax"), [
    (uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian),
    (uid.ExplicitVRLittleEndian, uid.RLELossless),
    (uid.ExplicitVRLittleEndian, uid.JPEG2000Lossless),
    (uid.ImplicitVRLittleEndian, uid.JPEG2000Lossless),
])
def test_a_mislabelled_instance_transcodes_as_rgb(tmp_path: Path, stored: str,
                                                  syntax: str) -> None:
    # (Sent as stored, an instance keeps its label: its bytes are not rewritten.)
    path, rgb = _mislabelled(tmp_path, stored)
    result = _read(transcode.transcode_instance(instance_from_file(path), syntax))
    assert result.PhotometricInterpretation == "RGB"
    assert np.array_equal(pixel_array(result), rgb)
