"""WADO-RS metadata and bulk data through the gateway, cold and warm, on real PACS."""

from __future__ import annotations

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from corpus import Corpus
from gateway_fixtures import RunningGateway
from multipart_helpers import parse_multipart, stow_dataset
from testdata import charset_file

pytestmark = pytest.mark.pacs
JSON = {"Accept": "application/dicom+json"}
# What OHIF sends for metadata when bulk data is enabled.
OHIF_METADATA = {"Accept": "application/dicom+json, multipart/related; "
                           "type=application/octet-stream; transfer-syntax=*"}


def _value(item: dict, tag: str) -> object:
    return item[tag]["Value"][0]


@pytest.mark.parametrize("node", ["dcmqrscp", "orthanc"])
def test_series_metadata_has_geometry_and_bulk_uris(gateway: RunningGateway, corpus: Corpus,
                                                    node: str) -> None:
    study = corpus.study("big_ct")
    series = study.series[0]
    url = f"{gateway.dicomweb(node)}/studies/{study.study_uid}/series/{series.series_uid}"
    response = httpx.get(f"{url}/metadata", headers=OHIF_METADATA, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    items = response.json()
    assert len(items) == 100
    by_uid = {_value(i, "00080018"): i for i in items}
    assert set(by_uid) == {i.sop_instance_uid for i in series.instances}
    one = series.instances[7]
    item = by_uid[one.sop_instance_uid]
    source = pydicom.dcmread(one.path, stop_before_pixels=True)
    assert item["00200032"]["Value"] == [float(v) for v in source.ImagePositionPatient]
    assert item["00280030"]["Value"] == [float(v) for v in source.PixelSpacing]
    assert _value(item, "00280010") == source.Rows
    assert isinstance(_value(item, "00281052"), int | float)  # RescaleIntercept is a number
    assert "InlineBinary" not in item["7FE00010"]
    assert item["7FE00010"]["BulkDataURI"] == (
        f"{url}/instances/{one.sop_instance_uid}/bulkdata/7FE00010")


def test_bulk_data_uri_resolves_to_the_pixel_data(gateway: RunningGateway,
                                                  corpus: Corpus) -> None:
    study = corpus.study("ct_small")
    series = study.series[-1]
    base = gateway.dicomweb("orthanc")
    items = httpx.get(f"{base}/studies/{study.study_uid}/series/{series.series_uid}/metadata",
                      headers=JSON, timeout=60).json()
    item = items[0]
    pixels = pydicom.dcmread(corpus.instance(_value(item, "00080018")).path).PixelData
    uri = item["7FE00010"]["BulkDataURI"]
    multipart = httpx.get(uri, timeout=30)
    assert multipart.status_code == 200
    (part,) = parse_multipart(multipart.headers["content-type"], multipart.content)
    assert part.body == pixels
    assert part.headers["content-type"].startswith("application/octet-stream")
    single = httpx.get(uri, headers={"Accept": "application/octet-stream"}, timeout=30)
    assert single.content == pixels
    ranged = httpx.get(uri, headers={"Accept": "application/octet-stream",
                                     "Range": "bytes=10-19"}, timeout=30)
    assert ranged.status_code == 206
    assert ranged.content == pixels[10:20]
    assert ranged.headers["content-range"] == f"bytes 10-19/{len(pixels)}"


def test_bulk_data_uris_follow_forwarded_headers(gateway: RunningGateway, corpus: Corpus) -> None:
    study = corpus.study("ct_small")
    series = study.series[0]
    url = (f"{gateway.dicomweb('orthanc')}/studies/{study.study_uid}/series/"
           f"{series.series_uid}/metadata")
    response = httpx.get(url, headers={**JSON, "X-Forwarded-Proto": "https",
                                       "X-Forwarded-Host": "pacs.example.org",
                                       "X-Forwarded-Prefix": "/gw"}, timeout=60)
    uri = response.json()[0]["7FE00010"]["BulkDataURI"]
    assert uri.startswith("https://pacs.example.org/gw/pacs/orthanc/dicom-web/studies/")


def test_study_and_instance_metadata(gateway: RunningGateway, corpus: Corpus) -> None:
    study = corpus.study("ct_small")
    base = f"{gateway.dicomweb('dcmqrscp')}/studies/{study.study_uid}"
    items = httpx.get(f"{base}/metadata", headers=JSON, timeout=60).json()
    assert {_value(i, "00080018") for i in items} == {i.sop_instance_uid for i in study.instances}
    series = study.series[-1]
    one = series.instances[0]
    (item,) = httpx.get(
        f"{base}/series/{series.series_uid}/instances/{one.sop_instance_uid}/metadata",
        headers=JSON, timeout=60).json()
    assert _value(item, "0020000E") == series.series_uid


def test_warm_series_metadata_does_not_touch_the_pacs(gateway: RunningGateway,
                                                      corpus: Corpus) -> None:
    study = corpus.study("mr_implicit")
    series = study.series[0]
    url = (f"{gateway.dicomweb('dcmqrscp')}/studies/{study.study_uid}/series/"
           f"{series.series_uid}/metadata")
    cold = httpx.get(url, headers=JSON, timeout=60)
    started = gateway.flights_started("dcmqrscp")
    warm = httpx.get(url, headers=JSON, timeout=60)
    assert warm.status_code == cold.status_code == 200
    assert warm.json() == cold.json()
    assert gateway.flights_started("dcmqrscp") == started


def test_unknown_series_metadata_is_404(gateway: RunningGateway, corpus: Corpus) -> None:
    study = corpus.study("ct_small")
    url = f"{gateway.dicomweb('orthanc')}/studies/{study.study_uid}/series/1.2.3.999/metadata"
    response = httpx.get(url, headers=JSON, timeout=60)
    assert response.status_code == 404


def test_study_metadata_as_bare_xml_is_406(gateway: RunningGateway, corpus: Corpus) -> None:
    """DICOM XML comes in parts (tests/test_integration_dicomxml.py); not bare for a study."""
    study = corpus.study("ct_small")
    response = httpx.get(f"{gateway.dicomweb()}/studies/{study.study_uid}/metadata",
                         headers={"Accept": "application/dicom+xml"})
    assert response.status_code == 406


def test_compressed_pixel_data_bulk_uri_gives_its_frames(gateway: RunningGateway,
                                                         corpus: Corpus) -> None:
    study = corpus.study("mr_multiframe_compressed")
    series = study.series[0]
    instance = series.instances[1]  # JPEG-LS lossless, 10 frames
    base = f"{gateway.dicomweb('orthanc')}/studies/{study.study_uid}/series/{series.series_uid}"
    (item,) = httpx.get(f"{base}/instances/{instance.sop_instance_uid}/metadata",
                        headers=JSON, timeout=60).json()
    response = httpx.get(item["7FE00010"]["BulkDataURI"],
                         headers={"Accept": "multipart/related; type=image/jls"}, timeout=60)
    assert response.status_code == 200, response.text
    parts = parse_multipart(response.headers["content-type"], response.content)
    from pydicom.encaps import generate_frames
    expected = list(generate_frames(pydicom.dcmread(instance.path).PixelData,
                                    number_of_frames=10))
    assert [p.body for p in parts] == expected
    assert {p.headers["content-type"] for p in parts} == {
        f"image/jls; transfer-syntax={instance.transfer_syntax_uid}"}


# -- character sets and person names (PS3.18 F.2.2) ----------------------------------


def _charset_instance(name: str) -> pydicom.Dataset:
    """One of pydicom's character set test files, with UIDs of its own."""
    ds = pydicom.dcmread(charset_file(name))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds


def _instance_metadata(gateway: RunningGateway, node: str, ds: pydicom.Dataset) -> dict:
    url = (f"{gateway.dicomweb(node)}/studies/{ds.StudyInstanceUID}/series/"
           f"{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/metadata")
    response = httpx.get(url, headers=JSON, timeout=60)
    assert response.status_code == 200, response.text
    (item,) = response.json()
    return item


@pytest.mark.parametrize("node", ["dcmqrscp", "orthanc"])
def test_metadata_keeps_the_source_character_set(gateway: RunningGateway, corpus: Corpus,
                                                 node: str) -> None:
    # F.2.2 Note 3: Specific Character Set reflects the source's encoding, the JSON is UTF-8.
    study = corpus.study("charset")  # stored as ISO_IR 100 (Latin-1)
    series = study.series[0]
    url = f"{gateway.dicomweb(node)}/studies/{study.study_uid}/series/{series.series_uid}"
    (item,) = httpx.get(f"{url}/metadata", headers=JSON, timeout=60).json()
    assert item["00080005"] == {"vr": "CS", "Value": ["ISO_IR 100"]}
    assert item["00100010"]["Value"] == [{"Alphabetic": "Müller^Hans"}]
    assert item["00080090"]["Value"] == [{"Alphabetic": "Weiß^Jürgen"}]


# What each PACS says its C-FIND answer is encoded in: dcmqrscp answers with the stored
# bytes and their character set, Orthanc converts its answers to UTF-8.
@pytest.mark.parametrize(("node", "charset"), [("dcmqrscp", ["ISO_IR 100"]),
                                               ("orthanc", ["ISO_IR 192"])])
def test_qido_keeps_the_pacs_character_set(gateway: RunningGateway, corpus: Corpus,
                                           node: str, charset: list[str]) -> None:
    study = corpus.study("charset")
    response = httpx.get(f"{gateway.dicomweb(node)}/studies",
                         params={"PatientID": study.patient_id, "includefield": "00080005"},
                         headers=JSON, timeout=60)
    assert response.status_code == 200, response.text
    (item,) = response.json()
    assert item["00100010"]["Value"] == [{"Alphabetic": "Müller^Hans"}]
    # As with WADO-RS metadata, (0008,0005) is the source's (here the C-FIND response's).
    assert item["00080005"] == {"vr": "CS", "Value": charset}


@pytest.mark.parametrize("node", ["dcmqrscp", "orthanc"])
def test_iso_2022_japanese_instance(gateway: RunningGateway, node: str) -> None:
    ds = _charset_instance("chrH31.dcm")  # ISO 2022 IR 87, three component groups
    stow_dataset(gateway.dicomweb(node), ds)
    item = _instance_metadata(gateway, node, ds)
    assert item["00080005"] == {"vr": "CS", "Value": [None, "ISO 2022 IR 87"]}
    assert item["00100010"]["Value"] == [{"Alphabetic": "Yamada^Tarou",
                                          "Ideographic": "山田^太郎",
                                          "Phonetic": "やまだ^たろう"}]


@pytest.mark.parametrize("node", ["dcmqrscp", "orthanc"])
def test_empty_person_name_groups_and_values(gateway: RunningGateway, node: str) -> None:
    ds = _charset_instance("chrX1.dcm")  # ISO_IR 192, "Wang^XiaoDong=王^小東=": Phonetic empty
    ds.PerformingPhysicianName = "Doe^John\\"  # two values, the second one empty
    stow_dataset(gateway.dicomweb(node), ds)
    item = _instance_metadata(gateway, node, ds)
    assert item["00080005"] == {"vr": "CS", "Value": ["ISO_IR 192"]}
    # F.2.2: the non-empty groups only; F.2.5: an empty value is null.
    assert item["00100010"]["Value"] == [{"Alphabetic": "Wang^XiaoDong", "Ideographic": "王^小東"}]
    assert item["00081050"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}, None]}
