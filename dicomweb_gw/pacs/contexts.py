"""Which presentation contexts to propose to the PACS.

A C-GET association has to propose, up front, every storage SOP class the PACS
may send back (with the SCP role), and pynetdicom allows at most 128 contexts.
Each SOP class gets several single-syntax contexts so that the PACS can send
every instance in the transfer syntax it is stored in: we never ask the PACS
to transcode, and what "as stored" means stays true.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydicom import uid
from pynetdicom.presentation import PresentationContext, build_context, build_role

__all__ = [
    "COMMON_STORAGE_SOP_CLASSES",
    "FIND_MODEL",
    "FIND_MODELS",
    "GET_MODEL",
    "GET_MODELS",
    "MOVE_MODEL",
    "MOVE_MODELS",
    "PATIENT_FIND_MODEL",
    "VERIFICATION",
    "find_contexts",
    "get_contexts",
    "move_contexts",
]

FIND_MODEL = uid.UID("1.2.840.10008.5.1.4.1.2.2.1")  # Study Root Q/R - FIND
MOVE_MODEL = uid.UID("1.2.840.10008.5.1.4.1.2.2.2")  # Study Root Q/R - MOVE
GET_MODEL = uid.UID("1.2.840.10008.5.1.4.1.2.2.3")  # Study Root Q/R - GET
VERIFICATION = uid.UID("1.2.840.10008.1.1")
PATIENT_FIND_MODEL = uid.UID("1.2.840.10008.5.1.4.1.2.1.1")  # Patient Root Q/R - FIND
PATIENT_MOVE_MODEL = uid.UID("1.2.840.10008.5.1.4.1.2.1.2")  # Patient Root Q/R - MOVE
PATIENT_GET_MODEL = uid.UID("1.2.840.10008.5.1.4.1.2.1.3")  # Patient Root Q/R - GET
#: Study Root first: it needs no Patient ID. Patient Root is the fallback for
#: PACS that only offer it.
FIND_MODELS = (FIND_MODEL, PATIENT_FIND_MODEL)
MOVE_MODELS = (MOVE_MODEL, PATIENT_MOVE_MODEL)
GET_MODELS = (GET_MODEL, PATIENT_GET_MODEL)
_MAX_CONTEXTS = 128

UNCOMPRESSED = (uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian)
#: Stored syntaxes we accept as they are, one context each, most common first.
COMPRESSED = (
    uid.JPEGBaseline8Bit,
    uid.JPEGLosslessSV1,
    uid.JPEG2000Lossless,
    uid.JPEG2000,
    uid.JPEGLSLossless,
    uid.RLELossless,
    uid.JPEGExtended12Bit,
    uid.JPEGLSNearLossless,
    uid.DeflatedExplicitVRLittleEndian,
    uid.ExplicitVRBigEndian,
)

#: Used when the PACS does not tell us which SOP classes a retrieve will return.
COMMON_STORAGE_SOP_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image
    "1.2.840.10008.5.1.4.1.1.4",  # MR Image
    "1.2.840.10008.5.1.4.1.1.1",  # CR Image
    "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.2",  # Digital Mammography - For Presentation
    "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image
    "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.12.1",  # X-Ray Angiographic Image
    "1.2.840.10008.5.1.4.1.1.20",  # Nuclear Medicine Image
    "1.2.840.10008.5.1.4.1.1.128",  # PET Image
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.481.1",  # RT Image
    "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
    "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic Image
)


def find_contexts() -> list[PresentationContext]:
    return [*(build_context(model) for model in FIND_MODELS), build_context(VERIFICATION)]


def move_contexts() -> list[PresentationContext]:
    # C-MOVE associations carry the FIND models too: DCMTK's dcmqrscp complains
    # ("Move Presentation Context but no Find") about a move-only association.
    return [*(build_context(model) for model in (*MOVE_MODELS, *FIND_MODELS))]


def get_contexts(
    sop_class_uids: Sequence[str],
) -> tuple[list[PresentationContext], list[object]]:
    """Contexts and SCP/SCU role selection items for a C-GET association."""
    classes = list(dict.fromkeys(sop_class_uids)) or list(COMMON_STORAGE_SOP_CLASSES)
    contexts = [build_context(model) for model in GET_MODELS]
    budget = _MAX_CONTEXTS - len(contexts)
    # Every class gets its uncompressed context first; compressed contexts
    # are added, most common first, while the 128-context budget lasts.
    per_class = [list(_syntax_groups()) for _ in classes]
    plan: list[tuple[str, tuple[str, ...]]] = []
    for depth in range(len(per_class[0])):
        for sop_class, groups in zip(classes, per_class, strict=True):
            if len(plan) < budget:
                plan.append((sop_class, groups[depth]))
    for sop_class, syntaxes in plan:
        contexts.append(build_context(sop_class, list(syntaxes)))
    roles: list[object] = [build_role(sop_class, scp_role=True) for sop_class in
                           _present(plan)]
    return contexts, roles


def _syntax_groups() -> Iterable[tuple[str, ...]]:
    yield UNCOMPRESSED
    for syntax in COMPRESSED:
        yield (syntax,)


def _present(plan: Sequence[tuple[str, tuple[str, ...]]]) -> list[str]:
    return list(dict.fromkeys(sop_class for sop_class, _ in plan))
