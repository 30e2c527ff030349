"""Files of the disk cache: where they live, how they are written atomically, what a scan finds.

Layout under the cache root::

    index.sqlite3                      the index (see _index.py)
    instances/<h>/<SOP UID>.dcm        h: first 2 hex digits of sha1(SOP UID)
    metadata/<h>/<sha1(study, series)>.bin

The hashed level spreads files over 256 directories so none grows huge.
Everything is written to ``<dir>/.tmp-*`` first, fsynced, and renamed into
place, so a name only ever points to a complete file; a crash can leave
temp files behind, which ``scan`` reports for deletion.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID

from dicomweb_gw.cache.protocol import InvalidInstance
from dicomweb_gw.codecs.quick_header import scan_header
from dicomweb_gw.model import RetrievedInstance

__all__ = ["NO_SPACE", "TEMP_PREFIX", "Header", "Layout", "Scan", "header_of", "read_header",
           "scan", "unlink_quietly", "write_chunks", "write_temp"]

TEMP_PREFIX = ".tmp-"
#: errnos meaning "the disk (or our quota on it) is full".
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
# DICOM UIDs are digits and dots; anything else (or a very long name) is filed under a hash.
_SAFE_NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,127}")
_HEADER_TAGS = ["StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber", "InstanceNumber"]
_LAST_HEADER_TAG = 0x00200013  # InstanceNumber: the highest of _HEADER_TAGS
_META_KEYWORDS = ("MediaStorageSOPInstanceUID", "MediaStorageSOPClassUID", "TransferSyntaxUID")


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class Layout:
    root: Path

    @property
    def index(self) -> Path:
        return self.root / "index.sqlite3"

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    @property
    def instances(self) -> Path:
        return self.root / "instances"

    @property
    def metadata(self) -> Path:
        return self.root / "metadata"

    def instance_path(self, sop_instance_uid: str) -> Path:
        digest = _sha1(sop_instance_uid)
        name = sop_instance_uid if _SAFE_NAME.fullmatch(sop_instance_uid) else f"x{digest}"
        return self.instances / digest[:2] / f"{name}.dcm"

    def metadata_path(self, study_uid: str, series_uid: str) -> Path:
        # Both UIDs can be 64 characters: hashed, the name stays short and fixed.
        digest = _sha1(f"{study_uid}\\{series_uid}")
        return self.metadata / digest[:2] / f"{digest}.bin"


@dataclass(frozen=True, slots=True)
class Header:
    study_uid: str
    series_uid: str
    series_number: int | None
    instance_number: int | None
    # From the File Meta Information ('' when absent): what a file adopted from
    # elsewhere (DiskInstanceStore.adopt) is, since no RetrievedInstance says it.
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    transfer_syntax_uid: str = ""


def write_chunks(file: BinaryIO, chunks: Iterable[bytes]) -> None:
    """Write the chunks (tests replace this to simulate a full disk)."""
    for chunk in chunks:
        file.write(chunk)


def write_temp(directory: Path, chunks: Iterable[bytes]) -> Path:
    """A new fsynced temp file in ``directory`` holding the chunks; removed again on any error."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".part", dir=directory)
    path = Path(name)
    try:
        with open(fd, "wb") as file:
            write_chunks(file, chunks)
            file.flush()
            # Data on disk before the rename makes the name visible: otherwise a power
            # loss could leave a complete-looking name with missing contents.
            os.fsync(file.fileno())
    except BaseException:
        unlink_quietly(path)
        raise
    return path


def read_header(path: Path) -> Header:
    """Study/Series UIDs and numbers of a Part 10 file, without reading its pixel data."""
    try:
        dataset = dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
        meta = dataset.file_meta  # pydicom reads it whatever specific_tags asks for
        identity = [str(meta.get(keyword, "") or "") for keyword in _META_KEYWORDS]
    except Exception as exc:  # pydicom raises many kinds on malformed input
        raise InvalidInstance(f"cannot parse the data set: {exc}") from exc
    return _header(dataset, *identity)


def header_of(instance: RetrievedInstance) -> Header | None:
    """``read_header`` for an instance still in memory, as received: parsed up to
    InstanceNumber only (a third of the time of reading the file back, on the
    path of every retrieved instance). None for a deflated data set: read the file."""
    syntax = UID(instance.transfer_syntax_uid)
    if not syntax.is_transfer_syntax or syntax.is_deflated:
        return None
    if syntax.is_little_endian:  # without pydicom's cost, when it can (quick_header.py)
        numbers = scan_header(instance.dataset, implicit_vr=syntax.is_implicit_VR)
        if numbers is not None:
            return Header(*numbers, instance.sop_instance_uid, instance.sop_class_uid,
                          instance.transfer_syntax_uid)
    try:
        dataset = read_dataset(BytesIO(instance.dataset), syntax.is_implicit_VR,
                               syntax.is_little_endian,
                               stop_when=lambda tag, vr, length: tag > _LAST_HEADER_TAG)
    except Exception as exc:  # pydicom raises many kinds on malformed input
        raise InvalidInstance(f"cannot parse the data set: {exc}") from exc
    return _header(dataset, instance.sop_instance_uid, instance.sop_class_uid,
                   instance.transfer_syntax_uid)


def _header(dataset: Dataset, *identity: str) -> Header:
    try:
        study_uid = str(dataset.get("StudyInstanceUID", "") or "")
        series_uid = str(dataset.get("SeriesInstanceUID", "") or "")
        series_number = _integer(dataset.get("SeriesNumber"))
        instance_number = _integer(dataset.get("InstanceNumber"))
    except Exception as exc:  # values are converted lazily: malformed ones raise here
        raise InvalidInstance(f"cannot parse the data set: {exc}") from exc
    if not study_uid or not series_uid:
        raise InvalidInstance("the data set has no StudyInstanceUID or SeriesInstanceUID")
    return Header(study_uid, series_uid, series_number, instance_number, *identity)


def _integer(value: object) -> int | None:
    """An IS value as an int; None when absent or malformed (it only orders instances)."""
    if value is None or value == "":
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def unlink_quietly(path: Path) -> None:
    path.unlink(missing_ok=True)


@dataclass(slots=True)
class Scan:
    """What is on disk under one top-level directory."""

    files: dict[Path, int]  # complete files and their sizes
    temps: list[Path]  # leftovers of interrupted writes


def scan(top: Path) -> Scan:
    """Every file two levels under ``top`` (``top/<h>/<name>``); stray directories are ignored."""
    result = Scan({}, [])
    if not top.is_dir():
        return result
    with os.scandir(top) as buckets:
        for bucket in buckets:
            if not bucket.is_dir(follow_symlinks=False):
                continue
            with os.scandir(bucket.path) as entries:
                for entry in entries:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    if entry.name.startswith(TEMP_PREFIX):
                        result.temps.append(Path(entry.path))
                    else:
                        result.files[Path(entry.path)] = entry.stat(follow_symlinks=False).st_size
    return result
