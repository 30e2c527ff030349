"""Which presentation contexts to propose to the PACS, and accept from it.

A C-GET association has to propose, up front, every storage SOP class the PACS
may send back (with the SCP role), and at most 128 contexts fit in one. We
never ask the PACS to transcode, so that "as stored" stays true: each stored
syntax gets a context of its own (a PACS accepts one syntax per context, and
DCMTK's dcmqrscp sends every instance of a class on the *first* context it
accepted for that class, whatever its syntax), and the uncompressed pair,
which either side converts losslessly, shares one.

What goes in: for each SOP class the study holds, the syntaxes the PACS says
it stores (``AvailableTransferSyntaxUID``, when its C-FIND answers carry it),
then the uncompressed pair, then, while the budget lasts, every other syntax
pydicom knows, most common first. When even the stored syntaxes do not fit,
the series are split across several associations (``get_plans``).

A node with ``compressed = false`` is offered only Explicit and Implicit VR
Little Endian, one context per class (so one association always suffices): a
PACS that fails to send what it stores compressed then decompresses itself.
Deflated and Big Endian are left out too: they are what such a PACS handles
worst, and every PACS can send Little Endian.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from pydicom import uid
from pynetdicom import ALL_TRANSFER_SYNTAXES
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation
from pynetdicom.presentation import PresentationContext, build_context, build_role

__all__ = [
    "ACCEPTED_SYNTAXES",
    "COMMON_STORAGE_SOP_CLASSES",
    "FIND_MODEL",
    "FIND_MODELS",
    "GET_MODEL",
    "GET_MODELS",
    "KNOWN_SYNTAXES",
    "MOVE_MODEL",
    "MOVE_MODELS",
    "PATIENT_FIND_MODEL",
    "UNCOMPRESSED",
    "VERIFICATION",
    "GetPlan",
    "Holdings",
    "find_contexts",
    "get_contexts",
    "get_plans",
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
MAX_CONTEXTS = 128  # PS3.8: presentation context IDs are the odd numbers 1..255

UNCOMPRESSED = (uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian)
#: Stored syntaxes, most common in PACS first: the order in which they get the
#: contexts left over when not all fit.
_COMMON_FIRST = (
    uid.JPEGBaseline8Bit,
    uid.JPEGLosslessSV1,
    uid.JPEG2000Lossless,
    uid.JPEG2000,
    uid.JPEGLSLossless,
    uid.RLELossless,
    uid.JPEGExtended12Bit,
    uid.JPEGLossless,
    uid.JPEGLSNearLossless,
    uid.DeflatedExplicitVRLittleEndian,
    uid.HTJ2KLossless,
    uid.HTJ2KLosslessRPCL,
    uid.HTJ2K,
    uid.MPEG4HP41,
    uid.HEVCMP51,
    uid.HEVCM10P51,
    uid.MPEG2MPML,
    uid.MPEG2MPHL,
    uid.JPEG2000MCLossless,
    uid.JPEG2000MC,
    uid.ExplicitVRBigEndian,
)
#: Every transfer syntax pydicom (and pynetdicom, which knows a few more) knows,
#: but the uncompressed pair: each can be what an instance is stored in.
KNOWN_SYNTAXES: tuple[str, ...] = tuple(dict.fromkeys(
    ts for ts in (*_COMMON_FIRST, *uid.AllTransferSyntaxes, *ALL_TRANSFER_SYNTAXES)
    if ts not in UNCOMPRESSED
))
#: The syntaxes a PACS converts to and from losslessly, in the storage SCP's
#: order of preference: offered several in one context (dcmqrscp offers
#: "Explicit LE, Big Endian, Implicit LE"), Explicit VR Little Endian it is.
_LOSSLESSLY_CONVERTED = (uid.ExplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian,
                         uid.ExplicitVRBigEndian, uid.ImplicitVRLittleEndian)
#: What the storage SCP accepts, in its order of preference. pynetdicom, as
#: acceptor, picks the first of *these* that the PACS proposes in a context; a
#: PACS proposes the syntax a file is stored in (plus uncompressed fallbacks),
#: so those come last to receive every compressed instance as stored.
ACCEPTED_SYNTAXES: tuple[str, ...] = (
    *(ts for ts in KNOWN_SYNTAXES if ts not in _LOSSLESSLY_CONVERTED), *_LOSSLESSLY_CONVERTED)

#: SOP class -> the syntaxes the PACS says its instances are stored in (empty
#: when it did not say).
Holdings = Mapping[str, Collection[str]]

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


@dataclass(frozen=True)
class GetPlan:
    """One C-GET association: what it proposes, and which series it fetches.

    ``series_uids`` is empty when one association carries the whole retrieve.
    """

    contexts: list[PresentationContext]
    roles: list[SCP_SCU_RoleSelectionNegotiation]
    series_uids: tuple[str, ...] = ()


def get_plans(series: Mapping[str, Holdings], *, compressed: bool = True) -> list[GetPlan]:
    """The C-GET association(s) for a retrieve whose series hold ``series``.

    One association when the stored syntaxes of every class fit in it (always,
    when the PACS does not report them, or when only uncompressed syntaxes are
    offered); otherwise the series are packed, in order, into as few
    associations as carry each one's stored syntaxes.
    """
    merged = _merge(series.values())
    if not compressed:
        return [GetPlan(*get_contexts(merged, compressed=False))]
    if len(_required(merged)) <= _BUDGET:
        return [GetPlan(*get_contexts(merged))]
    plans: list[GetPlan] = []
    group: dict[str, Holdings] = {}
    for series_uid, holdings in series.items():
        if group and len(_required(_merge([*group.values(), holdings]))) > _BUDGET:
            plans.append(GetPlan(*get_contexts(_merge(group.values())), tuple(group)))
            group = {}
        group[series_uid] = holdings
    plans.append(GetPlan(*get_contexts(_merge(group.values())), tuple(group)))
    if len(plans) == 1:  # one series over budget: nothing to split, keep the request's keys
        return [GetPlan(plans[0].contexts, plans[0].roles)]
    return plans


def get_contexts(
    holdings: Holdings, *, compressed: bool = True,
) -> tuple[list[PresentationContext], list[SCP_SCU_RoleSelectionNegotiation]]:
    """Contexts and SCP/SCU role selection items for one C-GET association.

    ``holdings`` maps each storage SOP class to the syntaxes the PACS stores
    it in (empty: unknown); no classes at all means the common ones.
    ``compressed = False`` offers each class the uncompressed pair alone.
    """
    if not holdings:
        holdings = {sop_class: () for sop_class in COMMON_STORAGE_SOP_CLASSES}
    plan: list[_Pair]
    if compressed:
        required = _required(holdings)[:_BUDGET]
        proposed = set(required)
        spare = [pair for pair in _fill(holdings) if pair not in proposed]
        plan = [*required, *spare[:_BUDGET - len(required)]]
    else:
        plan = [(sop_class, tuple(str(ts) for ts in UNCOMPRESSED)) for sop_class in holdings]
        plan = plan[:_BUDGET]
    contexts = [build_context(model) for model in GET_MODELS]
    contexts += [build_context(sop_class, list(syntaxes)) for sop_class, syntaxes in plan]
    classes = dict.fromkeys(sop_class for sop_class, _ in plan)
    roles = [build_role(sop_class, scp_role=True) for sop_class in classes]
    return contexts, roles


_BUDGET = MAX_CONTEXTS - len(GET_MODELS)
_Pair = tuple[str, tuple[str, ...]]


def _required(holdings: Holdings) -> list[_Pair]:
    """Each class's stored syntaxes, a context each, and its uncompressed pair.

    The stored ones come first, and all classes' before any spare context: a
    PACS that sends a class on the first context it accepted for it (dcmqrscp)
    then finds the stored syntax there. The uncompressed pair leads when an
    uncompressed syntax is among the stored.
    """
    pairs: list[_Pair] = []
    for sop_class, stored in holdings.items():
        known = sorted({str(ts) for ts in stored} & set(KNOWN_SYNTAXES), key=_rank)
        if any(str(ts) in UNCOMPRESSED for ts in stored):
            pairs.append((sop_class, UNCOMPRESSED))
        pairs += [(sop_class, (ts,)) for ts in known]
        if (sop_class, UNCOMPRESSED) not in pairs:
            pairs.append((sop_class, UNCOMPRESSED))
    return pairs


def _fill(holdings: Holdings) -> Iterable[_Pair]:
    """Spare contexts: each known syntax for every class, most common syntax first."""
    for syntax in KNOWN_SYNTAXES:
        for sop_class in holdings:
            yield sop_class, (syntax,)


def _rank(syntax: str) -> int:
    return KNOWN_SYNTAXES.index(syntax)


def _merge(parts: Iterable[Holdings]) -> dict[str, set[str]]:
    merged: dict[str, set[str]] = {}
    for holdings in parts:
        for sop_class, stored in holdings.items():
            merged.setdefault(sop_class, set()).update(str(ts) for ts in stored)
    return merged

