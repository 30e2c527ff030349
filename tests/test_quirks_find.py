"""C-FIND against a quirky PACS, through a real gateway: what QIDO clients get.

Each test names the quirk (a ``Quirks`` switch of ``tests/quirky_pacs.py``) and
what the gateway must make of it. The ``Warning`` header of a match limit is
the QIDO layer's (``tests/test_dicomweb_qido.py``); here only the matches and
the status count.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from dicomweb_gw.pacs import cancelling
from quirky_pacs import (
    CHINESE_DESCRIPTION,
    CHINESE_NAME,
    LATIN1_DESCRIPTION,
    LATIN1_NAME,
    Quirks,
    SampleStudy,
    chinese_study,
    latin1_study,
    quirky_gateway,
    sample_studies,
)

pytestmark = pytest.mark.timeout(90)

JSON = {"Accept": "application/dicom+json"}
STUDY_UID = "0020000D"
PATIENT_NAME = "00100010"
STUDY_DESCRIPTION = "00081030"


def _files(studies: list[SampleStudy]) -> list[Path]:
    return [path for study in studies for path in study.paths]


def _search(base: str, path: str, params: Mapping[str, str] | None = None,
            timeout: float = 30) -> httpx.Response:
    return httpx.get(f"{base}{path}", params=params, headers=JSON, timeout=timeout)


def _study_uids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item[STUDY_UID]["Value"][0] for item in response.json()]


@pytest.fixture
def studies(tmp_path: Path) -> list[SampleStudy]:
    return sample_studies(tmp_path, 4)


# --- Pending responses without an identifier ----------------------------------------------


def test_pending_responses_without_identifier_are_skipped(
    tmp_path: Path, studies: list[SampleStudy],
) -> None:
    quirks = Quirks(pending_without_identifier=True)
    with quirky_gateway(tmp_path, _files(studies), quirks=quirks) as setup:
        uids = _study_uids(_search(setup.gateway.dicomweb(), "/studies"))
        one = _study_uids(_search(setup.gateway.dicomweb(), "/studies",
                                  {"PatientID": studies[1].patient_id}))
    assert sorted(uids) == sorted(study.study_uid for study in studies)
    assert one == [studies[1].study_uid]


# --- match limit ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["refused", "truncated"])
def test_a_match_limit_returns_the_matches_received(
    tmp_path: Path, studies: list[SampleStudy], status: Any,
) -> None:
    """0xA700 (refused) after 2 matches, or Success after 2 (truncated): 200 with the 2.
    (Truncated passed before the fix too: it pins the behaviour.)"""
    quirks = Quirks(match_limit=2, match_limit_status=status)
    with quirky_gateway(tmp_path, _files(studies), quirks=quirks) as setup:
        uids = _study_uids(_search(setup.gateway.dicomweb(), "/studies"))
    assert len(uids) == 2
    assert set(uids) <= {study.study_uid for study in studies}


def test_a_match_limit_with_max_matches_configured_is_no_error(
    tmp_path: Path, studies: list[SampleStudy],
) -> None:
    """``max_matches`` set to the PACS's limit: never a 502/503, only real studies."""
    quirks = Quirks(match_limit=2, match_limit_status="truncated")
    with quirky_gateway(tmp_path, _files(studies), quirks=quirks,
                        node={"max_matches": 2}) as setup:
        uids = _study_uids(_search(setup.gateway.dicomweb(), "/studies"))
    assert len(uids) >= 2
    assert len(set(uids)) == len(uids)
    assert set(uids) <= {study.study_uid for study in studies}


def test_out_of_resources_before_any_match_stays_an_error(
    tmp_path: Path, studies: list[SampleStudy],
) -> None:
    """Nothing to return: the refusal is the answer (503, retry later). Pins the behaviour."""
    quirks = Quirks(match_limit=0, match_limit_status="refused")
    with quirky_gateway(tmp_path, _files(studies), quirks=quirks) as setup:
        response = _search(setup.gateway.dicomweb(), "/studies")
    assert response.status_code == 503, response.text
    assert "PACS 'quirky'" in response.json()["message"]
    assert "0xA700" in response.json()["message"]


# --- character sets -------------------------------------------------------------------------


def _texts(response: httpx.Response) -> list[tuple[str, str]]:
    assert response.status_code == 200, response.text
    return [(item[PATIENT_NAME]["Value"][0]["Alphabetic"], item[STUDY_DESCRIPTION]["Value"][0])
            for item in response.json()]


@pytest.mark.parametrize("declared", [None, "ISO_IR 6", "ISO_IR 192"])
def test_latin1_bytes_without_a_usable_charset_are_read_as_latin1(
    tmp_path: Path, declared: str | None,
) -> None:
    """Latin-1 names with no (0008,0005), ISO_IR 6 (ASCII) or a wrong ISO_IR 192: the
    default fallback_charset (ISO_IR 100) reads them. None and ISO_IR 6 passed before
    the fix too (pydicom reads both as Latin-1): they pin the behaviour."""
    quirks = Quirks(name_encoding="latin_1", declared_charset=declared)
    with quirky_gateway(tmp_path, latin1_study(tmp_path), quirks=quirks) as setup:
        response = _search(setup.gateway.dicomweb(), "/studies",
                           {"includefield": "StudyDescription"})
    assert _texts(response) == [(LATIN1_NAME, LATIN1_DESCRIPTION)]


def test_gbk_bytes_without_a_charset_are_read_with_the_node_fallback(tmp_path: Path) -> None:
    quirks = Quirks(name_encoding="gbk", declared_charset=None)
    with quirky_gateway(tmp_path, chinese_study(tmp_path), quirks=quirks,
                        node={"fallback_charset": "GB18030"}) as setup:
        response = _search(setup.gateway.dicomweb(), "/studies",
                           {"includefield": "StudyDescription"})
    assert _texts(response) == [(CHINESE_NAME, CHINESE_DESCRIPTION)]


def test_a_correct_charset_is_kept_whatever_the_fallback(tmp_path: Path) -> None:
    """GBK bytes declared GBK: the declaration wins over a Latin-1 fallback. Pins it."""
    quirks = Quirks(name_encoding="gbk", declared_charset="GBK")
    with quirky_gateway(tmp_path, chinese_study(tmp_path), quirks=quirks) as setup:
        response = _search(setup.gateway.dicomweb(), "/studies",
                           {"includefield": "StudyDescription"})
    assert _texts(response) == [(CHINESE_NAME, CHINESE_DESCRIPTION)]


# --- C-CANCEL ignored -----------------------------------------------------------------------


@pytest.fixture
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cancelling, "CANCEL_GRACE_SECONDS", 1.0)


@pytest.mark.usefixtures("short_grace")
@pytest.mark.parametrize("cancel", ["c-cancel", "abort"])
def test_a_c_find_whose_cancel_is_ignored_does_not_hold_the_association(
    tmp_path: Path, cancel: str,
) -> None:
    """The PACS keeps sending its 16 matches, one a second, after the gateway's C-CANCEL
    (limit=1 is reached at the second). The client has its answer at once; the
    association, the node's only one, is aborted after the grace period (at once with
    ``cancel = "abort"``) so the next search gets it, instead of waiting the ~16 s
    the PACS would take, longer than this client waits."""
    studies = sample_studies(tmp_path, 16)
    quirks = Quirks(ignore_cancel=True, find_match_delay=1.0)
    with quirky_gateway(tmp_path, _files(studies), quirks=quirks,
                        node={"max_associations": 1, "cancel": cancel}) as setup:
        base = setup.gateway.dicomweb()
        first = _study_uids(_search(base, "/studies", {"limit": "1"}))
        # Starts while the PACS is still sending the first search's matches.
        second = _study_uids(_search(base, "/studies", {"PatientID": studies[3].patient_id},
                                     timeout=10))
        cancels = setup.pacs.cancels_received
    assert len(first) == 1
    assert second == [studies[3].study_uid]
    assert cancels == (1 if cancel == "c-cancel" else 0)


# --- timeouts -------------------------------------------------------------------------------


def test_a_c_find_longer_than_total_timeout_is_cancelled_with_504(tmp_path: Path) -> None:
    studies = sample_studies(tmp_path, 10)
    quirks = Quirks(find_match_delay=1.0)  # 10 matches: about 9 s
    with quirky_gateway(tmp_path, _files(studies), quirks=quirks,
                        node={"total_timeout": 2.0}) as setup:
        response = _search(setup.gateway.dicomweb(), "/studies")
        cancels = setup.pacs.cancels_received
    assert response.status_code == 504, response.text
    message = response.json()["message"]
    assert message.startswith("PACS 'quirky': C-FIND")
    assert "total_timeout = 2" in message
    assert cancels == 1


def test_a_c_find_silent_longer_than_idle_timeout_gives_504_naming_it(tmp_path: Path) -> None:
    studies = sample_studies(tmp_path, 3)
    quirks = Quirks(find_match_delay=6.0)  # silent 6 s after the first match
    with quirky_gateway(tmp_path, _files(studies), quirks=quirks,
                        node={"idle_timeout": 1.0}) as setup:
        response = _search(setup.gateway.dicomweb(), "/studies")
    assert response.status_code == 504, response.text
    message = response.json()["message"]
    assert message.startswith("PACS 'quirky': C-FIND")
    assert "idle_timeout = 1" in message


def test_pending_responses_restart_the_idle_timeout(tmp_path: Path) -> None:
    """8 matches 0.5 s apart take longer than idle_timeout (2 s) in all, never between
    two: the C-FIND completes. Passed before the fix too: it pins the behaviour."""
    studies = sample_studies(tmp_path, 8)
    quirks = Quirks(find_match_delay=0.5)
    with quirky_gateway(tmp_path, _files(studies), quirks=quirks,
                        node={"idle_timeout": 2.0}) as setup:
        uids = _study_uids(_search(setup.gateway.dicomweb(), "/studies"))
    assert sorted(uids) == sorted(study.study_uid for study in studies)
