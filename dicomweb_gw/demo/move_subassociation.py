"""The C-MOVE sub-association of the demo PACS: the contexts it proposes, and the
Move Originator its C-STOREs carry (which pynetdicom gets wrong, see :class:`DemoAE`).

pynetdicom's C-MOVE SCP sends its sub-operation C-STOREs with Move Originator
AE Title = *its own* AE title (PS3.7's C-STORE parameters want the AE that
invoked the C-MOVE) and cannot leave the originator out, which the
``omit_move_originator`` fault needs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydicom.dataset import Dataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
)
from pynetdicom import build_context
from pynetdicom.ae import ApplicationEntity
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext

from dicomweb_gw.demo.dimse import VERIFICATION
from dicomweb_gw.demo.index import IndexedInstance

__all__ = ["DemoAE", "MovePlan", "store_contexts"]

LOGGER = logging.getLogger("dicomweb_gw.demo")

_UNCOMPRESSED_LE: Final = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
_MAX_REQUESTED_CONTEXTS: Final = 128  # PS3.8: odd context IDs 1..255


@dataclass
class MovePlan:
    """What one C-MOVE wants of the sub-association pynetdicom opens for it."""

    originator: tuple[str, int] | None
    """(Move Originator AE Title, Move Originator Message ID), None to omit both."""
    association: Association | None = None
    """The real sub-association, once open (the abort fault needs it)."""

    def abort(self) -> None:
        if self.association is not None and self.association.is_established:
            self.association.abort()


class _MoveSubAssociation:
    """The C-MOVE sub-association as pynetdicom's C-MOVE SCP sees it.

    pynetdicom calls ``send_c_store(ds, msg_id=..., originator_aet=<own AE
    title>, originator_id=<C-MOVE Message ID>)`` on it; this stand-in puts the
    plan's originator there instead and forwards everything else (``release``,
    ``is_established``, ``dul``...) to the real association.
    """

    def __init__(self, association: Association, plan: MovePlan) -> None:
        self._association = association
        self._plan = plan

    def send_c_store(
        self,
        dataset: Dataset,
        msg_id: int = 1,
        priority: int = 2,
        originator_aet: str | None = None,
        originator_id: int | None = None,
    ) -> Dataset:
        aet, message_id = self._plan.originator or (None, None)
        result: Dataset = self._association.send_c_store(
            dataset, msg_id=msg_id, priority=priority, originator_aet=aet, originator_id=message_id
        )
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._association, name)


class DemoAE(ApplicationEntity):
    """An AE whose C-MOVE sub-associations honour a :class:`MovePlan`.

    pynetdicom's C-MOVE SCP opens the sub-association with
    ``self.ae.associate(host, port, ae_title=<destination>, **extra)``, where
    ``extra`` is the third item of the destination the handler yields. The
    handler passes ``move_plan`` there; this override takes it out and hands
    pynetdicom a :class:`_MoveSubAssociation`. No other pynetdicom hook lets
    the SCP choose the Move Originator of the sub-operations.
    """

    def associate(  # type: ignore[override]
        self, addr: str, port: int, *args: Any, move_plan: MovePlan | None = None, **kwargs: Any
    ) -> Any:
        association = super().associate(addr, port, *args, **kwargs)
        if move_plan is None:
            return association
        move_plan.association = association
        return _MoveSubAssociation(association, move_plan)


def store_contexts(instances: Sequence[IndexedInstance]) -> list[PresentationContext]:
    """Contexts for a C-MOVE sub-association, the way storescu proposes them.

    Per SOP class: one context per stored transfer syntax, so each instance
    can go as stored whichever syntax the destination prefers, plus one
    offering Explicit and Implicit VR LE (which pynetdicom converts between)
    as the fallback. Beyond 128 contexts only the fallbacks are kept.

    With nothing to send (the move was refused), Verification and Secondary
    Capture, which any storage SCP accepts one of: pynetdicom opens the
    sub-association before it sends the refusal, and with no context to
    propose it would answer 0xC515 instead of the reason.
    """
    if not instances:
        return [build_context(VERIFICATION), build_context(SecondaryCaptureImageStorage)]
    syntaxes: dict[str, set[str]] = {}
    for instance in instances:
        syntaxes.setdefault(instance.sop_class_uid, set()).add(instance.transfer_syntax)
    as_stored = [
        build_context(sop_class, [syntax])
        for sop_class, stored in syntaxes.items()
        for syntax in sorted(stored)
    ]
    uncompressed = [build_context(sop_class, list(_UNCOMPRESSED_LE)) for sop_class in syntaxes]
    contexts = as_stored + uncompressed
    if len(contexts) > _MAX_REQUESTED_CONTEXTS:
        LOGGER.warning("C-MOVE of %d SOP classes: offering uncompressed only", len(syntaxes))
        contexts = uncompressed[:_MAX_REQUESTED_CONTEXTS]
    return contexts
