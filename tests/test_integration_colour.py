"""Colour instances through the gateway from a real PACS (issue #18, part 5).

The colour test files are stored in Orthanc (as stored: JPEG, JPEG 2000, RLE,
native), with fresh UIDs and their own patient, then fetched through the
gateway as OHIF does: metadata, frames (as stored and decoded to octet-stream)
and rendered images, and compared with the reference (tests/colour_reference.py).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from colour_reference import (
    JPEG_PSNR,
    PNG_TOLERANCE,
    decoded_frame,
    max_difference,
    psnr,
    reference_render,
)
from gateway_fixtures import RunningGateway
from multipart_helpers import parse_multipart
from pacs_fixtures import RunningPacs
from testdata import pydicom_file

pytestmark = pytest.mark.pacs

NATIVE = ('multipart/related; type="application/octet-stream"; '
          f"transfer-syntax={ExplicitVRLittleEndian}")
AS_STORED = "multipart/related; type=application/octet-stream; transfer-syntax=*"

FILES = [
    "SC_rgb_jpeg_dcmtk.dcm",  # YBR_FULL JPEG baseline: decoded frames stay YBR_FULL
    "SC_rgb_dcmtk_+eb+cy+s2.dcm",  # YBR_FULL_422 JPEG baseline: decoded frames are RGB
    "color3d_jpeg_baseline.dcm",  # US, YBR_FULL_422 JPEG, 120 frames
    "US1_J2KR.dcm",  # US, YBR_RCT JPEG 2000 lossless
    "SC_ybr_full_uncompressed.dcm",  # YBR_FULL, native
    "color-pl.dcm",  # US RGB, Planar Configuration 1
    "OBXXXX1A.dcm",  # US PALETTE COLOR
    "mislabelled",  # RGB samples labelled YBR_FULL_422, as a decompressing PACS leaves them
]


def _source(name: str) -> pydicom.Dataset:
    if name != "mislabelled":
        return pydicom.dcmread(pydicom_file(name))
    ds = pydicom.dcmread(pydicom_file("SC_rgb_2frame.dcm"))
    ds.PhotometricInterpretation = "YBR_FULL_422"
    return ds


@dataclass(frozen=True)
class Stored:
    name: str
    path: Path  # the copy stored in the PACS, fresh UIDs
    url: str  # the instance through the gateway


@pytest.fixture(scope="module")
def colour_study(orthanc_pacs: RunningPacs, gateway: RunningGateway,
                 tmp_path_factory: pytest.TempPathFactory) -> dict[str, Stored]:
    assert orthanc_pacs.http_url is not None
    folder = tmp_path_factory.mktemp("colour")
    study_uid = generate_uid()
    stored: dict[str, Stored] = {}
    with httpx.Client(base_url=orthanc_pacs.http_url, timeout=60) as client:
        for number, name in enumerate(FILES, start=1):
            ds = _source(name)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.PatientName, ds.PatientID = "Colour^Fidelity", "GW-COLOUR"
            ds.SeriesNumber, ds.InstanceNumber = number, 1
            path = folder / f"{name.removesuffix('.dcm')}.dcm"
            ds.save_as(path, enforce_file_format=True)
            response = client.post("/instances", content=path.read_bytes(),
                                   headers={"Content-Type": "application/dicom"})
            assert response.is_success, response.text
            url = (f"{gateway.dicomweb('orthanc')}/studies/{study_uid}/series/"
                   f"{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}")
            stored[name] = Stored(name, path, url)
    return stored


def _truth(item: Stored) -> pydicom.Dataset:
    """The stored copy as pydicom should read it: the mislabelled one's pixels are RGB."""
    ds = pydicom.dcmread(item.path)
    if item.name == "mislabelled":
        ds.PhotometricInterpretation = "RGB"
    return ds


def _metadata(item: Stored) -> dict[str, Any]:
    response = httpx.get(f"{item.url}/metadata", headers={"Accept": "application/dicom+json"},
                         timeout=120)
    assert response.status_code == 200, response.text
    (document,) = response.json()
    assert isinstance(document, dict)
    return document


def _frame(item: Stored, number: int, accept: str) -> tuple[str, bytes]:
    response = httpx.get(f"{item.url}/frames/{number}", headers={"Accept": accept},
                         timeout=120)
    assert response.status_code == 200, response.text
    (part,) = parse_multipart(response.headers["content-type"], response.content)
    return part.headers["content-type"], part.body


def _rendered(item: Stored, media_type: str, frame: int | None = None) -> np.ndarray[Any, Any]:
    resource = f"{item.url}/frames/{frame}/rendered" if frame else f"{item.url}/rendered"
    response = httpx.get(resource, headers={"Accept": media_type}, timeout=120)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))


@pytest.mark.parametrize("name", FILES)
def test_metadata_says_what_was_stored(colour_study: dict[str, Stored], name: str) -> None:
    item = colour_study[name]
    stored = pydicom.dcmread(item.path, stop_before_pixels=True)
    metadata = _metadata(item)
    # As stored; only a YBR_FULL_422 label over full-size samples is corrected.
    expected = "RGB" if name == "mislabelled" else stored.PhotometricInterpretation
    assert metadata["00280004"]["Value"] == [expected]
    assert metadata["00280002"]["Value"] == [stored.SamplesPerPixel]


@pytest.mark.parametrize("name", FILES)
def test_decoded_frames_are_what_the_metadata_says(colour_study: dict[str, Stored],
                                                   name: str) -> None:
    # OHIF's metadata first, then octet-stream frames in Explicit VR Little Endian.
    item = colour_study[name]
    ds = _truth(item)
    metadata = _metadata(item)
    frames = int(ds.get("NumberOfFrames") or 1)
    for number in sorted({1, frames}):
        content_type, body = _frame(item, number, NATIVE)
        assert content_type == (f"application/octet-stream; "
                                f"transfer-syntax={ExplicitVRLittleEndian}")
        compressed = ds.file_meta.TransferSyntaxUID.is_compressed
        expected = pydicom.pixels.pixel_array(ds, index=number - 1)
        assert np.array_equal(decoded_frame(body, metadata, compressed), expected)


@pytest.mark.parametrize("name", ["SC_rgb_jpeg_dcmtk.dcm", "US1_J2KR.dcm"])
def test_frames_as_stored_decode_to_the_reference(colour_study: dict[str, Stored],
                                                  name: str) -> None:
    # OHIF's transfer-syntax=*: the codestream as stored, read with the metadata's
    # interpretation by the codec, gives the same image.
    item = colour_study[name]
    ds = pydicom.dcmread(item.path)
    content_type, body = _frame(item, 1, AS_STORED)
    assert f"transfer-syntax={ds.file_meta.TransferSyntaxUID}" in content_type
    assert body.rstrip(b"\x00") == next(pydicom.encaps.generate_frames(
        ds.PixelData, number_of_frames=1)).rstrip(b"\x00")


@pytest.mark.parametrize("name", FILES)
def test_rendered_png_and_jpeg_match_the_reference(colour_study: dict[str, Stored],
                                                   name: str) -> None:
    item = colour_study[name]
    expected = reference_render(_truth(item))
    assert max_difference(_rendered(item, "image/png"), expected) <= PNG_TOLERANCE
    assert psnr(_rendered(item, "image/jpeg"), expected) >= JPEG_PSNR


def test_a_rendered_frame_of_multiframe_ultrasound(colour_study: dict[str, Stored]) -> None:
    item = colour_study["color3d_jpeg_baseline.dcm"]
    expected = reference_render(pydicom.dcmread(item.path), 59)
    assert max_difference(_rendered(item, "image/png", 60), expected) <= PNG_TOLERANCE
