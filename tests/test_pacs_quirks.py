"""Per-node quirk switches: ``query_model`` and ``move_originator``, against the demo PACS.

The demo PACS is subclassed to see what the gateway asked of it: which Q/R
model each request came on, and how many C-MOVEs it was serving at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pynetdicom.events import Event

from corpus import Corpus, StudyInfo
from demo_gateway import demo_gateway
from dicomweb_gw.demo import DemoPacs, Fault
from dicomweb_gw.settings import SettingsError, load_settings
from multipart_helpers import parse_multipart

DICOM = 'multipart/related; type="application/dicom"'
PATIENT_ROOT = {"1.2.840.10008.5.1.4.1.2.1.1", "1.2.840.10008.5.1.4.1.2.1.2",
                "1.2.840.10008.5.1.4.1.2.1.3"}
STUDY_ROOT = {"1.2.840.10008.5.1.4.1.2.2.1", "1.2.840.10008.5.1.4.1.2.2.2",
              "1.2.840.10008.5.1.4.1.2.2.3"}


class WatchedPacs(DemoPacs):
    """Records the Q/R model of every request and the most C-MOVEs served at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.models: list[str] = []
        self.moves_at_once = 0
        self.most_moves_at_once = 0
        self._lock = threading.Lock()

    def _on_find(self, event: Event) -> Iterator[Any]:
        self.models.append(str(event.request.AffectedSOPClassUID))
        yield from super()._on_find(event)

    def _on_move(self, event: Event) -> Iterator[Any]:
        self.models.append(str(event.request.AffectedSOPClassUID))
        with self._lock:
            self.moves_at_once += 1
            self.most_moves_at_once = max(self.most_moves_at_once, self.moves_at_once)
        try:
            yield from super()._on_move(event)  # pynetdicom drains it: the whole move
        finally:
            with self._lock:
                self.moves_at_once -= 1


def _files(study: StudyInfo) -> list[Path]:
    return [instance.path for instance in study.instances]


def _sop_uids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [str(part.dataset().SOPInstanceUID)
            for part in parse_multipart(response.headers["content-type"], response.content)]


async def _retrieve_together(urls: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60, headers={"Accept": DICOM}) as client:
        return list(await asyncio.gather(*(client.get(url) for url in urls)))


# --- query_model ------------------------------------------------------------------------


def test_query_model_patient_is_used_although_study_root_is_offered(
    tmp_path: Path, corpus: Corpus,
) -> None:
    study = corpus.study("ct_small")
    with demo_gateway(tmp_path, _files(study), pacs_class=WatchedPacs, retrieve="c-move",
                      node={"query_model": "patient"}) as setup:
        base = setup.gateway.dicomweb()
        found = httpx.get(f"{base}/studies", params={"StudyInstanceUID": study.study_uid},
                          timeout=30)
        retrieved = httpx.get(f"{base}/studies/{study.study_uid}", headers={"Accept": DICOM},
                              timeout=60)
    assert [s["0020000D"]["Value"][0] for s in found.json()] == [study.study_uid]
    assert sorted(_sop_uids(retrieved)) == sorted(i.sop_instance_uid for i in study.instances)
    pacs = setup.pacs
    assert isinstance(pacs, WatchedPacs)
    assert pacs.models
    assert set(pacs.models) <= PATIENT_ROOT


def test_auto_prefers_study_root(tmp_path: Path, corpus: Corpus) -> None:
    study = corpus.study("ct_small")
    with demo_gateway(tmp_path, _files(study), pacs_class=WatchedPacs) as setup:
        assert httpx.get(f"{setup.gateway.dicomweb()}/studies", timeout=30).status_code == 200
    assert isinstance(setup.pacs, WatchedPacs)
    assert setup.pacs.models
    assert set(setup.pacs.models) <= STUDY_ROOT


def test_query_model_study_does_not_fall_back_to_patient_root(tmp_path: Path,
                                                              corpus: Corpus) -> None:
    study = corpus.study("ct_small")
    with demo_gateway(tmp_path, _files(study), fault=Fault(patient_root_only=True),
                      node={"query_model": "study"}) as setup:
        response = httpx.get(f"{setup.gateway.dicomweb()}/studies", timeout=30)
    assert response.status_code == 502
    message = response.json()["message"]
    assert "does not accept Study Root C-FIND" in message
    assert 'query_model = "study"' in message


# --- move_originator ---------------------------------------------------------------------


def test_moves_without_originator_run_one_at_a_time_and_get_their_own_instances(
    tmp_path: Path, corpus: Corpus,
) -> None:
    study = corpus.study("ct_small")
    # The stall keeps each move open long enough that unserialised ones would overlap.
    with demo_gateway(tmp_path, _files(study), pacs_class=WatchedPacs, retrieve="c-move",
                      fault=Fault(omit_move_originator=True, stall_seconds=0.5),
                      node={"move_originator": False}) as setup:
        base = setup.gateway.dicomweb()
        first, second = study.series[0], study.series[1]
        # A series and the study holding it: UID routing alone would hand the
        # series' instances to both moves.
        responses = asyncio.run(_retrieve_together([
            f"{base}/studies/{study.study_uid}/series/{first.series_uid}",
            f"{base}/studies/{study.study_uid}/series/{second.series_uid}",
            f"{base}/studies/{study.study_uid}",
        ]))
    assert sorted(_sop_uids(responses[0])) == sorted(i.sop_instance_uid for i in first.instances)
    assert sorted(_sop_uids(responses[1])) == sorted(i.sop_instance_uid for i in second.instances)
    assert sorted(_sop_uids(responses[2])) == sorted(i.sop_instance_uid for i in study.instances)
    assert isinstance(setup.pacs, WatchedPacs)
    assert setup.pacs.most_moves_at_once == 1


def test_moves_with_originator_still_run_in_parallel(tmp_path: Path, corpus: Corpus) -> None:
    # The other side of the switch: the default does not serialise (the test above can fail).
    study = corpus.study("ct_small")
    with demo_gateway(tmp_path, _files(study), pacs_class=WatchedPacs, retrieve="c-move",
                      fault=Fault(stall_seconds=0.5)) as setup:
        base = setup.gateway.dicomweb()
        asyncio.run(_retrieve_together([
            f"{base}/studies/{study.study_uid}/series/{series.series_uid}"
            for series in study.series]))
    assert isinstance(setup.pacs, WatchedPacs)
    assert setup.pacs.most_moves_at_once == 2


# --- settings ---------------------------------------------------------------------------


def _node_settings(tmp_path: Path, extra: str) -> Any:
    config = tmp_path / "gw.toml"
    config.write_text('[pacs.main]\nhost = "pacs.example.org"\nport = 104\n'
                      f'ae_title = "MAINPACS"\n{extra}\n', encoding="utf-8")
    return load_settings(environ={}, config_file=config).node("main")


def test_quirks_default_to_auto_and_true(tmp_path: Path) -> None:
    node = _node_settings(tmp_path, "")
    assert (node.query_model, node.move_originator) == ("auto", True)


@pytest.mark.parametrize(("extra", "query_model", "move_originator"), [
    ('query_model = "patient"\nmove_originator = false', "patient", False),
    ('query_model = "Study"\nmove_originator = true', "study", True),
])
def test_quirks_from_toml(tmp_path: Path, extra: str, query_model: str,
                          move_originator: bool) -> None:
    node = _node_settings(tmp_path, extra)
    assert (node.query_model, node.move_originator) == (query_model, move_originator)


@pytest.mark.parametrize(("extra", "named"), [
    ('query_model = "series"', "query_model"),
    ("query_model = 1", "query_model"),
    ('move_originator = "sometimes"', "move_originator"),
    ("move_originator = 0", "move_originator"),
])
def test_invalid_quirks_name_node_and_key(tmp_path: Path, extra: str, named: str) -> None:
    with pytest.raises(SettingsError, match=rf"\[pacs\.main\] {named}"):
        _node_settings(tmp_path, extra)
