"""The decoder dispatch: imagecodecs where it is faster, the same bytes as pydicom's.

Every pydicom test file of a syntax in the table is decoded both ways; the
fast path must give exactly FrameReader.native()'s bytes, or step aside.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels.encoders import JPEGLSLosslessEncoder as JpegLsLosslessEncoder

from dicomweb_gw.codecs.decoders import FAST_DECODERS, decode_fast
from dicomweb_gw.codecs.encoders import SampleFormat
from dicomweb_gw.codecs.frames import FrameInfo, FrameReader
from dicomweb_gw.codecs.part10 import instance_from_file, part10_chunks
from dicomweb_gw.codecs.transcode import transcode_instance
from testdata import pydicom_file

FILES = [
    "emri_small_jpeg_ls_lossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPEG-LL.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm", "SC_rgb_jpeg_gdcm.dcm", "SC_rgb_jpeg_dcmtk.dcm",
    "color3d_jpeg_baseline.dcm", "MR_small_jp2klossless.dcm", "emri_small_jpeg_2k_lossless.dcm",
    "US1_J2KR.dcm", "SC_rgb_gdcm_KY.dcm",
]
#: Grayscale frames, unsigned and signed: these must take the fast path.
FAST = ["emri_small_jpeg_ls_lossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPEG-LL.dcm",
        "JPGLosslessP14SV1_1s_1f_8b.dcm"]


def test_the_table_covers_jpeg_ls_jpeg_and_htj2k_lossless() -> None:
    for syntax in ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.70"):
        assert syntax in FAST_DECODERS
    assert "1.2.840.10008.1.2.4.90" not in FAST_DECODERS  # JPEG 2000 stays with pylibjpeg
    assert "1.2.840.10008.1.2.4.201" in FAST_DECODERS
    assert "1.2.840.10008.1.2.4.203" not in FAST_DECODERS  # lossy HTJ2K stays with OpenJPEG


@pytest.mark.parametrize("name", FILES)
def test_fast_decode_is_byte_identical_or_declines(name: str) -> None:
    reader = FrameReader(pydicom_file(name))
    header = dcmread(reader.path, stop_before_pixels=True)
    fast = decode_fast(reader.info.transfer_syntax_uid, reader.stored(1), reader.native_info(),
                       _sample(header))
    if name in FAST:
        assert fast is not None
    if fast is not None:
        assert fast == reader.native(1)


def test_colour_frames_are_left_to_pydicom() -> None:
    for name in ("SC_rgb_jpeg_dcmtk.dcm", "US1_J2KR.dcm", "SC_rgb_jpeg_gdcm.dcm"):
        reader = FrameReader(pydicom_file(name))
        header = dcmread(reader.path, stop_before_pixels=True)
        assert decode_fast(reader.info.transfer_syntax_uid, reader.stored(1),
                           reader.native_info(), _sample(header)) is None


def test_signed_jpeg_ls_of_12_bits_is_sign_extended() -> None:
    """Negative values come back as pydicom gives them: sign-extended to 16 bits."""
    values = (np.arange(64 * 64, dtype=np.int16).reshape(64, 64) % 4096) - 2048
    encoded = JpegLsLosslessEncoder.encode(values, rows=64, columns=64, samples_per_pixel=1,
                                           bits_allocated=16, bits_stored=12,
                                           pixel_representation=1,
                                           photometric_interpretation="MONOCHROME2",
                                           number_of_frames=1)
    info = FrameInfo(1, "1.2.840.10008.1.2.4.80", 64, 64, 1, 16, "MONOCHROME2")
    fast = decode_fast("1.2.840.10008.1.2.4.80", encoded, info, SampleFormat(12, 1))
    assert fast is not None
    assert np.array_equal(np.frombuffer(fast, "<i2").reshape(64, 64), values)


def _sample(header: Dataset) -> SampleFormat:
    return SampleFormat(int(header.BitsStored), int(header.get("PixelRepresentation", 0)))


def test_lossy_jpeg_is_within_one_level_of_pydicom() -> None:
    """IDCT rounding is the decoder's: libjpeg-turbo and libjpeg may differ by one."""
    reader = FrameReader(pydicom_file("JPGExtended.dcm"))
    header = dcmread(reader.path, stop_before_pixels=True)
    fast = decode_fast(reader.info.transfer_syntax_uid, reader.stored(1), reader.native_info(),
                       _sample(header))
    assert fast is not None
    dtype = "<i2" if header.PixelRepresentation else "<u2"
    ours = np.frombuffer(fast, dtype).astype(int)
    theirs = np.frombuffer(reader.native(1), dtype).astype(int)
    assert np.abs(ours - theirs).max() <= 1


def test_twelve_bit_jpeg_extended_that_pylibjpeg_refuses_is_decoded() -> None:
    reader = FrameReader(pydicom_file("JPEG-lossy.dcm"))
    header = dcmread(reader.path, stop_before_pixels=True)
    fast = decode_fast(reader.info.transfer_syntax_uid, reader.stored(1), reader.native_info(),
                       _sample(header))
    assert fast is not None
    assert len(fast) == reader.info.rows * reader.info.columns * 2
    assert np.frombuffer(fast, "<u2").max() > 0


@pytest.mark.parametrize(("name", "syntax"), [
    ("emri_small.dcm", "1.2.840.10008.1.2.4.201"),  # unsigned, Bits Stored 12
    ("CT_small.dcm", "1.2.840.10008.1.2.4.202"),  # signed
    ("MR_small.dcm", "1.2.840.10008.1.2.4.201"),  # signed
])
def test_htj2k_lossless_decodes_as_openjpeg_does(name: str, syntax: str, tmp_path: Path
                                                 ) -> None:
    encoded = transcode_instance(instance_from_file(pydicom_file(name)), syntax)
    path = tmp_path / "htj2k.dcm"
    path.write_bytes(b"".join(part10_chunks(encoded)))
    reader = FrameReader(path)
    header = dcmread(path, stop_before_pixels=True)
    fast = decode_fast(syntax, reader.stored(1), reader.native_info(), _sample(header))
    assert fast is not None
    assert fast == reader.native(1)


def test_a_part_1_codestream_labelled_htj2k_falls_back() -> None:
    """The test corpus's "HTJ2K" is a relabelled JPEG 2000 file: OpenJPH cannot read it."""
    reader = FrameReader(pydicom_file("MR_small_jp2klossless.dcm"))
    header = dcmread(reader.path, stop_before_pixels=True)
    assert decode_fast("1.2.840.10008.1.2.4.201", reader.stored(1), reader.native_info(),
                       _sample(header)) is None
