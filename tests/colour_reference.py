"""Reference renders and client-side readings of colour pixels, from pydicom alone.

Shared by the colour tests (issue #18, part 5). Nothing here uses the
gateway's code: the references are pydicom's ``pixel_array`` (which converts
YBR to RGB itself), ``convert_color_space``, ``apply_color_lut`` and numpy.

Tolerances: a lossless rendering (PNG) is within ``PNG_TOLERANCE`` of the
reference in every channel, a JPEG rendering at least ``JPEG_PSNR`` dB from it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import pixel_array
from pydicom.pixels.processing import apply_color_lut, convert_color_space

Pixels = np.ndarray[Any, Any]

PNG_TOLERANCE = 1
JPEG_PSNR = 35.0

#: PS3.3 C.7.6.3.1.2: interpretations only a compressed codestream has; decoded,
#: the gateway sends them as RGB (written out here, not imported from the gateway).
CODESTREAM_ONLY = ("YBR_FULL_422", "YBR_PARTIAL_420", "YBR_RCT", "YBR_ICT")


def reference_render(ds: Dataset, index: int = 0) -> Pixels:
    """Frame ``index`` of ``ds`` as 8-bit RGB (palette and colour instances)."""
    photometric = ds.PhotometricInterpretation
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(pixel_array(ds, index=index), ds)
        entry_bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        return (rgb >> (entry_bits - 8)).astype(np.uint8)
    bits = int(ds.BitsStored)
    compressed = ds.file_meta.TransferSyntaxUID.is_compressed
    if photometric in ("YBR_FULL", "YBR_FULL_422") and not compressed:
        # pydicom converts 8-bit YBR only: scale first.
        raw = pixel_array(ds, index=index, as_rgb=False)
        eight = (raw >> (bits - 8)).astype(np.uint8) if bits > 8 else raw.astype(np.uint8)
        return convert_color_space(eight, "YBR_FULL", "RGB")
    rgb = pixel_array(ds, index=index)
    return (rgb >> (bits - 8)).astype(np.uint8) if bits > 8 else rgb.astype(np.uint8)


def max_difference(actual: Pixels, expected: Pixels) -> int:
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return int(np.abs(actual.astype(int) - expected.astype(int)).max())


def psnr(actual: Pixels, expected: Pixels) -> float:
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    error = float(np.mean((actual.astype(float) - expected.astype(float)) ** 2))
    return float("inf") if error == 0 else 10 * float(np.log10(255**2 / error))


_PIXEL_MODULE = (("Rows", "00280010"), ("Columns", "00280011"),
                 ("SamplesPerPixel", "00280002"), ("BitsAllocated", "00280100"),
                 ("BitsStored", "00280101"), ("HighBit", "00280102"),
                 ("PixelRepresentation", "00280103"), ("PhotometricInterpretation", "00280004"),
                 ("PlanarConfiguration", "00280006"))


def as_client_reads(frame: bytes, metadata: dict[str, Any]) -> Pixels:
    """An uncompressed frame read with only ``metadata`` (one instance's DICOM JSON):
    what a client decoding an octet-stream part does, pydicom converting YBR to RGB."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    for keyword, tag in _PIXEL_MODULE:
        if tag in metadata:
            setattr(ds, keyword, metadata[tag]["Value"][0])
    ds.PixelData = frame + b"\x00" * (len(frame) % 2)
    return pixel_array(ds)


def decoded_frame(frame: bytes, metadata: dict[str, Any], compressed: bool) -> Pixels:
    """An octet-stream frame the gateway decoded, as RGB: by the rule, RGB already when
    the stored interpretation has no uncompressed form; else what the metadata says."""
    photometric = metadata["00280004"]["Value"][0]
    if compressed and photometric in CODESTREAM_ONLY:
        rows, columns = metadata["00280010"]["Value"][0], metadata["00280011"]["Value"][0]
        assert len(frame) == rows * columns * 3, "an RGB frame of full-size samples"
        return np.frombuffer(frame, np.uint8).reshape(rows, columns, 3)
    return as_client_reads(frame, metadata)
