"""HTJ2K encoding against JPEG 2000, and the decoder dispatch against pydicom's plugins.

Run with ``.venv/bin/python -m pytest bench/test_bench_htj2k.py -s -p no:cacheprovider``;
results in ``bench/results/htj2k.json``. In one process, no PACS: timings are
reported, never asserted (issue #18's target: HTJ2K encode >= 10x faster than the
JPEG 2000 lossless encoder on the same 512x512 12-bit frame).

Both encoders go through ``encode_frame``, the gateway's own call, so the
figures are what a frame request pays: imagecodecs' OpenJPH for HTJ2K,
pydicom's pylibjpeg-openjpeg (OpenJPEG) for JPEG 2000. The decoders are timed
on pydicom's own test frames, one per transfer syntax in the dispatch table
(``codecs/decoders.py``): pydicom's decoder (what FrameReader runs) against the
imagecodecs decoder the gateway now uses for it; JPEG 2000, which the table
leaves to pylibjpeg-openjpeg, against imagecodecs' own for the record.
"""

from __future__ import annotations

import os
from typing import Any

import imagecodecs
import numpy as np
from pydicom import dcmread, uid
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import as_pixel_options
from record import Comparison, comparison, save
from timing import repeat_ms

from corpus import _read
from dicomweb_gw.codecs.decoders import FAST_DECODERS, decode_fast
from dicomweb_gw.codecs.encoders import SampleFormat, encode_frame
from dicomweb_gw.codecs.frames import FrameInfo, FrameReader
from testdata import pydicom_file

RUNS = int(os.environ.get("BENCH_HTJ2K_RUNS", "30"))
SIZE = 512
#: One grayscale file per syntax the dispatch table covers (pydicom-data's test files).
DECODE_FILES = {
    "JPEG-LS lossless, 64x64 16-bit": "emri_small_jpeg_ls_lossless.dcm",
    "JPEG lossless SV1, 1024x256 16-bit": "JPEG-LL.dcm",
    "JPEG lossless SV1, 768x1024 8-bit": "JPGLosslessP14SV1_1s_1f_8b.dcm",
    "JPEG 2000 lossless, 64x64 16-bit": "emri_small_jpeg_2k_lossless.dcm",
    "JPEG 2000 lossless, 1955x1841 16-bit": "RG1_J2KR.dcm",
}
PYDICOM = "pydicom's decoder (pylibjpeg, pyjpegls, pylibjpeg-openjpeg)"
IMAGECODECS = "imagecodecs (the gateway's dispatch)"
NOT_USED = "imagecodecs (measured, not used)"


def _ct_frame() -> tuple[bytes, FrameInfo, SampleFormat]:
    """A 512x512 12-bit CT frame: CT_small upscaled, with noise, as the transcode bench."""
    base = _read("CT_small.dcm").pixel_array.astype(np.int32)
    big = np.kron(base, np.ones((SIZE // base.shape[0], SIZE // base.shape[1]), int))
    noisy = big + np.random.default_rng(1).integers(-8, 9, size=big.shape)
    frame = noisy.clip(-2048, 2047).astype("<i2")
    info = FrameInfo(1, uid.ExplicitVRLittleEndian, SIZE, SIZE, 1, 16, "MONOCHROME2")
    return frame.tobytes(), info, SampleFormat(12, 1)


def _encode_comparison() -> tuple[Comparison, dict[str, Any]]:
    native, info, sample = _ct_frame()
    rows: dict[str, dict[str, float]] = {}
    sizes: dict[str, int] = {}
    for label, syntax in (("JPEG 2000 lossless (OpenJPEG, pydicom)", uid.JPEG2000Lossless),
                          ("HTJ2K lossless (OpenJPH, imagecodecs)", uid.HTJ2KLossless),
                          ("HTJ2K lossless RPCL + TLM (OpenJPH)", uid.HTJ2KLosslessRPCL)):
        rows[label] = repeat_ms(lambda s=syntax: encode_frame(native, info, s, sample), RUNS)
        sizes[label] = len(encode_frame(native, info, syntax, sample))
    return comparison("htj2k.encode", f"encoding one {SIZE}x{SIZE} 12-bit CT frame",
                      "ms", rows, better="lower",
                      reference="JPEG 2000 lossless (OpenJPEG, pydicom)"), sizes


def _decode_comparisons() -> list[Comparison]:
    found = []
    for title, name in DECODE_FILES.items():
        reader = FrameReader(pydicom_file(name))
        dataset = dcmread(reader.path)
        options: dict[str, Any] = as_pixel_options(dataset, number_of_frames=1)
        options.pop("extended_offsets", None)
        frames = int(dataset.get("NumberOfFrames") or 1)
        stored = next(generate_frames(dataset.PixelData, number_of_frames=frames))
        sample = SampleFormat(int(dataset.BitsStored), int(dataset.PixelRepresentation))
        syntax = reader.info.transfer_syntax_uid
        decoder = get_decoder(syntax)
        runs = max(3, RUNS // 5) if reader.info.rows > 1024 else RUNS
        rows = {PYDICOM: repeat_ms(lambda d=decoder, s=stored, o=options: d.as_array(
            encapsulate([s]), index=0, **o), runs)}
        if syntax in FAST_DECODERS:
            fast = decode_fast(syntax, stored, reader.native_info(), sample)
            assert fast is not None, f"{name}: not the fast path"
            assert fast == reader.native(1), f"{name}: not what pydicom decodes"
            rows[IMAGECODECS] = repeat_ms(lambda y=syntax, s=stored, r=reader, p=sample:
                                          decode_fast(y, s, r.native_info(), p), runs)
        else:  # measured, not dispatched (JPEG 2000): imagecodecs' decoder on its own
            rows[NOT_USED] = repeat_ms(lambda s=stored: imagecodecs.jpeg2k_decode(s), runs)
        key = "htj2k.decode." + name.removesuffix(".dcm").lower().replace("-", "_")
        found.append(comparison(key, f"decoding {title}", "ms", rows, better="lower",
                                reference=PYDICOM))
    return found


def _htj2k_decode_comparison() -> Comparison:
    """The CT frame as HTJ2K lossless: OpenJPEG (pydicom) against OpenJPH (imagecodecs)."""
    native, info, sample = _ct_frame()
    encoded = encode_frame(native, info, uid.HTJ2KLossless, sample)
    options = {"rows": SIZE, "columns": SIZE, "samples_per_pixel": 1, "bits_allocated": 16,
               "bits_stored": 12, "pixel_representation": 1, "number_of_frames": 1,
               "photometric_interpretation": "MONOCHROME2"}
    decoder = get_decoder(uid.HTJ2KLossless)
    fast = decode_fast(uid.HTJ2KLossless, encoded, info, sample)
    assert fast == native, "HTJ2K: the fast path is not exact"
    return comparison("htj2k.decode.htj2k", f"decoding HTJ2K lossless, {SIZE}x{SIZE} 12-bit CT",
                      "ms", {
                          PYDICOM: repeat_ms(lambda: decoder.as_array(
                              encapsulate([encoded]), index=0, **options), RUNS),
                          IMAGECODECS: repeat_ms(lambda: decode_fast(
                              uid.HTJ2KLossless, encoded, info, sample), RUNS),
                      }, better="lower", reference=PYDICOM)


def test_bench_htj2k_encode_and_decoders() -> None:
    encode, sizes = _encode_comparison()
    save("htj2k", "HTJ2K encoding and the decoder dispatch (in one process)",
         [encode, _htj2k_decode_comparison(), *_decode_comparisons()],
         notes=[f"Median of {RUNS} runs after one warm-up, one thread.",
                "Encoded sizes of the CT frame: "
                + ", ".join(f"{label} {size:,} bytes" for label, size in sizes.items()) + "."],
         raw={"encoded_bytes": sizes})
