"""Pooled associations under many back-to-back DIMSE messages, against real dcmqrscp."""

from __future__ import annotations

import asyncio
import queue
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from pydicom.dataset import Dataset

from corpus import Corpus
from dicomweb_gw.model import QueryLevel
from dicomweb_gw.pacs.associations import _keep_stray_responses
from dicomweb_gw.pacs.dimse import DimsePacsClient
from gateway_fixtures import node_for
from pacs_fixtures import GATEWAY_AE_TITLE, RunningPacs

pytestmark = pytest.mark.pacs

SEARCHES = 600


def test_back_to_back_c_finds_never_lose_a_response(dcmqrscp_pacs: RunningPacs,
                                                    corpus: Corpus) -> None:
    """pynetdicom#875: a response read by the reactor between two requests was dropped,
    and the search then waited out the DIMSE timeout. dcmqrscp answers within a
    millisecond, which is when the race shows."""
    study = corpus.study("ct_small")
    # A short timeout: a dropped response fails the search (PacsTimeout) quickly.
    node = replace(node_for(dcmqrscp_pacs, "dcmqrscp", "c-get"), timeout=5.0,
                   max_associations=1)

    async def searches() -> list[int]:
        client = DimsePacsClient(node, ae_title=GATEWAY_AE_TITLE)
        try:
            counts = []
            for _ in range(SEARCHES):
                query = Dataset()
                query.StudyInstanceUID = study.study_uid
                query.SeriesInstanceUID = ""
                counts.append(len([ds async for ds in client.find(QueryLevel.SERIES, query)]))
            return counts
        finally:
            await client.aclose()

    counts = asyncio.run(searches())
    assert counts == [len(study.series)] * SEARCHES


def test_responses_the_reactor_takes_are_handed_back() -> None:
    """pynetdicom's reactor can take the response a send_*() waits for
    (pydicom/pynetdicom#875); it must go back on the queue, requests must not."""
    served: list[Any] = []

    class FakeAssociation:
        def __init__(self) -> None:
            self.dimse = SimpleNamespace(msg_queue=queue.Queue())

        def _serve_request(self, message: Any, context_id: int) -> None:
            served.append(message)

    assoc = FakeAssociation()
    _keep_stray_responses(assoc)  # type: ignore[arg-type]
    response, request = SimpleNamespace(is_valid_request=False), SimpleNamespace(
        is_valid_request=True)
    assoc._serve_request(response, 3)
    assoc._serve_request(request, 5)
    assert assoc.dimse.msg_queue.get_nowait() == (3, response)
    assert served == [request]


def test_the_reactor_takes_only_requests_and_a_response_goes_back_first() -> None:
    """A Pending C-FIND response the reactor took and put back behind the final one
    ended a search a match short; the reactor now leaves responses where they are."""
    class Dimse:
        def __init__(self) -> None:
            self.msg_queue: queue.Queue[Any] = queue.Queue()

        def get_msg(self, block: bool = False) -> Any:
            try:
                return self.msg_queue.get(block=block, timeout=1)
            except queue.Empty:
                return None, None

    class FakeAssociation:
        def __init__(self) -> None:
            self.dimse = Dimse()

        def _serve_request(self, message: Any, context_id: int) -> None:
            raise AssertionError("not reached in this test")

    assoc = FakeAssociation()
    _keep_stray_responses(assoc)  # type: ignore[arg-type]
    pending, final = (SimpleNamespace(is_valid_request=False, name=name)
                      for name in ("pending", "final"))
    request = SimpleNamespace(is_valid_request=True)
    for item in ((1, pending), (1, final)):
        assoc.dimse.msg_queue.put(item)
    assert assoc.dimse.get_msg(block=False) == (None, None)  # the reactor's look
    assert assoc.dimse.get_msg(block=True) == (1, pending)  # the sender's read
    # One taken anyway (an older pynetdicom path) goes back ahead of the final one.
    assoc._serve_request(pending, 1)  # type: ignore[arg-type]
    assert [assoc.dimse.get_msg(block=True)[1].name for _ in range(2)] == ["pending", "final"]
    assoc.dimse.msg_queue.put((3, request))
    assert assoc.dimse.get_msg(block=False) == (3, request)
