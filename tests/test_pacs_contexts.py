"""Which presentation contexts the gateway proposes (C-GET) and accepts (C-MOVE storage SCP)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydicom import uid
from pynetdicom import AE, AllStoragePresentationContexts
from pynetdicom.presentation import PresentationContext

from dicomweb_gw.pacs import contexts
from dicomweb_gw.pacs.contexts import (
    COMMON_STORAGE_SOP_CLASSES,
    GET_MODELS,
    KNOWN_SYNTAXES,
    MAX_CONTEXTS,
    UNCOMPRESSED,
    get_contexts,
    get_plans,
)
from dicomweb_gw.pacs.storescp import MoveReceiver
from pacs_fixtures import free_port

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
SC = "1.2.840.10008.5.1.4.1.1.7"
US = "1.2.840.10008.5.1.4.1.1.6.1"
#: The syntaxes issue #14 found missing, and the ones of its test files.
ONCE_MISSING = (
    uid.JPEGLossless, uid.JPEGLosslessSV1, uid.JPEG2000MCLossless, uid.JPEG2000MC,
    uid.MPEG2MPML, uid.MPEG4HP41, uid.HEVCMP51, uid.HEVCM10P51,
    uid.HTJ2KLossless, uid.HTJ2KLosslessRPCL, uid.HTJ2K, uid.DeflatedExplicitVRLittleEndian,
)


def _storage(proposed: list[PresentationContext]) -> list[tuple[str, tuple[str, ...]]]:
    """(SOP class, syntaxes) of each storage context, in order."""
    return [(str(cx.abstract_syntax), tuple(cx.transfer_syntax)) for cx in proposed
            if cx.abstract_syntax not in GET_MODELS]


def _syntaxes_for(proposed: list[PresentationContext], sop_class: str) -> set[str]:
    return {ts for abstract, syntaxes in _storage(proposed) if abstract == sop_class
            for ts in syntaxes}


def test_every_syntax_pydicom_knows_is_a_candidate() -> None:
    assert set(uid.AllTransferSyntaxes) - set(UNCOMPRESSED) <= set(KNOWN_SYNTAXES)
    assert set(ONCE_MISSING) <= set(KNOWN_SYNTAXES)
    assert not set(UNCOMPRESSED) & set(KNOWN_SYNTAXES)


def test_a_single_class_of_unknown_syntaxes_is_offered_every_syntax() -> None:
    proposed, roles = get_contexts({SC: ()})
    assert _syntaxes_for(proposed, SC) == set(KNOWN_SYNTAXES) | set(UNCOMPRESSED)
    assert len(proposed) <= MAX_CONTEXTS
    assert [str(role.sop_class_uid) for role in roles] == [SC]
    assert all(role.scp_role for role in roles)


def test_compressed_syntaxes_get_a_context_each_and_uncompressed_share_one() -> None:
    # A PACS accepts one syntax per context: sharing would make it choose, and transcode.
    proposed, _ = get_contexts({SC: (), CT: ()})
    for _, syntaxes in _storage(proposed):
        assert syntaxes == UNCOMPRESSED or (len(syntaxes) == 1 and syntaxes[0] in KNOWN_SYNTAXES)
    assert [cx.abstract_syntax for cx in proposed[:2]] == list(GET_MODELS)


def test_without_known_classes_the_common_ones_stay_under_the_limit() -> None:
    proposed, roles = get_contexts({})
    assert len(proposed) == MAX_CONTEXTS
    assert {str(role.sop_class_uid) for role in roles} == set(COMMON_STORAGE_SOP_CLASSES)
    for sop_class in COMMON_STORAGE_SOP_CLASSES:
        assert (sop_class, UNCOMPRESSED) in _storage(proposed)
    # The spare contexts go to the most common syntaxes first.
    assert _syntaxes_for(proposed, CT) >= {uid.JPEGBaseline8Bit, uid.JPEGLosslessSV1,
                                           uid.JPEG2000Lossless}


def test_every_reported_stored_syntax_is_proposed_first_for_its_class() -> None:
    # Many classes, all syntaxes unknown but these: the spare contexts run out,
    # the stored ones never do, and each class's stored syntax is its first
    # context (dcmqrscp sends a class's instances on its first accepted context).
    holdings: dict[str, tuple[str, ...]] = {
        sop_class: () for sop_class in COMMON_STORAGE_SOP_CLASSES}
    holdings[SC] = (uid.JPEGLossless, uid.HEVCM10P51)
    holdings[US] = (uid.HTJ2K,)
    proposed, _ = get_contexts(holdings)
    storage = _storage(proposed)
    assert len(proposed) <= MAX_CONTEXTS
    assert (SC, (uid.JPEGLossless,)) in storage
    assert (SC, (uid.HEVCM10P51,)) in storage
    first_for = {sop_class: syntaxes for sop_class, syntaxes in reversed(storage)}
    assert first_for[SC] == (uid.JPEGLossless,)
    assert first_for[US] == (uid.HTJ2K,)
    assert first_for[CT] == UNCOMPRESSED


def test_a_reported_uncompressed_syntax_keeps_the_uncompressed_context_first() -> None:
    proposed, _ = get_contexts({MR: (uid.ImplicitVRLittleEndian, uid.JPEG2000Lossless)})
    storage = _storage(proposed)
    assert storage[0] == (MR, UNCOMPRESSED)
    assert storage[1] == (MR, (uid.JPEG2000Lossless,))


def test_syntaxes_no_one_knows_are_not_proposed() -> None:
    proposed, _ = get_contexts({SC: ("1.2.3.4.5", "")})
    assert _syntaxes_for(proposed, SC) == set(KNOWN_SYNTAXES) | set(UNCOMPRESSED)


def test_one_association_when_the_stored_syntaxes_fit() -> None:
    (plan,) = get_plans({"s1": {SC: (uid.JPEGLossless,)}, "s2": {CT: (uid.HTJ2K,)}})
    assert plan.series_uids == ()  # the retrieve's own keys, not series by series
    assert {(SC, (uid.JPEGLossless,)), (CT, (uid.HTJ2K,))} <= set(_storage(plan.contexts))


def test_series_are_split_across_associations_when_their_stored_syntaxes_do_not_fit() -> None:
    everything = tuple(KNOWN_SYNTAXES)  # 1 + 43 contexts per class: 3 classes do not fit
    series = {"s1": {SC: everything, CT: everything}, "s2": {MR: everything},
              "s3": {CT: (uid.JPEGLossless,), SC: everything}, "s4": {US: everything}}
    plans = get_plans(series)
    assert [plan.series_uids for plan in plans] == [("s1",), ("s2", "s3"), ("s4",)]
    for plan in plans:
        assert len(plan.contexts) <= MAX_CONTEXTS
        storage = set(_storage(plan.contexts))
        for series_uid in plan.series_uids:
            for sop_class, stored in series[series_uid].items():
                assert {(sop_class, (ts,)) for ts in stored} <= storage
                assert (sop_class, UNCOMPRESSED) in storage


def test_one_series_over_the_limit_is_not_narrowed_to_a_series_retrieve() -> None:
    everything = tuple(KNOWN_SYNTAXES)
    (plan,) = get_plans({"s1": {SC: everything, CT: everything, MR: everything}})
    assert plan.series_uids == ()
    assert len(plan.contexts) == MAX_CONTEXTS


def test_no_series_at_all_falls_back_to_the_common_classes() -> None:
    (plan,) = get_plans({})
    assert len(plan.contexts) == MAX_CONTEXTS
    assert len(plan.roles) == len(COMMON_STORAGE_SOP_CLASSES)


@pytest.fixture(scope="module")
def move_receiver() -> Iterator[MoveReceiver]:
    receiver = MoveReceiver("GW_TEST_SCP", host="127.0.0.1", port=free_port())
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.mark.parametrize("syntax", [*ONCE_MISSING, uid.JPEGBaseline8Bit])
def test_the_storage_scp_takes_each_stored_syntax_over_uncompressed(
    move_receiver: MoveReceiver, syntax: str
) -> None:
    # A PACS proposes the stored syntax and uncompressed fallbacks, in one context or several.
    ae = AE(ae_title="GW_TEST_PACS")
    ae.add_requested_context(SC, [uid.ImplicitVRLittleEndian, syntax, uid.ExplicitVRLittleEndian])
    ae.add_requested_context(US, [uid.ExplicitVRLittleEndian])
    ae.add_requested_context(US, [syntax])
    assoc = ae.associate("127.0.0.1", move_receiver.port, ae_title="GW_TEST_SCP")
    assert assoc.is_established
    try:
        accepted = {(str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
                    for cx in assoc.accepted_contexts}
    finally:
        assoc.release()
    # Deflate is taken alone; offered with Explicit VR LE, either is the same data.
    shared = uid.ExplicitVRLittleEndian if syntax == uid.DeflatedExplicitVRLittleEndian else syntax
    assert (SC, shared) in accepted
    assert {(US, uid.ExplicitVRLittleEndian), (US, syntax)} <= accepted


def test_the_storage_scp_accepts_every_known_syntax_for_every_storage_class() -> None:
    receiver = MoveReceiver("GW_TEST_SCP", host="127.0.0.1", port=free_port())
    receiver.start()
    try:
        server = receiver._server
        assert server is not None
        supported = {str(cx.abstract_syntax): set(cx.transfer_syntax) for cx in server.contexts}
    finally:
        receiver.stop()
    wanted = set(uid.AllTransferSyntaxes)
    for context in AllStoragePresentationContexts:
        assert supported[str(context.abstract_syntax)] >= wanted
    assert contexts.ACCEPTED_SYNTAXES[-4:] == (
        uid.ExplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian,
        uid.ExplicitVRBigEndian, uid.ImplicitVRLittleEndian)


def test_the_storage_scp_prefers_explicit_little_endian_among_uncompressed(
    move_receiver: MoveReceiver
) -> None:
    # dcmqrscp's C-MOVE proposal for every class; Big Endian would be a pointless conversion.
    ae = AE(ae_title="GW_TEST_PACS")
    ae.add_requested_context(CT, [uid.ExplicitVRLittleEndian, uid.ExplicitVRBigEndian,
                                  uid.ImplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", move_receiver.port, ae_title="GW_TEST_SCP")
    assert assoc.is_established
    try:
        (context,) = assoc.accepted_contexts
    finally:
        assoc.release()
    assert context.transfer_syntax == [uid.ExplicitVRLittleEndian]
