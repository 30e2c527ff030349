"""QIDO-RS against a quirky PACS, through a real gateway: the search semantics of issue #17.

A match limit becomes the matches received plus ``Warning: 299`` (PS3.18 8.3.4),
``max_matches`` splits a broad study search by StudyDate so that every study comes
back, a hierarchical-only PACS is walked level by level, and the keys a PACS
ignores are matched by the gateway unless the node's ``post_filter`` is off.
(What the C-FIND itself does with a match limit is ``tests/test_quirks_find.py``.)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.dataset import Dataset

from quirky_pacs import NODE, Quirks, QuirkyPacs, SampleStudy, quirky_gateway, sample_studies

pytestmark = pytest.mark.timeout(120)

JSON = {"Accept": "application/dicom+json"}
STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"
PATIENT_NAME, MODALITY = "00100010", "00080060"
MORE_RESULTS = ("The number of results exceeded the maximum supported by the server. "
                "Additional results can be requested.")


def _files(studies: list[SampleStudy]) -> list[Path]:
    return [path for study in studies for path in study.paths]


def _search(base: str, path: str, params: Mapping[str, str] | None = None) -> httpx.Response:
    return httpx.get(f"{base}{path}", params=params, headers=JSON, timeout=60)


def _values(response: httpx.Response, tag: str) -> list[str]:
    assert response.status_code == 200, response.text
    return [item[tag]["Value"][0] for item in response.json()]


@pytest.fixture
def studies(tmp_path: Path) -> list[SampleStudy]:
    return sample_studies(tmp_path, 4)


# --- match limit: the matches received and a Warning -------------------------------------------


@pytest.mark.parametrize(("status", "node", "path"), [
    # Refused (0xA700) says so itself; truncated is recognised by the node's max_matches.
    # SERIES level: a study search would be split by StudyDate instead (below).
    ("refused", {}, "/studies"),
    ("refused", {}, "/series"),
    ("truncated", {"max_matches": 3}, "/series"),
])
def test_a_match_limit_gives_the_matches_received_and_a_warning(
    tmp_path: Path, studies: list[SampleStudy], status: Any, node: dict[str, object],
    path: str,
) -> None:
    quirks = Quirks(match_limit=3, match_limit_status=status)
    with quirky_gateway(tmp_path, _files(studies), quirks=quirks, node=node) as setup:
        response = _search(setup.gateway.dicomweb(), path)
    assert response.status_code == 200, response.text
    assert len(response.json()) == 3
    warning = response.headers["warning"]
    assert warning.startswith("299 127.0.0.1: ")
    assert MORE_RESULTS in warning
    assert f"PACS '{NODE}' stopped at its match limit" in warning


# --- max_matches: a broad study search split by StudyDate ------------------------------------


@pytest.mark.parametrize("status", ["refused", "truncated"])
def test_max_matches_splits_a_broad_study_search_and_returns_every_study(
    tmp_path: Path, status: Any,
) -> None:
    studies = sample_studies(tmp_path, 10)  # StudyDate 2020-01-01 .. 2020-01-10
    quirks = Quirks(match_limit=4, match_limit_status=status)
    with quirky_gateway(tmp_path, _files(studies), quirks=quirks,
                        node={"max_matches": 4}) as setup:
        response = _search(setup.gateway.dicomweb(), "/studies")
        page = _search(setup.gateway.dicomweb(), "/studies", {"offset": "3", "limit": "4"})
        finds = len(setup.pacs.finds)
    uids = _values(response, STUDY_UID)
    assert sorted(uids) == sorted(study.study_uid for study in studies)
    assert "warning" not in response.headers
    assert _values(page, STUDY_UID) == uids[3:7]  # the same order, page by page
    assert page.headers["warning"] == f'299 127.0.0.1: "{MORE_RESULTS}"'
    assert finds <= 2 * 64


# --- hierarchical only: walked level by level ---------------------------------------------------


def _relational_finds(pacs: QuirkyPacs) -> list[Dataset]:
    """The SERIES/IMAGE C-FINDs the PACS got without one UID for every parent."""
    parents = {"SERIES": ("StudyInstanceUID",),
               "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID")}
    return [ds for ds in pacs.finds if any(
        not str(ds.get(keyword, "") or "") or "\\" in str(ds.get(keyword))
        for keyword in parents.get(str(ds.QueryRetrieveLevel), ()))]


@pytest.mark.parametrize("relational", [None, False])
@pytest.mark.parametrize("what", ["all series", "all instances", "study's instances"])
def test_a_hierarchical_only_pacs_is_walked_level_by_level(
    tmp_path: Path, studies: list[SampleStudy], what: str, relational: bool | None,
) -> None:
    ct = [study for study in studies if study.modality == "CT"]
    path, params, tag, expected = {
        "all series": ("/series", {"Modality": "CT"}, SERIES_UID,
                       {uid for study in ct for uid in study.series_uids}),
        "all instances": ("/instances", {}, SOP_UID, None),
        "study's instances": (f"/studies/{studies[1].study_uid}/instances", {}, SOP_UID, None),
    }[what]
    quirks = Quirks(hierarchical_only=True)
    with quirky_gateway(tmp_path, _files(studies), quirks=quirks,
                        node={"relational": relational}) as setup:
        response = _search(setup.gateway.dicomweb(), path, params)
        again = _search(setup.gateway.dicomweb(), path, params)
        relational_finds = _relational_finds(setup.pacs)
    found = _values(response, tag)
    assert len(found) == len(set(found))
    if expected is not None:
        assert set(found) == expected
    else:
        scope = studies[1:2] if what == "study's instances" else studies
        assert len(found) == sum(len(study.paths) for study in scope)
    assert _values(again, tag) == found
    # auto asks once per level, then remembers; relational = false never asks.
    asked_levels = {"all series": 1, "all instances": 2, "study's instances": 1}[what]
    assert len(relational_finds) == (asked_levels if relational is None else 0)
    items = response.json()
    assert all(item[SERIES_UID]["Value"] for item in items)
    assert all(item[MODALITY]["Value"] for item in items)
    if what != "study's instances":  # All Series and All Instances carry the study's
        assert all(item[PATIENT_NAME]["Value"] for item in items)


# --- keys the PACS ignores: the gateway's post-filter ------------------------------------------


@pytest.mark.parametrize("post_filter", [True, False])
def test_keys_the_pacs_ignores_are_matched_by_the_gateway_unless_post_filter_is_off(
    tmp_path: Path, studies: list[SampleStudy], post_filter: bool,
) -> None:
    quirks = Quirks(ignored_keys=("ModalitiesInStudy", "StudyDescription"))
    with quirky_gateway(tmp_path, _files(studies), quirks=quirks,
                        node={"post_filter": post_filter}) as setup:
        response = _search(setup.gateway.dicomweb(), "/studies",
                           {"ModalitiesInStudy": "CT", "StudyDescription": "Ch*"})
        described = _search(setup.gateway.dicomweb(), "/studies",
                            {"StudyDescription": "*ead"})
    uids = set(_values(response, STUDY_UID))
    if post_filter:
        assert uids == {s.study_uid for s in studies
                        if s.modality == "CT" and s.description == "Chest"}
        assert set(_values(described, STUDY_UID)) == {
            s.study_uid for s in studies if s.description == "Head"}
    else:  # the PACS is trusted, as it answered
        assert uids == {s.study_uid for s in studies}
        assert len(_values(described, STUDY_UID)) == len(studies)
