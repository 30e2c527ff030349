"""The demo PACS's storage folder, kept in step with its index: scanning it at
start, copying files in, and the C-STORE handler that stores what arrives.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import replace
from hashlib import sha1
from pathlib import Path
from typing import Final, cast

from pynetdicom import _config as pynetdicom_config
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event

from dicomweb_gw.demo.dimse import STORE_CANNOT_UNDERSTAND, STORE_OUT_OF_RESOURCES, SUCCESS
from dicomweb_gw.demo.index import IndexedInstance, InstanceIndex, read_instance

__all__ = ["StorageFolder"]

LOGGER = logging.getLogger("dicomweb_gw.demo")

_SAFE_NAME: Final = re.compile(r"^[0-9.]{1,64}$")


class StorageFolder:
    """The DICOM files under ``root`` and the :class:`InstanceIndex` over them."""

    def __init__(self, root: Path, index: InstanceIndex) -> None:
        self._root = root
        self._index = index

    def scan(self) -> int:
        """Create the folder if needed and index every file in it; return how many."""
        self._root.mkdir(parents=True, exist_ok=True)
        count = 0
        for path in sorted(self._root.rglob("*")):
            relative = path.relative_to(self._root)
            if not path.is_file() or any(part.startswith(".") for part in relative.parts):
                continue  # hidden: our temp files
            instance = read_instance(path)
            if instance is not None:
                self._index.add(instance)
                count += 1
        return count

    def add_files(self, paths: Iterable[Path]) -> int:
        """Copy DICOM files into the folder and index them; return how many.

        Files already under the folder are indexed where they are; files
        that are not DICOM instances are skipped (and logged).
        """
        added = 0
        root = self._root.resolve()
        for path in map(Path, paths):
            instance = read_instance(path)
            if instance is None:
                continue
            if not path.resolve().is_relative_to(root):
                destination = self._destination(instance)
                _atomic_copy(path, destination)
                instance = replace(instance, path=destination)
            self._index.add(instance)
            added += 1
        return added

    def on_store(self, event: Event) -> int:
        """The EVT_C_STORE handler: store the received instance, return its status."""
        try:
            if pynetdicom_config.STORE_RECV_CHUNKED_DATASET:
                # Process-wide pynetdicom setting (the gateway may turn it on):
                # the dataset was spooled to a Part 10 temp file, not kept in memory.
                return self._store_received(event.dataset_path)
            return self._store_received(event.encoded_dataset(include_meta=True))
        except OSError:
            request = cast(C_STORE, event.request)
            LOGGER.exception("could not store %s", request.AffectedSOPInstanceUID)
            return STORE_OUT_OF_RESOURCES

    def _store_received(self, received: bytes | Path) -> int:
        """Store one received instance (a Part 10 file); return a C-STORE status."""
        incoming = self._root / ".incoming"
        incoming.mkdir(exist_ok=True)
        fd, name = tempfile.mkstemp(dir=incoming, suffix=".part")
        temp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(received, Path):
                    with received.open("rb") as source:
                        shutil.copyfileobj(source, out)
                else:
                    out.write(received)
            instance = read_instance(temp)
            if instance is None:
                return STORE_CANNOT_UNDERSTAND
            destination = self._destination(instance)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, destination)
        finally:
            temp.unlink(missing_ok=True)
        self._index.add(replace(instance, path=destination))
        LOGGER.info("stored %s", instance.sop_instance_uid)
        return SUCCESS

    def _destination(self, instance: IndexedInstance) -> Path:
        """Where an instance is stored: where it already is, else <study>/<sop>.dcm."""
        known = self._index.get(instance.sop_instance_uid)
        if known is not None:
            return known.path
        study = _safe_name(instance.value("StudyInstanceUID") or "unknown-study")
        return self._root / study / f"{_safe_name(instance.sop_instance_uid)}.dcm"


def _atomic_copy(source: Path, destination: Path) -> None:
    """Copy so that a reader never sees half a file (temp file, then rename)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=destination.parent, prefix=".", suffix=".part")
    os.close(fd)
    try:
        shutil.copyfile(source, name)
        os.replace(name, destination)
    finally:
        Path(name).unlink(missing_ok=True)


def _safe_name(uid: str) -> str:
    """A UID as a file name; anything that is not a plain UID is hashed (no ``../``)."""
    return uid if _SAFE_NAME.match(uid) else sha1(uid.encode()).hexdigest()
