"""Single frames of a cached Part 10 file, as stored or decoded (WADO-RS frames).

Viewers ask for one frame per request, in any order, of instances that may
hold hundreds of frames: the file is parsed once with pixel data deferred,
and each request reads (and, when transcoding, decodes) only its own frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import convert_color_space
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import UID

from dicomweb_gw.codecs.bulkdata import (
    DEFER_SIZE,
    UNDEFINED_LENGTH,
    BulkLocation,
    MalformedFile,
    frame_fragments,
    read_at,
)
from dicomweb_gw.codecs.mediatypes import NATIVE_FRAME_SYNTAX, is_native_syntax
from dicomweb_gw.codecs.photometric import decoded_photometric, native_photometric
from dicomweb_gw.errors import NotAcceptable, NotFound

__all__ = [
    "FrameDecodeError",
    "FrameInfo",
    "FrameNotFound",
    "FrameReader",
    "frame_info",
]

_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float, Double Float
_DEFLATED = "1.2.840.10008.1.2.1.99"


class FrameNotFound(NotFound):
    status_code = 404


class FrameDecodeError(NotAcceptable):
    """A frame cannot be turned into native pixels (no codec, or the codec failed)."""

    status_code = 406


@dataclass(frozen=True)
class FrameInfo:
    number_of_frames: int
    transfer_syntax_uid: str
    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    photometric_interpretation: str
    #: Layout of multi-sample native frames: 0 interleaved, 1 one plane per sample.
    planar_configuration: int = 0


class FrameReader:
    """Frames of one Part 10 file; cheap to construct, holds no pixel data."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        dataset: Dataset = dcmread(self.path, defer_size=DEFER_SIZE)
        syntax = UID(str(dataset.file_meta.get("TransferSyntaxUID", "")))
        if not syntax:
            raise MalformedFile(f"{self.path.name} has no Transfer Syntax UID")
        if syntax == _DEFLATED:
            # Deferred offsets would point into the inflated stream, not the
            # file, so the (already inflated, in-memory) data set is read whole.
            dataset = dcmread(self.path)
        tag, raw = _pixel_element(dataset)
        self.info = frame_info(dataset, syntax)
        if is_native_syntax(syntax) and raw.length != UNDEFINED_LENGTH:
            # A YBR_FULL_422 label over full-size (RGB) samples: see photometric.py.
            info = self.info
            self.info = replace(info, photometric_interpretation=native_photometric(
                info.photometric_interpretation, info.samples_per_pixel, info.bits_allocated,
                info.rows * info.columns, info.number_of_frames, raw.length))
        self._syntax = syntax
        self._big_endian = not syntax.is_little_endian
        self._vr = str(raw.VR or "OW")
        self._inline: bytes | None = None
        self._value = BulkLocation(raw.value_tell, raw.length)
        self._fragments: list[list[BulkLocation]] | None = None
        # Image Pixel options for decoding one frame on its own; the extended
        # offsets describe the whole instance, not our one-frame buffer.
        self._decode_options: dict[str, Any] = as_pixel_options(dataset, number_of_frames=1)
        self._decode_options.pop("extended_offsets", None)
        if syntax.is_encapsulated:
            if raw.length != UNDEFINED_LENGTH:
                raise MalformedFile(f"{syntax.name} pixel data must be encapsulated")
            with open(self.path, "rb") as fp:
                self._fragments = frame_fragments(
                    fp, self._value.offset, self.info.number_of_frames, _extended_offsets(dataset)
                )
        elif syntax == _DEFLATED:
            self._inline = bytes(dataset[tag].value)

    # -- public API ---------------------------------------------------------

    @property
    def holds_pixel_data(self) -> bool:
        """True for a deflated file, whose pixel data is held in memory (not worth keeping)."""
        return self._inline is not None

    def stored(self, number: int) -> bytes:
        """Frame ``number`` (1-based) as stored: compressed bytes, or little endian pixels."""
        self._check(number)
        if self._fragments is None:
            return self._native_frame(number)
        if number > len(self._fragments):
            raise MalformedFile(
                f"the pixel data holds {len(self._fragments)} of "
                f"{self.info.number_of_frames} frames; frame {number} is missing"
            )
        parts = self._fragments[number - 1]
        if not parts:
            raise MalformedFile(f"the offset table gives frame {number} no fragments")
        with open(self.path, "rb") as fp:
            return b"".join(read_at(fp, part) for part in parts)

    def native(self, number: int) -> bytes:
        """Frame ``number`` decoded to little endian pixels laid out as native_info() says."""
        frame = self.stored(number)
        if is_native_syntax(self._syntax):
            # Encapsulated Uncompressed pads odd frames to even fragments.
            return frame[: _frame_length(self.info)] if self._fragments else frame
        return self._decode(number, frame)

    def native_info(self) -> FrameInfo:
        """The layout native() returns: the stored colour space, except those only a
        codestream has (YBR_FULL_422 JPEG, YBR_RCT/ICT J2K, ...), which decode to RGB."""
        info = replace(self.info, transfer_syntax_uid=NATIVE_FRAME_SYNTAX)
        if not is_native_syntax(self._syntax):
            info = replace(info, photometric_interpretation=decoded_photometric(
                info.photometric_interpretation, info.samples_per_pixel))
        return info

    # -- native pixel data --------------------------------------------------

    def _check(self, number: int) -> None:
        total = self.info.number_of_frames
        if not 1 <= number <= total:
            plural = "frame" if total == 1 else "frames"
            raise FrameNotFound(f"frame {number} requested; the instance has {total} {plural}")

    def _read(self, start: int, length: int) -> bytes:
        """``length`` bytes from ``start`` within the pixel data value."""
        if start + length > self._value.length:
            raise MalformedFile(
                f"pixel data ends at byte {self._value.length}; "
                f"{self.info.number_of_frames} frames need more"
            )
        if self._inline is not None:
            return self._inline[start : start + length]
        with open(self.path, "rb") as fp:
            return read_at(fp, BulkLocation(self._value.offset + start, length))

    def _native_frame(self, number: int) -> bytes:
        info = self.info
        if info.bits_allocated == 1:
            return self._bit_packed_frame(number)
        length = _frame_length(info)
        start = (number - 1) * length
        if not self._big_endian:
            return self._read(start, length)
        width = info.bits_allocated // 8
        if width > 1:
            words = np.frombuffer(self._read(start, length), dtype=f">u{width}")
            return words.astype(f"<u{width}").tobytes()
        if self._vr == "OW":
            # 8-bit pixels in big endian OW: each 16-bit word has its two bytes
            # swapped, and a frame may begin mid-word.
            first = start - start % 2
            stop = start + length + (start + length) % 2
            pairs = np.frombuffer(self._read(first, stop - first), dtype=">u2")
            swapped = pairs.astype("<u2").tobytes()
            return swapped[start - first : start - first + length]
        return self._read(start, length)

    def _bit_packed_frame(self, number: int) -> bytes:
        """A 1-bit frame, repacked to start on a byte: PS3.5 8.1.1 packs frames
        back to back, so frame N need not begin on a byte boundary."""
        if self._big_endian and self._vr == "OW":
            raise FrameDecodeError("1-bit pixel data encoded as big endian OW is not supported")
        info = self.info
        bits = info.rows * info.columns * info.samples_per_pixel
        first_bit = (number - 1) * bits
        if first_bit % 8 == 0:
            return self._read(first_bit // 8, (bits + 7) // 8)
        first_byte = first_bit // 8
        last_byte = (first_bit + bits + 7) // 8
        packed = np.frombuffer(self._read(first_byte, last_byte - first_byte), dtype=np.uint8)
        unpacked = np.unpackbits(packed, bitorder="little")
        offset = first_bit % 8
        return np.packbits(unpacked[offset : offset + bits], bitorder="little").tobytes()

    # -- compressed pixel data ----------------------------------------------

    def _decode(self, number: int, frame: bytes) -> bytes:
        """Decode one frame on its own, so a 500-frame instance costs one decode."""
        try:
            decoder = get_decoder(self._syntax)
        except NotImplementedError:
            raise FrameDecodeError(f"no decoder for {self._syntax.name} pixel data") from None
        if not decoder.is_available:
            missing = ", ".join(decoder.missing_dependencies)
            raise FrameDecodeError(f"no installed codec decodes {self._syntax.name} ({missing})")
        target = self.native_info()
        # as_rgb only where the stored colour space has no decoded form: a
        # YBR_FULL frame stays YBR_FULL, as the metadata says (photometric.py).
        options = {**self._decode_options, "as_rgb": target.photometric_interpretation == "RGB"}
        try:
            array, properties = decoder.as_array(encapsulate([frame]), index=0, **options)
        except Exception as exc:
            raise FrameDecodeError(
                f"frame {number} ({self._syntax.name}) could not be decoded: {exc}"
            ) from exc
        decoded_as = str(properties.get("photometric_interpretation", ""))
        wanted = target.photometric_interpretation
        if target.samples_per_pixel == 3 and decoded_as != wanted:
            if wanted != "RGB" or decoded_as not in ("YBR_FULL", "YBR_FULL_422"):
                raise FrameDecodeError(f"frame {number} decoded to {decoded_as}, not {wanted}")
            array = convert_color_space(array, decoded_as, "RGB")
        # Some codecs return 8-bit samples for BitsAllocated 16 (precision <= 8):
        # widen so the frame has the layout an uncompressed one would.
        width = target.bits_allocated // 8
        if width in (1, 2, 4, 8):
            array = array.astype(np.dtype(f"<{array.dtype.kind}{width}"), copy=False)
        if target.samples_per_pixel > 1 and target.planar_configuration == 1:
            array = array.transpose(2, 0, 1)  # pydicom returns interleaved samples
        return np.ascontiguousarray(array).tobytes()


def _pixel_element(dataset: Dataset) -> tuple[int, RawDataElement]:
    for tag in _PIXEL_TAGS:
        element = dataset.get_item(tag, keep_deferred=True)
        if isinstance(element, RawDataElement):
            return tag, element
    raise FrameNotFound("the instance has no pixel data, so no frames")


def frame_info(dataset: Dataset, syntax: UID) -> FrameInfo:
    """The Image Pixel attributes of ``dataset`` as a FrameInfo; MalformedFile if missing."""
    try:
        frames = int(dataset.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        frames = 1  # a malformed value: treat as single-frame, as pydicom does
    try:
        return FrameInfo(
            number_of_frames=max(frames, 1),
            transfer_syntax_uid=str(syntax),
            rows=int(dataset.Rows),
            columns=int(dataset.Columns),
            samples_per_pixel=int(dataset.get("SamplesPerPixel") or 1),
            bits_allocated=int(dataset.BitsAllocated),
            photometric_interpretation=str(dataset.get("PhotometricInterpretation") or ""),
            planar_configuration=int(dataset.get("PlanarConfiguration") or 0),
        )
    except AttributeError as exc:
        raise MalformedFile(f"the instance lacks an Image Pixel attribute: {exc}") from exc


def _frame_length(info: FrameInfo) -> int:
    """Bytes in one uncompressed frame (BitsAllocated >= 8)."""
    length = info.rows * info.columns * info.samples_per_pixel * info.bits_allocated // 8
    if info.photometric_interpretation == "YBR_FULL_422":
        length = length // 3 * 2  # two chroma samples shared by each pair of pixels
    return length


def _extended_offsets(dataset: Dataset) -> list[tuple[int, int]] | None:
    if "ExtendedOffsetTable" not in dataset or "ExtendedOffsetTableLengths" not in dataset:
        return None
    offsets: bytes = dataset.ExtendedOffsetTable
    lengths: bytes = dataset.ExtendedOffsetTableLengths
    count = min(len(offsets), len(lengths)) // 8
    if not count:
        return None
    return list(
        zip(
            struct.unpack(f"<{count}Q", offsets[: count * 8]),
            struct.unpack(f"<{count}Q", lengths[: count * 8]),
            strict=True,
        )
    )
