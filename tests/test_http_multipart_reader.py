"""The streaming STOW-RS body parser: every chunking, every RFC 2046 corner, bounded memory."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterable

import pytest

from dicomweb_gw.errors import BadRequest
from dicomweb_gw.http.multipart_reader import (
    SPOOL_MEMORY_BYTES,
    PayloadTooLarge,
    UnsupportedMediaType,
    check_stow_content_type,
    read_parts,
)

BOUNDARY = "b0undary-42"


def body(parts: Iterable[tuple[str, bytes]], *, boundary: str = BOUNDARY,
         preamble: bytes = b"", epilogue: bytes = b"", padding: bytes = b"") -> bytes:
    out = bytearray(preamble)
    if preamble:
        out += b"\r\n"
    for headers, payload in parts:
        out += f"--{boundary}".encode() + padding + b"\r\n" + headers.encode() + b"\r\n"
        out += payload + b"\r\n"
    out += f"--{boundary}--".encode() + padding + epilogue
    return bytes(out)


async def chunked(data: bytes, sizes: Iterable[int]) -> AsyncIterator[bytes]:
    position = 0
    for size in sizes:
        if position >= len(data):
            break
        yield data[position:position + size]
        position += size
    if position < len(data):
        yield data[position:]


def read_all(data: bytes, sizes: Iterable[int] = (65536,) * 10_000, *,
             boundary: str = BOUNDARY, max_bytes: int = 1 << 30,
             max_parts: int = 100) -> list[tuple[dict[str, str], bytes]]:
    async def run() -> list[tuple[dict[str, str], bytes]]:
        found = []
        async for part in read_parts(chunked(data, sizes), boundary, max_bytes=max_bytes,
                                     max_parts=max_parts):
            with part.file:
                content = part.file.read()
            assert len(content) == part.size
            found.append((part.headers, content))
        return found

    return asyncio.run(run())


DICOM = "Content-Type: application/dicom\r\n"
# Payloads that look like the boundary, CRLFs and dashes at their edges.
TRICKY = [
    (DICOM, b"\r\n--b0undary-4 not quite\r\n"),
    (DICOM + "Content-Length: 3\r\n", b"--b"),
    ("", b""),
    (DICOM, b"\r\n\r\n-- \r\n" + bytes(range(256))),
]


# -- Content-Type --------------------------------------------------------------

@pytest.mark.parametrize("value", [
    f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
    f"multipart/related; type=application/dicom; boundary={BOUNDARY}",
    f'Multipart/Related;boundary="{BOUNDARY}";type="Application/DICOM"',
    f"multipart/related; boundary={BOUNDARY}",  # no type: application/dicom assumed
    f'multipart/related; type="application/dicom; transfer-syntax=*"; boundary="{BOUNDARY}"',
])
def test_accepted_content_types_give_the_boundary(value: str) -> None:
    assert check_stow_content_type(value) == BOUNDARY


def test_quoted_boundary_may_hold_characters_tokens_cannot() -> None:
    value = 'multipart/related; type="application/dicom"; boundary="a b:c=d?e"'
    assert check_stow_content_type(value) == "a b:c=d?e"


@pytest.mark.parametrize("value", [
    None, "", "application/dicom", "multipart/mixed; boundary=x",
    'multipart/related; type="application/dicom+json"; boundary=x',
    'multipart/related; type="application/json"; boundary=x', "text/plain",
])
def test_other_content_types_are_415(value: str | None) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        check_stow_content_type(value)
    assert caught.value.status_code == 415


@pytest.mark.parametrize("value", [
    'multipart/related; type="application/dicom"',
    'multipart/related; type="application/dicom"; boundary=""',
    f'multipart/related; type="application/dicom"; boundary={"x" * 71}',
])
def test_missing_or_bad_boundary_is_400(value: str) -> None:
    with pytest.raises(BadRequest):
        check_stow_content_type(value)


# -- parsing -------------------------------------------------------------------

def test_parts_and_their_headers_are_kept() -> None:
    parts = read_all(body([(DICOM + "X-Custom:  some value \r\n", b"first"),
                           ("content-type: application/dicom\r\n", b"second")]))
    assert parts == [({"content-type": "application/dicom", "x-custom": "some value"},
                      b"first"),
                     ({"content-type": "application/dicom"}, b"second")]


def test_folded_and_repeated_headers() -> None:
    data = body([("Content-Type: application/dicom;\r\n transfer-syntax=1.2\r\n"
                  "X-A: 1\r\nX-A: 2\r\n", b"x")])
    [(headers, _)] = read_all(data)
    assert headers == {"content-type": "application/dicom; transfer-syntax=1.2",
                       "x-a": "1, 2"}


def test_every_one_byte_chunking() -> None:
    data = body(TRICKY, preamble=b"ignore me --b0undary-42x", epilogue=b"\r\nbye --b0undary-42")
    expected = read_all(data)
    assert [payload for _, payload in expected] == [payload for _, payload in TRICKY]
    assert read_all(data, [1] * len(data)) == expected


def test_boundary_split_at_every_position() -> None:
    data = body(TRICKY)
    expected = read_all(data)
    for cut in range(1, len(data)):
        assert read_all(data, [cut, len(data)]) == expected, cut


def test_random_chunkings() -> None:
    rng = random.Random(1234)
    parts = [(DICOM, rng.randbytes(rng.randrange(0, 3000))) for _ in range(8)]
    data = body(parts, preamble=b"preamble", epilogue=b"epilogue")
    for _ in range(50):
        sizes = [rng.randrange(1, 700) for _ in range(len(data))]
        assert [payload for _, payload in read_all(data, sizes)] == [p for _, p in parts]


def test_transport_padding_after_boundaries() -> None:
    data = body([(DICOM, b"a"), (DICOM, b"b")], padding=b" \t ")
    assert [payload for _, payload in read_all(data)] == [b"a", b"b"]


def test_body_without_the_leading_crlf_before_the_first_boundary() -> None:
    assert read_all(body([(DICOM, b"a")]))[0][1] == b"a"


def test_no_parts_is_an_empty_iteration() -> None:
    assert read_all(f"--{BOUNDARY}--\r\n".encode()) == []


@pytest.mark.parametrize("data", [
    body([(DICOM, b"abc")])[:-len(f"--{BOUNDARY}--")],  # no close delimiter
    body([(DICOM, b"abc")])[:30],  # cut inside the part
    b"no boundary anywhere",
    b"",
    f"--{BOUNDARY}\r\nContent-Type application/dicom\r\n\r\nx\r\n--{BOUNDARY}--".encode(),
    f"--{BOUNDARY}junk\r\n\r\nx\r\n--{BOUNDARY}--".encode(),
])
def test_malformed_or_truncated_body_is_400(data: bytes) -> None:
    with pytest.raises(BadRequest):
        read_all(data)


def test_size_limit_stops_reading_at_once() -> None:
    data = body([(DICOM, b"x" * 100_000)])
    pulled = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal pulled
        for start in range(0, len(data), 1000):
            pulled += 1
            yield data[start:start + 1000]

    async def run() -> None:
        async for part in read_parts(stream(), BOUNDARY, max_bytes=10_000):
            part.file.close()

    with pytest.raises(PayloadTooLarge) as caught:
        asyncio.run(run())
    assert caught.value.status_code == 413
    assert pulled == 11  # the chunk that crossed 10 000 bytes, and no more


def test_too_many_parts_is_413() -> None:
    data = body([(DICOM, b"x")] * 5)
    assert len(read_all(data, max_parts=5)) == 5
    with pytest.raises(PayloadTooLarge):
        read_all(data, max_parts=4)


def test_large_part_spills_to_disk_small_one_stays_in_memory() -> None:
    big = bytes(range(256)) * (SPOOL_MEMORY_BYTES // 128)
    data = body([(DICOM, big), (DICOM, b"small")])

    async def run() -> list[tuple[bool, bytes]]:
        seen = []
        async for part in read_parts(chunked(data, [65536] * 1000), BOUNDARY,
                                     max_bytes=1 << 30):
            with part.file:
                rolled = bool(part.file._rolled)  # type: ignore[attr-defined]
                seen.append((rolled, part.file.read()))
        return seen

    assert asyncio.run(run()) == [(True, big), (False, b"small")]


def test_consumer_leaving_early_closes_the_part_in_progress() -> None:
    data = body([(DICOM, b"a"), (DICOM, b"b" * 5000)])

    async def run() -> bytes:
        parts = read_parts(chunked(data, [100] * 1000), BOUNDARY, max_bytes=1 << 20)
        first = await anext(parts)
        await parts.aclose()
        with first.file:
            return first.file.read()

    assert asyncio.run(run()) == b"a"
