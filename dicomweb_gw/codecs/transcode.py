"""Changing the transfer syntax of whole instances and of single frames.

Lossless targets are encoded (``ENCODABLE``), and HTJ2K (.203), the one lossy
target, for a client that names it; any other lossy syntax is produced only by
sending an instance already stored in it, as stored. The work is CPU-bound:
callers run it in a worker thread under a codec limiter.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from io import BytesIO

from pydicom import dcmread, uid
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, encapsulate_extended
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import VR

from dicomweb_gw.codecs.encoders import (
    ENCODABLE,
    LOSSY_TARGETS,
    SampleFormat,
    TranscodeError,
    can_decode,
    encode_frame,
    sample_format,
)
from dicomweb_gw.codecs.frames import frame_info
from dicomweb_gw.codecs.part10 import part10_chunks, to_explicit_little_endian
from dicomweb_gw.codecs.photometric import correct_native_label, encoded_photometric
from dicomweb_gw.model import RetrievedInstance

__all__ = [
    "ENCODABLE",
    "FrameCache",
    "SampleFormat",
    "TranscodeError",
    "can_decode",
    "encode_frame",
    "producible",
    "sample_format",
    "transcode_instance",
]

_EXPLICIT_LE = uid.ExplicitVRLittleEndian
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def producible(stored_syntax: str) -> list[str]:
    """Transfer syntaxes an instance stored in ``stored_syntax`` can be sent in, stored first."""
    targets = [stored_syntax]
    if can_decode(stored_syntax):
        targets += [s for s in ENCODABLE if s != stored_syntax]
    return targets


def transcode_instance(instance: RetrievedInstance, transfer_syntax_uid: str
                       ) -> RetrievedInstance:
    """``instance`` in ``transfer_syntax_uid``, same SOP Instance UID (worker thread).

    Pixel data is decoded to native and, for a compressed target, encoded
    frame by frame with encode_frame(), so a frame of the result is
    bit-exact the frame the frames resource would send in that syntax.
    """
    stored = instance.transfer_syntax_uid
    if transfer_syntax_uid == stored:
        return instance
    name = uid.UID(transfer_syntax_uid).name
    if transfer_syntax_uid not in ENCODABLE:
        raise TranscodeError(
            f"instance {instance.sop_instance_uid} is stored as {uid.UID(stored).name}; "
            f"the gateway does not encode {name} (available: {_listing(stored)})")
    try:
        native = to_explicit_little_endian(instance)  # decodes or byte-swaps as needed
    except Exception as exc:
        raise TranscodeError(
            f"instance {instance.sop_instance_uid} is stored as {uid.UID(stored).name} and "
            f"could not be decoded ({exc}); ask with transfer-syntax=* to get it as stored"
        ) from exc
    if transfer_syntax_uid == _EXPLICIT_LE:
        return native
    dataset = dcmread(BytesIO(b"".join(part10_chunks(native))))
    if "PixelData" in dataset:
        _encode_pixel_data(dataset, transfer_syntax_uid)
    elif any(tag in dataset for tag in _PIXEL_TAGS):
        raise TranscodeError(f"float pixel data cannot be encoded as {name}")
    # Without pixel data an encapsulated syntax is just Explicit VR Little
    # Endian under another name: the data set bytes need no change.
    return RetrievedInstance(
        sop_class_uid=instance.sop_class_uid,
        sop_instance_uid=instance.sop_instance_uid,
        transfer_syntax_uid=transfer_syntax_uid,
        dataset=_data_set_bytes(dataset),
    )


def _encode_pixel_data(dataset: Dataset, transfer_syntax_uid: str) -> None:
    """Replace native Pixel Data by its frames encoded in ``transfer_syntax_uid``."""
    correct_native_label(dataset)  # YBR_FULL_422 over RGB samples (photometric.py)
    info = frame_info(dataset, uid.UID(_EXPLICIT_LE))
    sample = SampleFormat(int(dataset.get("BitsStored") or info.bits_allocated),
                          int(dataset.get("PixelRepresentation") or 0))
    length = info.rows * info.columns * info.samples_per_pixel * info.bits_allocated // 8
    pixels: bytes = dataset.PixelData
    if info.photometric_interpretation == "YBR_FULL_422":
        # Checked before the length, which is not 3 samples a pixel for subsampled chroma.
        raise TranscodeError(f"chroma-subsampled YBR_FULL_422 pixels cannot be encoded as "
                             f"{uid.UID(transfer_syntax_uid).name}")
    if info.bits_allocated % 8 or len(pixels) < length * info.number_of_frames:
        raise TranscodeError(
            f"{info.bits_allocated}-bit pixel data of {len(pixels)} bytes cannot be split "
            f"into {info.number_of_frames} frames to encode")
    frames = [encode_frame(pixels[i * length:(i + 1) * length], info, transfer_syntax_uid,
                           sample)
              for i in range(info.number_of_frames)]
    if sum(len(frame) + 8 for frame in frames) > 2**32 - 1:
        # The Basic Offset Table holds 32-bit offsets (PS3.5 A.4).
        dataset.PixelData, dataset.ExtendedOffsetTable, dataset.ExtendedOffsetTableLengths = (
            encapsulate_extended(frames))
    else:
        dataset.PixelData = encapsulate(frames)
    element = dataset["PixelData"]
    element.VR = VR.OB
    element.is_undefined_length = True
    if transfer_syntax_uid in LOSSY_TARGETS:
        _record_lossy(dataset, length * info.number_of_frames, sum(map(len, frames)))
    if info.samples_per_pixel > 1:
        # encode_frame reads either layout; what the codestream decodes to is
        # fixed by the syntax: RLE segments are planes (PS3.5 G.2), JPEG-LS
        # and JPEG 2000 say interleaved (PS3.5 8.2.3, 8.2.4).
        dataset.PlanarConfiguration = 1 if transfer_syntax_uid == uid.RLELossless else 0
        # A JPEG 2000 / HTJ2K encoder that applied its colour transform makes the
        # instance YBR_RCT or YBR_ICT (PS3.5 8.2.4, 8.2.14).
        dataset.PhotometricInterpretation = encoded_photometric(
            transfer_syntax_uid, frames[0], info.photometric_interpretation)


def _record_lossy(dataset: Dataset, native_bytes: int, encoded_bytes: int) -> None:
    """PS3.3 C.7.6.1.1.5: an image that went through lossy compression says so,
    with the ratio and method appended to any earlier ones."""
    dataset.LossyImageCompression = "01"
    ratios = _values(dataset, "LossyImageCompressionRatio")
    methods = _values(dataset, "LossyImageCompressionMethod")
    ratio = f"{native_bytes / max(encoded_bytes, 1):.4g}"[:16]
    dataset.LossyImageCompressionRatio = [*ratios, ratio]
    dataset.LossyImageCompressionMethod = [*methods, "ISO_15444_15"]


def _values(dataset: Dataset, keyword: str) -> list[str]:
    value = dataset.get(keyword)
    if value is None or value == "":
        return []
    return [str(v) for v in value] if isinstance(value, MultiValue) else [str(value)]


def _data_set_bytes(dataset: Dataset) -> bytes:
    """The data set alone (no File Meta Information), Explicit VR Little Endian."""
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    write_dataset(buffer, dataset)
    return buffer.getvalue()


def _listing(stored_syntax: str) -> str:
    names = [f"{s} ({uid.UID(s).name}{', as stored' if s == stored_syntax else ''})"
             for s in producible(stored_syntax)]
    return "; ".join(names)


class FrameCache:
    """A small LRU of transcoded frames, bounded in bytes (thread-safe).

    Decoding a JPEG 2000 frame or encoding one costs milliseconds; a viewer
    scrolling back and forth asks for the same frames again.
    """

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._max_bytes = max_bytes
        self._frames: OrderedDict[tuple[str, int, str], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, sop_instance_uid: str, number: int, target: str) -> bytes | None:
        key = (sop_instance_uid, number, target)
        with self._lock:
            frame = self._frames.get(key)
            if frame is not None:
                self._frames.move_to_end(key)
            return frame

    def put(self, sop_instance_uid: str, number: int, target: str, frame: bytes) -> None:
        if len(frame) > self._max_bytes // 4:
            return  # one huge frame would flush everything else
        key = (sop_instance_uid, number, target)
        with self._lock:
            previous = self._frames.pop(key, None)
            self._size += len(frame) - (len(previous) if previous is not None else 0)
            self._frames[key] = frame
            while self._size > self._max_bytes:
                _, evicted = self._frames.popitem(last=False)
                self._size -= len(evicted)

