"""Transcoding: per-frame encoding, whole instances, and the choices that lead to them.

Every encoded frame is decoded again with pydicom's own decoders (the ones a
client library would use) and compared with the original samples.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread, uid
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.pixels import pixel_array
from pydicom.pixels.decoders.base import Decoder, get_decoder
from pydicom.pixels.encoders.base import Encoder

from dicomweb_gw.codecs.frames import FrameInfo, FrameReader
from dicomweb_gw.codecs.part10 import instance_from_file, part10_chunks
from dicomweb_gw.codecs.transcode import (
    ENCODABLE,
    SampleFormat,
    TranscodeError,
    encode_frame,
    sample_format,
    transcode_instance,
)
from dicomweb_gw.dicomweb.selection import FrameOption, PixelRequest, choose_pixels
from dicomweb_gw.errors import GatewayError, NotAcceptable
from dicomweb_gw.http.negotiation import negotiate_instances, negotiate_pixels
from dicomweb_gw.model import RetrievedInstance
from testdata import pydicom_file

EMRI = ["emri_small.dcm", "emri_small_big_endian.dcm", "emri_small_RLE.dcm",
        "emri_small_jpeg_ls_lossless.dcm", "emri_small_jpeg_2k_lossless.dcm"]
TARGETS = [s for s in ENCODABLE if s != uid.HTJ2K]  # the lossless ones
# HTJ2K (.203) is the one lossy target: its own tests are in test_codecs_htj2k.py.
COMPRESSED_TARGETS = [s for s in ENCODABLE if s not in (uid.ExplicitVRLittleEndian, uid.HTJ2K)]


@pytest.fixture(scope="module")
def emri() -> np.ndarray[Any, Any]:
    return pixel_array(pydicom_file("emri_small.dcm"))


def test_the_required_lossless_targets_are_encodable() -> None:
    assert {uid.ExplicitVRLittleEndian, uid.RLELossless, uid.JPEGLSLossless,
            uid.JPEG2000Lossless} <= set(ENCODABLE)
    assert ENCODABLE[uid.JPEGLSLossless] == "image/jls"


# -- decoding: every frame from every syntax ---------------------------------------


@pytest.mark.parametrize("name", EMRI)
def test_every_frame_decodes_identically_from_every_syntax(
        name: str, emri: np.ndarray[Any, Any]) -> None:
    reader = FrameReader(pydicom_file(name))
    for number in range(1, 11):
        assert reader.native(number) == emri[number - 1].astype("<u2").tobytes()


# -- encode -> decode round trips ----------------------------------------------------


def _frame(kind: str) -> tuple[np.ndarray[Any, Any], FrameInfo, SampleFormat]:
    """A smooth-plus-noise frame of the given sample format, interleaved."""
    rng = np.random.default_rng(7)
    rows, columns = 40, 52
    ramp = np.add.outer(np.arange(rows), np.arange(columns))
    spp, bits, stored, signed, photometric = {
        "8-bit": (1, 8, 8, 0, "MONOCHROME2"),
        "12-bit": (1, 16, 12, 0, "MONOCHROME2"),
        "16-bit": (1, 16, 16, 0, "MONOCHROME2"),
        "signed": (1, 16, 16, 1, "MONOCHROME2"),
        "signed-12": (1, 16, 12, 1, "MONOCHROME2"),
        "rgb": (3, 8, 8, 0, "RGB"),
        "rgb-planar": (3, 8, 8, 0, "RGB"),
        "rgb-16": (3, 16, 16, 0, "RGB"),
    }[kind]
    high = 1 << (stored - 1 if signed else stored)
    low = -high if signed else 0
    shape = (rows, columns, spp) if spp > 1 else (rows, columns)
    noise = rng.integers(0, 7, size=shape)
    base = ramp[..., None] * np.array([1, 3, 5]) if spp > 1 else ramp * 37
    values = np.clip(base * (high // 64 or 1) + noise + low, low, high - 1)
    array = values.astype(f"<{'i' if signed else 'u'}{bits // 8}")
    info = FrameInfo(1, uid.ExplicitVRLittleEndian, rows, columns, spp, bits, photometric,
                     planar_configuration=1 if kind == "rgb-planar" else 0)
    return array, info, SampleFormat(stored, signed)


def _native_bytes(array: np.ndarray[Any, Any], info: FrameInfo) -> bytes:
    if info.planar_configuration == 1:
        return np.ascontiguousarray(array.transpose(2, 0, 1)).tobytes()
    return array.tobytes()


def _decode(frame: bytes, syntax: str, info: FrameInfo, fmt: SampleFormat
            ) -> np.ndarray[Any, Any]:
    """Decode ``frame`` as a client would from its label: pydicom's decoder for ``syntax``."""
    array, _ = get_decoder(syntax).as_array(
        encapsulate([frame]), rows=info.rows, columns=info.columns,
        samples_per_pixel=info.samples_per_pixel, bits_allocated=info.bits_allocated,
        bits_stored=fmt.bits_stored, pixel_representation=fmt.pixel_representation,
        photometric_interpretation=info.photometric_interpretation, number_of_frames=1,
        planar_configuration=0)
    return array


@pytest.mark.parametrize(("kind", "syntax"), [
    (kind, syntax) for syntax in COMPRESSED_TARGETS
    for kind in ("8-bit", "12-bit", "16-bit", "signed", "signed-12", "rgb", "rgb-planar",
                 "rgb-16")
    # RLE Lossless has no 16-bit colour profile (PS3.5 Table 8.2.2-1)
    if not (syntax == uid.RLELossless and kind == "rgb-16")
])
def test_encode_decode_round_trip_is_bit_exact(kind: str, syntax: str) -> None:
    array, info, fmt = _frame(kind)
    encoded = encode_frame(_native_bytes(array, info), info, syntax, fmt)
    decoded = _decode(encoded, syntax, info, fmt)
    assert decoded.dtype.kind == array.dtype.kind
    assert np.array_equal(decoded, array)


def test_explicit_vr_little_endian_is_the_identity() -> None:
    array, info, fmt = _frame("rgb-planar")
    native = _native_bytes(array, info)
    assert encode_frame(native, info, uid.ExplicitVRLittleEndian, fmt) is native


@pytest.mark.parametrize("syntax", COMPRESSED_TARGETS)
def test_bits_above_bits_stored_survive(syntax: str) -> None:
    """Overlay bits or unextended signs above Bits Stored are still pixel bytes."""
    array, info, _ = _frame("12-bit")
    array = array | np.uint16(0x8000)
    fmt = SampleFormat(12, 0)
    encoded = encode_frame(array.tobytes(), info, syntax, fmt)
    assert np.array_equal(_decode(encoded, syntax, info, SampleFormat(16, 0)), array)


@pytest.mark.parametrize("name", EMRI[1:])
@pytest.mark.parametrize("syntax", COMPRESSED_TARGETS)
def test_real_frames_transcode_between_syntaxes(name: str, syntax: str,
                                                emri: np.ndarray[Any, Any]) -> None:
    path = pydicom_file(name)
    reader = FrameReader(path)
    fmt = sample_format(path)
    assert fmt == SampleFormat(12, 0)
    encoded = encode_frame(reader.native(6), reader.native_info(), syntax, fmt)
    assert np.array_equal(_decode(encoded, syntax, reader.native_info(), fmt), emri[5])


# -- per-frame work -------------------------------------------------------------------


def test_one_frame_of_a_multiframe_is_decoded_and_encoded_alone(
        monkeypatch: pytest.MonkeyPatch, emri: np.ndarray[Any, Any]) -> None:
    decoded: list[int] = []
    encoded: list[tuple[int, ...]] = []
    real_decode, real_encode = Decoder.as_array, Encoder.encode

    def spy_decode(self: Decoder, src: Any, **kwargs: Any) -> Any:
        decoded.append(len(list(generate_frames(src, number_of_frames=1))))
        return real_decode(self, src, **kwargs)

    def spy_encode(self: Encoder, src: Any, **kwargs: Any) -> bytes:
        encoded.append(tuple(src.shape))
        assert kwargs["number_of_frames"] == 1
        return real_encode(self, src, **kwargs)

    monkeypatch.setattr(Decoder, "as_array", spy_decode)
    monkeypatch.setattr(Encoder, "encode", spy_encode)
    reader = FrameReader(pydicom_file("emri_small_jpeg_2k_lossless.dcm"))
    frame = encode_frame(reader.native(7), reader.native_info(), uid.JPEGLSLossless,
                         sample_format(reader.path))
    assert decoded == [1]  # one single-frame buffer decoded, not the 10-frame instance
    assert encoded == [(64, 64)]
    monkeypatch.undo()
    info, fmt = reader.native_info(), SampleFormat(12, 0)
    assert np.array_equal(_decode(frame, uid.JPEGLSLossless, info, fmt), emri[6])


# -- corrupt data and refusals ------------------------------------------------------


def test_corrupt_codestream_is_a_gateway_error_with_a_clear_message(tmp_path: Path) -> None:
    ds = dcmread(pydicom_file("emri_small_jpeg_2k_lossless.dcm"))
    frames = list(generate_frames(ds.PixelData, number_of_frames=10))
    frames[2] = frames[2][: len(frames[2]) // 3]  # a truncated codestream
    ds.PixelData = encapsulate(frames)
    ds.save_as(tmp_path / "corrupt.dcm", enforce_file_format=True)
    reader = FrameReader(tmp_path / "corrupt.dcm")
    reader.native(2)  # neighbours decode fine
    with pytest.raises(GatewayError) as raised:
        reader.native(3)
    assert raised.value.status_code == 406
    assert "frame 3" in raised.value.message
    assert "could not be decoded" in raised.value.message
    instance = instance_from_file(tmp_path / "corrupt.dcm")
    with pytest.raises(TranscodeError) as whole:
        transcode_instance(instance, uid.JPEGLSLossless)
    assert "could not be decoded" in whole.value.message
    assert "transfer-syntax=*" in whole.value.message


def test_short_frame_and_unencodable_layouts_are_refused() -> None:
    array, info, fmt = _frame("16-bit")
    with pytest.raises(TranscodeError, match="bytes"):
        encode_frame(array.tobytes()[:-2], info, uid.RLELossless, fmt)
    with pytest.raises(TranscodeError, match="cannot encode"):
        encode_frame(array.tobytes(), info, uid.JPEGBaseline8Bit, fmt)
    big = FrameInfo(1, uid.ExplicitVRLittleEndian, 4, 4, 1, 32, "MONOCHROME2")
    with pytest.raises(TranscodeError, match="JPEG-LS"):
        encode_frame(bytes(64), big, uid.JPEGLSLossless, SampleFormat(32, 0))


# -- whole instances ------------------------------------------------------------------


def _read(instance: Any) -> Dataset:
    return dcmread(BytesIO(b"".join(part10_chunks(instance))))


@pytest.mark.parametrize("syntax", TARGETS)
@pytest.mark.parametrize("name", ["emri_small.dcm", "emri_small_jpeg_2k_lossless.dcm",
                                  "emri_small_big_endian.dcm"])
def test_instances_transcode_losslessly_and_keep_their_uid(
        name: str, syntax: str, emri: np.ndarray[Any, Any]) -> None:
    source = instance_from_file(pydicom_file(name))
    result = transcode_instance(source, syntax)
    assert result.transfer_syntax_uid == syntax
    assert result.sop_instance_uid == source.sop_instance_uid
    ds = _read(result)
    assert ds.file_meta.TransferSyntaxUID == syntax
    assert ds.SOPInstanceUID == source.sop_instance_uid
    assert np.array_equal(ds.pixel_array, emri)
    if syntax not in (uid.ExplicitVRLittleEndian, source.transfer_syntax_uid):
        # Each fragment is what the frames resource would send for that frame.
        reader = FrameReader(pydicom_file(name))
        fragments = list(generate_frames(ds.PixelData, number_of_frames=10))
        expected = encode_frame(reader.native(5), reader.native_info(), syntax,
                                SampleFormat(12, 0))
        assert fragments[4] in (expected, expected + b"\x00")  # fragments have even lengths


@pytest.mark.parametrize("syntax", COMPRESSED_TARGETS)
def test_colour_instances_get_a_consistent_pixel_module(syntax: str) -> None:
    source = instance_from_file(pydicom_file("SC_rgb_jpeg_dcmtk.dcm"))  # YBR_FULL JPEG baseline
    reference = pixel_array(pydicom_file("SC_rgb_jpeg_dcmtk.dcm"))  # decoded to RGB
    ds = _read(transcode_instance(source, syntax))
    assert ds.PhotometricInterpretation == "YBR_FULL"  # decoded as stored (photometric.py)
    assert ds.PlanarConfiguration == (1 if syntax == uid.RLELossless else 0)
    assert np.array_equal(ds.pixel_array, reference)


def test_planar_native_colour_transcodes(tmp_path: Path) -> None:
    ds = dcmread(pydicom_file("SC_rgb.dcm"))
    reference = ds.pixel_array.copy()
    ds.PixelData = np.ascontiguousarray(reference.transpose(2, 0, 1)).tobytes()
    ds.PlanarConfiguration = 1
    ds.save_as(tmp_path / "planar.dcm", enforce_file_format=True)
    for syntax in COMPRESSED_TARGETS:
        out = _read(transcode_instance(instance_from_file(tmp_path / "planar.dcm"), syntax))
        assert np.array_equal(out.pixel_array, reference), syntax


def test_lossy_targets_only_as_stored() -> None:
    jpeg = instance_from_file(pydicom_file("SC_rgb_jpeg_dcmtk.dcm"))
    assert transcode_instance(jpeg, uid.JPEGBaseline8Bit) is jpeg
    native = instance_from_file(pydicom_file("emri_small.dcm"))
    with pytest.raises(TranscodeError) as raised:
        transcode_instance(native, uid.JPEGBaseline8Bit)
    assert raised.value.status_code == 406
    assert uid.JPEGLSLossless in raised.value.message  # lists what it could have had


def test_instances_without_pixel_data_are_relabelled() -> None:
    source = instance_from_file(pydicom_file("emri_small.dcm"))
    ds = _read(source)
    del ds.PixelData
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    stripped = RetrievedInstance(source.sop_class_uid, source.sop_instance_uid,
                                 uid.ExplicitVRLittleEndian, buffer.getvalue())
    result = transcode_instance(stripped, uid.JPEGLSLossless)
    assert result.transfer_syntax_uid == uid.JPEGLSLossless
    assert result.dataset == stripped.dataset
    assert _read(result).PatientName == ds.PatientName


# -- choosing what to send ----------------------------------------------------------


def _request(*options: tuple[str, str | None]) -> PixelRequest:
    return PixelRequest(tuple(FrameOption(m, s) for m, s in options), multipart=True)


JLS = "image/jls"
OCTET = "application/octet-stream"


def test_frames_choose_stored_native_or_encode() -> None:
    j2k, j2k_type = uid.JPEG2000Lossless, "image/jp2"
    as_stored = choose_pixels(_request((OCTET, "*")), j2k, j2k_type)
    assert (as_stored.action, as_stored.transfer_syntax) == ("stored", j2k)
    native = choose_pixels(_request((OCTET, None)), j2k, j2k_type)
    assert (native.action, native.transfer_syntax) == ("native", uid.ExplicitVRLittleEndian)
    encode = choose_pixels(_request((JLS, None)), j2k, j2k_type)
    assert (encode.action, encode.transfer_syntax) == ("encode", uid.JPEGLSLossless)
    explicit = choose_pixels(_request(("image/dicom-rle", uid.RLELossless)),
                             uid.ExplicitVRLittleEndian, OCTET)
    assert (explicit.action, explicit.transfer_syntax) == ("encode", uid.RLELossless)
    # a media type's transfer-syntax must belong to it
    with pytest.raises(NotAcceptable):
        choose_pixels(_request((JLS, uid.JPEG2000Lossless)), uid.ExplicitVRLittleEndian, OCTET)


def test_frames_406_lists_what_this_instance_can_be_sent_as() -> None:
    with pytest.raises(NotAcceptable) as raised:
        choose_pixels(_request(("image/jpeg", None)), uid.JPEG2000Lossless, "image/jp2")
    message = raised.value.message
    assert f"image/jp2; transfer-syntax={uid.JPEG2000Lossless}" in message
    assert f"application/octet-stream; transfer-syntax={uid.ExplicitVRLittleEndian}" in message
    assert f"image/jls; transfer-syntax={uid.JPEGLSLossless}" in message


def test_undecodable_video_frames_offer_nothing_to_transcode() -> None:
    with pytest.raises(NotAcceptable) as raised:
        choose_pixels(_request((OCTET, "*"), (JLS, None)), uid.MPEG2MPML, None)
    assert "available: none" in raised.value.message


def test_frames_accept_with_q_values_picks_the_best_producible() -> None:
    accept = ('multipart/related; type="image/jpeg"; q=1, '
              'multipart/related; type="image/jp2"; q=0.5, '
              "multipart/related; type=image/jls; q=0.9, "
              'multipart/related; type="application/octet-stream"; q=0.1')
    request = negotiate_pixels(accept)
    choice = choose_pixels(request, uid.ExplicitVRLittleEndian, OCTET)
    assert choice.transfer_syntax == uid.JPEGLSLossless  # image/jpeg is not encodable


def test_instances_accept_encodable_and_as_stored_preferences() -> None:
    jls = f'multipart/related; type="application/dicom"; transfer-syntax={uid.JPEGLSLossless}'
    assert negotiate_instances(jls).transfer_syntax == uid.JPEGLSLossless
    accept = (f'multipart/related; type="application/dicom; transfer-syntax='
              f'{uid.JPEGBaseline8Bit}", {jls}; q=0.5, multipart/related; '
              "type=application/dicom; q=0.2")
    selection = negotiate_instances(accept)
    assert selection.transfer_syntax == uid.JPEGLSLossless
    # stored as JPEG baseline: sent as stored; anything else: JPEG-LS, then Explicit VR LE
    assert selection.candidates(uid.JPEGBaseline8Bit)[:2] == [uid.JPEGBaseline8Bit,
                                                              uid.JPEGLSLossless]
    assert selection.candidates(uid.RLELossless) == [uid.JPEGLSLossless,
                                                     uid.ExplicitVRLittleEndian]


def test_instances_unproducible_syntax_is_406_listing_the_options() -> None:
    """MPEG-2 can only be sent as stored: an instance stored otherwise is refused."""
    selection = negotiate_instances('multipart/related; type="application/dicom"; '
                                    f"transfer-syntax={uid.MPEG2MPML}")
    assert selection.candidates(uid.ExplicitVRLittleEndian) == []
    message = selection.refusal("1.2.3", uid.ExplicitVRLittleEndian)
    assert uid.JPEG2000Lossless in message
    assert "transfer-syntax=*" in message


def test_octet_stream_with_the_stored_syntax_is_sent_as_stored() -> None:
    """JPEG baseline cannot be encoded, but frames stored in it are sent as they are."""
    choice = choose_pixels(_request((OCTET, uid.JPEGBaseline8Bit)), uid.JPEGBaseline8Bit,
                           "image/jpeg")
    assert (choice.action, choice.transfer_syntax) == ("stored", uid.JPEGBaseline8Bit)
    with pytest.raises(NotAcceptable):
        choose_pixels(_request((OCTET, uid.JPEGBaseline8Bit)), uid.JPEG2000Lossless,
                      "image/jp2")
