"""De-identification for WADO-URI ``anonymize=yes``: the Basic Application Level
Confidentiality Profile of DICOM PS3.15 Annex E (E.1.1, Table E.1-1).

Why not a library: the PyPI packages were checked. dicognito replaces
identities with realistic fake ones (not the profile's actions); deid's
default recipe targets burned-in pixels, not Table E.1-1; idiscore pins
Pillow < 11; dicom-anonymizer keeps every UID it ever mapped in a global
dict (unbounded in a long-running server) and prints to stdout. Its
machine-extracted copy of Table E.1-1 (edition 2026c, BSD licence) is what
the lists below were transcribed from, as pydicom keywords (8 hex digits
where pydicom 3.0 has no keyword yet).

What the profile's actions become here:

- X: removed. Z: zero length (an empty sequence for SQ).
- D: a dummy value of the attribute's VR; a sequence becomes one empty item
  (the Content Sequence of an SR holds free text, so its items cannot be kept).
- U: a UID derived from the original with a keyed hash (HMAC-SHA256, key
  made at start-up): consistent across every instance this process serves,
  as the profile asks, but not reversible, and different after a restart.
- Compound actions take the option that cannot break the IOD: X/Z is Z;
  Z/D, X/D and X/Z/D are D; X/Z/U* keeps the sequence, its UIDs replaced.
- Private attributes are removed; attributes the table does not list are kept.
- Patient Identity Removed is set to YES, and the method is recorded in
  De-identification Method and its Code Sequence (DCM 113100).

Pixel data is kept as it is (the Clean Pixel Data Option is not offered), so
an instance that declares Burned In Annotation YES is refused rather than
sent with the identity still in its pixels.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from io import BytesIO

from pydicom import dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID

from dicomweb_gw.codecs.part10 import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dicomweb_gw.errors import NotAcceptable

__all__ = ["PROFILE_NAME", "AnonymizationRefused", "BasicProfile", "burned_in", "refusal"]

PROFILE_NAME = "Basic Application Confidentiality Profile"

# PS3.15 Table E.1-1, "Basic Prof." column, by action code. (50xx,xxxx) Curve Data,
# (60xx,3000) Overlay Data and (60xx,4000) Overlay Comments, also X, are repeating
# groups: see _repeating_group_action.
_TABLE_E1_1 = {
    "D": """
    AcquisitionFieldOfViewLabel AnnotationGroupLabel AnnotationGroupUID AssertionDateTime
    AttributeModificationDateTime BeamHoldTransitionDateTime CertificateOfSigner
    ClinicalTrialProtocolEthicsCommitteeName ClinicalTrialProtocolID ClinicalTrialSponsorName
    ClinicalTrialSubjectID ClinicalTrialSubjectReadingID ContainerIdentifier ContentSequence
    ContextGroupLocalVersion ContextGroupVersion Date DateTime DecayCorrectionDateTime
    DestinationAE DeviceLabel DigitalSignatureDateTime EffectiveDateTime EncapsulatedDocument
    EntityLabel EntityLongLabel ExclusionStartDateTime FlowIdentifier FlowIdentifierSequence
    FrameAcquisitionDateTime FrameOriginTimestamp FrameReferenceDateTime FunctionalSyncPulse
    GraphicAnnotationSequence HangingProtocolCreationDateTime ImpedanceMeasurementDateTime
    InformationIssueDateTime InterlockDateTime InterlockDescription InterlockOriginDescription
    ModifyingSystem OverrideDateTime PersonIdentificationCodeSequence PersonName RTPlanLabel
    RTPrescriptionLabel RTToleranceSetLabel RadiationDoseIdentificationLabel
    RadiationDoseInVivoMeasurementLabel RadiationGenerationModeLabel
    ReasonForTheAttributeModification RecordedRTControlPointDateTime ReferencedDateTime
    SafePositionExitDate SafePositionExitTime SafePositionReturnDate SafePositionReturnTime
    SelectorAEValue SelectorASValue SelectorDAValue SelectorDTValue SelectorLOValue SelectorLTValue
    SelectorOBValue SelectorPNValue SelectorSHValue SelectorSTValue SelectorTMValue SelectorUNValue
    SelectorURValue SelectorUTValue SourceEndDateTime SourceIdentifier SourceStartDateTime
    SourceStrengthReferenceDate SourceStrengthReferenceTime SpecimenIdentifier StructureSetLabel
    Time TreatmentControlPointDate TreatmentControlPointTime TreatmentPositionGroupLabel
    TreatmentToleranceViolationDateTime TreatmentToleranceViolationDescription UnformattedTextValue
    UserContentLabel UserContentLongLabel VerificationDateTime VerifyingObserverName
    VerifyingObserverSequence VerifyingOrganization XRayDetectorID XRaySourceID
    """,
    "Z": """
    AccessionNumber CalibrationDateTime ClinicalTrialCoordinatingCenterName
    ClinicalTrialProtocolName ClinicalTrialSiteID ClinicalTrialSiteName ClinicalTrialTimePointID
    ConceptualVolumeCombinationDescription ConceptualVolumeDescription ConsultingPhysicianName
    DeviceAlternateIdentifier FillerOrderNumberImagingServiceRequest FractionationNotes
    IssuerOfTheContainerIdentifierSequence IssuerOfTheSpecimenIdentifierSequence
    ManufacturerDeviceIdentifier ParticipationDateTime PatientBirthDate PatientName PatientSex
    PlacerOrderNumberImagingServiceRequest PrescriptionNotes PrescriptionNotesSequence
    ROIInterpreter ROIName RTAccessoryDeviceSlotID RTAccessoryHolderSlotID
    RTPhysicianIntentNarrative RadiationGenerationModeDescription ReasonForSuperseding
    ReferringPhysicianName ReviewDate ReviewTime SourceOfPreviousValues SpecimenPreparationSequence
    StructureSetDate StructureSetTime StudyDate StudyID StudyTime TreatmentTechniqueNotes
    VerifyingObserverIdentificationCodeSequence
    """,
    "X": """
    AcquisitionComments AcquisitionContextDescription AcquisitionProtocolDescription
    ActualHumanPerformersSequence AdditionalPatientHistory AddressTrial AdmissionID AdmittingDate
    AdmittingDiagnosesCodeSequence AdmittingDiagnosesDescription AdmittingTime
    AffectedSOPInstanceUID Allergies AnnotationGroupDescription ApprovalStatusDateTime Arbitrary
    AssertionExpirationDateTime AuthorObserverSequence BeamDescription BolusDescription
    BranchOfService CalibrationDate CalibrationTime CameraOwnerName CassetteID CertifiedTimestamp
    ChannelDerivationDescription ChannelLabel ClinicalTrialProtocolEthicsCommitteeApprovalNumber
    ClinicalTrialSeriesDescription ClinicalTrialSeriesID ClinicalTrialTimePointDescription
    CommentsOnRadiationDose CommentsOnThePerformedProcedureStep CompensatorDescription
    ConfidentialityConstraintOnPatientDataDescription ConsultingPhysicianIdentificationSequence
    ContainerComponentID ContainerDescription ContentCreatorIdentificationCodeSequence
    ContrastBolusStartTime ContrastBolusStopTime ContributionDateTime ContributionDescription
    CountryOfResidence CreationDate CreationTime CurrentObserverTrial CurrentPatientLocation
    CurveDate CurveTime CustodialOrganizationSequence DataSetTrailingPadding
    DateOfDocumentOrVerbalTransactionTrial DateOfInstallation DateOfLastCalibration
    DateOfManufacture DateOfSecondaryCapture DateTimeOfLastCalibration DecompositionDescription
    DerivationDescription DeviceDescription DeviceSettingDescription DigitalSignaturesSequence
    DischargeDate DischargeDiagnosisDescription DischargeTime DisplacementReferenceLabel
    DistributionAddress DistributionName DoseReferenceDescription EntityDescription EntityName
    EquipmentFrameOfReferenceDescription EthicsCommitteeApprovalEffectivenessEndDate
    EthicsCommitteeApprovalEffectivenessStartDate EthnicGroup EthnicGroupCodeSequence
    ExpectedCompletionDateTime FilterLookupTableDescription FindingsGroupRecordingDateTrial
    FindingsGroupRecordingTimeTrial FixationDeviceDescription FractionGroupDescription
    FrameComments GPSAltitude GPSAltitudeRef GPSAreaInformation GPSDOP GPSDateStamp GPSDestBearing
    GPSDestBearingRef GPSDestDistance GPSDestDistanceRef GPSDestLatitude GPSDestLatitudeRef
    GPSDestLongitude GPSDestLongitudeRef GPSDifferential GPSImgDirection GPSImgDirectionRef
    GPSLatitude GPSLatitudeRef GPSLongitude GPSLongitudeRef GPSMapDatum GPSMeasureMode
    GPSProcessingMethod GPSSatellites GPSSpeed GPSSpeedRef GPSStatus GPSTimeStamp GPSTrack
    GPSTrackRef GPSVersionID GantryID GeneratorID HL7DocumentEffectiveTime HardcopyCreationDeviceID
    HumanPerformerName HumanPerformerOrganization IconImageSequence IdentifyingComments
    ImageComments ImagePresentationComments ImagingServiceRequestComments Impressions
    InstanceCoercionDateTime InstanceOriginStatus InstitutionAddress InstitutionalDepartmentName
    InstitutionalDepartmentTypeCodeSequence InsurancePlanIdentification IntendedFractionStartTime
    IntendedRecipientsOfResultsIdentificationSequence InterpretationApprovalDate
    InterpretationApprovalTime InterpretationApproverSequence InterpretationAuthor
    InterpretationDiagnosisDescription InterpretationID InterpretationIDIssuer
    InterpretationRecordedDate InterpretationRecordedTime InterpretationRecorder InterpretationText
    InterpretationTranscriber InterpretationTranscriptionDate InterpretationTranscriptionTime
    InterventionDrugStartTime InterventionDrugStopTime IssueDateOfImagingServiceRequest
    IssueTimeOfImagingServiceRequest IssuerOfAdmissionID IssuerOfAdmissionIDSequence
    IssuerOfClinicalTrialProtocolID IssuerOfClinicalTrialSeriesID IssuerOfClinicalTrialSiteID
    IssuerOfClinicalTrialSubjectID IssuerOfClinicalTrialSubjectReadingID
    IssuerOfClinicalTrialTimePointID IssuerOfPatientID IssuerOfServiceEpisodeID
    IssuerOfServiceEpisodeIDSequence LastMenstrualDate LensMake LensModel LensSerialNumber
    LensSpecification LongDeviceDescription MAC MakerNote MedicalAlerts MedicalRecordLocator
    MilitaryRank ModifiedAttributesSequence ModifiedImageDate ModifiedImageDescription
    ModifiedImageTime ModifyingDeviceID MultienergyAcquisitionDescription MultiplexGroupLabel
    NameOfPhysiciansReadingStudy NamesOfIntendedRecipientsOfResults NetworkID
    NonconformingDataElementValue NonconformingModifiedAttributesSequence ObservationDateTrial
    ObservationStartDateTime ObservationTimeTrial Occupation OrderCallbackPhoneNumber
    OrderCallbackTelecomInformation OrderEnteredBy OrderEntererLocation OriginalAttributesSequence
    Originator OtherClinicalTrialProtocolIDsSequence OtherPatientIDs OtherPatientIDsSequence
    OtherPatientNames OverlayDate OverlayTime ParticipantSequence PatientAddress PatientAge
    PatientBirthName PatientBirthTime PatientComments PatientInstitutionResidence
    PatientInsurancePlanCodeSequence PatientMotherBirthName PatientPrimaryLanguageCodeSequence
    PatientPrimaryLanguageModifierCodeSequence PatientReligiousPreference
    PatientSetupPhotoDescription PatientSize PatientState PatientTelecomInformation
    PatientTelephoneNumbers PatientTransportArrangements
    PatientTreatmentPreparationMethodDescription
    PatientTreatmentPreparationProcedureParameterDescription PatientWeight PerformedLocation
    PerformedProcedureStepDescription PerformedProcedureStepEndDate
    PerformedProcedureStepEndDateTime PerformedProcedureStepEndTime PerformedProcedureStepID
    PerformedProcedureStepStartDate PerformedProcedureStepStartDateTime
    PerformedProcedureStepStartTime PerformedStationAETitle
    PerformedStationGeographicLocationCodeSequence PerformedStationName
    PerformedStationNameCodeSequence PerformingPhysicianIdentificationSequence
    PerformingPhysicianName PersonAddress PersonTelecomInformation PersonTelephoneNumbers
    PhysicianApprovingInterpretation PhysiciansOfRecord PhysiciansOfRecordIdentificationSequence
    PhysiciansReadingStudyIdentificationSequence PlateID PositionAcquisitionTemplateDescription
    PositionAcquisitionTemplateName PreMedication PregnancyStatus PrescriptionDescription
    PresentationCreationDate PresentationCreationTime PriorTreatmentDoseDescription
    ProcedureStepCancellationDateTime ProductExpirationDateTime PyramidDescription PyramidLabel
    ROICreatorSequence ROIDateTime ROIDescription ROIGenerationDescription ROIInterpreterSequence
    ROIObservationDateTime ROIObservationDescription ROIObservationLabel RTPlanDescription
    RTPlanName RadiopharmaceuticalStartDateTime RadiopharmaceuticalStartTime
    RadiopharmaceuticalStopDateTime RadiopharmaceuticalStopTime ReasonForOmissionDescription
    ReasonForRequestedProcedureCodeSequence ReasonForStudy ReasonForTheImagingServiceRequest
    ReasonForTheRequestedProcedure ReasonForVisit ReasonForVisitCodeSequence ReceivingAE
    ReferencedDigitalSignatureSequence ReferencedPatientAliasSequence
    ReferencedPatientPhotoSequence ReferencedPatientSequence ReferencedSOPInstanceMACSequence
    ReferringPhysicianAddress ReferringPhysicianIdentificationSequence
    ReferringPhysicianTelephoneNumbers RegionOfResidence RequestAttributesSequence
    RequestedContrastAgent RequestedProcedureComments RequestedProcedureID
    RequestedProcedureLocation RequestedSeriesDescription RequestingAE RequestingPhysician
    RequestingService RespiratoryMotionCompensationTechniqueDescription ResponsibleOrganization
    ResponsiblePerson ResultsComments ResultsDistributionListSequence ResultsID ResultsIDIssuer
    RetrieveAETitle SOPAuthorizationDateTime ScheduledAdmissionDate ScheduledAdmissionTime
    ScheduledDischargeDate ScheduledDischargeTime ScheduledHumanPerformersSequence
    ScheduledPatientInstitutionResidence ScheduledPerformingPhysicianIdentificationSequence
    ScheduledPerformingPhysicianName ScheduledProcedureStepDescription
    ScheduledProcedureStepEndDate ScheduledProcedureStepEndTime
    ScheduledProcedureStepExpirationDateTime ScheduledProcedureStepID
    ScheduledProcedureStepLocation ScheduledProcedureStepModificationDateTime
    ScheduledProcedureStepStartDate ScheduledProcedureStepStartDateTime
    ScheduledProcedureStepStartTime ScheduledStationAETitle
    ScheduledStationGeographicLocationCodeSequence ScheduledStationName
    ScheduledStationNameCodeSequence ScheduledStudyLocation ScheduledStudyLocationAETitle
    ScheduledStudyStartDate ScheduledStudyStartTime ScheduledStudyStopDate ScheduledStudyStopTime
    SecondaryCaptureDeviceID SeriesDescription ServiceEpisodeDescription ServiceEpisodeID
    SetupTechniqueDescription ShieldingDeviceDescription SlideIdentifier SmokingStatus
    SourceManufacturer SpecialNeeds SpecimenAccessionNumber SpecimenDetailedDescription
    SpecimenShortDescription StationAETitle StructureSetDescription StructureSetName
    StudyArrivalDate StudyArrivalTime StudyComments StudyCompletionDate StudyCompletionTime
    StudyDescription StudyIDIssuer StudyReadDate StudyReadTime StudyVerifiedDate StudyVerifiedTime
    SubstanceAdministrationDateTime TelephoneNumberTrial TemplateLocalVersion TemplateVersion
    TextComments TextString TimeOfDocumentCreationOrVerbalTransactionTrial TimeOfLastCalibration
    TimeOfSecondaryCapture TimezoneOffsetFromUTC TopicAuthor TopicKeywords TopicSubject TopicTitle
    TransducerIdentificationSequence TreatmentSites UDISequence UniqueDeviceIdentifier
    VerbalSourceIdentifierCodeSequenceTrial VerbalSourceTrial VisitComments
    WaveformFilterDescription XRayDetectorLabel 00081301 00081302 00081303 00081304 00100011
    00100012 00100013 00100014 00100015 00100016 00100041 00100042 00100043 00100044 00100045
    00100046 00100047 00102162 0040A034 0040A035 0040B034 0040B036 0040B03B 0040B03F 0040E012
    """,
    "U": """
    AcquisitionUID ConcatenationUID ConceptualVolumeUID ConstituentConceptualVolumeUID DeviceUID
    DigitalSignatureUID DimensionOrganizationUID DoseReferenceUID DosimetricObjectiveUID
    FailedSOPInstanceUIDList FiducialUID FrameOfReferenceUID InstanceCreatorUID IrradiationEventUID
    LargePaletteColorLookupTableUID ManufacturerDeviceClassUID MediaStorageSOPInstanceUID
    MultiplexGroupUID ObservationSubjectUIDTrial ObservationUID PaletteColorLookupTableUID
    PatientSetupUID PresentationDisplayCollectionUID PresentationSequenceCollectionUID PyramidUID
    RTTreatmentPhaseUID ReferencedConceptualVolumeUID ReferencedDoseReferenceUID
    ReferencedDosimetricObjectiveUID ReferencedFiducialsUID ReferencedFrameOfReferenceUID
    ReferencedGeneralPurposeScheduledProcedureStepTransactionUID ReferencedObservationUIDTrial
    ReferencedSOPInstanceUID ReferencedSOPInstanceUIDInFile ReferencedTreatmentPositionGroupUID
    RelatedFrameOfReferenceUID RequestedSOPInstanceUID SOPInstanceUID SeriesInstanceUID
    SourceConceptualVolumeUID SourceFrameOfReferenceUID SpecimenUID StorageMediaFileSetUID
    StudyInstanceUID SynchronizationFrameOfReferenceUID TableTopPositionAlignmentUID TargetUID
    TemplateExtensionCreatorUID TemplateExtensionOrganizationUID TrackingUID TransactionUID
    TreatmentPositionGroupUID TreatmentSessionUID UID
    """,
    "Z/D": """
    ContentCreatorName ContentDate ContentTime ContrastBolusAgent InstructionPerformedDateTime
    PatientID
    """,
    "X/Z": """
    AcquisitionContextSequence AcquisitionDate AcquisitionTime BarcodeValue LabelText
    PatientSexNeutered ReferencedStudySequence RequestedProcedureDescription ReviewerName
    SourceSerialNumber TreatmentMachineName
    """,
    "X/D": """
    AcquisitionDeviceProcessingDescription DateOfLastDetectorCalibration DetectorID
    EndAcquisitionDateTime FirstTreatmentDate InstanceCreationDate IntendedPhaseEndDate
    IntendedPhaseStartDate MostRecentTreatmentDate ObservationDateTime
    OperatorIdentificationSequence ProtocolName RTPlanDate RTPlanTime RTTreatmentApproachLabel
    SeriesDate SeriesTime StartAcquisitionDateTime TimeOfLastDetectorCalibration TreatmentDate
    TreatmentSite TreatmentTime WaveformAnnotationSequence
    """,
    "X/Z/D": """
    AcquisitionDateTime DeviceSerialNumber InstanceCreationTime InstitutionCodeSequence
    InstitutionName OperatorsName ReferencedPerformedProcedureStepSequence StationName
    """,
    "X/Z/U*": """
    ReferencedImageSequence SourceImageSequence
    """,
}

_DUMMY_TEXT = "ANONYMIZED"  # 10 characters: fits every string VR, and is upper case for CS
_DUMMY_VALUES: dict[str, object] = {
    "DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000D", "DS": "0",
    "IS": "0", "UR": "urn:anonymized",
}
_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"})
_BYTES_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_HEX_TAG = re.compile(r"[0-9A-F]{8}")


def _resolve(code: str) -> str:
    """The action taken for a Table E.1-1 code: compound codes take the IOD-safe option."""
    if code in ("X", "Z", "D", "U"):
        return code
    if code == "X/Z":
        return "Z"
    if code == "X/Z/U*":
        return "U*"
    return "D"  # Z/D, X/D, X/Z/D


def _parse_table() -> dict[int, str]:
    actions: dict[int, str] = {}
    for code, names in _TABLE_E1_1.items():
        for name in names.split():
            tag = int(name, 16) if _HEX_TAG.fullmatch(name) else tag_for_keyword(name)
            if tag is None:  # a typo must fail at import, not leak an attribute
                raise RuntimeError(f"Table E.1-1 names '{name}', which pydicom does not know")
            actions[tag] = _resolve(code)
    return actions


_ACTIONS = _parse_table()


def _repeating_group_action(tag: int) -> str | None:
    group, element = tag >> 16, tag & 0xFFFF
    if 0x5000 <= group <= 0x50FF:  # Curve Data: every element of the (retired) curve groups
        return "X"
    if 0x6000 <= group <= 0x60FF and element in (0x3000, 0x4000):  # Overlay Data, Comments
        return "X"
    return None


class AnonymizationRefused(NotAcceptable):
    """The instance cannot be de-identified by this profile (identity burned into its pixels)."""


def burned_in(value: object) -> bool:
    """Burned In Annotation (0028,0301) says the pixels show identifying text."""
    return str(value or "").strip().upper() == "YES"


def refusal(sop_instance_uid: str) -> AnonymizationRefused:
    return AnonymizationRefused(
        f"instance {sop_instance_uid} has Burned In Annotation YES: its pixel data may show "
        f"the patient's identity, which the {PROFILE_NAME} without the Clean Pixel Data "
        "Option cannot remove; it is not sent anonymized")


class BasicProfile:
    """Table E.1-1 applied to data sets; one per process, so replaced UIDs stay consistent."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)

    def uid(self, original: str) -> str:
        """The replacement for ``original`` (action U)."""
        digest = hmac.new(self._key, original.encode("ascii", "replace"), hashlib.sha256).digest()
        # "2.25." and a 128-bit number, as UUID-derived UIDs (PS3.5 B.2): at most 44 characters.
        return f"2.25.{int.from_bytes(digest[:16], 'big')}"

    def check(self, dataset: Dataset) -> None:
        """Refuse an instance whose pixels say they carry identifying text."""
        if burned_in(dataset.get("BurnedInAnnotation")):
            raise refusal(str(dataset.get("SOPInstanceUID", "")))

    def part10(self, data: bytes) -> bytes:
        """A de-identified copy of a Part 10 file, pixel data untouched (CPU-bound: run it in
        a worker thread). AnonymizationRefused if check() refuses it."""
        dataset = dcmread(BytesIO(data))
        self.check(dataset)
        syntax = dataset.file_meta.TransferSyntaxUID
        self.apply(dataset)
        # The old File Meta holds the original SOP Instance UID (and maybe a source AE
        # title): written anew from the de-identified data set.
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(str(dataset.SOPClassUID))
        meta.MediaStorageSOPInstanceUID = UID(str(dataset.SOPInstanceUID))
        meta.TransferSyntaxUID = syntax
        meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
        dataset.file_meta = meta
        output = BytesIO()
        dcmwrite(output, dataset, enforce_file_format=True)
        return output.getvalue()

    def apply(self, dataset: Dataset) -> None:
        """De-identify ``dataset`` in place and record that it was (PS3.15 E.1.1)."""
        self._clean(dataset)
        dataset.PatientIdentityRemoved = "YES"
        # An earlier de-identification's method is kept: the values accumulate.
        earlier = dataset.get("DeidentificationMethod")
        methods = [str(v) for v in earlier] if isinstance(earlier, MultiValue) else \
            [str(earlier)] if earlier else []
        dataset.DeidentificationMethod = [*methods, PROFILE_NAME] if methods else PROFILE_NAME
        code = Dataset()
        code.CodeValue = "113100"  # PS3.16 CID 7050
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = PROFILE_NAME
        codes = dataset.get("DeidentificationMethodCodeSequence") or Sequence()
        codes.append(code)
        dataset.DeidentificationMethodCodeSequence = codes

    def _clean(self, dataset: Dataset) -> None:
        """Every attribute, at every nesting level: the table applies inside sequences too."""
        for element in list(dataset):  # a copy: elements are deleted on the way
            tag = int(element.tag)
            if element.tag.is_private:
                del dataset[tag]
                continue
            action = _ACTIONS.get(tag) or _repeating_group_action(tag)
            if action == "X":
                del dataset[tag]
            elif action == "Z":
                element.value = Sequence() if element.VR == "SQ" else None
            elif action == "D":
                if not self._dummy(element):
                    del dataset[tag]
            elif action == "U" or (element.VR == "UI" and action == "U*"):
                self._replace_uids(element)
            elif element.VR == "SQ":  # kept (or U*): its items are cleaned in turn
                for item in element.value:
                    self._clean(item)

    def _replace_uids(self, element: DataElement) -> None:
        if element.VM > 1:
            element.value = [self.uid(str(value)) for value in element.value]
        elif element.value:
            element.value = self.uid(str(element.value))

    def _dummy(self, element: DataElement) -> bool:
        """Action D: a value that says nothing but keeps a Type 1 attribute valid.
        False for a VR with no sensible dummy: the caller removes the attribute."""
        vr = element.VR
        if vr == "UI":
            self._replace_uids(element)
        elif vr == "SQ":
            element.value = Sequence([Dataset()])
        elif vr in _TEXT_VRS:
            element.value = _DUMMY_TEXT
        elif vr in _DUMMY_VALUES:
            element.value = _DUMMY_VALUES[vr]
        elif vr in _NUMBER_VRS:
            element.value = 0
        elif vr in _BYTES_VRS:
            element.value = b"\x00\x00"
        else:
            return False
        return True
