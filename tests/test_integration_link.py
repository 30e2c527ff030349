"""A study retrieve over a simulated 10 ms link (tests/link_proxy.py), as on a real network.

A dcmqrscp of its own holds one short study; one link sits in front of its
DIMSE port, another in front of the gateway's storage SCP (the PACS's move
destination is that second link, so the C-MOVE back-channel crosses it too).
What comes over the link must be what comes straight from the PACS, byte for
byte: the round-trip-bound path (and, later, its parallel retrieves) stays
tested.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from corpus import Corpus, StudyInfo
from gateway_fixtures import RunningGateway, make_settings, node_for, running_gateway
from link_proxy import LinkProxy
from multipart_helpers import parse_multipart
from pacs_fixtures import LOOPBACK, free_port, running_dcmqrscp

pytestmark = pytest.mark.pacs
AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
DELAY_MS = 10


@dataclass(frozen=True)
class Link:
    gateway: RunningGateway
    study: StudyInfo
    dimse: LinkProxy  # gateway -> PACS
    back_channel: LinkProxy  # PACS -> the gateway's storage SCP (C-MOVE)


@pytest.fixture(scope="module")
def link(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Link]:
    study = corpus.study("ct_small")
    tmp: Path = tmp_path_factory.mktemp("link")
    store_port, back_channel_port = free_port(), free_port()
    with running_dcmqrscp(tmp / "pacs", study.instances, back_channel_port) as pacs, \
            LinkProxy(pacs.host, pacs.port, delay_ms=DELAY_MS) as dimse, \
            LinkProxy(LOOPBACK, store_port, delay_ms=DELAY_MS, port=back_channel_port) as back:
        far = replace(pacs, port=dimse.port)
        nodes = (node_for(far, "link-move", "c-move"), node_for(far, "link-get", "c-get"),
                 # Straight to the PACS, for the reference bytes.
                 node_for(pacs, "direct", "c-get"))
        with running_gateway(make_settings(nodes, store_port=store_port, tmp=tmp)) as gateway:
            yield Link(gateway, study, dimse, back)


def _parts(gateway: RunningGateway, node: str, study_uid: str) -> dict[str, bytes]:
    response = httpx.get(f"{gateway.dicomweb(node)}/studies/{study_uid}",
                         headers={"Accept": AS_STORED}, timeout=60)
    assert response.status_code == 200, response.text
    parts = parse_multipart(response.headers["content-type"], response.content)
    by_uid = {str(part.dataset().SOPInstanceUID): part.body for part in parts}
    assert len(by_uid) == len(parts)  # no instance twice
    return by_uid


@pytest.mark.parametrize("node", ["link-get", "link-move"])
def test_a_study_over_the_link_is_complete_and_byte_identical(link: Link, node: str) -> None:
    uid = link.study.study_uid
    direct = _parts(link.gateway, "direct", uid)
    assert set(direct) == {i.sop_instance_uid for i in link.study.instances}
    dimse_before = link.dimse.forwarded["to_client"]
    back_before = link.back_channel.forwarded["to_target"]

    over_link = _parts(link.gateway, node, uid)

    assert link.gateway.flights_started(node) == 1  # from the PACS, not from a cache
    assert set(over_link) == set(direct)
    assert all(over_link[sop] == direct[sop] for sop in direct)
    # The instances really crossed the link: over the DIMSE association for C-GET,
    # over the back-channel for C-MOVE.
    size = sum(map(len, direct.values()))
    crossed = (link.dimse.forwarded["to_client"] - dimse_before if node == "link-get"
               else link.back_channel.forwarded["to_target"] - back_before)
    assert crossed > size // 2
