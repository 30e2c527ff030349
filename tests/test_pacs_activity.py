"""A node's recent activity (pacs/activity.py): health, operations per minute, failures
with their status in words and their fix; and DimsePacsClient recording into it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from dicomweb_gw.errors import PacsFailure, PacsMisconfigured, PacsTimeout, PacsUnavailable
from dicomweb_gw.model import QueryLevel
from dicomweb_gw.pacs.activity import KEPT_FAILURES, NodeActivity, fix_of, status_code_of
from dicomweb_gw.pacs.dimse import DimsePacsClient
from dicomweb_gw.pacs.failures import Failures
from dicomweb_gw.pacs.status import status_words
from dicomweb_gw.settings import PacsNode
from pacs_fixtures import free_port
from quirky_pacs import quirky_pacs, sample_studies

NODE = PacsNode(name="main", host="10.0.0.9", port=104, ae_title="MAINPACS")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _activity() -> tuple[NodeActivity, Clock]:
    clock = Clock()
    return NodeActivity("MAINPACS", clock=clock, monotonic=clock), clock


def test_health_follows_the_last_echo_or_operation() -> None:
    activity, _ = _activity()
    assert activity.health() == ("unknown", "no C-ECHO or operation yet")
    activity.echoed(3.2)
    assert activity.health() == ("ok", "C-ECHO answered in 3 ms")
    error = PacsUnavailable("main", "cannot connect to MAINPACS at 10.0.0.9:104")
    activity.ended("C-FIND", "unavailable", error)
    assert activity.health() == ("failing", f"C-FIND failed: {error.message}")
    activity.ended("C-GET", "success")
    assert activity.health() == ("ok", "C-GET succeeded")
    # A retrieve the client left says nothing about the node.
    activity.ended("C-GET", "cancelled")
    assert activity.health()[0] == "ok"


def test_a_failed_echo_is_the_echo_and_a_failure() -> None:
    activity, _ = _activity()
    error = PacsTimeout("main", "C-ECHO got no response within 30 s")
    activity.echoed(30000.0, error)
    echo = activity.echo
    assert echo is not None
    assert (echo.ok, echo.message) == (False, error.message)
    assert activity.health() == ("failing", f"C-ECHO failed: {error.message}")
    [failure] = activity.failures()
    assert (failure.operation, failure.status, failure.status_words) == (
        "C-ECHO", None, "No response in time")
    assert activity.per_minute() == [("C-ECHO", "timeout", 1)]


def test_operations_per_minute_forget_older_ones() -> None:
    activity, clock = _activity()
    for _ in range(3):
        activity.ended("C-FIND", "success")
    activity.ended("C-MOVE", "failure", PacsFailure("main", "C-MOVE unable to process (0xC000)"))
    clock.now += 30
    activity.ended("C-FIND", "success")
    assert activity.per_minute() == [("C-FIND", "success", 4), ("C-MOVE", "failure", 1)]
    clock.now += 31  # the first four are now more than a minute old
    assert activity.per_minute() == [("C-FIND", "success", 1)]


def test_the_last_ten_failures_newest_first() -> None:
    activity, clock = _activity()
    for number in range(KEPT_FAILURES + 5):
        clock.now += 1
        activity.ended("C-FIND", "failure", PacsFailure("main", f"failure #{number}"))
    failures = activity.failures()
    assert len(failures) == KEPT_FAILURES
    assert failures[0].message == "PACS 'main': failure #14"
    assert failures[-1].message == "PACS 'main': failure #5"


def test_move_destination_unknown_in_words_with_its_fix() -> None:
    # The error failures.py really builds for 0xA801: the fix is the one it names.
    error = Failures(NODE, ae_title="DICOMWEB_GW").move_failed(
        0xA801, received=0, failed=None, local_host=None, reached=None)
    assert isinstance(error, PacsMisconfigured)
    activity, _ = _activity()
    activity.ended("C-MOVE", "misconfigured", error)
    [failure] = activity.failures()
    assert failure.status == "0xA801"
    assert failure.status_words == "Move destination unknown"
    assert failure.fix == ("register AE title 'DICOMWEB_GW' at (no storage SCP) on MAINPACS "
                           "(that host and port exactly)")


@pytest.mark.parametrize(("message", "code"), [
    ("C-GET refused: out of resources (0xA702)", 0xA702),
    ("C-MOVE unable to process (0xC001); if the PACS ...", 0xC001),
    ("aborted the association during C-FIND", None),
])
def test_status_code_of_a_message(message: str, code: int | None) -> None:
    assert status_code_of(message) == code


@pytest.mark.parametrize(("code", "words"), [
    (0xA801, "Move destination unknown"), (0xA700, "Out of resources"),
    (0xA702, "Out of resources: unable to perform sub-operations"),
    (0xB000, "Sub-operations completed with failures"), (0xC123, "Unable to process"),
    (0xA900, "Identifier does not match SOP class"), (0xFE00, "Cancelled")])
def test_status_words(code: int, words: str) -> None:
    assert status_words(code) == words


def test_no_fix_when_the_message_names_none() -> None:
    assert fix_of("aborted the association during C-FIND", pacs_ae_title="X") is None
    no_c_get = Failures(NODE, ae_title="GW").no_c_get(None, "the storage SCP is off")
    assert fix_of(no_c_get.message, pacs_ae_title="MAINPACS") == (
        'set retrieve = "c-move" in [pacs.main] (DICOMWEB_GW_RETRIEVE=c-move for the default '
        "node) and register AE title 'GW' at (no storage SCP) on MAINPACS")


# --- DimsePacsClient records -------------------------------------------------------------

def test_the_client_records_echoes_and_finds(tmp_path: Path) -> None:
    studies = sample_studies(tmp_path, count=1)

    async def run(client: DimsePacsClient) -> None:
        await client.echo()
        identifier = Dataset()
        identifier.StudyInstanceUID = ""
        assert len([m async for m in client.find(QueryLevel.STUDY, identifier)]) == 1
        await client.aclose()

    with quirky_pacs(tmp_path, studies[0].paths) as pacs:
        node = PacsNode(name="q", host="127.0.0.1", port=pacs.port, ae_title=pacs.ae_title,
                        timeout=10.0)
        client = DimsePacsClient(node, ae_title="DICOMWEB_GW")
        asyncio.run(run(client))
        assert client.association_use()[1] == node.max_associations
    activity = client.activity
    assert activity.health()[0] == "ok"
    assert {(op, outcome) for op, outcome, _ in activity.per_minute()} == {
        ("C-ECHO", "success"), ("C-FIND", "success")}
    assert activity.failures() == []


def test_the_client_records_a_pacs_that_is_not_there() -> None:
    node = PacsNode(name="gone", host="127.0.0.1", port=free_port(), ae_title="NOBODY",
                    timeout=5.0)
    client = DimsePacsClient(node, ae_title="DICOMWEB_GW")

    async def run() -> None:
        with pytest.raises(PacsUnavailable):
            await client.echo()

    asyncio.run(run())
    health, message = client.activity.health()
    assert health == "failing"
    assert message.startswith("C-ECHO failed: PACS 'gone'")
    [failure] = client.activity.failures()
    assert (failure.operation, failure.status_words) == ("C-ECHO", "PACS unavailable")
