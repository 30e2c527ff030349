"""Unit tests for dicomweb_gw.codecs.render on pydicom's and pydicom-data's real files.

Outputs are decoded with Pillow and checked pixel by pixel against the
PS3.3 formulas applied to pydicom's own decoding of the same file.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import pixel_array
from pydicom.pixels.processing import apply_color_lut

from dicomweb_gw.codecs.frames import FrameNotFound, FrameReader
from dicomweb_gw.codecs.render import RenderParams, Viewport, Window, render_frame
from dicomweb_gw.errors import BadRequest, GatewayError
from testdata import pydicom_file

Pixels = np.ndarray[Any, Any]


def header(path: Path) -> Dataset:
    return dcmread(path, stop_before_pixels=True)


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def render(path: Path, number: int = 1, head: Dataset | None = None,
           **params: Any) -> Pixels:
    """The frame rendered losslessly (PNG), as an array."""
    params.setdefault("media_type", "image/png")
    data = render_frame(FrameReader(path), number, head if head is not None else header(path),
                        RenderParams(**params))
    return np.asarray(decode(data))


def linear(values: Pixels, center: float, width: float) -> Pixels:
    """PS3.3 C.11.2.1.2.1, written piecewise as the standard does, to 0..255."""
    low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    inside = ((values - (center - 0.5)) / (width - 1) + 0.5) * 255
    return np.where(values <= low, 0, np.where(values > high, 255, inside))


def close(actual: Pixels, expected: Pixels, tolerance: float = 1.0) -> bool:
    """Equal up to rounding (the renderer works in float32)."""
    return bool(np.abs(actual.astype(float) - expected.astype(float)).max() <= tolerance)


# -- grayscale: Modality LUT, VOI, MONOCHROME1 ----------------------------------------


@pytest.fixture(scope="module")
def ct_hu() -> Pixels:
    ds = dcmread(pydicom_file("CT_small.dcm"))
    return pixel_array(ds).astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_ct_explicit_window_maps_hounsfield_units_by_the_linear_formula(ct_hu: Pixels) -> None:
    image = render(pydicom_file("CT_small.dcm"), window=Window(40, 400))
    assert image.dtype == np.uint8
    assert image.shape == (128, 128)
    assert close(image, linear(ct_hu, 40, 400))
    # One known pixel: its HU lands where the formula puts it.
    row, column = np.unravel_index(np.argmin(np.abs(ct_hu - 100)), ct_hu.shape)
    hu = ct_hu[row, column]
    expected = np.clip(((hu - 39.5) / 399 + 0.5) * 255, 0, 255)
    assert abs(int(image[row, column]) - expected) <= 1
    assert (image[ct_hu <= -160.5] == 0).all()
    assert (image[ct_hu > 239.5] == 255).all()


def test_window_from_the_header_and_an_explicit_one_overrides_it(ct_hu: Pixels) -> None:
    path = pydicom_file("CT_small.dcm")
    windowed = header(path)
    windowed.WindowCenter, windowed.WindowWidth = 40, 400
    from_header = render(path, head=windowed)
    assert close(from_header, linear(ct_hu, 40, 400))
    windowed.WindowCenter, windowed.WindowWidth = 1000, 100  # a useless header window
    assert np.array_equal(render(path, head=windowed, window=Window(40, 400)), from_header)


def test_without_a_window_the_frame_range_is_used(ct_hu: Pixels) -> None:
    # CT_small has no Window Center / Width.
    image = render(pydicom_file("CT_small.dcm"))
    assert image[ct_hu == ct_hu.min()].max() == 0
    assert image[ct_hu == ct_hu.max()].min() == 255
    spread = (ct_hu - ct_hu.min()) / (ct_hu.max() - ct_hu.min()) * 255
    assert close(image, spread)


def test_an_unusable_header_window_falls_back_to_the_frame_range() -> None:
    path = pydicom_file("CT_small.dcm")
    broken = header(path)
    broken.WindowCenter, broken.WindowWidth = 40, 0
    assert np.array_equal(render(path, head=broken), render(path))


def test_linear_exact_and_sigmoid_functions(ct_hu: Pixels) -> None:
    path = pydicom_file("CT_small.dcm")
    exact = render(path, window=Window(40, 400, "LINEAR_EXACT"))
    assert close(exact, np.clip(((ct_hu - 40) / 400 + 0.5) * 255, 0, 255))
    sigmoid = render(path, window=Window(40, 400, "SIGMOID"))
    assert close(sigmoid, 255 / (1 + np.exp(-4 * (ct_hu - 40) / 400)))
    windowed = header(path)
    windowed.WindowCenter, windowed.WindowWidth, windowed.VOILUTFunction = 40, 400, "SIGMOID"
    assert np.array_equal(render(path, head=windowed), sigmoid)


def test_monochrome1_is_inverted() -> None:
    path = pydicom_file("RG1_UNCI.dcm")  # CR, MONOCHROME1, window 15000/30000 in the header
    ds = dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    image = render(path)
    assert close(image, 255 - linear(pixel_array(ds).astype(float), 15000, 30000))


def test_monochrome1_and_monochrome2_of_the_same_pixels_are_negatives(tmp_path: Path) -> None:
    ds = dcmread(pydicom_file("MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    inverted = tmp_path / "m1.dcm"
    ds.save_as(inverted)
    original = render(pydicom_file("MR_small.dcm")).astype(int)
    assert np.array_equal(render(inverted).astype(int), 255 - original)


def test_enhanced_ct_takes_rescale_and_window_from_its_functional_groups() -> None:
    path = pydicom_file("eCT_Supplemental.dcm")  # shared groups: intercept -1024, window 49/102
    hu = pixel_array(dcmread(path), index=0).astype(float) - 1024
    assert close(render(path, 1), linear(hu, 49, 102))


def test_modality_lut_and_voi_lut_sequences() -> None:
    mlut = pydicom_file("mlut_18.dcm")
    image = render(mlut)
    assert image.min() == 0
    assert image.max() == 255
    vlut = pydicom_file("vlut_04.dcm")  # 8-bit pixels through a 16-bit VOI LUT
    ds = dcmread(vlut)
    lut = np.asarray(ds.VOILUTSequence[0].LUTData)
    expected = lut[np.clip(pixel_array(ds), 0, len(lut) - 1)] * 255 / 65535
    assert close(render(vlut), expected)


@pytest.mark.parametrize("signed", [False, True])
def test_bits_above_bits_stored_are_ignored(tmp_path: Path, signed: bool) -> None:
    ds = dcmread(pydicom_file("MR_small.dcm"))
    values = pixel_array(ds).astype(np.int16) - (2000 if signed else 0)  # 13-bit values
    ds.PixelRepresentation = int(signed)
    ds.PixelData = values.tobytes()
    clean = tmp_path / "clean.dcm"
    ds.save_as(clean)
    ds.BitsStored, ds.HighBit = 13, 12
    ds.PixelData = ((values.view(np.uint16) & 0x1FFF) | 0xA000).tobytes()  # garbage on top
    dirty = tmp_path / "dirty.dcm"
    ds.save_as(dirty)
    for window in (Window(500, 1000), None):  # the LUT path, and the frame's own range
        assert np.array_equal(render(dirty, window=window), render(clean, window=window))


def test_single_bit_pixels() -> None:
    path = pydicom_file("liver_1frame.dcm")
    image = render(path)
    assert np.array_equal(image, pixel_array(dcmread(path)).astype(np.uint8) * 255)


# -- colour ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rgb_bars() -> Pixels:
    return render(pydicom_file("SC_rgb.dcm"))


@pytest.mark.parametrize(
    ("name", "tolerance"),
    [
        ("SC_rgb_jpeg_dcmtk.dcm", 12.0),  # YBR_FULL, JPEG baseline (lossy)
        ("SC_ybr_full_uncompressed.dcm", 2.0),  # YBR_FULL, converted here
        ("SC_ybr_full_422_uncompressed.dcm", 2.0),  # subsampled, expanded here
        ("SC_rgb_16bit.dcm", 1.0),
        ("SC_rgb_rle.dcm", 0.0),
    ],
)
def test_colour_becomes_rgb(name: str, tolerance: float, rgb_bars: Pixels) -> None:
    image = render(pydicom_file(name))
    assert image.shape == (100, 100, 3)
    assert np.abs(image.astype(float) - rgb_bars).mean() <= tolerance
    assert np.abs(image[5, 50].astype(int) - [255, 0, 0]).max() <= 12  # the top bar is red


def test_multiframe_ybr_jpeg_frame_is_rgb() -> None:
    path = pydicom_file("color3d_jpeg_baseline.dcm")
    expected = pixel_array(dcmread(path), index=4)  # pydicom converts YBR to RGB too
    image = render(path, 5)
    assert image.shape == expected.shape
    assert np.abs(image.astype(float) - expected).mean() < 1


@pytest.mark.parametrize("name", ["OBXXXX1A.dcm", "gdcm-US-ALOKA-16.dcm"])
def test_palette_colour(name: str) -> None:
    # 8-bit indices into 16-bit LUTs; the second's LUTs are segmented.
    path = pydicom_file(name)
    ds = dcmread(path)
    expected = (apply_color_lut(pixel_array(ds), ds) >> 8).astype(np.uint8)
    assert np.array_equal(render(path), expected)


# -- frames ----------------------------------------------------------------------------


def test_multiframe_renders_the_requested_frame() -> None:
    path = pydicom_file("emri_small.dcm")
    frames = [render(path, number) for number in (1, 2, 10)]
    assert not np.array_equal(frames[0], frames[1])
    assert not np.array_equal(frames[1], frames[2])
    with pytest.raises(FrameNotFound) as caught:
        render(path, 11)
    assert caught.value.status_code == 404


def test_corrupt_codestream_is_a_clear_gateway_error(tmp_path: Path) -> None:
    ds = dcmread(pydicom_file("SC_rgb_jpeg_dcmtk.dcm"))
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xc0" + b"\x00\x07garbage" * 20])
    broken = tmp_path / "broken.dcm"
    ds.save_as(broken)
    with pytest.raises(GatewayError) as caught:
        render(broken)
    assert 400 <= caught.value.status_code < 600
    assert "frame 1" in caught.value.message


# -- viewport, region, encoding ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "viewport", "size"),
    [
        ("CT_small.dcm", (64, 32), (32, 32)),  # square into a wide box: height limits
        ("JPEG2000.dcm", (128, 128), (32, 128)),  # 256 wide, 1024 high: aspect kept
        ("MR_small.dcm", (256, 200), (200, 200)),  # 64 x 64 scales up to fit
        ("examples_palette.dcm", (400, 400), (400, 175)),
    ],
)
def test_viewport_fits_keeping_the_aspect_ratio(name: str, viewport: tuple[int, int],
                                                size: tuple[int, int]) -> None:
    data = render_frame(FrameReader(pydicom_file(name)), 1, header(pydicom_file(name)),
                        RenderParams("image/jpeg", Viewport(*viewport)))
    assert decode(data).size == size


def test_source_region_crops_and_negative_extents_flip() -> None:
    path = pydicom_file("CT_small.dcm")
    full = render(path)
    region = full[20:60, 10:40]
    assert np.array_equal(render(path, viewport=Viewport(30, 40, 10, 20, 30, 40)), region)
    assert np.array_equal(render(path, viewport=Viewport(30, 40, 10, 20, -30, 40)),
                          region[:, ::-1])
    assert np.array_equal(render(path, viewport=Viewport(30, 40, 10, 20, 30, -40)),
                          region[::-1, :])
    # Without sw/sh the region runs to the image's edge.
    assert np.array_equal(render(path, viewport=Viewport(118, 128, 10)), full[:, 10:])
    with pytest.raises(BadRequest):
        render(path, viewport=Viewport(64, 64, 200, 0, 10, 10))


def test_quality_trades_jpeg_size() -> None:
    path = pydicom_file("693_UNCI.dcm")
    sizes = [len(render_frame(FrameReader(path), 1, header(path),
                              RenderParams("image/jpeg", quality=quality)))
             for quality in (10, 95)]
    assert sizes[0] < sizes[1] / 2
    assert decode(render_frame(FrameReader(path), 1, header(path),
                               RenderParams("image/jpeg"))).format == "JPEG"


def test_png_of_16_bit_pixels_is_8_bit_grey() -> None:
    path = pydicom_file("MR_small.dcm")
    data = render_frame(FrameReader(path), 1, header(path), RenderParams("image/png"))
    image = decode(data)
    assert (image.format, image.mode, image.size) == ("PNG", "L", (64, 64))


def test_gif() -> None:
    path = pydicom_file("SC_rgb.dcm")
    image = decode(render_frame(FrameReader(path), 1, header(path), RenderParams("image/gif")))
    assert image.format == "GIF"
    assert np.abs(np.asarray(image.convert("RGB"))[5, 50].astype(int) - [255, 0, 0]).max() < 8
