"""Units of the retrieve-side quirks: uncompressed-only nodes (C-GET contexts, the storage
SCP per calling AE) and the messages that tell an administrator what to register."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydicom import uid
from pynetdicom import AE, AllStoragePresentationContexts, build_context

from dicomweb_gw.errors import PacsMisconfigured
from dicomweb_gw.pacs import contexts
from dicomweb_gw.pacs.failures import Failures
from dicomweb_gw.pacs.storescp import MoveReceiver
from dicomweb_gw.settings import PacsNode
from pacs_fixtures import GATEWAY_AE_TITLE, free_port

NODE = PacsNode("main", "127.0.0.1", 104, "MAINPACS")
CT = "1.2.840.10008.5.1.4.1.1.2"
UNCOMPRESSED = {uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian}


def _storage(plan: contexts.GetPlan) -> dict[str, list[str]]:
    return {str(cx.abstract_syntax): [str(ts) for ts in cx.transfer_syntax]
            for cx in plan.contexts if str(cx.abstract_syntax) not in contexts.GET_MODELS}


def test_compressed_false_offers_only_little_endian_in_one_association() -> None:
    classes = [str(cx.abstract_syntax) for cx in AllStoragePresentationContexts][:60]
    stored = {uid.JPEG2000Lossless, uid.JPEGBaseline8Bit, uid.RLELossless}
    # Stored syntaxes that need several associations when offered as stored.
    holdings = {f"series-{n}": {sop_class: stored} for n, sop_class in enumerate(classes)}
    assert len(contexts.get_plans(holdings)) > 1
    (plan,) = contexts.get_plans(holdings, compressed=False)
    storage = _storage(plan)
    assert set(storage) == set(classes)
    assert all(set(syntaxes) == UNCOMPRESSED for syntaxes in storage.values())
    assert {str(role.sop_class_uid) for role in plan.roles} == set(classes)


def test_compressed_false_with_unknown_holdings_offers_the_common_classes() -> None:
    (plan,) = contexts.get_plans({}, compressed=False)
    storage = _storage(plan)
    assert set(storage) == set(contexts.COMMON_STORAGE_SOP_CLASSES)
    assert all(set(syntaxes) == UNCOMPRESSED for syntaxes in storage.values())


@pytest.fixture
def receiver() -> Iterator[MoveReceiver]:
    scp = MoveReceiver(GATEWAY_AE_TITLE, host="127.0.0.1", port=free_port())
    scp.accept_only_uncompressed_from("NOJPEG")
    scp.start()
    try:
        yield scp
    finally:
        scp.stop()


@pytest.mark.parametrize(("calling", "jpeg_accepted"), [("NOJPEG", False), ("OTHERPACS", True)])
def test_storage_scp_offers_a_compressed_false_node_only_little_endian(
        receiver: MoveReceiver, calling: str, jpeg_accepted: bool) -> None:
    ae = AE(ae_title=calling)
    requested = [build_context(CT, [uid.JPEGBaseline8Bit]),
                 build_context(CT, [uid.ExplicitVRLittleEndian])]
    assoc = ae.associate("127.0.0.1", receiver.port, contexts=requested,
                         ae_title=GATEWAY_AE_TITLE)
    try:
        accepted = {str(cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
    finally:
        assoc.release()
    assert (uid.JPEGBaseline8Bit in accepted) is jpeg_accepted
    assert uid.ExplicitVRLittleEndian in accepted
    assert receiver.connections == 1


def test_the_address_to_register_is_where_the_pacs_sees_us() -> None:
    everywhere = MoveReceiver(GATEWAY_AE_TITLE, host="0.0.0.0", port=11113)
    assert everywhere.address_for("10.1.2.3") == "10.1.2.3:11113"
    assert everywhere.address_for("fd00::5") == "[fd00::5]:11113"
    pinned = MoveReceiver(GATEWAY_AE_TITLE, host="192.168.0.9", port=11113)
    assert pinned.address_for("10.1.2.3") == "192.168.0.9:11113"


def test_unknown_destination_says_what_to_register() -> None:
    failures = Failures(NODE, ae_title=GATEWAY_AE_TITLE,
                        receiver=MoveReceiver(GATEWAY_AE_TITLE, host="0.0.0.0", port=11113))
    error = failures.move_failed(0xA801, received=0, failed=None, local_host="10.1.2.3",
                                 reached=False)
    assert isinstance(error, PacsMisconfigured)
    assert f"register AE title '{GATEWAY_AE_TITLE}' at 10.1.2.3:11113" in error.message


@pytest.mark.parametrize("code", [0xA702, 0xB000])
def test_failed_sub_operations_that_never_reached_us_say_the_pacs_could_not_connect(
        code: int) -> None:
    failures = Failures(NODE, ae_title=GATEWAY_AE_TITLE,
                        receiver=MoveReceiver(GATEWAY_AE_TITLE, host="0.0.0.0", port=11113))
    error = failures.move_failed(code, received=0, failed=3, local_host="10.1.2.3",
                                 reached=False)
    assert isinstance(error, PacsMisconfigured)
    assert "could not connect back" in error.message
    assert "port 11113" in error.message
    assert "10.1.2.3:11113" in error.message
    reached = failures.move_failed(code, received=0, failed=3, local_host="10.1.2.3",
                                   reached=True)
    assert "could not connect back" not in reached.message


def test_the_c_move_standing_in_for_c_get_says_both() -> None:
    failures = Failures(NODE, ae_title=GATEWAY_AE_TITLE,
                        receiver=MoveReceiver(GATEWAY_AE_TITLE, host="0.0.0.0", port=11113))
    error = failures.after_no_c_get(failures.move_failed(
        0xA801, received=0, failed=None, local_host="10.1.2.3", reached=False))
    assert isinstance(error, PacsMisconfigured)
    assert error.message.startswith("PACS 'main': has no C-GET")
    assert "0xA801" in error.message
    assert "10.1.2.3:11113" in error.message
    assert failures.after_no_c_get(error) is error
    without = Failures(NODE, ae_title=GATEWAY_AE_TITLE).no_c_get("10.1.2.3", "no storage SCP")
    assert 'retrieve = "c-move" in [pacs.main]' in without.message
