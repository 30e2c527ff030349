"""HTJ2K encoding (imagecodecs' OpenJPH): lossless round trips through two real
decoders, the RPCL codestream the progressive viewers need, and lossy .203.

The decoders are imagecodecs' own (OpenJPH) and pylibjpeg-openjpeg (OpenJPEG,
what pydicom uses); a frame must come back exactly, signedness included.
"""

from __future__ import annotations

import struct
from typing import Any

import imagecodecs
import numpy as np
import openjpeg
import pytest
from pydicom import dcmread, uid

from dicomweb_gw.codecs.encoders import ENCODABLE, LOSSY_TARGETS
from dicomweb_gw.codecs.frames import FrameInfo
from dicomweb_gw.codecs.part10 import instance_from_file, part10_chunks
from dicomweb_gw.codecs.transcode import SampleFormat, encode_frame, transcode_instance
from testdata import pydicom_file

LOSSLESS = [uid.HTJ2KLossless, uid.HTJ2KLosslessRPCL]
SOC, SIZ, COD, TLM, SOT = 0xFF4F, 0xFF51, 0xFF52, 0xFF55, 0xFF90
RPCL = 2  # progression order byte of COD (ITU-T T.800 Table A.16)


def _frame(kind: str, rows: int = 64, columns: int = 72
           ) -> tuple[np.ndarray[Any, Any], FrameInfo, SampleFormat]:
    """A smooth-plus-noise frame using the whole stored range of its sample format."""
    spp, bits, stored, signed, photometric = {
        "8-bit": (1, 8, 8, 0, "MONOCHROME2"),
        "12-bit": (1, 16, 12, 0, "MONOCHROME2"),
        "16-bit": (1, 16, 16, 0, "MONOCHROME2"),
        "signed-12": (1, 16, 12, 1, "MONOCHROME2"),
        "signed-16": (1, 16, 16, 1, "MONOCHROME2"),
        "rgb": (3, 8, 8, 0, "RGB"),
    }[kind]
    rng = np.random.default_rng(11)
    high = 1 << (stored - 1 if signed else stored)
    low = -high if signed else 0
    shape = (rows, columns, spp) if spp > 1 else (rows, columns)
    ramp = np.add.outer(np.linspace(0, 1, rows), np.linspace(0, 1, columns)) / 2
    if spp > 1:
        ramp = ramp[..., None] * np.array([1.0, 0.6, 0.3])
    values = low + ramp * (high - low - 1) + rng.integers(0, 5, size=shape)
    values[0, 0] = low  # the extremes: a sign or range error cannot hide
    values[-1, -1] = high - 1
    array = np.clip(values, low, high - 1).astype(f"<{'i' if signed else 'u'}{bits // 8}")
    info = FrameInfo(1, uid.ExplicitVRLittleEndian, rows, columns, spp, bits, photometric)
    return array, info, SampleFormat(stored, signed)


def _markers(codestream: bytes) -> list[tuple[int, bytes]]:
    """The main header's marker segments, SOC to the first SOT."""
    assert struct.unpack(">H", codestream[:2])[0] == SOC
    found: list[tuple[int, bytes]] = []
    at = 2
    while True:
        marker, length = struct.unpack(">HH", codestream[at:at + 4])
        found.append((marker, codestream[at + 4:at + 2 + length]))
        if marker == SOT:
            return found
        at += 2 + length


def test_the_three_htj2k_syntaxes_are_encodable_as_image_jphc() -> None:
    for syntax in (uid.HTJ2KLossless, uid.HTJ2KLosslessRPCL, uid.HTJ2K):
        assert ENCODABLE[syntax] == "image/jphc"
    assert uid.HTJ2K in LOSSY_TARGETS
    assert not set(LOSSLESS) & LOSSY_TARGETS


@pytest.mark.parametrize("syntax", LOSSLESS)
@pytest.mark.parametrize("kind", ["8-bit", "12-bit", "16-bit", "signed-12", "signed-16", "rgb"])
def test_lossless_round_trip_through_two_decoders(kind: str, syntax: str) -> None:
    array, info, sample = _frame(kind)
    encoded = encode_frame(array.tobytes(), info, syntax, sample)
    # planar=False: imagecodecs hands back planes for colour without a transform
    for decoded in (imagecodecs.htj2k_decode(encoded, planar=False), openjpeg.decode(encoded)):
        assert decoded.dtype == array.dtype  # signedness and width from the codestream
        assert np.array_equal(decoded, array)


def test_planar_colour_is_encoded_interleaved_and_exact() -> None:
    array, info, sample = _frame("rgb")
    planar = np.ascontiguousarray(array.transpose(2, 0, 1)).tobytes()
    encoded = encode_frame(planar, FrameInfo(1, info.transfer_syntax_uid, info.rows,
                                             info.columns, 3, 8, "RGB", 1),
                           uid.HTJ2KLossless, sample)
    assert np.array_equal(openjpeg.decode(encoded), array)


def test_colour_keeps_rgb_no_multi_component_transform() -> None:
    array, info, sample = _frame("rgb")
    encoded = encode_frame(array.tobytes(), info, uid.HTJ2KLossless, sample)
    cod = dict(_markers(encoded))[COD]
    assert cod[4] == 0  # SGcod multiple component transform: none, so RGB stays RGB


def test_rpcl_syntax_has_rpcl_order_tlm_and_a_tile_part_per_resolution() -> None:
    array, info, sample = _frame("12-bit", 512, 512)
    encoded = encode_frame(array.tobytes(), info, uid.HTJ2KLosslessRPCL, sample)
    markers = _markers(encoded)
    cod = dict(markers)[COD]
    assert cod[1] == RPCL
    assert TLM in dict(markers)
    resolutions = cod[5] + 1  # decomposition levels + 1
    assert encoded.count(b"\xff\x90") >= resolutions  # SOT: one tile-part per resolution


def test_rpcl_syntax_decomposes_a_large_frame_to_a_64_pixel_base() -> None:
    """PS3.5 10.18: enough decompositions for a thumbnail-sized base resolution."""
    wide = np.tile(np.arange(4100, dtype=np.uint8), (40, 1))
    info = FrameInfo(1, uid.ExplicitVRLittleEndian, 40, 4100, 1, 8, "MONOCHROME2")
    encoded = encode_frame(wide.tobytes(), info, uid.HTJ2KLosslessRPCL, SampleFormat(8, 0))
    levels = dict(_markers(encoded))[COD][5]
    assert 4100 / 2**levels <= 64
    assert levels == 7
    assert np.array_equal(openjpeg.decode(encoded), wide)


def test_plain_lossless_is_rpcl_too_so_a_prefix_is_a_low_resolution() -> None:
    """What cornerstone3D's byte-range loading relies on: the first bytes of a
    frame decode to a small image, and a prefix to an approximation."""
    array, info, sample = _frame("12-bit", 512, 512)
    encoded = encode_frame(array.tobytes(), info, uid.HTJ2KLossless, sample)
    assert dict(_markers(encoded))[COD][1] == RPCL
    prefix = encoded[: len(encoded) // 8]
    small = imagecodecs.htj2k_decode(prefix, resilient=True, skipres=2)
    assert small.shape == (128, 128)
    whole = imagecodecs.htj2k_decode(prefix, resilient=True)
    assert whole.shape == array.shape
    assert np.abs(whole.astype(float) - array).mean() < 0.05 * 4096


@pytest.mark.parametrize("syntax", [*LOSSLESS, uid.HTJ2K])
def test_the_encoding_is_stable(syntax: str) -> None:
    """Range requests for one frame may each re-encode it: the bytes must agree."""
    array, info, sample = _frame("12-bit", 256, 256)
    native = array.tobytes()
    assert encode_frame(native, info, syntax, sample) == encode_frame(native, info, syntax,
                                                                      sample)


@pytest.mark.parametrize(("kind", "tolerance"), [("12-bit", 16), ("16-bit", 256),
                                                 ("8-bit", 4), ("signed-12", 16)])
def test_lossy_is_close_and_smaller(kind: str, tolerance: int) -> None:
    array, info, sample = _frame(kind, 256, 256)
    native = array.tobytes()
    lossy = encode_frame(native, info, uid.HTJ2K, sample)
    lossless = encode_frame(native, info, uid.HTJ2KLossless, sample)
    assert len(lossy) < len(lossless)
    decoded = openjpeg.decode(lossy)
    assert decoded.dtype == array.dtype
    assert np.abs(decoded.astype(np.int64) - array).max() <= tolerance


def test_lossy_instance_says_it_was_lossy_compressed() -> None:
    source = instance_from_file(pydicom_file("CT_small.dcm"))
    result = transcode_instance(source, uid.HTJ2K)
    from io import BytesIO
    dataset = dcmread(BytesIO(b"".join(part10_chunks(result))))
    assert dataset.file_meta.TransferSyntaxUID == uid.HTJ2K
    assert dataset.LossyImageCompression == "01"
    assert dataset.LossyImageCompressionMethod == "ISO_15444_15"
    assert float(dataset.LossyImageCompressionRatio) > 1
    reference = dcmread(pydicom_file("CT_small.dcm")).pixel_array
    assert np.abs(dataset.pixel_array.astype(int) - reference).max() <= 16


@pytest.mark.parametrize("syntax", LOSSLESS)
def test_lossless_instance_is_exact_and_not_marked_lossy(syntax: str) -> None:
    source = instance_from_file(pydicom_file("CT_small.dcm"))
    result = transcode_instance(source, syntax)
    from io import BytesIO
    dataset = dcmread(BytesIO(b"".join(part10_chunks(result))))
    assert dataset.file_meta.TransferSyntaxUID == syntax
    assert "LossyImageCompression" not in dataset or dataset.LossyImageCompression == "00"
    assert np.array_equal(dataset.pixel_array, dcmread(pydicom_file("CT_small.dcm")).pixel_array)
