"""Unit tests for dicomweb_gw.http.multipart: multipart/related bodies (RFC 2046/2387)."""

from __future__ import annotations

import email.parser
import email.policy
import re

from dicomweb_gw.http.multipart import MultipartWriter


def body_of(writer: MultipartWriter, parts: list[tuple[str, tuple[bytes, ...]]]) -> bytes:
    out = b""
    for content_type, chunks in parts:
        out += b"".join(writer.part(content_type, chunks))
    return out + writer.close()


def split_strictly(boundary: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """An independent strict reader: every delimiter is CRLF--boundary, headers end in CRLFCRLF."""
    delimiter = b"--" + boundary.encode()
    assert body.startswith(delimiter + b"\r\n"), "body must start with --boundary CRLF"
    assert body.endswith(b"\r\n" + delimiter + b"--\r\n"), "close delimiter must end the body"
    inner = body[len(delimiter) + 2 : -len(b"\r\n" + delimiter + b"--\r\n")]
    result = []
    for raw in inner.split(b"\r\n" + delimiter + b"\r\n"):
        head, sep, payload = raw.partition(b"\r\n\r\n")
        assert sep, "headers must end with an empty line"
        headers = {}
        for line in head.decode("ascii").split("\r\n"):
            name, colon, value = line.partition(": ")
            assert colon, f"malformed header line {line!r}"
            headers[name] = value
        result.append((headers, payload))
    return result


def test_content_type_names_type_and_boundary() -> None:
    writer = MultipartWriter("application/dicom")
    match = re.fullmatch(r'multipart/related; type="application/dicom"; boundary=(\S+)',
                         writer.content_type)
    assert match is not None
    assert match.group(1) == writer.boundary


def test_boundary_is_a_legal_token_and_unique_per_writer() -> None:
    boundaries = {MultipartWriter("application/dicom").boundary for _ in range(20)}
    assert len(boundaries) == 20
    for boundary in boundaries:
        # RFC 2046 bchars, 1..70 characters, and safe unquoted in a header parameter
        assert re.fullmatch(r"[0-9A-Za-z'()+_,\-./:=?]{1,70}", boundary)
        assert re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", boundary)


def test_parts_with_binary_payloads_roundtrip() -> None:
    writer = MultipartWriter("application/dicom")
    first = (b"\x00\x01\r\n--not-a-boundary\r\n", b"\xff" * 1000)
    second = (b"DICM",)
    body = body_of(writer, [("application/dicom", first),
                            ("application/dicom; transfer-syntax=1.2.840.10008.1.2.1", second)])
    parts = split_strictly(writer.boundary, body)
    assert len(parts) == 2
    assert parts[0][1] == b"".join(first)
    assert parts[1][1] == b"DICM"
    assert parts[0][0]["Content-Type"] == "application/dicom"
    assert parts[1][0]["Content-Type"] == "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"


def test_content_length_is_the_payload_size() -> None:
    writer = MultipartWriter("application/octet-stream")
    chunks = (b"abc", b"", b"defgh")
    parts = split_strictly(writer.boundary,
                           body_of(writer, [("application/octet-stream", chunks)]))
    headers, payload = parts[0]
    assert int(headers["Content-Length"]) == 8 == len(payload)


def test_empty_part() -> None:
    writer = MultipartWriter("application/octet-stream")
    parts = split_strictly(writer.boundary, body_of(writer, [("application/octet-stream", ())]))
    assert parts == [({"Content-Type": "application/octet-stream", "Content-Length": "0"}, b"")]


def test_header_name_is_exactly_content_type() -> None:
    # OHIF looks for "Content-Type:" with this exact spelling in each part
    writer = MultipartWriter("application/octet-stream")
    first = next(writer.part("image/jpeg", (b"x",)))
    assert first.startswith(f"--{writer.boundary}\r\nContent-Type: image/jpeg\r\n".encode())


def test_part_streams_chunks_without_copying_them() -> None:
    writer = MultipartWriter("application/dicom")
    big = b"x" * 100_000
    pieces = list(writer.part("application/dicom", (b"head", big)))
    assert any(piece is big for piece in pieces)
    assert pieces[-1] == b"\r\n"


def test_no_parts_is_just_the_close_delimiter() -> None:
    writer = MultipartWriter("application/dicom")
    assert writer.close() == f"--{writer.boundary}--\r\n".encode()


def test_standard_library_mime_parser_reads_the_body() -> None:
    writer = MultipartWriter("application/dicom+json")
    body = body_of(writer, [("application/json", (b'{"a": 1}',)),
                            ("application/json", (b"[1, 2]",))])
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {writer.content_type}\r\n\r\n".encode() + body)
    assert message.is_multipart()
    assert message.get_param("type") == "application/dicom+json"
    payloads = [part.get_payload(decode=True) for part in message.iter_parts()]
    assert payloads == [b'{"a": 1}', b"[1, 2]"]
    assert not message.defects


def test_multipart_type_is_the_bare_media_type_without_transfer_syntax() -> None:
    """PS3.18 8.7.3.5.1: ``type`` is a media type name; each part carries its own syntax."""
    syntax = "1.2.840.10008.1.2.4.50"
    writer = MultipartWriter(f"image/jpeg; transfer-syntax={syntax}")
    assert writer.content_type == (
        f'multipart/related; type="image/jpeg"; boundary={writer.boundary}')
    [(headers, _)] = split_strictly(writer.boundary, body_of(
        writer, [(f"image/jpeg; transfer-syntax={syntax}", (b"\xff\xd8",))]))
    assert headers["Content-Type"] == f"image/jpeg; transfer-syntax={syntax}"


def test_part_content_location() -> None:
    writer = MultipartWriter("application/dicom")
    url = "http://gw.example/dicom-web/studies/1.2/series/1.3/instances/1.4"
    body = b"".join(writer.part("application/dicom", (b"x",), location=url)) + writer.close()
    [(headers, payload)] = split_strictly(writer.boundary, body)
    assert headers["Content-Location"] == url
    assert payload == b"x"
    unlocated = b"".join(writer.part("application/dicom", (b"x",))) + writer.close()
    assert b"Content-Location" not in unlocated


def test_content_location_is_ascii_even_from_a_non_ascii_forwarded_host() -> None:
    writer = MultipartWriter("application/dicom")
    head = next(writer.part("application/dicom", (b"x",),
                            location="http://bücher.example/a b/studies/1.2"))
    assert b"Content-Location: http://b%C3%BCcher.example/a%20b/studies/1.2\r\n" in head
