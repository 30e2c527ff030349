"""Unit tests for dicomweb_gw.http.wado_uri: finding an object named by objectUID alone.

The same look-up against dcmqrscp and Orthanc is in test_integration_wado_uri.py;
these cover what those two PACS do not do: refuse the query, or ignore its keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import cast

import pytest
from pydicom.dataset import Dataset

from dicomweb_gw.errors import BadRequest, NotFound, PacsFailure
from dicomweb_gw.http.wado_uri import ObjectUids, locate_instance, parse_wado_uri
from dicomweb_gw.model import QueryLevel, RetrieveKeys
from dicomweb_gw.pacs.protocol import PacsClient

OBJECT = "1.2.3.3"


def _match(study: str, series: str, instance: str = OBJECT) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, instance
    return ds


@dataclass
class FindOnlyPacs:
    """Answers C-FIND with ``matches``, or fails it with ``failure``."""

    matches: list[Dataset] = field(default_factory=list)
    failure: str | None = None
    name: str = "fake"
    queries: list[tuple[QueryLevel, Dataset]] = field(default_factory=list)

    async def find(self, level: QueryLevel, identifier: Dataset) -> AsyncGenerator[Dataset, None]:
        self.queries.append((level, identifier))
        if self.failure is not None:
            raise PacsFailure(self.name, self.failure)
        for match in self.matches:
            yield match


def _locate(pacs: FindOnlyPacs, uids: ObjectUids) -> RetrieveKeys:
    return asyncio.run(locate_instance(cast(PacsClient, pacs), uids))


def test_one_image_level_query_with_the_parents_as_return_keys() -> None:
    pacs = FindOnlyPacs([_match("1.2.1", "1.2.2")])
    assert _locate(pacs, ObjectUids(OBJECT)) == RetrieveKeys("1.2.1", "1.2.2", OBJECT)
    ((level, query),) = pacs.queries
    assert level is QueryLevel.IMAGE
    assert (query.StudyInstanceUID, query.SeriesInstanceUID, query.SOPInstanceUID) == (
        "", "", OBJECT)


def test_a_given_parent_is_a_matching_key() -> None:
    pacs = FindOnlyPacs([_match("1.2.1", "1.2.2")])
    assert _locate(pacs, ObjectUids(OBJECT, study_uid="1.2.1")).series_uid == "1.2.2"
    assert pacs.queries[0][1].StudyInstanceUID == "1.2.1"


def test_matches_of_other_objects_are_passed_over() -> None:
    # A PACS that ignores a key answers with everything at that level.
    pacs = FindOnlyPacs([_match("1.2.9", "1.2.8", "1.2.7"), _match("1.2.6", "1.2.5"),
                         _match("1.2.1", "1.2.2")])
    assert _locate(pacs, ObjectUids(OBJECT, study_uid="1.2.1")) == RetrieveKeys(
        "1.2.1", "1.2.2", OBJECT)


def test_not_there_is_404_naming_what_the_link_gave() -> None:
    with pytest.raises(NotFound, match=rf"^instance {OBJECT} in study 1\.2\.1 not found on "
                                       "PACS 'fake'$"):
        _locate(FindOnlyPacs([_match("1.2.6", "1.2.5")]), ObjectUids(OBJECT, study_uid="1.2.1"))


def test_a_pacs_that_refuses_the_query_asks_for_the_parents() -> None:
    pacs = FindOnlyPacs(failure="C-FIND failed with status 0xA900")
    with pytest.raises(BadRequest, match="give studyUID and seriesUID") as refused:
        _locate(pacs, ObjectUids(OBJECT))
    assert "0xA900" in refused.value.message


@pytest.mark.parametrize(("params", "expected"), [
    ({"objectUID": OBJECT}, ObjectUids(OBJECT)),
    ({"objectUID": OBJECT, "studyUID": "", "seriesUID": ""}, ObjectUids(OBJECT)),
    ({"objectUID": OBJECT, "seriesUID": "1.2.2"}, ObjectUids(OBJECT, series_uid="1.2.2")),
    ({"objectUID": OBJECT, "studyUID": "1.2.1", "seriesUID": "1.2.2"},
     ObjectUids(OBJECT, "1.2.1", "1.2.2")),
])
def test_parents_may_be_left_out(params: dict[str, str], expected: ObjectUids) -> None:
    assert parse_wado_uri({"requestType": "WADO", **params}).object_uids == expected


@pytest.mark.parametrize(("params", "words"), [
    ({"studyUID": "1.2.1"}, "objectUID is required"),
    ({"objectUID": OBJECT, "studyUID": "1.2.x"}, "studyUID '1.2.x'"),
])
def test_uids_still_checked(params: dict[str, str], words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        parse_wado_uri({"requestType": "WADO", **params})
