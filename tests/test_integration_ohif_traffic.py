"""OHIF-style traffic, cold then warm: every series' metadata at once, then one frame
per request in random order, each frame checked against the file the PACS holds."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.encaps import generate_frames

from corpus import Corpus, StudyInfo
from pacs_fixtures import RunningPacs
from test_integration_cache import orthanc_gateway

pytestmark = pytest.mark.pacs
METADATA = {"Accept": "application/dicom+json, multipart/related; "
                      "type=application/octet-stream; transfer-syntax=*"}
FRAME = {"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"}


def _expected_frames(path: Path) -> list[bytes]:
    dataset = pydicom.dcmread(path)
    frames = int(dataset.get("NumberOfFrames") or 1)
    if dataset.file_meta.TransferSyntaxUID.is_compressed:
        return list(generate_frames(dataset.PixelData, number_of_frames=frames))
    size = len(dataset.PixelData) // frames
    return [dataset.PixelData[i * size:(i + 1) * size] for i in range(frames)]


async def _view(base: str, study: StudyInfo, seed: int) -> None:
    async with httpx.AsyncClient(timeout=120) as client:
        metadata = await asyncio.gather(*(
            client.get(f"{base}/studies/{study.study_uid}/series/{s.series_uid}/metadata",
                       headers=METADATA) for s in study.series))
        requests: list[tuple[str, bytes]] = []
        for response in metadata:
            assert response.status_code == 200, response.text
            for item in response.json():
                frame_uri = item["7FE00010"]["BulkDataURI"].replace("/bulkdata/7FE00010",
                                                                    "/frames/")
                sop = item["00080018"]["Value"][0]
                source = next(i for i in study.instances if i.sop_instance_uid == sop)
                for number, frame in enumerate(_expected_frames(source.path), start=1):
                    requests.append((f"{frame_uri}{number}", frame))
        random.Random(seed).shuffle(requests)
        semaphore = asyncio.Semaphore(8)

        async def one(url: str, expected: bytes) -> None:
            async with semaphore:
                response = await client.get(url, headers=FRAME)
            assert response.status_code == 200, response.text
            body = response.content
            start = body.index(b"\r\n\r\n") + 4
            end = body.rindex(b"\r\n--")
            assert body[start:end] == expected, url

        await asyncio.gather(*(one(url, frame) for url, frame in requests))


@pytest.mark.parametrize("label", ["mr_multiframe_compressed", "ct_small"])
def test_ohif_traffic_cold_then_warm(orthanc_pacs: RunningPacs, corpus: Corpus, tmp_path: Path,
                                     label: str) -> None:
    study = corpus.study(label)
    with orthanc_gateway(orthanc_pacs, tmp_path / "cache") as (gateway, calls):
        asyncio.run(_view(gateway.dicomweb(), study, seed=1))
        cold_retrieves = len(calls)
        asyncio.run(_view(gateway.dicomweb(), study, seed=2))
    assert 1 <= cold_retrieves <= len(study.series)  # one per series, shared by every request
    assert len(calls) == cold_retrieves  # the warm pass never reached the PACS
