"""Sample studies for the demo PACS, made from the test files in pydicom's wheel.

Only files that ship inside the pydicom wheel are used (``pydicom-data`` is a
test extra and downloads fail offline). Each instance gets fresh UIDs and a
made-up patient, so the demo looks like a small PACS:

* DOE^JANE: CT chest, one series of 10 slices (CT_small at 5 mm spacing).
* SMITH^JOHN: MR brain, two series (Explicit VR LE and RLE Lossless), and a
  cardiac ultrasound: one 30-frame JPEG Baseline multi-frame instance.
* MÜLLER^JÜRGEN: a dermatology photo, RGB JPEG Baseline, UTF-8 names.

UIDs are derived from the sample's content labels (``generate_uid`` with
entropy sources), so regenerating gives the same UIDs and demo URLs stay valid.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

__all__ = ["generate_sample_data"]

LOGGER = logging.getLogger("dicomweb_gw.demo")

_UID_SEED: Final = "dicomweb-gw demo sample data v1"
_INSTITUTION: Final = "Demo General Hospital"

# Source-file attributes that would tie the samples to the originals (or to
# instances the demo does not have): dropped rather than rewritten.
_DROP: Final = (
    "OtherPatientIDsSequence",
    "OtherPatientIDs",
    "SourceImageSequence",
    "ReferencedImageSequence",
    "ReferencedStudySequence",
    "ReferencedPerformedProcedureStepSequence",
    "InstanceCreatorUID",
)


@dataclass(frozen=True)
class _Series:
    source: str  # a file name in pydicom's test data
    number: int
    description: str
    copies: int = 1
    slice_spacing: float | None = None  # restack copies along the slice normal
    modality: str | None = None  # override the source's modality


@dataclass(frozen=True)
class _Study:
    slug: str  # directory name
    patient_name: str
    patient_id: str
    birth_date: str
    sex: str
    date: str
    time: str
    accession: str
    description: str
    referring: str
    series: tuple[_Series, ...] = field(default_factory=tuple)
    charset: str | None = None


_STUDIES: Final[tuple[_Study, ...]] = (
    _Study(
        slug="ct-chest",
        patient_name="DOE^JANE",
        patient_id="DEMO-0001",
        birth_date="19640512",
        sex="F",
        date="20240312",
        time="091500",
        accession="ACC-1001",
        description="CT CHEST WITHOUT CONTRAST",
        referring="HOUSE^GREGORY",
        series=(_Series("CT_small.dcm", 1, "AXIAL 5MM", copies=10, slice_spacing=5.0),),
    ),
    _Study(
        slug="mr-brain",
        patient_name="SMITH^JOHN",
        patient_id="DEMO-0002",
        birth_date="19580221",
        sex="M",
        date="20240418",
        time="143000",
        accession="ACC-1002",
        description="MR BRAIN",
        referring="CUDDY^LISA",
        series=(
            _Series("MR_small.dcm", 1, "T1 AXIAL"),
            _Series("MR_small_RLE.dcm", 2, "T1 AXIAL RLE"),
        ),
    ),
    _Study(
        slug="us-echo",
        patient_name="SMITH^JOHN",
        patient_id="DEMO-0002",
        birth_date="19580221",
        sex="M",
        date="20240502",
        time="101000",
        accession="ACC-1003",
        description="US ECHOCARDIOGRAM",
        referring="WILSON^JAMES",
        series=(_Series("examples_ybr_color.dcm", 1, "4 CHAMBER CINE"),),
    ),
    _Study(
        slug="xc-photo",
        patient_name="MÜLLER^JÜRGEN",
        patient_id="DEMO-0003",
        birth_date="19711103",
        sex="M",
        date="20240220",
        time="110500",
        accession="ACC-1004",
        description="DERMATOLOGY PHOTO",
        referring="FOREMAN^ERIC",
        series=(_Series("SC_rgb_jpeg_dcmtk.dcm", 1, "LEFT FOREARM", modality="XC"),),
        charset="ISO_IR 192",
    ),
)


def generate_sample_data(target_dir: Path) -> list[Path]:
    """Write the demo studies under ``target_dir``; return the files written.

    Layout: ``<study slug>/<series number>/<instance number>.dcm``. Existing
    files at those paths are overwritten (the content is deterministic).
    """
    written = []
    for study in _STUDIES:
        for series in study.series:
            for number, ds in enumerate(_instances(study, series), start=1):
                path = target_dir / study.slug / f"{series.number:03d}" / f"{number:04d}.dcm"
                path.parent.mkdir(parents=True, exist_ok=True)
                ds.save_as(path, enforce_file_format=True)
                written.append(path)
    LOGGER.info("wrote %d sample instances to %s", len(written), target_dir)
    return written


def _instances(study: _Study, series: _Series) -> Iterator[Dataset]:
    source = get_testdata_file(series.source, download=False)
    if source is None:
        raise FileNotFoundError(f"{series.source} is not in this pydicom installation")
    for number in range(1, series.copies + 1):
        ds = dcmread(source)
        _set_identity(ds, study)
        _set_series(ds, study, series, number)
        yield ds


def _uid(*labels: object) -> str:
    return generate_uid(entropy_srcs=[_UID_SEED, *(str(label) for label in labels)])


def _set_identity(ds: Dataset, study: _Study) -> None:
    for keyword in _DROP:
        if keyword in ds:
            delattr(ds, keyword)
    if study.charset:
        ds.SpecificCharacterSet = study.charset
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.birth_date
    ds.PatientSex = study.sex
    ds.StudyInstanceUID = _uid(study.slug)
    ds.StudyDate = study.date
    ds.StudyTime = study.time
    ds.StudyID = study.accession.removeprefix("ACC-")
    ds.AccessionNumber = study.accession
    ds.StudyDescription = study.description
    ds.ReferringPhysicianName = study.referring
    ds.InstitutionName = _INSTITUTION


def _set_series(ds: Dataset, study: _Study, series: _Series, number: int) -> None:
    ds.SeriesInstanceUID = _uid(study.slug, series.number)
    ds.SOPInstanceUID = _uid(study.slug, series.number, number)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "FrameOfReferenceUID" in ds:
        ds.FrameOfReferenceUID = _uid(study.slug, series.number, "frame of reference")
    ds.SeriesNumber = series.number
    ds.SeriesDescription = series.description
    ds.InstanceNumber = number
    if series.modality:
        ds.Modality = series.modality
    for keyword in ("SeriesDate", "AcquisitionDate", "ContentDate"):
        setattr(ds, keyword, study.date)
    # Acquired a minute after the study started, one second per instance.
    started = datetime.strptime(study.time, "%H%M%S")
    acquired = started + timedelta(minutes=series.number, seconds=number)
    for keyword in ("SeriesTime", "AcquisitionTime", "ContentTime"):
        setattr(ds, keyword, acquired.strftime("%H%M%S"))
    if series.slice_spacing is not None:
        _restack(ds, number, series.slice_spacing)


def _restack(ds: Dataset, number: int, spacing: float) -> None:
    """Move copy ``number`` along the slice normal so the series is a real stack."""
    row, col = (
        [float(v) for v in ds.ImageOrientationPatient[:3]],
        [float(v) for v in ds.ImageOrientationPatient[3:]],
    )
    normal = (
        row[1] * col[2] - row[2] * col[1],
        row[2] * col[0] - row[0] * col[2],
        row[0] * col[1] - row[1] * col[0],
    )
    offset = (number - 1) * spacing
    origin = [float(v) for v in ds.ImagePositionPatient]
    ds.ImagePositionPatient = [f"{origin[axis] + offset * normal[axis]:.6g}" for axis in range(3)]
    if "SliceLocation" in ds:
        ds.SliceLocation = f"{float(ds.SliceLocation) + offset:.6g}"
