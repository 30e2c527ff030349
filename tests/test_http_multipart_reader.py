"""The streaming STOW-RS body parser: every chunking, every RFC 2046 corner, bounded memory."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterable

import pytest

from dicomweb_gw.dicomweb.uploads import UploadedPart
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
            found.append((dict(part.headers), content))
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


def test_parts_are_the_upload_type_dicomweb_defines() -> None:
    # STOW (dicomweb/) defines what it consumes; the HTTP layer only builds it (issue #19).
    data = body([(DICOM, b"x")])

    async def run() -> list[UploadedPart]:
        seen: list[UploadedPart] = []
        async for part in read_parts(chunked(data, [len(data)]), BOUNDARY, max_bytes=1 << 20):
            part.file.close()
            seen.append(part)
        return seen

    [part] = asyncio.run(run())
    assert type(part) is UploadedPart
    assert part.content_type == "application/dicom"
    assert part.size == 1


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


# -- edges each parser state makes explicit ------------------------------------
# These pin today's behaviour (they pass on the parser before its rewrite as a
# state machine, issue #19) so the rewrite cannot change it unnoticed.

DELIMITER = f"\r\n--{BOUNDARY}".encode()
TRUNCATED = (f"multipart body ended before its close delimiter (--{BOUNDARY}--): "
             "truncated upload?")


def test_delimiters_split_at_every_byte_of_every_chunk_size() -> None:
    # Every chunk size up to a delimiter and its padding, at every alignment: each
    # delimiter, padding, header block end and CRLF lands across chunk edges in every way.
    parts = [*TRICKY, (DICOM, b"last")]
    data = body(parts, padding=b" \t")
    for size in range(1, len(DELIMITER) + 6):
        for offset in range(1, size + 1):
            found = read_all(data, [offset] + [size] * len(data))
            assert [payload for _, payload in found] == [p for _, p in parts], (size, offset)


def test_part_without_headers_has_no_content_type_at_every_split() -> None:
    data = f"--{BOUNDARY}\r\n\r\nraw\r\nbytes\r\n--{BOUNDARY}--".encode()

    async def run(sizes: list[int]) -> list[tuple[dict[str, str], str | None, bytes]]:
        seen = []
        async for part in read_parts(chunked(data, sizes), BOUNDARY, max_bytes=1 << 20):
            with part.file:
                seen.append((dict(part.headers), part.content_type, part.file.read()))
        return seen

    for cut in range(1, len(data)):
        assert asyncio.run(run([cut, len(data)])) == [({}, None, b"raw\r\nbytes")], cut


def test_lf_only_line_ends_are_refused() -> None:
    # RFC 2046 delimiters end in CRLF; a body with bare LFs is not guessed at.
    data = body([(DICOM, b"abc")]).replace(b"\r\n", b"\n")
    with pytest.raises(BadRequest) as caught:
        read_all(data)
    assert caught.value.message == TRUNCATED


@pytest.mark.parametrize(("data", "limits", "error", "message"), [
    (b"", {}, BadRequest, TRUNCATED),
    (b"preamble only", {}, BadRequest, TRUNCATED),
    (body([(DICOM, b"abc")])[:-2], {}, BadRequest, TRUNCATED),  # "--" of the close cut off
    (body([(DICOM, b"abc")])[:40], {}, BadRequest, TRUNCATED),  # cut in the headers
    (f"--{BOUNDARY}junk\r\n\r\nx\r\n--{BOUNDARY}--".encode(), {}, BadRequest,
     "malformed multipart body: unexpected characters after a boundary delimiter"),
    (f"--{BOUNDARY}".encode() + b" " * 2000, {}, BadRequest,
     "malformed multipart body: no CRLF after a boundary"),
    (f"--{BOUNDARY}\r\nX-Long: {'a' * 17_000}".encode(), {}, BadRequest,
     "part headers longer than 16384 bytes"),
    (body([(f"X-Long: {'a' * 17_000}\r\n", b"x")]), {}, BadRequest,
     "part headers longer than 16384 bytes"),
    (f"--{BOUNDARY}\r\nContent-Type application/dicom\r\n\r\nx\r\n--{BOUNDARY}--".encode(),
     {}, BadRequest, "malformed part header line 'Content-Type application/dicom'"),
    (body([(DICOM, b"x" * 100)]), {"max_bytes": 50}, PayloadTooLarge,
     "request body larger than the limit of 50 bytes"),
    (body([(DICOM, b"x")] * 3), {"max_parts": 2}, PayloadTooLarge,
     "more than 2 parts in one request: split the upload"),
])
def test_each_refusal_keeps_its_status_and_message(
        data: bytes, limits: dict[str, int], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as caught:
        read_all(data, max_bytes=limits.get("max_bytes", 1 << 30),
                 max_parts=limits.get("max_parts", 100))
    assert isinstance(caught.value, BadRequest | PayloadTooLarge)
    assert caught.value.status_code == (413 if error is PayloadTooLarge else 400)
    assert caught.value.message == message


def test_parts_before_an_error_are_handed_over_first() -> None:
    data = (f"--{BOUNDARY}\r\n{DICOM}\r\nfirst\r\n--{BOUNDARY}\r\nbad header\r\n\r\nx\r\n"
            f"--{BOUNDARY}--").encode()
    seen: list[bytes] = []

    async def run() -> None:
        async for part in read_parts(chunked(data, [len(data)]), BOUNDARY, max_bytes=1 << 20):
            with part.file:
                seen.append(part.file.read())

    with pytest.raises(BadRequest):
        asyncio.run(run())
    assert seen == [b"first"]


def test_each_part_is_handed_over_before_the_next_chunk_is_read() -> None:
    data = body([(DICOM, b"first"), (DICOM, b"second")])
    pulled = 0

    async def byte_by_byte() -> AsyncIterator[bytes]:
        nonlocal pulled
        for position in range(len(data)):
            pulled += 1
            yield data[position:position + 1]

    async def run() -> list[tuple[bytes, int]]:
        seen = []
        async for part in read_parts(byte_by_byte(), BOUNDARY, max_bytes=1 << 20):
            with part.file:
                seen.append((part.file.read(), pulled))
        return seen

    # A part is complete, and handed over, with the last byte of the delimiter after it.
    first_end = data.index(DELIMITER, data.index(b"first")) + len(DELIMITER)
    second_end = data.index(DELIMITER, data.index(b"second")) + len(DELIMITER)
    assert asyncio.run(run()) == [(b"first", first_end), (b"second", second_end)]
