"""What ``Finder`` makes of the C-FIND responses a PACS sends (``pacs/find.py``).

A scripted association stands in for pynetdicom's: it yields ``(status,
identifier)`` pairs as ``Association.send_c_find`` does, and records the
C-CANCELs and A-ABORTs it is sent. The real thing, through a gateway, is in
``tests/test_quirks_find.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from pydicom.dataset import Dataset

from dicomweb_gw.errors import PacsFailure, PacsTimeout, PacsUnavailable
from dicomweb_gw.model import FindReport, QueryLevel
from dicomweb_gw.pacs import cancelling, contexts
from dicomweb_gw.pacs.bridge import Cancelled
from dicomweb_gw.pacs.failures import Failures
from dicomweb_gw.pacs.find import Finder
from dicomweb_gw.settings import PacsNode

#: A regression (a C-CANCEL ignored forever) must fail, not hang the suite.
pytestmark = pytest.mark.timeout(30)

PENDING = 0xFF00
SUCCESS = 0x0000
CANCEL = 0xFE00

Response = tuple[Dataset, Dataset | None]


def _status(code: int) -> Dataset:
    status = Dataset()
    status.Status = code
    return status


def _match(number: int) -> Dataset:
    match = Dataset()
    match.QueryRetrieveLevel = "STUDY"
    match.StudyInstanceUID = f"1.2.3.{number}"
    return match


def _pending(number: int) -> Response:
    return _status(PENDING), _match(number)


@dataclass
class ScriptedAssociation:
    """Answers a C-FIND with ``script(assoc)``'s responses."""

    script: Callable[[ScriptedAssociation], Iterator[Response]]
    cancels: int = 0
    aborted: bool = False
    is_established: bool = True
    dimse_timeout: float | None = None
    accepted_contexts: list[Any] = field(
        default_factory=lambda: [SimpleNamespace(abstract_syntax=contexts.FIND_MODEL)])
    changed: threading.Event = field(default_factory=threading.Event)

    def send_c_find(self, query: Dataset, model: str, msg_id: int) -> Iterator[Response]:
        for response in self.script(self):
            if self.aborted:
                break
            yield response
        if self.aborted:
            yield Dataset(), None  # what pynetdicom yields once the association is gone

    def send_c_cancel(self, msg_id: int, query_model: str) -> None:
        self.cancels += 1
        self.changed.set()

    def abort(self) -> None:
        self.aborted = True
        self.is_established = False
        self.changed.set()


class OneAssociation:
    def __init__(self, assoc: ScriptedAssociation) -> None:
        self.assoc = assoc

    @contextmanager
    def pooled(self) -> Iterator[tuple[ScriptedAssociation, bool]]:
        yield self.assoc, False


def _finder(assoc: ScriptedAssociation, **node: Any) -> Finder:
    pacs = PacsNode(name="P", host="127.0.0.1", port=104, ae_title="PACS", **node)
    return Finder(pacs, OneAssociation(assoc), Failures(pacs, ae_title="GW"),  # type: ignore[arg-type]
                  message_id=lambda: 7)


def _responses(*responses: Response) -> Callable[[ScriptedAssociation], Iterator[Response]]:
    return lambda assoc: iter(responses)


def _find(finder: Finder, *, take: int | None = None) -> tuple[list[Dataset], FindReport]:
    """Run a STUDY C-FIND; with ``take``, the client has enough after that many matches."""
    report = FindReport()
    found: list[Dataset] = []

    def deliver(dataset: Dataset) -> None:
        if take is not None and len(found) >= take:
            raise Cancelled
        found.append(dataset)

    query = Dataset()
    query.QueryRetrieveLevel = QueryLevel.STUDY.value
    finder.find(query, deliver, stop=lambda: take is not None and len(found) >= take,
                report=report)
    return found, report


def _uids(found: list[Dataset]) -> list[str]:
    return [str(ds.StudyInstanceUID) for ds in found]


# --- Pending responses without an identifier ----------------------------------------------


def test_pending_responses_without_identifier_are_skipped_and_counted() -> None:
    only_bookkeeping = Dataset()
    only_bookkeeping.SpecificCharacterSet = "ISO_IR 100"
    only_bookkeeping.QueryRetrieveLevel = "STUDY"
    undecodable = _status(PENDING)  # pynetdicom yields it twice, with the same status
    assoc = ScriptedAssociation(_responses(
        (_status(PENDING), Dataset()), _pending(1), (_status(PENDING), only_bookkeeping),
        (undecodable, None), (undecodable, None), _pending(2), (_status(SUCCESS), None)))
    found, report = _find(_finder(assoc))
    assert _uids(found) == ["1.2.3.1", "1.2.3.2"]
    assert report.empty_pending == 3
    assert not report.limit_reached


# --- match limit ----------------------------------------------------------------------------


def test_out_of_resources_after_matches_is_the_match_limit() -> None:
    assoc = ScriptedAssociation(_responses(_pending(1), _pending(2), (_status(0xA700), None)))
    found, report = _find(_finder(assoc))
    assert _uids(found) == ["1.2.3.1", "1.2.3.2"]
    assert report.limit_reached


def test_out_of_resources_before_any_match_is_a_503() -> None:
    assoc = ScriptedAssociation(_responses((_status(PENDING), Dataset()),
                                           (_status(0xA700), None)))
    with pytest.raises(PacsUnavailable, match=r"PACS 'P': C-FIND refused: out of resources"):
        _find(_finder(assoc))


def test_unable_to_process_after_matches_stays_an_error() -> None:
    """0xCxxx says nothing about a limit: taking it for one would hide a fault."""
    assoc = ScriptedAssociation(_responses(_pending(1), (_status(0xC001), None)))
    with pytest.raises(PacsFailure, match=r"0xC001"):
        _find(_finder(assoc))


@pytest.mark.parametrize(("max_matches", "matches", "limited"),
                         [(2, 2, True), (2, 1, False), (0, 2, False), (2, 3, False)])
def test_success_after_exactly_max_matches_is_the_match_limit(
    max_matches: int, matches: int, limited: bool,
) -> None:
    assoc = ScriptedAssociation(_responses(*(_pending(n) for n in range(matches)),
                                           (_status(SUCCESS), None)))
    found, report = _find(_finder(assoc, max_matches=max_matches))
    assert len(found) == matches
    assert report.limit_reached is limited


@pytest.mark.parametrize(("final", "max_matches"), [(0xA700, 0), (SUCCESS, 2)])
def test_the_gateways_own_look_ups_do_not_take_a_cut_list(final: int, max_matches: int) -> None:
    """C-GET planning needs every series: a limited answer is an error there, not a plan."""
    assoc = ScriptedAssociation(_responses(_pending(1), _pending(2), (_status(final), None)))
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    with pytest.raises(PacsFailure if final == SUCCESS else PacsUnavailable):
        _finder(assoc, max_matches=max_matches).collect(query)


# --- stopping a C-FIND ----------------------------------------------------------------------


def _until_stopped(first: int, after_cancel: str) -> Callable[[ScriptedAssociation],
                                                                Iterator[Response]]:
    """``first`` matches, then more until a C-CANCEL, then as ``after_cancel`` says:
    "honour" (a Cancel response) or "ignore" (matches until aborted)."""
    def script(assoc: ScriptedAssociation) -> Iterator[Response]:
        number = 0
        while True:
            if assoc.cancels and after_cancel == "honour":
                yield _status(CANCEL), None
                return
            if number >= first:
                assoc.changed.wait(0.02)
            number += 1
            yield _pending(number)
    return script


@pytest.fixture
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cancelling, "CANCEL_GRACE_SECONDS", 0.1)


def test_a_c_cancel_honoured_ends_the_c_find() -> None:
    assoc = ScriptedAssociation(_until_stopped(5, "honour"))
    found, report = _find(_finder(assoc), take=2)
    assert len(found) == 2
    assert assoc.cancels == 1
    assert not assoc.aborted
    assert not report.limit_reached


@pytest.mark.usefixtures("short_grace")
def test_a_c_cancel_ignored_is_followed_by_an_abort() -> None:
    assoc = ScriptedAssociation(_until_stopped(5, "ignore"))
    found, _ = _find(_finder(assoc), take=2)
    assert len(found) == 2
    assert assoc.cancels == 1
    assert assoc.aborted


def test_cancel_abort_aborts_at_once() -> None:
    assoc = ScriptedAssociation(_until_stopped(5, "honour"))
    found, _ = _find(_finder(assoc, cancel="abort"), take=2)
    assert len(found) == 2
    assert assoc.cancels == 0
    assert assoc.aborted


@pytest.mark.parametrize(("cancel", "after_cancel"),
                         [("c-cancel", "honour"), ("c-cancel", "ignore"), ("abort", "ignore")])
@pytest.mark.usefixtures("short_grace")
def test_total_timeout_stops_a_long_c_find_with_a_504(cancel: str, after_cancel: str) -> None:
    assoc = ScriptedAssociation(_until_stopped(0, after_cancel))
    finder = _finder(assoc, total_timeout=0.2, cancel=cancel)
    with pytest.raises(PacsTimeout) as caught:
        _find(finder)
    assert str(caught.value) == ("PACS 'P': C-FIND ran longer than 0.2 s and was cancelled "
                                 "(total_timeout = 0.2)")
    assert assoc.cancels == (1 if cancel == "c-cancel" else 0)
    assert assoc.aborted is (after_cancel == "ignore")


def test_the_c_find_waits_idle_timeout_for_each_message() -> None:
    assoc = ScriptedAssociation(_responses(_pending(1), (_status(SUCCESS), None)))
    _find(_finder(assoc, timeout=30.0, idle_timeout=7.0))
    assert assoc.dimse_timeout == 7.0


def test_silence_is_an_idle_timeout_naming_the_setting() -> None:
    assoc = ScriptedAssociation(_responses(_pending(1), (Dataset(), None)))
    finder = _finder(assoc, idle_timeout=0.0)  # any silence is long enough
    with pytest.raises(PacsTimeout) as caught:
        _find(finder)
    assert str(caught.value) == ("PACS 'P': C-FIND got no response within 0 s "
                                 "(idle_timeout = 0)")


def test_an_abort_by_the_pacs_is_no_timeout() -> None:
    assoc = ScriptedAssociation(_responses(_pending(1), (Dataset(), None)))
    with pytest.raises(PacsFailure, match="aborted the association during C-FIND"):
        _find(_finder(assoc, idle_timeout=60.0))
