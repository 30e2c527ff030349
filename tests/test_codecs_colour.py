"""Rendered colour instances against a reference render (issue #18, part 5).

The reference (tests/colour_reference.py) is built from pydicom alone,
independent of the gateway's pipeline. Tolerances: PNG (lossless) at most 1
per channel; JPEG (quality 90) at least 35 dB PSNR against the reference.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array
from pydicom.pixels.processing import apply_color_lut, convert_color_space
from pydicom.uid import RLELossless, generate_uid

from colour_reference import (
    JPEG_PSNR,
    PNG_TOLERANCE,
    Pixels,
    max_difference,
    psnr,
)
from colour_reference import reference_render as reference
from dicomweb_gw.codecs.frames import FrameReader
from dicomweb_gw.codecs.render import RenderParams, render_frame
from testdata import pydicom_file

#: Real files: secondary capture, ultrasound and the YBR variants, palette colour.
REAL = [
    "SC_rgb.dcm",  # RGB
    "SC_rgb_16bit.dcm",  # RGB, 16 bits a sample
    "SC_rgb_32bit.dcm",
    "SC_rgb_expb.dcm",  # big endian
    "SC_rgb_rle.dcm",
    "SC_rgb_dcmtk_+eb+cr.dcm",  # RGB JPEG, no colour transform
    "SC_rgb_jpeg_dcmtk.dcm",  # YBR_FULL JPEG baseline
    "SC_rgb_dcmtk_+eb+cy+n1.dcm",  # YBR_FULL JPEG baseline
    "SC_rgb_dcmtk_+eb+cy+s2.dcm",  # YBR_FULL_422 JPEG baseline
    "SC_rgb_jpeg_gdcm.dcm",  # RGB JPEG lossless
    "SC_rgb_jls_lossy_line.dcm",  # RGB JPEG-LS near-lossless
    "SC_rgb_gdcm_KY.dcm",  # RGB JPEG 2000, no colour transform
    "SC_ybr_full_uncompressed.dcm",
    "SC_ybr_full_422_uncompressed.dcm",
    "examples_ybr_color.dcm",  # US YBR_FULL_422 JPEG, multi-frame
    "US1_UNCR.dcm",  # US RGB
    "US1_J2KR.dcm",  # US YBR_RCT
    "US1_J2KI.dcm",  # US YBR_ICT
    "color-pl.dcm",  # US RGB, Planar Configuration 1
    "color-px.dcm",  # the same, interleaved
    "OBXXXX1A.dcm",  # US PALETTE COLOR, 16-bit LUT entries
    "OBXXXX1A_rle.dcm",
    "gdcm-US-ALOKA-16.dcm",  # 16-bit indices, segmented LUTs
    "examples_palette.dcm",
]


def render(path: Path, media_type: str = "image/png", number: int = 1) -> Pixels:
    data = render_frame(FrameReader(path), number, dcmread(path, stop_before_pixels=True),
                        RenderParams(media_type=media_type))
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.mark.parametrize("name", REAL)
def test_png_matches_the_reference_render(name: str) -> None:
    path = pydicom_file(name)
    assert max_difference(render(path), reference(dcmread(path))) <= PNG_TOLERANCE


@pytest.mark.parametrize("name", REAL)
def test_jpeg_is_within_35_db_of_the_reference_render(name: str) -> None:
    path = pydicom_file(name)
    assert psnr(render(path, "image/jpeg"), reference(dcmread(path))) >= JPEG_PSNR


@pytest.mark.parametrize(("name", "number"), [("color3d_jpeg_baseline.dcm", 1),
                                              ("color3d_jpeg_baseline.dcm", 77),
                                              ("examples_ybr_color.dcm", 30)])
def test_frames_of_multiframe_ultrasound(name: str, number: int) -> None:
    path = pydicom_file(name)
    expected = reference(dcmread(path), number - 1)
    assert max_difference(render(path, number=number), expected) <= PNG_TOLERANCE


# -- generated: what pydicom's files lack ------------------------------------------


def _save(ds: Dataset, path: Path) -> Path:
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path


def test_vl_photographic_planar_rgb(tmp_path: Path) -> None:
    ds = dcmread(pydicom_file("US1_UNCR.dcm"))
    rgb = pixel_array(ds)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.4"
    ds.Modality = "XC"
    ds.PixelData = np.ascontiguousarray(rgb.transpose(2, 0, 1)).tobytes()
    ds.PlanarConfiguration = 1
    path = _save(ds, tmp_path / "vl.dcm")
    assert max_difference(render(path), rgb) == 0


def test_ybr_full_rle_renders_in_rgb(tmp_path: Path) -> None:
    ds = dcmread(pydicom_file("SC_ybr_full_uncompressed.dcm"))
    ds.compress(RLELossless)
    path = _save(ds, tmp_path / "ybr_rle.dcm")
    assert dcmread(path).PhotometricInterpretation == "YBR_FULL"
    assert max_difference(render(path), reference(dcmread(path))) <= PNG_TOLERANCE


def _palette(tmp_path: Path, entry_bits: int, descriptor_bits: int) -> tuple[Path, Pixels]:
    """OBXXXX1A with its LUTs rewritten as ``entry_bits``-bit values under a
    descriptor saying ``descriptor_bits``; and the 8-bit RGB it should show."""
    ds = dcmread(pydicom_file("OBXXXX1A.dcm"))
    expected = (apply_color_lut(pixel_array(ds), ds) >> 8).astype(np.uint8)
    for colour in ("Red", "Green", "Blue"):
        lut = np.frombuffer(getattr(ds, f"{colour}PaletteColorLookupTableData"), "<u2")
        values = lut >> (16 - entry_bits)
        entries, first, _ = getattr(ds, f"{colour}PaletteColorLookupTableDescriptor")
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor",
                [entries, first, descriptor_bits])
        setattr(ds, f"{colour}PaletteColorLookupTableData", values.astype("<u2").tobytes())
    return _save(ds, tmp_path / f"palette{entry_bits}.dcm"), expected


def test_palette_with_8_bit_entries(tmp_path: Path) -> None:
    # PS3.3 C.7.6.3.1.5: the descriptor's third value says 8; pydicom returns the
    # entries as 16-bit words all the same, and they were shifted down to black.
    path, expected = _palette(tmp_path, 8, 8)
    assert max_difference(render(path), expected) == 0


def test_palette_whose_descriptor_says_16_over_8_bit_entries(tmp_path: Path) -> None:
    path, expected = _palette(tmp_path, 8, 16)
    assert max_difference(render(path), expected) == 0


def test_big_endian_palette_renders_as_its_little_endian_original() -> None:
    # pydicom's big endian copy of OBXXXX1A keeps 8-bit values under a 16-bit
    # descriptor: rendered black until now.
    expected = render(pydicom_file("OBXXXX1A.dcm"))
    assert expected.max() == 255
    assert max_difference(render(pydicom_file("OBXXXX1A_expb.dcm")), expected) == 0


def test_16_bit_ybr_full(tmp_path: Path) -> None:
    # pydicom converts 8-bit YBR only: samples are scaled to 8 bits first (the
    # chroma offset 32768 becomes 128), then converted.
    ds = dcmread(pydicom_file("SC_rgb_16bit.dcm"))
    rgb8 = (pixel_array(ds) >> 8).astype(np.uint8)
    ybr8 = convert_color_space(rgb8, "RGB", "YBR_FULL")
    ybr16 = (ybr8.astype(np.uint16) << 8) | ybr8
    ds.PixelData = ybr16.astype("<u2").tobytes()
    ds.PhotometricInterpretation = "YBR_FULL"
    path = _save(ds, tmp_path / "ybr16.dcm")
    assert max_difference(render(path), convert_color_space(ybr8, "YBR_FULL", "RGB")) == 0
    assert max_difference(render(path), rgb8) <= 2  # and back to the original colours


def test_bits_above_bits_stored_do_not_tint_colour(tmp_path: Path) -> None:
    ds = dcmread(pydicom_file("SC_rgb_16bit.dcm"))
    twelve = pixel_array(ds) >> 4
    ds.BitsStored, ds.HighBit = 12, 11
    ds.PixelData = (twelve | 0xA000).astype("<u2").tobytes()  # an overlay in the top bits
    path = _save(ds, tmp_path / "rgb12.dcm")
    assert max_difference(render(path), (twelve >> 4).astype(np.uint8)) == 0


def test_ybr_full_422_label_over_rgb_samples_renders_the_rgb(tmp_path: Path) -> None:
    # A PACS that decompressed a YBR_FULL_422 JPEG to RGB and kept the label: 3
    # samples a pixel cannot be subsampled YBR, so they are shown as the RGB they are.
    ds = dcmread(pydicom_file("SC_rgb_2frame.dcm"))
    rgb = pixel_array(ds)
    ds.PhotometricInterpretation = "YBR_FULL_422"
    path = _save(ds, tmp_path / "mislabelled.dcm")
    assert max_difference(render(path, number=2), rgb[1]) == 0
