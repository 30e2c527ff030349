"""Instances come back through WADO-RS in the syntax they are stored in (issue #14 point 4).

Three PACS:

* Orthanc 1.10 stores what it receives and, over C-GET, sends each instance
  on a context that carries its stored syntax, transcoding when none does (so
  a missing context does not fail: it silently loses "as stored"); over
  C-MOVE it proposes the stored syntax to the gateway's storage SCP. It does
  not know HTJ2K and cannot send it at all.
* The embedded pynetdicom PACS (``DemoPacs``) is strict: it sends a compressed
  instance only on a context that carries its syntax, HTJ2K included.
* dcmqrscp is not part of this: it stores compressed syntaxes only when
  configured to, and sends every instance of a SOP class on the first context
  accepted for that class (C-GET) or in one configured syntax (C-MOVE),
  whatever the file holds (DCMTK's dcmqrcbg.cc / dcmqrcbm.cc).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.uid import HTJ2KLossless, JPEGLossless, JPEGLosslessSV1

from corpus import Corpus, StudyInfo
from dicomweb_gw.demo import DemoPacs
from dicomweb_gw.model import RetrieveKeys
from dicomweb_gw.pacs import contexts, holdings
from dicomweb_gw.pacs.dimse import DimsePacsClient
from dicomweb_gw.settings import PacsNode
from gateway_fixtures import RunningGateway, make_settings, running_gateway
from multipart_helpers import ReceivedPart, parse_multipart
from pacs_fixtures import GATEWAY_AE_TITLE, free_port

pytestmark = pytest.mark.pacs
AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"


def _get_as_stored(gateway: RunningGateway, node: str | None,
                   study: StudyInfo) -> httpx.Response:
    return httpx.get(f"{gateway.dicomweb(node)}/studies/{study.study_uid}",
                     headers={"Accept": AS_STORED}, timeout=60)


def _parts(response: httpx.Response) -> list[ReceivedPart]:
    assert response.status_code == 200, response.text
    return parse_multipart(response.headers["content-type"], response.content)


def _assert_as_stored(parts: list[ReceivedPart], *studies: StudyInfo) -> None:
    expected = {inst.sop_instance_uid: inst for study in studies for inst in study.instances}
    assert len(parts) == len(expected)
    for part in parts:
        received = part.dataset()
        inst = expected.pop(received.SOPInstanceUID)
        assert part.headers["content-type"] == (
            f"application/dicom; transfer-syntax={inst.transfer_syntax_uid}")
        assert received.file_meta.TransferSyntaxUID == inst.transfer_syntax_uid
        # The encapsulated fragments byte for byte: nothing was decoded or re-encoded.
        assert received.PixelData == pydicom.dcmread(inst.path).PixelData
    assert expected == {}


# --------------------------------------------------------------------------- Orthanc


@pytest.mark.parametrize("node", ["orthanc", "orthanc-move"])
def test_both_jpeg_lossless_syntaxes_come_back_as_stored_from_orthanc(
    gateway: RunningGateway, corpus: Corpus, node: str
) -> None:
    study = corpus.study("jpeg_lossless")
    assert {i.transfer_syntax_uid for i in study.instances} == {JPEGLossless, JPEGLosslessSV1}
    _assert_as_stored(_parts(_get_as_stored(gateway, node, study)), study)


def test_a_syntax_orthanc_cannot_send_is_explained(gateway: RunningGateway,
                                                   corpus: Corpus) -> None:
    # Orthanc 1.10 stores HTJ2K but answers 0xA702 ("Unsupported transfer syntax"
    # in its log) however it is asked: a 502 that says why, not "out of resources".
    response = _get_as_stored(gateway, "orthanc", corpus.study("htj2k"))
    assert response.status_code == 502
    message = response.json()["message"]
    assert "PACS 'orthanc'" in message
    assert "could not send any instance" in message
    assert "transfer syntax" in message
    assert "0xA702" in message
    assert "out of resources" not in message


# --------------------------------------------------------------------------- strict PACS


@contextmanager
def strict_pacs_gateway(tmp_path: Path, retrieve: str,
                        *studies: StudyInfo) -> Iterator[RunningGateway]:
    store_port = free_port()
    pacs = DemoPacs(tmp_path / "pacs", ae_title="STRICT",
                    move_destinations={GATEWAY_AE_TITLE: ("127.0.0.1", store_port)})
    pacs.add_files(inst.path for study in studies for inst in study.instances)
    pacs.start()
    node = PacsNode(name="strict", host="127.0.0.1", port=pacs.port, ae_title="STRICT",
                    retrieve=retrieve, timeout=15)  # type: ignore[arg-type]
    try:
        with running_gateway(make_settings((node,), store_port=store_port,
                                           tmp=tmp_path)) as gateway:
            yield gateway
    finally:
        pacs.stop()


@pytest.mark.parametrize("retrieve", ["c-get", "c-move"])
def test_jpeg_lossless_and_htj2k_come_back_as_stored_from_a_strict_pacs(
    tmp_path: Path, corpus: Corpus, retrieve: str
) -> None:
    lossless, htj2k = corpus.study("jpeg_lossless"), corpus.study("htj2k")
    assert {i.transfer_syntax_uid for i in htj2k.instances} == {HTJ2KLossless}
    with strict_pacs_gateway(tmp_path, retrieve, lossless, htj2k) as gateway:
        _assert_as_stored(_parts(_get_as_stored(gateway, None, lossless)), lossless)
        _assert_as_stored(_parts(_get_as_stored(gateway, None, htj2k)), htj2k)


def test_stored_syntaxes_that_do_not_fit_one_association_are_fetched_over_two(
    tmp_path: Path, corpus: Corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A PACS that reports every syntax for three classes: 3 x 44 contexts > 126.
    study = corpus.study("jpeg_lossless")
    first, second = (series.series_uid for series in study.series)
    everything = set(contexts.KNOWN_SYNTAXES)
    reported = {first: {SC_IMAGE: everything, CT_IMAGE: everything},
                second: {SC_IMAGE: everything, MR_IMAGE: everything}}
    with strict_pacs_gateway(tmp_path, "c-get", study) as gateway:
        client: DimsePacsClient = gateway.app.state.gateway.clients["strict"]
        # What the C-FIND answers of each series say (the listing's or the look-up's).
        monkeypatch.setattr(holdings, "answers_holdings",
                            lambda answers: reported[str(answers[0].SeriesInstanceUID)])
        fetched: list[RetrieveKeys] = []
        get_one = client._retriever.get_one

        def spy(assoc: object, keys: RetrieveKeys, sink: object) -> None:
            fetched.append(keys)
            get_one(assoc, keys, sink)  # type: ignore[arg-type]

        monkeypatch.setattr(client._retriever, "get_one", spy)
        _assert_as_stored(_parts(_get_as_stored(gateway, None, study)), study)
    assert fetched == [RetrieveKeys(study.study_uid, first), RetrieveKeys(study.study_uid, second)]
