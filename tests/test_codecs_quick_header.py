"""The File Meta Information and header of a retrieved instance without pydicom
(``codecs/quick_header.py``): the same bytes and values as through pydicom, on
every test file pydicom ships (sequences of undefined length, implicit VR, UN,
private sequences, big endian and deflated ones left to pydicom), and the fast
path really taken for the common syntaxes."""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread, uid
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.filewriter import write_file_meta_info
from pydicom.sequence import Sequence

from dicomweb_gw.cache import _files
from dicomweb_gw.cache.protocol import InvalidInstance
from dicomweb_gw.codecs import part10, quick_header
from dicomweb_gw.model import RetrievedInstance
from testdata import pydicom_file


def _received(path: Path) -> RetrievedInstance | None:
    """The instance as a PACS would send it: the data set after the file's meta."""
    raw = path.read_bytes()
    stream = BytesIO(raw)
    try:
        read_preamble(stream, False)
        meta = _read_file_meta_info(stream)
    except Exception:  # files without a preamble or meta: not what a retrieve brings
        return None
    syntax = meta.get("TransferSyntaxUID")
    if syntax is None or not meta.get("MediaStorageSOPInstanceUID"):
        return None
    return RetrievedInstance(sop_class_uid=str(meta.get("MediaStorageSOPClassUID", "")),
                             sop_instance_uid=str(meta.MediaStorageSOPInstanceUID),
                             transfer_syntax_uid=str(syntax), dataset=raw[stream.tell():])


def _header(read: Callable[[], _files.Header | None]) -> object:
    """The header, or the kind of error reading it ended in."""
    try:
        return read()
    except InvalidInstance as exc:
        return type(exc)


_FILES = sorted(Path(p) for p in get_testdata_files("*.dcm"))


@pytest.mark.parametrize("path", _FILES, ids=[p.name for p in _FILES])
def test_the_header_is_what_pydicom_reads(path: Path, tmp_path: Path) -> None:
    instance = _received(path)
    if instance is None:
        pytest.skip("no File Meta Information to take the data set from")
    # What the cache read before the fast path: pydicom's parse of the file.
    written = tmp_path / "instance.dcm"
    written.write_bytes(b"".join(part10.part10_chunks(instance)))
    # header_of gives None for what it leaves to reading the file (deflated), as before.
    assert _header(lambda: _files.header_of(instance) or _files.read_header(written)) == _header(
        lambda: _files.read_header(written))


@pytest.mark.parametrize(("name", "syntax"), [("CT_small.dcm", uid.ExplicitVRLittleEndian),
                                              ("MR_small_implicit.dcm", uid.ImplicitVRLittleEndian),
                                              ("rtplan.dcm", uid.ImplicitVRLittleEndian),
                                              ("JPEG2000.dcm", uid.JPEG2000)])
def test_the_fast_path_is_taken_for_common_syntaxes(name: str, syntax: str) -> None:
    instance = _received(pydicom_file(name))
    assert instance is not None
    assert instance.transfer_syntax_uid == syntax
    numbers = quick_header.scan_header(instance.dataset,
                                       implicit_vr=syntax == uid.ImplicitVRLittleEndian)
    assert numbers is not None
    ds = dcmread(pydicom_file(name))
    assert numbers[:2] == (ds.StudyInstanceUID, ds.SeriesInstanceUID)


@pytest.mark.parametrize("implicit", [False, True])
def test_sequences_of_undefined_length_before_the_uids_are_skipped(implicit: bool) -> None:
    ds = Dataset()
    ds.SOPInstanceUID = "1.2.3"
    item = Dataset()
    item.ReferencedSOPInstanceUID = "9.9"
    nested = Dataset()
    nested.StudyInstanceUID = "6.6.6"  # inside a sequence: not the instance's study
    item.SourceImageSequence = Sequence([nested])
    ds.ReferencedImageSequence = Sequence([item, Dataset()])
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.840.1", "1.2.840.1.2"
    ds.SeriesNumber, ds.InstanceNumber = " 7", "12 "
    buffer = BytesIO()
    for sequence in (ds.ReferencedImageSequence, item.SourceImageSequence):
        sequence.is_undefined_length = True
    for dataset in (*ds.ReferencedImageSequence, nested):
        dataset.is_undefined_length_sequence_item = True
    ds.save_as(buffer, implicit_vr=implicit, little_endian=True)
    assert quick_header.scan_header(buffer.getvalue(), implicit_vr=implicit) == (
        "1.2.840.1", "1.2.840.1.2", 7, 12)


@pytest.mark.parametrize("value", ["1.0", "1\\2"])
def test_numbers_pydicom_reads_its_own_way_are_left_to_it(value: str) -> None:
    ds = Dataset()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2", "1.3"
    ds.add_new(0x00200013, "IS", value)
    buffer = BytesIO()
    ds.save_as(buffer, implicit_vr=False, little_endian=True)
    assert quick_header.scan_header(buffer.getvalue(), implicit_vr=False) is None


@pytest.mark.parametrize("sop_uid", ["1.2.3", "1.2.34", "1." + "2" * 62])
def test_the_file_meta_is_pydicoms_byte_for_byte(sop_uid: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = uid.CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    meta.ImplementationClassUID = part10.IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = part10.IMPLEMENTATION_VERSION_NAME
    expected = BytesIO()
    write_file_meta_info(expected, meta, enforce_standard=True)  # type: ignore[arg-type]
    assert quick_header.file_meta(
        uid.CTImageStorage, sop_uid, uid.ExplicitVRLittleEndian,
        part10.IMPLEMENTATION_CLASS_UID, part10.IMPLEMENTATION_VERSION_NAME,
    ) == expected.getvalue()


@pytest.mark.parametrize("sop_uid", ["1.2.3 ", "1.2.x", "", "1." + "2" * 63])
def test_a_uid_that_is_not_plain_is_left_to_pydicom(sop_uid: str) -> None:
    assert quick_header.file_meta(uid.CTImageStorage, sop_uid, uid.ExplicitVRLittleEndian,
                                  "1.2", "NAME") is None
