"""An instance is served only under the study and series it belongs to (issue #14.1).

A PACS matches a retrieve on its lowest-level key, so without a check in the
gateway ``/studies/{any permitted study}/series/.../instances/{I}`` served I:
a bypass of any authorisation that goes by study. Every resource under an
instance, and series metadata, is asked with a wrong parent, cold (the
instance never cached) and warm (cached through its right path), on every
kind of node the suite has.
"""

from __future__ import annotations

import httpx
import pytest

from corpus import Corpus
from gateway_fixtures import RunningGateway

pytestmark = pytest.mark.pacs

ANY = "*/*"
INSTANCE = 'multipart/related; type="application/dicom"; transfer-syntax=*'
FRAME = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
JSON = "application/dicom+json"


def _wrong_parent_requests(corpus: Corpus) -> tuple[str, list[tuple[str, str]], list[str]]:
    """(the study to purge, [(wrong path, accept)], [right paths that warm the cache])."""
    study = corpus.study("ct_small")
    other_study = corpus.study("mr_implicit").study_uid
    series, other_series = study.series[-1], study.series[0]
    sop = series.instances[0].sop_instance_uid
    right = f"/studies/{study.study_uid}/series/{series.series_uid}/instances/{sop}"
    under_other_study = f"/studies/{other_study}/series/{series.series_uid}/instances/{sop}"
    under_other_series = (f"/studies/{study.study_uid}/series/{other_series.series_uid}"
                          f"/instances/{sop}")
    wrong: list[tuple[str, str]] = []
    for path in (under_other_study, under_other_series):
        wrong += [
            (path, INSTANCE),
            (f"{path}/metadata", JSON),
            (f"{path}/frames/1", FRAME),
            (f"{path}/rendered", "image/jpeg"),
            (f"{path}/bulkdata/7FE00010", FRAME),
        ]
    wrong.append((f"/studies/{other_study}/series/{series.series_uid}/metadata", JSON))
    wrong.append((f"/studies/{other_study}/series/{series.series_uid}", INSTANCE))
    warm = [right, f"{right}/metadata", f"{right}/frames/1",
            f"/studies/{study.study_uid}/series/{series.series_uid}/metadata"]
    return study.study_uid, wrong, warm


@pytest.mark.parametrize("node", ["dcmqrscp", "orthanc", "orthanc-move"])
def test_an_instance_under_the_wrong_study_or_series_is_404(
    gateway: RunningGateway, corpus: Corpus, node: str
) -> None:
    study_uid, wrong, warm = _wrong_parent_requests(corpus)
    base = gateway.dicomweb(node)
    with httpx.Client(timeout=60) as client:
        purged = client.delete(f"{gateway.url}/pacs/{node}/cache/studies/{study_uid}")
        assert purged.status_code == 200
        for state in ("cold", "warm"):
            if state == "warm":
                for path in warm:
                    assert client.get(base + path, headers={"Accept": ANY}).status_code == 200
            for path, accept in wrong:
                response = client.get(base + path, headers={"Accept": accept})
                assert response.status_code == 404, (
                    f"{state} {path}: {response.status_code} {response.text[:200]}")
                assert b"DICM" not in response.content, f"{state} {path} streamed an instance"
                assert "not found" in response.text, response.text
