"""Builds the demo PACS's pynetdicom AE: the presentation contexts it accepts
(verification, Query/Retrieve, storage in both roles) and who may associate.
"""

from __future__ import annotations

import logging
from typing import Final, cast

from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RLETransferSyntaxes,
)
from pynetdicom import AllStoragePresentationContexts

from dicomweb_gw.demo.dimse import FIND_MODELS, GET_MODELS, MOVE_MODELS, VERIFICATION
from dicomweb_gw.demo.faults import Fault
from dicomweb_gw.demo.move_subassociation import DemoAE

__all__ = ["make_ae", "quiet_pynetdicom"]

# Transfer syntaxes accepted for storage: every image codec pydicom knows,
# but not the video ones. pynetdicom deep-copies the supported contexts for
# each association: ~170 storage classes x all 40-odd syntaxes cost 80 ms
# per association, these 18 about 30 ms. Explicit VR LE comes first because
# pynetdicom accepts the first syntax of *this* list that the requestor
# offers: offered "Explicit or Implicit", a C-GET then keeps the VRs.
_ACCEPTED_SYNTAXES: Final = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    *JPEGTransferSyntaxes,
    *JPEGLSTransferSyntaxes,
    *JPEG2000TransferSyntaxes,
    *RLETransferSyntaxes,
]

# Nobody calls with this AE title, so listing it as the only allowed caller
# makes pynetdicom reject every association ("calling AE title not
# recognised": what a PACS that does not know the gateway answers).
_NO_CALLER: Final = "REFUSE-ALL-AE"


def make_ae(ae_title: str, fault: Fault) -> DemoAE:
    """The AE the demo PACS serves with, shaped by ``fault``'s association switches."""
    ae = DemoAE(ae_title)
    ae.maximum_pdu_size = 0  # unlimited: fewer, larger P-DATA PDUs for throughput
    ae.maximum_associations = 32
    ae.add_supported_context(VERIFICATION)
    for models in (FIND_MODELS, GET_MODELS, MOVE_MODELS):
        for model, patient_root in models.items():
            if patient_root or not fault.patient_root_only:
                ae.add_supported_context(model)
    # Storage in both roles: SCP for C-STORE uploads, SCU (with the
    # requestor's SCP/SCU role selection) for C-GET sub-operations.
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(
            cast(str, context.abstract_syntax),
            _ACCEPTED_SYNTAXES,
            scu_role=True,
            scp_role=True,
        )
    if fault.refuse_association:
        ae.require_calling_aet = [_NO_CALLER]
    return ae


def quiet_pynetdicom() -> None:
    """pynetdicom logs every association at INFO; keep it to warnings unless configured."""
    pynetdicom_logger = logging.getLogger("pynetdicom")
    if pynetdicom_logger.level == logging.NOTSET:
        pynetdicom_logger.setLevel(logging.WARNING)
