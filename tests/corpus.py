"""Test corpus: DICOM studies generated once per session from pydicom's test files.

Loaded as a pytest plugin (``pytest_plugins = ["pacs_fixtures", "corpus"]``).

Every UID is fresh per session, so the corpus never collides with anything else
a PACS may hold, and every study has its own PatientName/PatientID/StudyDate so
QIDO filters can single it out. Third-party files are read from the installed
``pydicom`` / ``pydicom-data`` packages at test time, never committed.

Studies (see ``build_corpus``):

=====================  ===============================  =========================
label                  content                          transfer syntax
=====================  ===============================  =========================
``big_ct``             100 x 512x512 16-bit CT, ~52 MB  Explicit VR LE
``ct_small``           2 CT series (1 + 3 instances)    Explicit VR LE
``mr_implicit``        3 MR instances                   Implicit VR LE
``charset``            1 MR, ISO_IR 100 (``Müller``)    Explicit VR LE
``us_multiframe_jpeg`` 120-frame colour US              JPEG Baseline (Orthanc)
``jpeg_colour``        1 RGB secondary capture          JPEG Baseline (Orthanc)
``jpeg_lossless``      2 SC, 1 series each              JPEG Lossless .70 / .57
                                                        (Orthanc)
``htj2k``              1 MR                             HTJ2K Lossless (Orthanc)
``video``              H.264, HEVC, MPEG-2 video        MPEG-4, HEVC, MPEG-2
                                                        (Orthanc)
``documents``          PDF, CDA, Comprehensive SR       Explicit VR LE
``seg_ct``             3 CT 125x125, SEG, RTSTRUCT      Explicit VR LE
=====================  ===============================  =========================

(and more below: see ``build_corpus``). The .57 and HTJ2K instances are
relabelled copies (``_relabelled``): nothing here encodes them.

dcmqrscp only stores uncompressed transfer syntaxes, so it gets the studies with
``StudyInfo.uncompressed``; Orthanc gets all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    ImplicitVRLittleEndian,
    JPEGLossless,
    generate_uid,
)

import media_corpus

BIG_CT_SLICES = 100
BIG_CT_SIZE = 512


@dataclass(frozen=True)
class InstanceInfo:
    sop_instance_uid: str
    sop_class_uid: str
    path: Path
    transfer_syntax_uid: str
    number_of_frames: int

    @property
    def size(self) -> int:
        """Size of the Part 10 file in bytes."""
        return self.path.stat().st_size


@dataclass(frozen=True)
class SeriesInfo:
    series_uid: str
    modality: str
    series_number: int
    instances: list[InstanceInfo]
    series_description: str = ""


@dataclass(frozen=True)
class StudyInfo:
    label: str
    study_uid: str
    patient_name: str
    patient_id: str
    study_date: str
    accession: str
    series: list[SeriesInfo]
    study_description: str = ""
    # True when every instance is in an uncompressed transfer syntax: only these
    # studies are loaded into dcmqrscp, which refuses compressed ones by default.
    uncompressed: bool = True

    @property
    def instances(self) -> list[InstanceInfo]:
        return [inst for series in self.series for inst in series.instances]

    @property
    def modalities(self) -> list[str]:
        """ModalitiesInStudy, sorted."""
        return sorted({series.modality for series in self.series})

    @property
    def total_bytes(self) -> int:
        return sum(inst.size for inst in self.instances)

    def series_by_uid(self, series_uid: str) -> SeriesInfo:
        for series in self.series:
            if series.series_uid == series_uid:
                return series
        raise KeyError(f"no series {series_uid} in study {self.label!r}")


@dataclass(frozen=True)
class Corpus:
    root: Path
    studies: list[StudyInfo]

    def study(self, label: str) -> StudyInfo:
        for study in self.studies:
            if study.label == label:
                return study
        known = ", ".join(s.label for s in self.studies)
        raise KeyError(f"no corpus study labelled {label!r} (known: {known})")

    def study_by_uid(self, study_uid: str) -> StudyInfo:
        for study in self.studies:
            if study.study_uid == study_uid:
                return study
        raise KeyError(f"no corpus study with StudyInstanceUID {study_uid}")

    @property
    def uncompressed_studies(self) -> list[StudyInfo]:
        """The studies dcmqrscp holds."""
        return [s for s in self.studies if s.uncompressed]

    @property
    def instances(self) -> list[InstanceInfo]:
        return [inst for study in self.studies for inst in study.instances]

    def instance(self, sop_instance_uid: str) -> InstanceInfo:
        for inst in self.instances:
            if inst.sop_instance_uid == sop_instance_uid:
                return inst
        raise KeyError(f"no corpus instance {sop_instance_uid}")


# --------------------------------------------------------------------------- helpers


def _testdata(name: str) -> Path:
    """A file from pydicom's bundled test files or the ``pydicom-data`` package.

    ``download=False`` because there is no internet in CI: a missing file must
    fail loudly with the package to install, not hang on a download.
    """
    path = get_testdata_file(name, download=False)
    if path is None:
        raise RuntimeError(
            f"pydicom test file {name!r} not found: install the test extras "
            "(`pip install -e '.[test]'`, which pulls in pydicom-data)"
        )
    return Path(path)


def _read(name: str) -> Dataset:
    return pydicom.dcmread(_testdata(name))


def _refresh_uids(ds: Dataset, mapping: dict[str, str]) -> None:
    """Replace every instance-specific UID (recursively, sequences included).

    Well-known UIDs (SOP classes, transfer syntaxes, ...) are kept. ``mapping``
    is shared by all instances of a study so that references inside the study
    (FrameOfReferenceUID, ReferencedSOPInstanceUID ...) stay consistent.
    """

    def fresh(value: str) -> str:
        # UID.name is the dictionary name for well-known UIDs, the UID itself otherwise.
        if not value or UID(value).name != value:
            return value
        if value not in mapping:
            new = generate_uid()
            mapping[value] = new
            # A dataset mutated in place (big_ct) is visited again: keep its new UIDs.
            mapping[new] = new
        return mapping[value]

    def visit(dataset: Dataset) -> None:
        for elem in dataset:
            if elem.VR == "SQ":
                for item in elem.value:
                    visit(item)
            elif elem.VR == "UI" and elem.value:
                if elem.VM > 1:
                    elem.value = [fresh(str(v)) for v in elem.value]
                else:
                    elem.value = fresh(str(elem.value))

    visit(ds)


def _set_identity(
    ds: Dataset,
    *,
    study_uid: str,
    series_uid: str,
    sop_instance_uid: str,
    patient_name: str,
    patient_id: str,
    study_date: str,
    accession: str,
    study_description: str,
    series_number: int,
    series_description: str,
    instance_number: int,
) -> None:
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = accession
    ds.StudyDescription = study_description
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.InstanceNumber = instance_number
    # Stale copies of the source file's identity would confuse PACS matching.
    for keyword in ("OtherPatientIDsSequence", "OtherPatientIDs"):
        if keyword in ds:
            del ds[keyword]


def _slice_normal(ds: Dataset) -> np.ndarray:
    orientation = np.asarray([float(v) for v in ds.ImageOrientationPatient])
    return np.cross(orientation[:3], orientation[3:])


# --------------------------------------------------------------------------- builder


@dataclass(frozen=True)
class _StudySpec:
    label: str
    patient_name: str
    patient_id: str
    study_date: str
    accession: str
    study_description: str


class _StudyWriter:
    """Writes the instances of one study and collects their ``*Info`` records."""

    def __init__(self, root: Path, spec: _StudySpec) -> None:
        self.spec = spec
        self.dir = root / spec.label
        self.study_uid = generate_uid()
        self.uid_map: dict[str, str] = {}
        self.series: list[SeriesInfo] = []

    def add_series(
        self,
        modality: str,
        description: str,
        datasets: Iterator[Dataset],
        transfer_syntax_uid: str | None = None,
    ) -> SeriesInfo:
        """Write every dataset as one instance of a new series.

        ``transfer_syntax_uid`` re-encodes uncompressed data (pydicom converts
        between the uncompressed syntaxes on write); None keeps the source's.
        """
        series_number = len(self.series) + 1
        series_uid = generate_uid()
        series_dir = self.dir / f"{series_number:02d}"
        series_dir.mkdir(parents=True, exist_ok=True)
        instances: list[InstanceInfo] = []
        for index, ds in enumerate(datasets, start=1):
            _refresh_uids(ds, self.uid_map)
            sop_uid = generate_uid()
            _set_identity(
                ds,
                study_uid=self.study_uid,
                series_uid=series_uid,
                sop_instance_uid=sop_uid,
                patient_name=self.spec.patient_name,
                patient_id=self.spec.patient_id,
                study_date=self.spec.study_date,
                accession=self.spec.accession,
                study_description=self.spec.study_description,
                series_number=series_number,
                series_description=description,
                instance_number=index,
            )
            ds.Modality = modality
            if transfer_syntax_uid is not None:
                ds.file_meta.TransferSyntaxUID = UID(transfer_syntax_uid)
            path = series_dir / f"{index:04d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            instances.append(
                InstanceInfo(
                    sop_instance_uid=sop_uid,
                    sop_class_uid=str(ds.SOPClassUID),
                    path=path,
                    transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
                    number_of_frames=int(ds.get("NumberOfFrames") or 1),
                )
            )
        info = SeriesInfo(
            series_uid=series_uid,
            modality=modality,
            series_number=series_number,
            instances=instances,
            series_description=description,
        )
        self.series.append(info)
        return info

    def finish(self) -> StudyInfo:
        uncompressed = all(
            not UID(inst.transfer_syntax_uid).is_compressed
            for series in self.series
            for inst in series.instances
        )
        return StudyInfo(
            label=self.spec.label,
            study_uid=self.study_uid,
            patient_name=self.spec.patient_name,
            patient_id=self.spec.patient_id,
            study_date=self.spec.study_date,
            accession=self.spec.accession,
            series=list(self.series),
            study_description=self.spec.study_description,
            uncompressed=uncompressed,
        )


def _relabelled(name: str, transfer_syntax_uid: str) -> Dataset:
    """A compressed test file declared in a syntax whose codestream it already is.

    No encoder of JPEG Lossless (any predictor, .57) or HTJ2K is at hand, but a
    .70 codestream (JPEG Lossless with predictor 1) is a valid .57 one, and an
    HTJ2K decoder reads JPEG 2000 Part 1 codestreams: transport tests only need
    the stored bytes and the declared syntax to come back unchanged.
    """
    ds = _read(name)
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax_uid)
    return ds


def _stack(
    name: str, count: int, modify: Callable[[Dataset, int], None] | None = None
) -> Iterator[Dataset]:
    """``count`` slices from one test file, stepping ImagePositionPatient along the normal."""
    for index in range(count):
        ds = _read(name)
        normal = _slice_normal(ds)
        thickness = float(ds.get("SliceThickness") or 1.0)
        origin = np.asarray([float(v) for v in ds.ImagePositionPatient])
        position = origin + normal * thickness * index
        ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
        ds.SliceLocation = f"{float(position @ normal):.4f}"
        if modify is not None:
            modify(ds, index)
        yield ds


def _big_ct_slices() -> Iterator[Dataset]:
    """100 CT slices of 512x512 int16 (~52 MB), upscaled from CT_small.dcm.

    The source dataset is read once and mutated per slice: every slice gets
    its own pixels (rolled and offset) so caches and frame endpoints can't
    pass by returning the wrong slice.
    """
    ds = _read("CT_small.dcm")
    scale = BIG_CT_SIZE // int(ds.Rows)
    base = ds.pixel_array.astype(np.int32)
    big = np.kron(base, np.ones((scale, scale), dtype=np.int32))
    spacing = [float(v) / scale for v in ds.PixelSpacing]
    normal = _slice_normal(ds)
    origin = np.asarray([float(v) for v in ds.ImagePositionPatient])
    thickness = 1.25
    ds.Rows = ds.Columns = BIG_CT_SIZE
    ds.PixelSpacing = [f"{v:.6f}" for v in spacing]
    ds.SliceThickness = ds.SpacingBetweenSlices = f"{thickness:.2f}"
    for keyword in ("SmallestImagePixelValue", "LargestImagePixelValue"):
        if keyword in ds:
            del ds[keyword]
    for index in range(BIG_CT_SLICES):
        pixels = np.roll(big, shift=index * 3, axis=1) + (index % 25) * 4
        ds.PixelData = np.clip(pixels, -32768, 32767).astype("<i2").tobytes()
        position = origin + normal * thickness * index
        ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
        ds.SliceLocation = f"{float(position @ normal):.4f}"
        yield ds


def build_corpus(root: Path) -> Corpus:
    """Generate the corpus under ``root`` (which must be empty or absent)."""
    root.mkdir(parents=True, exist_ok=True)
    studies: list[StudyInfo] = []

    big = _StudyWriter(
        root,
        _StudySpec("big_ct", "Gateway^BigCT", "GW-BIGCT", "20240115", "ACC-BIGCT",
                   "CT chest abdomen (big)"),
    )
    big.add_series("CT", "Axial 1.25mm", _big_ct_slices(), ExplicitVRLittleEndian)
    studies.append(big.finish())

    # Two series, so series-level queries and paging have something to do.
    ct = _StudyWriter(
        root,
        _StudySpec("ct_small", "Lestrade^G", "GW-CTSMALL", "20230301", "ACC-CTSMALL",
                   "CT head"),
    )
    ct.add_series("CT", "Scout", _stack("CT_small.dcm", 1), ExplicitVRLittleEndian)
    ct.add_series("CT", "Axial 5mm", _stack("CT_small.dcm", 3), ExplicitVRLittleEndian)
    studies.append(ct.finish())

    # Stored as Implicit VR LE: the gateway must hand it out as Explicit VR LE.
    mr = _StudyWriter(
        root,
        _StudySpec("mr_implicit", "Holmes^Sherlock", "GW-MRIVR", "20230615", "ACC-MRIVR",
                   "MR brain"),
    )
    mr.add_series("MR", "T2 SE", _stack("MR_small.dcm", 3), ImplicitVRLittleEndian)
    studies.append(mr.finish())

    # Latin-1 on the wire: dcmqrscp matches raw bytes and does not convert charsets.
    def latin1(ds: Dataset, _index: int) -> None:
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ReferringPhysicianName = "Weiß^Jürgen"

    charset = _StudyWriter(
        root,
        _StudySpec("charset", "Müller^Hans", "GW-CHARSET", "20221224", "ACC-CHARSET",
                   "Schädel MRT"),
    )
    charset.add_series("MR", "T1 Übersicht", _stack("MR_small.dcm", 1, latin1),
                       ExplicitVRLittleEndian)
    studies.append(charset.finish())

    # Compressed (JPEG Baseline) studies: Orthanc only.
    us = _StudyWriter(
        root,
        _StudySpec("us_multiframe_jpeg", "Watson^John", "GW-USJPEG", "20210910", "ACC-USJPEG",
                   "Echocardiography"),
    )
    us.add_series("US", "Cine loop", iter([_read("color3d_jpeg_baseline.dcm")]))
    studies.append(us.finish())

    colour = _StudyWriter(
        root,
        _StudySpec("jpeg_colour", "Hudson^Martha", "GW-RGBJPEG", "20200202", "ACC-RGBJPEG",
                   "Secondary capture"),
    )
    colour.add_series("OT", "RGB JPEG", iter([_read("SC_rgb_jpeg_dcmtk.dcm")]))
    studies.append(colour.finish())

    # Multi-frame: frame N must be frame N, native and encapsulated.
    multiframe = _StudyWriter(
        root,
        _StudySpec("mr_multiframe", "Adler^Irene", "GW-MRMULTI", "20190505", "ACC-MRMULTI",
                   "MR multi-frame"),
    )
    multiframe.add_series("MR", "10 frames native", iter([_read("emri_small.dcm")]))
    studies.append(multiframe.finish())

    # The same 10 frames losslessly compressed three ways, plus a 2-frame RLE RGB: Orthanc only.
    lossless = _StudyWriter(
        root,
        _StudySpec("mr_multiframe_compressed", "Moriarty^James", "GW-MRLOSSLESS", "20180404",
                   "ACC-MRLOSSLESS", "MR multi-frame lossless"),
    )
    lossless.add_series("MR", "10 frames lossless", iter([
        _read("emri_small_RLE.dcm"),
        _read("emri_small_jpeg_ls_lossless.dcm"),
        _read("emri_small_jpeg_2k_lossless.dcm"),
    ]))
    lossless.add_series("OT", "RLE RGB 2 frames", iter([_read("SC_rgb_rle_2frame.dcm")]))
    studies.append(lossless.finish())

    # MONOCHROME1 (a CR): rendered images must come out inverted, through either PACS.
    cr = _StudyWriter(
        root,
        _StudySpec("cr_monochrome1", "Hooper^Wiggins", "GW-CRMONO1", "20170303", "ACC-CRMONO1",
                   "Chest PA"),
    )
    cr.add_series("CR", "PA", iter([_read("RG1_UNCI.dcm")]))
    studies.append(cr.finish())

    # The two JPEG Lossless syntaxes of one SOP class, a series each: Orthanc only.
    lossless_jpeg = _StudyWriter(
        root,
        _StudySpec("jpeg_lossless", "Hudson^Mrs", "GW-JPEGLL", "20160606", "ACC-JPEGLL",
                   "JPEG lossless"),
    )
    lossless_jpeg.add_series("OT", "JPEG Lossless SV1", iter([_read("JPEG-LL.dcm")]))
    lossless_jpeg.add_series("OT", "JPEG Lossless", iter([
        _relabelled("JPEG-LL.dcm", JPEGLossless)]))
    studies.append(lossless_jpeg.finish())

    # HTJ2K, which Orthanc 1.10 stores but does not know: Orthanc only.
    htj2k = _StudyWriter(
        root,
        _StudySpec("htj2k", "Stamford^Arthur", "GW-HTJ2K", "20150505", "ACC-HTJ2K",
                   "MR HTJ2K"),
    )
    htj2k.add_series("MR", "HTJ2K lossless", iter([
        _relabelled("MR_small_jp2klossless.dcm", HTJ2KLossless)]))
    studies.append(htj2k.finish())

    studies += _media_studies(root)
    return Corpus(root=root, studies=studies)


def _media_studies(root: Path) -> list[StudyInfo]:
    """Video, documents, SR, SEG and RTSTRUCT (issue #18, part 4; see media_corpus.py)."""
    # Video: compressed transfer syntaxes, so Orthanc only.
    video = _StudyWriter(
        root,
        _StudySpec("video", "Lumen^Vera", "GW-VIDEO", "20140707", "ACC-VIDEO",
                   "Endoscopy video"),
    )
    for name, description in (("avc", "H.264 MP4"), ("hevc", "HEVC MP4"),
                              ("mpeg2", "MPEG-2")):
        video.add_series("ES", description, iter([media_corpus.video(name)]))
    studies = [video.finish()]

    # Uncompressed: both PACS.
    documents = _StudyWriter(
        root,
        _StudySpec("documents", "Paper^Penny", "GW-DOCS", "20130808", "ACC-DOCS",
                   "Reports"),
    )
    documents.add_series("DOC", "PDF report", iter([media_corpus.encapsulated_pdf()]))
    documents.add_series("DOC", "CDA report", iter([media_corpus.encapsulated_cda()]))
    documents.add_series("SR", "Comprehensive SR", iter([media_corpus.comprehensive_sr()]))
    studies.append(documents.finish())

    seg = _StudyWriter(
        root,
        _StudySpec("seg_ct", "Mask^Segment", "GW-SEGCT", "20120909", "ACC-SEGCT",
                   "CT with segmentation"),
    )
    ct = seg.add_series("CT", "CT 125x125", media_corpus.cropped_ct(_testdata("CT_small.dcm")))
    written = [pydicom.dcmread(inst.path) for inst in ct.instances]
    # The SEG and RTSTRUCT refer to these UIDs: the writer must keep them as they are.
    kept = [seg.study_uid, ct.series_uid, *(inst.sop_instance_uid for inst in ct.instances)]
    seg.uid_map.update({uid: uid for uid in kept})
    seg.add_series("SEG", "Segmentation", iter([media_corpus.binary_seg(written, ct.series_uid)]))
    seg.add_series("RTSTRUCT", "Structure set", iter([
        media_corpus.rt_structure_set(written, seg.study_uid, ct.series_uid)]))
    studies.append(seg.finish())
    return studies


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """The test corpus, generated once per session (a second or two)."""
    return build_corpus(tmp_path_factory.mktemp("corpus"))
