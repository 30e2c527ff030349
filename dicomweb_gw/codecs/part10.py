"""DICOM Part 10 files from instances received over DIMSE.

An instance to be sent on as stored is never decoded: the File Meta
Information is written in front of the bytes the PACS sent. Only a change of
transfer syntax goes through pydicom.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
from pydicom import dcmread, uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite, write_file_meta_info

from dicomweb_gw import __version__
from dicomweb_gw.codecs import quick_header
from dicomweb_gw.codecs.photometric import correct_native_label, decoded_photometric
from dicomweb_gw.model import RetrievedInstance

__all__ = [
    "IMPLEMENTATION_CLASS_UID",
    "instance_from_file",
    "part10_chunks",
    "to_explicit_little_endian",
]

#: Our implementation class UID, under pydicom's root (PS3.7 D.3.3.2 asks for a unique one).
IMPLEMENTATION_CLASS_UID = uid.UID("1.2.826.0.1.3680043.8.498.71920253")
IMPLEMENTATION_VERSION_NAME = f"DICOMWEB_GW_{__version__}"[:16]
_PREAMBLE = b"\x00" * 128 + b"DICM"


def part10_chunks(instance: RetrievedInstance) -> tuple[bytes, bytes]:
    """(preamble + File Meta Information, data set): two chunks, so the data set is not copied."""
    quick = quick_header.file_meta(instance.sop_class_uid, instance.sop_instance_uid,
                                   instance.transfer_syntax_uid, IMPLEMENTATION_CLASS_UID,
                                   IMPLEMENTATION_VERSION_NAME)
    if quick is not None:  # the same bytes, without pydicom's cost (quick_header.py)
        return _PREAMBLE + quick, instance.dataset
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = uid.UID(instance.sop_class_uid)
    meta.MediaStorageSOPInstanceUID = uid.UID(instance.sop_instance_uid)
    meta.TransferSyntaxUID = uid.UID(instance.transfer_syntax_uid)
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    buffer = BytesIO()
    buffer.write(_PREAMBLE)
    write_file_meta_info(buffer, meta, enforce_standard=True)  # type: ignore[arg-type]
    return buffer.getvalue(), instance.dataset


def to_explicit_little_endian(instance: RetrievedInstance) -> RetrievedInstance:
    """The same instance in Explicit VR Little Endian (decompressing if needed).

    CPU-bound for compressed pixel data: call it off the event loop.
    """
    if instance.transfer_syntax_uid == uid.ExplicitVRLittleEndian:
        return instance
    dataset = dcmread(BytesIO(b"".join(part10_chunks(instance))))
    source = dataset.file_meta.TransferSyntaxUID
    if source.is_compressed:
        # pydicom would otherwise mint a new SOP Instance UID for the decompressed copy.
        # Colour as the frames resource decodes it (photometric.py): YBR_FULL stays
        # YBR_FULL, YBR_FULL_422/RCT/ICT become RGB; pydicom rewrites the pixel
        # module (Photometric Interpretation, Planar Configuration) to match.
        samples = int(dataset.get("SamplesPerPixel") or 1)
        stored = str(dataset.get("PhotometricInterpretation") or "")
        dataset.decompress(generate_instance_uid=False,
                           as_rgb=decoded_photometric(stored, samples) == "RGB")
    else:
        if not source.is_little_endian:
            _swap_pixel_data(dataset)
        correct_native_label(dataset)  # YBR_FULL_422 over RGB samples: photometric.py
    dataset.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    output = BytesIO()
    dcmwrite(output, dataset, enforce_file_format=True)
    encoded = output.getvalue()
    header_end = _data_set_offset(encoded)
    return RetrievedInstance(
        sop_class_uid=instance.sop_class_uid,
        sop_instance_uid=instance.sop_instance_uid,
        transfer_syntax_uid=uid.ExplicitVRLittleEndian,
        dataset=encoded[header_end:],
    )


def instance_from_file(path: Path) -> RetrievedInstance:
    """A Part 10 file back into a ``RetrievedInstance``: meta split off, data set as stored."""
    encoded = path.read_bytes()
    offset = _data_set_offset(encoded)
    meta = dcmread(BytesIO(encoded[:offset]), stop_before_pixels=True).file_meta
    return RetrievedInstance(
        sop_class_uid=str(meta.MediaStorageSOPClassUID),
        sop_instance_uid=str(meta.MediaStorageSOPInstanceUID),
        transfer_syntax_uid=str(meta.TransferSyntaxUID),
        dataset=encoded[offset:],
    )


def _swap_pixel_data(dataset: Dataset) -> None:
    """Big endian to little: pydicom re-encodes the other elements, but pixel
    data is raw bytes to it, so words wider than a byte are swapped here."""
    bits = int(dataset.get("BitsAllocated", 8))
    if "PixelData" in dataset and bits in (16, 32):
        width = bits // 8
        words = np.frombuffer(dataset.PixelData, dtype=f">u{width}")
        dataset.PixelData = words.astype(f"<u{width}").tobytes()


def _data_set_offset(encoded: bytes) -> int:
    """Where the data set starts in a Part 10 file: after group 0002's declared length."""
    # (0002,0000) UL 4 <length> sits right after the preamble: 128 + 4 + 8 bytes of header.
    group_length = int.from_bytes(encoded[140:144], "little")
    return 144 + group_length
