"""Reading multipart/related responses in tests, keeping each part's headers; and STOW-ing one."""

from __future__ import annotations

import io
import re
import secrets
from dataclasses import dataclass
from io import BytesIO

import httpx
import pydicom
from pydicom.dataset import Dataset, FileDataset


@dataclass(frozen=True)
class ReceivedPart:
    headers: dict[str, str]
    body: bytes

    def dataset(self) -> FileDataset:
        return pydicom.dcmread(BytesIO(self.body))


def boundary_of(content_type: str) -> str:
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    assert match, f"no boundary in {content_type!r}"
    return match.group(1)


def parse_multipart(content_type: str, body: bytes) -> list[ReceivedPart]:
    """Strict: the body must start with the first delimiter and end with the close delimiter."""
    boundary = boundary_of(content_type).encode()
    assert body.startswith(b"--" + boundary + b"\r\n"), "body must start with the delimiter"
    assert body.endswith(b"--" + boundary + b"--\r\n"), "body must end with the close delimiter"
    parts = []
    for chunk in body.split(b"\r\n--" + boundary)[:-1]:
        chunk = chunk.removeprefix(b"--" + boundary).removeprefix(b"\r\n")
        head, _, payload = chunk.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("ascii").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts.append(ReceivedPart(headers, payload))
    return parts


def stow_dataset(dicomweb_base: str, dataset: Dataset) -> None:
    """STOW-RS one data set through the gateway at ``dicomweb_base``; asserts it was stored."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    boundary = secrets.token_hex(12)
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + buffer.getvalue() + f"\r\n--{boundary}--\r\n".encode())
    response = httpx.post(f"{dicomweb_base}/studies", content=body, timeout=60,
                          headers={"Content-Type": "multipart/related; "
                                   f'type="application/dicom"; boundary={boundary}'})
    assert response.status_code == 200, response.text
