"""The Basic Application Level Confidentiality Profile (PS3.15 E.1.1) on real files."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomweb_gw.dicomweb.anonymize import (
    _ACTIONS,
    PROFILE_NAME,
    AnonymizationRefused,
    BasicProfile,
)
from testdata import pydicom_file


def _encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _anonymized(data: bytes, profile: BasicProfile | None = None) -> Dataset:
    return pydicom.dcmread(io.BytesIO((profile or BasicProfile(b"key")).part10(data)))


@pytest.mark.parametrize(("keyword", "action"), [
    # Spot checks against PS3.15 Table E.1-1, compound codes resolved as the module says.
    ("PatientName", "Z"), ("AccessionNumber", "Z"), ("StudyDate", "Z"),
    ("ReferringPhysicianName", "Z"), ("PatientBirthDate", "Z"), ("StudyID", "Z"),
    ("PatientID", "D"),  # Z/D
    ("ContentDate", "D"),  # Z/D
    ("InstitutionName", "D"),  # X/Z/D
    ("AcquisitionDate", "Z"),  # X/Z
    ("SeriesDate", "D"),  # X/D
    ("OtherPatientIDsSequence", "X"), ("PatientAddress", "X"), ("PatientAge", "X"),
    ("InstitutionAddress", "X"), ("StudyDescription", "X"), ("ImageComments", "X"),
    ("StudyInstanceUID", "U"), ("SeriesInstanceUID", "U"), ("SOPInstanceUID", "U"),
    ("FrameOfReferenceUID", "U"), ("ReferencedSOPInstanceUID", "U"),
    ("ReferencedImageSequence", "U*"), ("ContentSequence", "D"),
])
def test_table_entries(keyword: str, action: str) -> None:
    assert _ACTIONS[tag_for_keyword(keyword)] == action  # type: ignore[index]


def test_table_leaves_what_a_viewer_needs() -> None:
    for keyword in ("SOPClassUID", "Modality", "Rows", "Columns", "PixelData", "BitsStored",
                    "PhotometricInterpretation", "WindowCenter", "RescaleSlope"):
        assert tag_for_keyword(keyword) not in _ACTIONS, keyword


def test_ct_loses_its_identity_but_keeps_its_pixels() -> None:
    path = pydicom_file("CT_small.dcm")
    original = pydicom.dcmread(path)
    assert any(element.tag.is_private for element in original)
    ds = _anonymized(path.read_bytes())

    assert not ds.PatientName
    assert ds.PatientID not in ("", original.PatientID)
    assert ds.StudyDate == ""
    for removed in ("OtherPatientIDsSequence", "PatientAge", "PatientWeight",
                    "StudyDescription", "AdditionalPatientHistory", "ImageComments"):
        assert removed in original
        assert removed not in ds
    assert ds.InstitutionName == "ANONYMIZED" != original.InstitutionName  # D: a dummy
    assert not any(element.tag.is_private for element in ds)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                    "FrameOfReferenceUID"):
        assert ds[keyword].value != original[keyword].value
        assert ds[keyword].value.startswith("2.25.")
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert ds.SOPClassUID == original.SOPClassUID
    assert ds.PixelData == original.PixelData
    assert (ds.pixel_array == original.pixel_array).all()
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethod == PROFILE_NAME
    code = ds.DeidentificationMethodCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("113100", "DCM")


def test_uids_are_consistent_under_one_key_and_differ_under_another() -> None:
    data = pydicom_file("CT_small.dcm").read_bytes()
    first, again = _anonymized(data, BasicProfile(b"one")), _anonymized(data, BasicProfile(b"one"))
    other = _anonymized(data, BasicProfile(b"two"))
    assert first.StudyInstanceUID == again.StudyInstanceUID
    assert first.SOPInstanceUID == again.SOPInstanceUID
    assert first.StudyInstanceUID != other.StudyInstanceUID
    assert first.StudyInstanceUID != first.SeriesInstanceUID
    assert len(first.StudyInstanceUID) <= 64


def test_sequences_are_cleaned_at_every_level() -> None:
    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    referenced = Dataset()
    referenced.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    referenced.ReferencedSOPInstanceUID = "1.2.3.4.5"
    ds.ReferencedImageSequence = Sequence([referenced])
    item = Dataset()  # a sequence the table does not list, holding attributes it does
    item.PatientName = "Nested^Name"
    item.StudyInstanceUID = "1.2.3.4.6"
    item.add_new(0x00291010, "LO", "private inside an item")
    ds.add_new(0x00400275, "SQ", Sequence([item]))  # Request Attributes Sequence is X:
    ds.add_new(0x00081250, "SQ", Sequence([item]))  # Related Series Sequence: not listed
    profile = BasicProfile(b"key")
    out = _anonymized(_encode(ds), profile)

    assert "RequestAttributesSequence" not in out
    kept = out.RelatedSeriesSequence[0]
    assert not kept.PatientName
    assert kept.StudyInstanceUID == profile.uid("1.2.3.4.6")
    assert 0x00291010 not in kept
    reference = out.ReferencedImageSequence[0]
    assert reference.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.4"  # not a U attribute
    assert reference.ReferencedSOPInstanceUID == profile.uid("1.2.3.4.5")


def test_structured_report_content_is_replaced() -> None:
    path = pydicom_file("test-SR.dcm")
    original = pydicom.dcmread(path)
    assert len(original.ContentSequence) > 1
    ds = _anonymized(path.read_bytes())
    assert list(ds.ContentSequence) == [Dataset()]  # D on a sequence: one empty item
    assert ds.PatientIdentityRemoved == "YES"


def test_burned_in_annotation_is_refused() -> None:
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(AnonymizationRefused) as refused:
        BasicProfile().part10(_encode(ds))
    assert refused.value.status_code == 406
    assert "Burned In Annotation" in refused.value.message


def test_earlier_deidentification_methods_are_kept() -> None:
    ds = _anonymized(pydicom_file("emri_small_jpeg_2k_lossless.dcm").read_bytes())
    assert list(ds.DeidentificationMethod)[-1] == PROFILE_NAME
    assert len(ds.DeidentificationMethod) == 2
    assert ds.DeidentificationMethodCodeSequence[-1].CodeValue == "113100"
