"""The Photometric Interpretation of pixels the gateway decodes (PS3.3 C.7.6.3.1.2, PS3.5 8.2).

The rule every representation follows (docs/conformance.md, "Colour"):

- Metadata, and anything sent as stored, describes the instance as stored.
- A decoded frame (``application/octet-stream``, or re-encoded by the gateway)
  keeps the stored Photometric Interpretation whenever that colour space has an
  uncompressed form the codec hands back unchanged: MONOCHROME1/2, PALETTE
  COLOR, RGB and YBR_FULL (a YBR_FULL JPEG is decoded to YBR_FULL samples, not
  converted), so what the metadata says is what the frame holds.
- The interpretations that only describe a codestream come out RGB:
  YBR_FULL_422 (the JPEG decoder restores full-size chroma, which the
  uncompressed YBR_FULL_422 layout cannot hold), YBR_PARTIAL_420 and _422,
  YBR_RCT and YBR_ICT (PS3.5 8.2.4: the colour transform is undone by the
  JPEG 2000 decoder). Such a frame has 3 x Rows x Columns samples, where a
  true YBR_FULL_422 frame has 2 x Rows x Columns: viewers (cornerstone3D's
  ``isColorConversionRequired``) tell them apart by that length.
- A whole instance the gateway decodes or re-encodes carries its own pixel
  module, set to exactly what its pixels are.
- One stored header is corrected: uncompressed pixel data labelled
  YBR_FULL_422 that holds 3 full-size samples a pixel was decompressed by a
  PACS or tool that left the label of the JPEG it came from. Its pixels are
  RGB (what dcmdjpeg, GDCM, Orthanc and pydicom decompress such JPEGs to), and
  metadata, frames and renderings say and treat them so.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

__all__ = [
    "CODESTREAM_ONLY",
    "correct_native_label",
    "decoded_photometric",
    "encoded_photometric",
    "native_photometric",
]

#: Interpretations a decoder's output never has: decoded, the pixels are RGB.
CODESTREAM_ONLY = frozenset(
    {"YBR_FULL_422", "YBR_PARTIAL_420", "YBR_PARTIAL_422", "YBR_RCT", "YBR_ICT"}
)


def native_photometric(stored: str, samples_per_pixel: int, bits_allocated: int,
                       pixels: int, frames: int, value_length: int | None) -> str:
    """The Photometric Interpretation of uncompressed pixel data whose header says
    ``stored``: RGB for a YBR_FULL_422 label over full-size samples (``pixels``
    Rows x Columns a frame, ``value_length`` bytes in all; None when unknown).

    True YBR_FULL_422 holds 2 samples a pixel (PS3.3 C.7.6.3.1.2), so 3 a pixel
    cannot be it.
    """
    if (stored != "YBR_FULL_422" or samples_per_pixel != 3 or bits_allocated % 8
            or value_length is None):
        return stored
    full = pixels * 3 * (bits_allocated // 8) * max(frames, 1)
    return "RGB" if value_length >= full else stored


def correct_native_label(dataset: Dataset) -> None:
    """Relabel ``dataset``'s uncompressed Pixel Data as native_photometric() says."""
    if "PixelData" not in dataset or "PhotometricInterpretation" not in dataset:
        return
    try:
        frames = int(dataset.get("NumberOfFrames") or 1)
        label = native_photometric(
            str(dataset.PhotometricInterpretation), int(dataset.get("SamplesPerPixel") or 1),
            int(dataset.BitsAllocated), int(dataset.Rows) * int(dataset.Columns), frames,
            len(dataset.PixelData))
    except (AttributeError, TypeError, ValueError):
        return  # a malformed pixel module: the frame readers report it
    dataset.PhotometricInterpretation = label


def decoded_photometric(stored: str, samples_per_pixel: int) -> str:
    """The Photometric Interpretation of a frame decoded from a compressed codestream
    whose instance says ``stored``."""
    if samples_per_pixel == 3 and stored in CODESTREAM_ONLY:
        return "RGB"
    return stored


#: JPEG 2000 Part 1 and 2 and HTJ2K: their codestreams may carry a colour transform.
_JPEG_2000 = frozenset({
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.92",
    "1.2.840.10008.1.2.4.93", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
})


def encoded_photometric(transfer_syntax_uid: str, codestream: bytes, photometric: str) -> str:
    """The Photometric Interpretation an instance must state for ``codestream``, a
    frame encoded in ``transfer_syntax_uid`` from ``photometric`` pixels.

    PS3.5 8.2.4 and 8.2.14: a codestream whose encoder applied the multiple
    component transform says YBR_RCT (reversible, 5/3 wavelet) or YBR_ICT
    (irreversible, 9/7); without it the components are the samples as given.
    """
    if photometric != "RGB" or transfer_syntax_uid not in _JPEG_2000:
        return photometric
    transform = _component_transform(codestream)
    if transform is None:
        return photometric
    return "YBR_RCT" if transform == 1 else "YBR_ICT"


def _component_transform(codestream: bytes) -> int | None:
    """The COD marker's wavelet (1: 5/3 reversible, 0: 9/7) if its multiple
    component transform is on, else None (ISO/IEC 15444-1 A.6.1).

    Walks the main header marker by marker rather than searching for the bytes
    FF52, which may occur inside another marker's parameters.
    """
    start = codestream.find(b"\xff\x4f\xff\x51")  # SOC, SIZ (a jp2 box may precede it)
    if start < 0:
        return None
    position = start + 2
    while position + 4 <= len(codestream):
        marker = int.from_bytes(codestream[position:position + 2], "big")
        length = int.from_bytes(codestream[position + 2:position + 4], "big")
        if marker == 0xFF52:
            # COD: Scod, progression, layers (2), MCT, levels, block w, h, style, wavelet
            parameters = codestream[position + 4:position + 2 + length]
            if len(parameters) < 10:
                return None
            return parameters[9] if parameters[4] else None
        if marker in (0xFF90, 0xFF93) or marker < 0xFF00:  # SOT, SOD: main header over
            return None
        position += 2 + length
    return None
