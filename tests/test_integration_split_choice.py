"""Whether a retrieve is split across associations: only when round trips bound it.

On loopback the gateway's CPU is the bound: a split there was measured slower
than one request, and its listing C-FIND delays the first instance. The
gateway times its round trips to the PACS (A-RELEASE, ``pacs/round_trips.py``)
and splits only from ``retrieve_split_above`` on (``parallel_plan.link_bound``).
Here the measurement is injected: no timing is asserted.
"""

from __future__ import annotations

import copy
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from dicomweb_gw.pacs import round_trips
from multipart_helpers import parse_multipart
from quirky_pacs import quirky_gateway
from test_pacs_parallel import busy_first_moment
from testdata import pydicom_file

pytestmark = pytest.mark.timeout(120)

DICOM = 'multipart/related; type="application/dicom"'


def _study(folder: Path, count: int = 16) -> tuple[str, list[Path]]:
    template = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    study_uid, series_uid = generate_uid(), generate_uid()
    paths = []
    for number in range(1, count + 1):
        ds = copy.deepcopy(template)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = study_uid, series_uid, number
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return study_uid, paths


def _retrieve(url: str, count: int) -> None:
    response = httpx.get(url, headers={"Accept": DICOM}, timeout=60)
    assert response.status_code == 200, response.text
    assert len(parse_multipart(response.headers["content-type"], response.content)) == count


@pytest.mark.parametrize("retrieve", ["c-get", "c-move"])
def test_on_a_fast_link_a_study_is_one_request_with_no_listing(
        tmp_path: Path, retrieve: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback: round trips well under ``retrieve_split_above`` (5 ms), though the
    first one timed reads 50 ms, as on a busy machine (it did once in CI)."""
    busy_first_moment(monkeypatch)
    study_uid, paths = _study(tmp_path / "data")
    with quirky_gateway(tmp_path, paths, retrieve=retrieve) as setup:
        _retrieve(f"{setup.gateway.dicomweb()}/studies/{study_uid}", len(paths))
        pacs = setup.pacs
    assert [str(identifier.QueryRetrieveLevel) for _, identifier in pacs.retrieves] == ["STUDY"]
    # No IMAGE-level listing before the retrieve: the first instance waits for nothing.
    assert not [f for f in pacs.finds if str(f.QueryRetrieveLevel) == "IMAGE"
                and "SOPInstanceUID" in f and "InstanceNumber" in f]


@pytest.mark.parametrize("retrieve", ["c-get", "c-move"])
def test_on_a_slow_link_a_study_is_split(tmp_path: Path, retrieve: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A 20 ms round trip (a 10 ms link each way): the split."""
    monkeypatch.setattr(round_trips.RoundTrips, "best", property(lambda self: 0.02))
    study_uid, paths = _study(tmp_path / "data")
    with quirky_gateway(tmp_path, paths, retrieve=retrieve) as setup:
        _retrieve(f"{setup.gateway.dicomweb()}/studies/{study_uid}", len(paths))
        pacs = setup.pacs
    levels = [str(identifier.QueryRetrieveLevel) for _, identifier in pacs.retrieves]
    assert levels == ["IMAGE"] * len(levels)
    assert len(levels) >= 4


def test_split_above_zero_always_splits(tmp_path: Path) -> None:
    study_uid, paths = _study(tmp_path / "data")
    with quirky_gateway(tmp_path, paths, node={"retrieve_split_above": 0}) as setup:
        _retrieve(f"{setup.gateway.dicomweb()}/studies/{study_uid}", len(paths))
        pacs = setup.pacs
    assert {str(identifier.QueryRetrieveLevel) for _, identifier in pacs.retrieves} == {"IMAGE"}
