"""What TieredInstanceStore keeps in the shared blob store: keys and completeness manifests.

Layout::

    <study>/<series>/<sop>.dcm          an instance: the Part 10 file, as in the local cache
    <study>/complete.json               the study's completeness manifest
    <study>/<series>/complete.json      a series' completeness manifest

A manifest says, with the time, which instances the study or series had when
it was retrieved in full, each with its series (null if the replica that
wrote it did not have the instance cached, so did not know it).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

__all__ = ["INSTANCE_SUFFIX", "Manifest", "instance_key", "manifest_key", "segment",
           "series_prefix"]

INSTANCE_SUFFIX = ".dcm"
_MANIFEST = "complete.json"
# A plain DICOM UID: digits and dots, at most 64 characters.
_UID = re.compile(r"[0-9][0-9.]{0,63}")


def segment(uid: str) -> str:
    """A UID as one key segment: itself if it is a plain UID, else ``x`` + its SHA-1.

    A key segment cannot hold ``/``, and a UID with letters could be taken for
    ``complete.json``; PACS do send malformed UIDs now and then.
    """
    if _UID.fullmatch(uid):
        return uid
    return "x" + hashlib.sha1(uid.encode(), usedforsecurity=False).hexdigest()


def instance_key(study_uid: str, series_uid: str, sop_instance_uid: str) -> str:
    return f"{series_prefix(study_uid, series_uid)}/{segment(sop_instance_uid)}{INSTANCE_SUFFIX}"


def manifest_key(study_uid: str, series_uid: str | None) -> str:
    if series_uid is None:
        return f"{segment(study_uid)}/{_MANIFEST}"
    return f"{segment(study_uid)}/{segment(series_uid)}/{_MANIFEST}"


def series_prefix(study_uid: str, series_uid: str | None) -> str:
    """The prefix holding a study's (``series_uid`` None) or a series' objects."""
    if series_uid is None:
        return segment(study_uid)
    return f"{segment(study_uid)}/{segment(series_uid)}"


@dataclass(frozen=True, slots=True)
class Manifest:
    study_uid: str
    series_uid: str | None  # None: the whole study
    completed_at: float  # wall-clock seconds since the epoch
    members: tuple[tuple[str, str | None], ...]  # (SOP Instance UID, its series or None)

    def encode(self) -> bytes:
        return json.dumps({
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "completed_at": self.completed_at,
            "instances": [{"sop_instance_uid": sop, "series_uid": series}
                          for sop, series in self.members],
        }, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        """The manifest in ``data``; ValueError if it is not one."""
        try:
            document = json.loads(data)
            study_uid = document["study_uid"]
            series_uid = document["series_uid"]
            completed_at = document["completed_at"]
            members = tuple((item["sop_instance_uid"], item["series_uid"])
                            for item in document["instances"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a completeness manifest: {exc!r}") from None
        if not (isinstance(study_uid, str) and isinstance(series_uid, str | None)
                and isinstance(completed_at, int | float)
                and all(isinstance(sop, str) and isinstance(series, str | None)
                        for sop, series in members)):
            raise ValueError("not a completeness manifest: a field has the wrong type")
        return cls(study_uid, series_uid, float(completed_at), members)
