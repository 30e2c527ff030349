"""Video streams and encapsulated documents, without a PACS: where their bytes are, how
they are negotiated (codecs.video, codecs.bulkdata.iter_pieces, dicomweb.media, http.media)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.encaps import encapsulate

import media_corpus
from dicomweb_gw.cache.protocol import CachedInstance
from dicomweb_gw.codecs.bulkdata import BulkLocation, iter_pieces
from dicomweb_gw.codecs.video import VIDEO_MEDIA_TYPES, is_video_syntax, video_pieces
from dicomweb_gw.dicomweb.media import MediaBody, _document, read_media
from dicomweb_gw.dicomweb.metadata import instance_metadata
from dicomweb_gw.errors import NotAcceptable
from dicomweb_gw.http.media import MediaForm, negotiate_media


def _save(ds: object, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)  # type: ignore[attr-defined]
    return path


def _with_identity(ds: media_corpus.Dataset) -> media_corpus.Dataset:
    ds.SOPInstanceUID = media_corpus.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = media_corpus.generate_uid()
    ds.SeriesInstanceUID = media_corpus.generate_uid()
    return ds


def test_video_syntaxes_have_the_standard_media_types() -> None:
    assert VIDEO_MEDIA_TYPES["1.2.840.10008.1.2.4.100"] == "video/mpeg2"
    assert VIDEO_MEDIA_TYPES["1.2.840.10008.1.2.4.102"] == "video/mp4"
    assert VIDEO_MEDIA_TYPES["1.2.840.10008.1.2.4.106.1"] == "video/mp4"
    assert VIDEO_MEDIA_TYPES["1.2.840.10008.1.2.4.108"] == "video/H265"
    assert is_video_syntax("1.2.840.10008.1.2.4.107")
    assert not is_video_syntax("1.2.840.10008.1.2.4.90")


def test_a_video_in_several_fragments_is_their_concatenation(tmp_path: Path) -> None:
    stream = media_corpus.video_stream("avc")
    ds = _with_identity(media_corpus.video("avc"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.102.1"  # fragmentable
    # The one stream in three fragments, without a Basic Offset Table value.
    ds.PixelData = encapsulate([stream], fragments_per_frame=3, has_bot=False)
    path = _save(ds, tmp_path / "video.dcm")
    pieces = video_pieces(path)
    assert len(pieces) == 3
    joined = b"".join(iter_pieces(path, pieces))
    assert joined.rstrip(b"\0") == stream.rstrip(b"\0")
    # Ranges across fragment boundaries, and at the ends.
    for start, end in [(0, 10), (pieces[0].length - 3, pieces[0].length + 3),
                       (100, len(joined)), (len(joined) - 1, len(joined) + 50)]:
        assert b"".join(iter_pieces(path, pieces, start, end, chunk_size=7)) == joined[start:end]
    assert b"".join(iter_pieces(path, pieces, 10, 10)) == b""


def test_iter_pieces_refuses_negative_positions(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abcdef")
    with pytest.raises(ValueError, match="negative"):
        list(iter_pieces(path, [BulkLocation(0, 6)], -1))
    assert b"".join(iter_pieces(path, [BulkLocation(4, 2), BulkLocation(0, 2)], 1, 3)) == b"fa"


def test_a_document_is_served_without_its_pad_byte(tmp_path: Path) -> None:
    pdf = media_corpus.pdf_bytes()
    assert len(pdf) % 2 == 1  # the OB value carries one pad byte
    path = _save(_with_identity(media_corpus.encapsulated_pdf()), tmp_path / "pdf.dcm")
    location, media_type = _document(path)
    assert media_type == "application/pdf"
    assert location.length == len(pdf)
    cda = _save(_with_identity(media_corpus.encapsulated_cda()), tmp_path / "cda.dcm")
    assert _document(cda)[1] == "text/xml"  # stored as "text/XML"


def test_a_small_document_is_bulk_data_in_metadata(tmp_path: Path) -> None:
    path = _save(_with_identity(media_corpus.encapsulated_pdf()), tmp_path / "pdf.dcm")
    assert path.stat().st_size < 2048  # the PDF itself is below the 1 KiB bulk threshold
    metadata = instance_metadata(path, "studies/1/series/2/instances/3")
    uri = "studies/1/series/2/instances/3/bulkdata/00420011"
    assert metadata["00420011"] == {"vr": "OB", "BulkDataURI": uri}


def _media(media_type: str, rendered_type: str | None = None,
           video: bool = True) -> MediaBody:
    keep = CachedInstance("1", "2", "3", "4", "5", Path("/nonexistent"), 0)
    return MediaBody(Path("/nonexistent"), (BulkLocation(0, 10),), media_type,
                     rendered_type or media_type, "1.2.840.10008.1.2.4.102" if video else None,
                     30, keep)


MP4 = _media("video/mp4")
MPEG2 = _media("video/mpeg2", "video/mpeg")
HEVC = _media("video/H265")
PDF = _media("application/pdf", video=False)


@pytest.mark.parametrize(("accept", "media", "form"), [
    (None, MP4, MediaForm.MULTIPART),  # bulk data defaults to multipart (PS3.18 8.7.3.5)
    ("video/mp4", MP4, MediaForm.SINGLE),
    ("video/*", MP4, MediaForm.SINGLE),
    ("video/h265", HEVC, MediaForm.SINGLE),  # media types compare case-insensitively
    ("video/mpeg", MPEG2, MediaForm.SINGLE),  # the older name of video/mpeg2
    ('multipart/related; type="video/mp4"', MP4, MediaForm.MULTIPART),
    ("multipart/related; type=application/octet-stream", MP4, MediaForm.MULTIPART),  # OHIF
    ("multipart/related; type=application/octet-stream; transfer-syntax=*", MP4,
     MediaForm.MULTIPART),
    ('multipart/related; type="video/mp4"; transfer-syntax=1.2.840.10008.1.2.4.102', MP4,
     MediaForm.MULTIPART),
    ("application/octet-stream", PDF, MediaForm.SINGLE),
    ("*/*", PDF, MediaForm.MULTIPART),
    ('image/jpeg, multipart/related; type="application/pdf"', PDF, MediaForm.MULTIPART),
])
def test_bulk_data_negotiation(accept: str | None, media: MediaBody, form: MediaForm) -> None:
    assert negotiate_media(accept, media, rendered=False) is form


@pytest.mark.parametrize(("accept", "media"), [
    ("video/mp4", MPEG2),
    # Uncompressed asked for by name: the stream is not that.
    ('multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1',
     MP4),
    ("application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.100", MP4),
    ("image/jpeg", MP4),
    ('multipart/related; type="image/jpeg"', PDF),
    ("text/xml", PDF),
])
def test_bulk_data_of_another_type_is_406(accept: str, media: MediaBody) -> None:
    with pytest.raises(NotAcceptable, match=media.media_type):
        negotiate_media(accept, media, rendered=False)


@pytest.mark.parametrize(("accept", "media", "form"), [
    (None, MP4, MediaForm.SINGLE),
    ("*/*", MPEG2, MediaForm.SINGLE),
    ("video/mpeg", MPEG2, MediaForm.SINGLE),
    ("application/pdf", PDF, MediaForm.SINGLE),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", PDF, MediaForm.SINGLE),
    # Not what rendering means: the caller answers as for any instance (406 for these).
    ("image/jpeg", MP4, None),
    ("application/octet-stream", PDF, None),
    ('multipart/related; type="application/pdf"', PDF, None),
])
def test_rendered_negotiation(accept: str | None, media: MediaBody,
                              form: MediaForm | None) -> None:
    assert negotiate_media(accept, media, rendered=True) is form


def test_read_media_reads_across_pieces(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    keep = CachedInstance("1", "2", "3", "4", "5", path, 10)
    media = MediaBody(path, (BulkLocation(2, 3), BulkLocation(7, 3)), "video/mp4", "video/mp4",
                      "1.2.840.10008.1.2.4.102", 1, keep)
    assert media.size == 6
    assert read_media(media) == b"234789"
    assert read_media(media, 2, 4) == b"47"
