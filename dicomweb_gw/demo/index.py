"""In-memory index of the demo PACS's files: what is kept of each file, and how.

The files stay on disk. For each instance the index keeps only what matching
needs: the top-level attributes without sequences or bulk data (pixel data is
never read). When a C-FIND asks for something the index left out (a sequence,
say) the response is filled from the file itself (see
:mod:`dicomweb_gw.demo.query`), so responses always carry what the files hold.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

__all__ = ["IndexedInstance", "InstanceIndex", "read_instance"]

LOGGER = logging.getLogger("dicomweb_gw.demo")

# Elements larger than this (binary VRs) stay out of the index; a C-FIND that
# asks for one gets it from the file.
_MAX_INDEXED_BINARY: Final = 1024
_BINARY_VRS: Final = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})


@dataclass(frozen=True)
class IndexedInstance:
    """One stored file: where it is and the attributes matching needs."""

    path: Path
    attrs: Dataset
    transfer_syntax: str
    omitted: frozenset[BaseTag]
    """Tags present in the file but left out of ``attrs`` (sequences, bulk data)."""

    def value(self, keyword: str) -> str:
        """The attribute as a stripped string ('' when absent or empty)."""
        value = self.attrs.get(keyword)  # by keyword: the value, not the element
        return "" if value is None else str(value).strip()

    @property
    def sop_instance_uid(self) -> str:
        return self.value("SOPInstanceUID")

    @property
    def sop_class_uid(self) -> str:
        return self.value("SOPClassUID")


def read_instance(path: Path) -> IndexedInstance | None:
    """Index one file; None (logged) if it is not a DICOM instance we can serve."""
    try:
        ds = dcmread(path, stop_before_pixels=True)
        transfer_syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "")
        if not transfer_syntax or not ds.get("SOPInstanceUID") or not ds.get("SOPClassUID"):
            LOGGER.warning("not indexing %s: no transfer syntax, SOP Class or Instance UID", path)
            return None
        attrs, omitted = _searchable(ds)
    except Exception as exc:  # a folder may hold anything: skip it, don't fail the scan
        LOGGER.debug("not indexing %s: %s", path, exc)
        return None
    return IndexedInstance(path, attrs, transfer_syntax, omitted)


def _searchable(ds: Dataset) -> tuple[Dataset, frozenset[BaseTag]]:
    """The top-level attributes worth keeping in memory, and the tags left out."""
    attrs = Dataset()
    omitted: set[BaseTag] = set()
    for elem in ds:  # iterating converts raw elements, decoding text with the file's charset
        if elem.VR == "SQ" or (elem.VR in _BINARY_VRS and _length(elem) > _MAX_INDEXED_BINARY):
            omitted.add(elem.tag)
        else:
            attrs.add(elem)
    return attrs, frozenset(omitted)


def _length(elem: DataElement) -> int:
    value = elem.value
    return len(value) if isinstance(value, bytes | bytearray) else 0


class InstanceIndex:
    """Thread-safe map of SOP Instance UID to indexed file.

    C-STOREs add entries from association threads while C-FINDs read, so
    readers take a snapshot under the lock and match outside it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_uid: dict[str, IndexedInstance] = {}

    def add(self, instance: IndexedInstance) -> None:
        with self._lock:
            self._by_uid[instance.sop_instance_uid] = instance

    def get(self, sop_instance_uid: str) -> IndexedInstance | None:
        with self._lock:
            return self._by_uid.get(sop_instance_uid)

    def snapshot(self) -> list[IndexedInstance]:
        with self._lock:
            return list(self._by_uid.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_uid)
