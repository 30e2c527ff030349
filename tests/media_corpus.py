"""Corpus instances that are not plain images: video, documents, SR, SEG, RTSTRUCT.

Built with pydicom around small real payloads (issue #18, part 4):

* video: the committed streams in ``tests/data/media`` (made by ``make.sh`` there
  with Debian's ffmpeg: an H.264 MP4, an HEVC MP4, an MPEG-2 program stream; 160x120
  or 160x128, a few seconds of ``testsrc2``), each encapsulated as the Pixel Data of
  a Video Endoscopic Image in its transfer syntax;
* an Encapsulated PDF (a one-page PDF written here) and an Encapsulated CDA;
* a Comprehensive SR with nested content items;
* a BINARY SEG and an RTSTRUCT over a 3-slice CT cropped to 125x125, so that a
  1-bit frame (15625 bits) ends inside a byte: frame boundaries are not byte-aligned.

Every builder returns datasets without identity (the corpus writer adds UIDs,
patient and study); references between instances use UIDs the writer keeps.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import pack_bits
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    HEVCMP51,
    MPEG2MPML,
    MPEG4HP41,
    UID,
    ExplicitVRLittleEndian,
    generate_uid,
)

MEDIA_DIR = Path(__file__).resolve().parent / "data" / "media"

VIDEO_ENDOSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.1.1"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
ENCAPSULATED_CDA = "1.2.840.10008.5.1.4.1.1.104.2"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
RT_STRUCTURE_SET = "1.2.840.10008.5.1.4.1.1.481.3"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"

#: (file in MEDIA_DIR, transfer syntax, frames, frame time in ms, rows, columns)
VIDEOS = {
    "avc": ("avc.mp4", MPEG4HP41, 30, 100.0, 120, 160),
    "hevc": ("hevc.mp4", HEVCMP51, 30, 100.0, 120, 160),
    "mpeg2": ("mpeg2.mpg", MPEG2MPML, 50, 40.0, 128, 160),
}

SEG_SIZE = 125  # 125 * 125 = 15625 bits: a 1-bit frame ends inside a byte
SEG_SLICES = 3

PDF_TEXT = "dicomweb-gw encapsulated PDF test page"
CDA_TITLE = "dicomweb-gw CDA test document"


def _new(sop_class_uid: str, transfer_syntax_uid: str = ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax_uid)
    ds.SOPClassUID = sop_class_uid
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.Manufacturer = "dicomweb-gw tests"
    ds.ContentDate = "20240101"
    ds.ContentTime = "120000"
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def video_stream(name: str) -> bytes:
    """The committed video file for ``VIDEOS[name]``."""
    return (MEDIA_DIR / VIDEOS[name][0]).read_bytes()


def video(name: str) -> Dataset:
    """A Video Endoscopic Image holding the committed stream as its Pixel Data.

    One fragment after an empty Basic Offset Table (PS3.5 A.4: the non-fragmentable
    video syntaxes keep the stream whole); a fragment of odd length gets a pad byte.
    """
    filename, syntax, frames, frame_time, rows, columns = VIDEOS[name]
    ds = _new(VIDEO_ENDOSCOPIC, syntax)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.ConversionType = ""
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_PARTIAL_420"
    ds.PlanarConfiguration = 0
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = frames
    ds.FrameTime = f"{frame_time:g}"
    ds.CineRate = round(1000 / frame_time)
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.LossyImageCompression = "01"
    ds.AcquisitionDateTime = "20240101120000"
    ds.PixelData = encapsulate([(MEDIA_DIR / filename).read_bytes()])
    ds["PixelData"].VR = "OB"
    return ds


def pdf_bytes() -> bytes:
    """A valid one-page PDF showing ``PDF_TEXT`` (offsets in the xref table computed)."""
    stream = f"BT /F1 18 Tf 40 760 Td ({PDF_TEXT}) Tj ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


def cda_bytes() -> bytes:
    """A small HL7 CDA R2 document."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ClinicalDocument xmlns="urn:hl7-org:v3">\n'
        '  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>\n'
        f'  <id root="{generate_uid()}"/>\n'
        '  <code code="18748-4" codeSystem="2.16.840.1.113883.6.1" '
        'displayName="Diagnostic imaging study"/>\n'
        f"  <title>{CDA_TITLE}</title>\n"
        '  <effectiveTime value="20240101120000"/>\n'
        '  <component><structuredBody><component><section>\n'
        "    <text>No abnormality. This text is longer than a kilobyte once the\n"
        + "    document is padded with comments so that it is bulk data anyway.\n" * 12
        + "    </text>\n"
        "  </section></component></structuredBody></component>\n"
        "</ClinicalDocument>\n"
    ).encode("utf-8")


def _encapsulated(sop_class_uid: str, document: bytes, mime_type: str, title: str) -> Dataset:
    ds = _new(sop_class_uid)
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = title
    ds.ConceptNameCodeSequence = DicomSequence([])
    ds.AcquisitionDateTime = "20240101120000"
    ds.MIMETypeOfEncapsulatedDocument = mime_type
    ds.EncapsulatedDocumentLength = len(document)
    # OB values have even length; the length above says where the document ends.
    ds.EncapsulatedDocument = document + (b"\0" if len(document) % 2 else b"")
    return ds


def encapsulated_pdf() -> Dataset:
    return _encapsulated(ENCAPSULATED_PDF, pdf_bytes(), "application/pdf", "Test report (PDF)")


def encapsulated_cda() -> Dataset:
    ds = _encapsulated(ENCAPSULATED_CDA, cda_bytes(), "text/XML", "Test report (CDA)")
    ds.HL7InstanceIdentifier = f"{generate_uid()}^"
    return ds


def comprehensive_sr() -> Dataset:
    """A Comprehensive SR: a container with text, a code and a measurement (nested)."""
    ds = _new(COMPREHENSIVE_SR)
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = [_code("18748-4", "LN", "Diagnostic imaging report")]
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ContentTemplateSequence = DicomSequence([])
    ds.PerformedProcedureCodeSequence = DicomSequence([])
    ds.ReferencedPerformedProcedureStepSequence = DicomSequence([])
    ds.InstanceCreationDate = "20240101"

    text = Dataset()
    text.RelationshipType = "CONTAINS"
    text.ValueType = "TEXT"
    text.ConceptNameCodeSequence = [_code("121071", "DCM", "Finding")]
    text.TextValue = "No focal lesion."

    measurement = Dataset()
    measurement.NumericValue = "12.5"
    measurement.MeasurementUnitsCodeSequence = [_code("mm", "UCUM", "millimeter")]
    number = Dataset()
    number.RelationshipType = "CONTAINS"
    number.ValueType = "NUM"
    number.ConceptNameCodeSequence = [_code("410668003", "SCT", "Length")]
    number.MeasuredValueSequence = [measurement]

    code = Dataset()
    code.RelationshipType = "HAS PROPERTIES"
    code.ValueType = "CODE"
    code.ConceptNameCodeSequence = [_code("121071", "DCM", "Finding")]
    code.ConceptCodeSequence = [_code("17621005", "SCT", "Normal")]
    number.ContentSequence = [code]

    ds.ContentSequence = [text, number]
    return ds


# --------------------------------------------------------------------------- CT, SEG, RTSTRUCT


def cropped_ct(source: Path, count: int = SEG_SLICES) -> Iterator[Dataset]:
    """``count`` slices of a CT test file cropped to SEG_SIZE x SEG_SIZE, one FoR."""
    frame_of_reference = generate_uid()
    for index in range(count):
        ds = pydicom.dcmread(source)
        pixels = ds.pixel_array[:SEG_SIZE, :SEG_SIZE]
        ds.Rows = ds.Columns = SEG_SIZE
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
        for keyword in ("SmallestImagePixelValue", "LargestImagePixelValue"):
            if keyword in ds:
                del ds[keyword]
        orientation = [float(v) for v in ds.ImageOrientationPatient]
        normal = np.cross(orientation[:3], orientation[3:])
        origin = np.asarray([float(v) for v in ds.ImagePositionPatient])
        thickness = float(ds.get("SliceThickness") or 1.0)
        position = origin + normal * thickness * index
        ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
        ds.SliceLocation = f"{float(position @ normal):.4f}"
        ds.FrameOfReferenceUID = frame_of_reference
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        yield ds


def seg_masks(rows: int, columns: int, slices: int) -> dict[int, list[np.ndarray]]:
    """Per segment number, one boolean mask per slice (segment 2 misses the last slice)."""
    yy, xx = np.mgrid[0:rows, 0:columns]
    masks: dict[int, list[np.ndarray]] = {1: [], 2: []}
    for index in range(slices):
        radius = 20 + 5 * index
        masks[1].append((yy - 60) ** 2 + (xx - 60) ** 2 < radius**2)
        if index < slices - 1:
            masks[2].append((yy >= 10 + index) & (yy < 30) & (xx >= 85) & (xx < 117))
    return masks


def seg_frames(masks: dict[int, list[np.ndarray]]) -> list[np.ndarray]:
    """The SEG's frames in order: segment by segment, slice by slice."""
    return [mask for number in sorted(masks) for mask in masks[number]]


def binary_seg(ct: Sequence[Dataset], ct_series_uid: str) -> Dataset:
    """A BINARY SEG of two segments over the written ``ct`` slices.

    ``ct`` are the slices as written (with their final UIDs and positions).
    """
    first = ct[0]
    rows, columns = int(first.Rows), int(first.Columns)
    masks = seg_masks(rows, columns, len(ct))
    ds = _new(SEGMENTATION)
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.ContentLabel = "SEGMENTATION"
    ds.ContentDescription = "Two test segments"
    ds.ContentCreatorName = "Tests^Gateway"
    ds.SegmentationType = "BINARY"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit = 0
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "00"
    ds.FrameOfReferenceUID = first.FrameOfReferenceUID
    ds.PositionReferenceIndicator = ""
    ds.DeviceSerialNumber = "1"
    ds.SoftwareVersions = "1"
    ds.ManufacturerModelName = "pydicom"
    ds.AcquisitionContextSequence = DicomSequence([])

    organization = generate_uid()
    dim_org = Dataset()
    dim_org.DimensionOrganizationUID = organization
    ds.DimensionOrganizationSequence = [dim_org]
    by_segment = Dataset()
    by_segment.DimensionOrganizationUID = organization
    by_segment.DimensionIndexPointer = 0x0062000B  # Referenced Segment Number
    by_segment.FunctionalGroupPointer = 0x0062000A  # Segment Identification Sequence
    by_position = Dataset()
    by_position.DimensionOrganizationUID = organization
    by_position.DimensionIndexPointer = 0x00200032  # Image Position (Patient)
    by_position.FunctionalGroupPointer = 0x00209113  # Plane Position Sequence
    ds.DimensionIndexSequence = [by_segment, by_position]

    segments = []
    for number, (label, colour) in enumerate(
            [("Sphere", [60000, 40000, 20000]), ("Box", [30000, 50000, 50000])], start=1):
        segment = Dataset()
        segment.SegmentNumber = number
        segment.SegmentLabel = label
        segment.SegmentAlgorithmType = "MANUAL"
        segment.SegmentedPropertyCategoryCodeSequence = [
            _code("91723000", "SCT", "Anatomical Structure")]
        segment.SegmentedPropertyTypeCodeSequence = [_code("113343008", "SCT", "Organ")]
        segment.RecommendedDisplayCIELabValue = colour
        segments.append(segment)
    ds.SegmentSequence = segments

    measures = Dataset()
    measures.PixelSpacing = first.PixelSpacing
    measures.SliceThickness = first.get("SliceThickness", "1")
    measures.SpacingBetweenSlices = first.get("SliceThickness", "1")
    plane = Dataset()
    plane.ImageOrientationPatient = first.ImageOrientationPatient
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    shared.PlaneOrientationSequence = [plane]
    ds.SharedFunctionalGroupsSequence = [shared]

    per_frame = []
    for number in sorted(masks):
        for index in range(len(masks[number])):
            source = ct[index]
            image = Dataset()
            image.ReferencedSOPClassUID = source.SOPClassUID
            image.ReferencedSOPInstanceUID = source.SOPInstanceUID
            image.PurposeOfReferenceCodeSequence = [
                _code("121322", "DCM", "Source image for image processing operation")]
            derivation = Dataset()
            derivation.SourceImageSequence = [image]
            derivation.DerivationCodeSequence = [_code("113076", "DCM", "Segmentation")]
            content = Dataset()
            content.DimensionIndexValues = [number, index + 1]
            position = Dataset()
            position.ImagePositionPatient = source.ImagePositionPatient
            identification = Dataset()
            identification.ReferencedSegmentNumber = number
            frame = Dataset()
            frame.DerivationImageSequence = [derivation]
            frame.FrameContentSequence = [content]
            frame.PlanePositionSequence = [position]
            frame.SegmentIdentificationSequence = [identification]
            per_frame.append(frame)
    ds.PerFrameFunctionalGroupsSequence = per_frame

    ds.ReferencedSeriesSequence = [_referenced_series(ct, ct_series_uid)]
    frames = seg_frames(masks)
    ds.NumberOfFrames = len(frames)
    packed = pack_bits(np.stack(frames).astype(np.uint8), pad=True)
    ds.PixelData = packed
    ds["PixelData"].VR = "OB"
    return ds


def _referenced_series(ct: Sequence[Dataset], ct_series_uid: str) -> Dataset:
    series = Dataset()
    series.SeriesInstanceUID = ct_series_uid
    references = []
    for source in ct:
        reference = Dataset()
        reference.ReferencedSOPClassUID = source.SOPClassUID
        reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
        references.append(reference)
    series.ReferencedInstanceSequence = references
    return series


def rt_structure_set(ct: Sequence[Dataset], study_uid: str, ct_series_uid: str) -> Dataset:
    """An RTSTRUCT with one ROI: a closed square contour on every CT slice."""
    first = ct[0]
    ds = _new(RT_STRUCTURE_SET)
    ds.StructureSetLabel = "Test ROI"
    ds.StructureSetDate = "20240101"
    ds.StructureSetTime = "120000"
    ds.ApprovalStatus = "UNAPPROVED"
    ds.OperatorsName = ""
    ds.ReferringPhysicianName = ""

    contour_images = []
    for source in ct:
        image = Dataset()
        image.ReferencedSOPClassUID = source.SOPClassUID
        image.ReferencedSOPInstanceUID = source.SOPInstanceUID
        contour_images.append(image)
    rt_series = Dataset()
    rt_series.SeriesInstanceUID = ct_series_uid
    rt_series.ContourImageSequence = contour_images
    rt_study = Dataset()
    rt_study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management
    rt_study.ReferencedSOPInstanceUID = study_uid
    rt_study.RTReferencedSeriesSequence = [rt_series]
    frame_of_reference = Dataset()
    frame_of_reference.FrameOfReferenceUID = first.FrameOfReferenceUID
    frame_of_reference.RTReferencedStudySequence = [rt_study]
    ds.ReferencedFrameOfReferenceSequence = [frame_of_reference]

    roi = Dataset()
    roi.ROINumber = 1
    roi.ReferencedFrameOfReferenceUID = first.FrameOfReferenceUID
    roi.ROIName = "Square"
    roi.ROIGenerationAlgorithm = "MANUAL"
    ds.StructureSetROISequence = [roi]

    spacing = [float(v) for v in first.PixelSpacing]
    orientation = [float(v) for v in first.ImageOrientationPatient]
    row_dir, col_dir = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    contours = []
    for source in ct:
        origin = np.asarray([float(v) for v in source.ImagePositionPatient])
        corners = [(40, 40), (40, 80), (80, 80), (80, 40)]  # (row, column) pixels
        points: list[str] = []
        for row, column in corners:
            point = origin + row_dir * column * spacing[1] + col_dir * row * spacing[0]
            points += [f"{v:.3f}" for v in point]
        image = Dataset()
        image.ReferencedSOPClassUID = source.SOPClassUID
        image.ReferencedSOPInstanceUID = source.SOPInstanceUID
        contour = Dataset()
        contour.ContourImageSequence = [image]
        contour.ContourGeometricType = "CLOSED_PLANAR"
        contour.NumberOfContourPoints = len(corners)
        contour.ContourData = points
        contours.append(contour)
    roi_contour = Dataset()
    roi_contour.ROIDisplayColor = [255, 0, 0]
    roi_contour.ReferencedROINumber = 1
    roi_contour.ContourSequence = contours
    ds.ROIContourSequence = [roi_contour]

    observation = Dataset()
    observation.ObservationNumber = 1
    observation.ReferencedROINumber = 1
    observation.RTROIInterpretedType = "ORGAN"
    observation.ROIInterpreter = ""
    ds.RTROIObservationsSequence = [observation]
    return ds

