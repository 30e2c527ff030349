"""HTTP caching (#18 part 2): ETags, Cache-Control, 304 Not Modified, over the demo PACS.

Every check goes through a real gateway (uvicorn) in front of the embedded demo
PACS; "without the PACS" is proven by stopping it before revalidating.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from demo_gateway import DemoSetup, demo_gateway
from multipart_helpers import stow_dataset

DICOM_JSON = "application/dicom+json"
OCTET = "application/octet-stream"
FRAMES_MULTIPART = 'multipart/related; type="application/octet-stream"'


@dataclass(frozen=True)
class Study:
    study_uid: str
    series_uid: str
    sop_uids: list[str]
    files: list[Path]


def make_instance(folder: Path, study_uid: str, series_uid: str, number: int) -> Path:
    """CT_small with new UIDs, filed under ``study_uid``/``series_uid``."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = number
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path)
    return path


def make_study(folder: Path, count: int) -> Study:
    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = generate_uid(), generate_uid()
    files = [make_instance(folder, study_uid, series_uid, n + 1) for n in range(count)]
    sops = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
    return Study(study_uid, series_uid, sops, files)


@pytest.fixture
def two_studies(tmp_path: Path) -> tuple[Study, Study]:
    return make_study(tmp_path / "a", 3), make_study(tmp_path / "b", 1)


@pytest.fixture
def setup(tmp_path: Path, two_studies: tuple[Study, Study]) -> Iterator[DemoSetup]:
    files = [f for study in two_studies for f in study.files]
    with demo_gateway(tmp_path, files) as running:
        yield running


def instance_url(setup: DemoSetup, study: Study, index: int = 0, study_uid: str | None = None,
                 series_uid: str | None = None) -> str:
    return (f"{setup.gateway.dicomweb()}/studies/{study_uid or study.study_uid}"
            f"/series/{series_uid or study.series_uid}/instances/{study.sop_uids[index]}")


def test_instance_answers_carry_a_stable_strong_etag_and_private_max_age(
        setup: DemoSetup, two_studies: tuple[Study, Study]) -> None:
    study = two_studies[0]
    with httpx.Client(timeout=30) as client:
        for suffix, accept in (("/metadata", DICOM_JSON), ("/frames/1", OCTET),
                               ("/rendered", "image/jpeg"), ("/thumbnail", "image/png"),
                               ("/frames/1/rendered", "image/png")):
            url = instance_url(setup, study) + suffix
            first = client.get(url, headers={"Accept": accept})
            second = client.get(url, headers={"Accept": accept})
            assert first.status_code == 200, (suffix, first.text)
            etag = first.headers["etag"]
            assert etag.startswith('"'), (suffix, etag)  # strong
            assert second.headers["etag"] == etag
            assert first.headers["cache-control"] == "private, max-age=86400"
            vary = [v.strip() for v in first.headers["vary"].split(",")]
            assert {"Accept", "Authorization"} <= set(vary)


def test_etag_differs_per_representation(setup: DemoSetup,
                                         two_studies: tuple[Study, Study]) -> None:
    study = two_studies[0]
    url = instance_url(setup, study)
    with httpx.Client(timeout=30) as client:
        tags = {
            client.get(url + "/frames/1", headers={"Accept": OCTET}).headers["etag"],
            client.get(url + "/frames/1", headers={"Accept": FRAMES_MULTIPART}).headers["etag"],
            client.get(url + "/rendered", headers={"Accept": "image/jpeg"}).headers["etag"],
            client.get(url + "/rendered", headers={"Accept": "image/png"}).headers["etag"],
            client.get(url + "/rendered?window=40,400,linear",
                       headers={"Accept": "image/png"}).headers["etag"],
            client.get(instance_url(setup, study, 1) + "/rendered",
                       headers={"Accept": "image/png"}).headers["etag"],
        }
    assert len(tags) == 6


def test_multipart_answers_have_a_weak_etag(setup: DemoSetup,
                                            two_studies: tuple[Study, Study]) -> None:
    """A multipart boundary is new on every answer: same parts, not the same bytes."""
    url = instance_url(setup, two_studies[0]) + "/frames/1"
    response = httpx.get(url, headers={"Accept": FRAMES_MULTIPART}, timeout=30)
    assert response.headers["etag"].startswith('W/"')


def test_if_none_match_gives_304_without_the_pacs(setup: DemoSetup,
                                                  two_studies: tuple[Study, Study]) -> None:
    study = two_studies[0]
    url = instance_url(setup, study) + "/frames/1"
    with httpx.Client(timeout=30) as client:
        etag = client.get(url, headers={"Accept": OCTET}).headers["etag"]
        setup.pacs.stop()
        for condition in (etag, f'"other", {etag}', f"W/{etag}", "*"):
            revalidated = client.get(url, headers={"Accept": OCTET,
                                                   "If-None-Match": condition})
            assert revalidated.status_code == 304, (condition, revalidated.text)
            assert revalidated.content == b""
            assert revalidated.headers["etag"] in (etag, f"W/{etag}")
            assert revalidated.headers["cache-control"] == "private, max-age=86400"
        changed = client.get(url, headers={"Accept": OCTET, "If-None-Match": '"other"'})
        assert changed.status_code == 200
        assert changed.headers["etag"] == etag


def test_no_304_for_an_instance_under_another_study(setup: DemoSetup,
                                                    two_studies: tuple[Study, Study]) -> None:
    """Even ``*``: a 304 would tell that the instance exists, where a 200 would not be given."""
    study, other = two_studies
    right = instance_url(setup, study) + "/metadata"
    with httpx.Client(timeout=30) as client:
        assert client.get(right, headers={"Accept": DICOM_JSON}).status_code == 200
        for wrong in (instance_url(setup, study, study_uid=other.study_uid),
                      instance_url(setup, study, series_uid=other.series_uid)):
            answer = client.get(wrong + "/metadata", headers={"Accept": DICOM_JSON,
                                                              "If-None-Match": "*"})
            assert answer.status_code == 404, answer.text
            assert "etag" not in answer.headers
            assert "private" not in answer.headers.get("cache-control", "")


def test_an_uncached_instance_is_not_304_but_answered(setup: DemoSetup,
                                                      two_studies: tuple[Study, Study]) -> None:
    url = instance_url(setup, two_studies[0], 2) + "/metadata"
    answer = httpx.get(url, headers={"Accept": DICOM_JSON, "If-None-Match": "*"}, timeout=30)
    assert answer.status_code == 200
    assert answer.json()[0]["00080018"]["Value"] == [two_studies[0].sop_uids[2]]


def wado_uri_url(setup: DemoSetup, study: Study, content_type: str, **extra: str) -> str:
    return f"{setup.gateway.url}/wado?" + urlencode({
        "requestType": "WADO", "studyUID": study.study_uid, "seriesUID": study.series_uid,
        "objectUID": study.sop_uids[0], "contentType": content_type, **extra})


def test_a_wado_uri_object_is_cached_as_a_wado_rs_instance(
        setup: DemoSetup, two_studies: tuple[Study, Study]) -> None:
    """A WADO-URI link names one object, which never changes under its UID: the same
    strong ETag, max-age and 304 without the PACS as its WADO-RS retrieve."""
    study = two_studies[0]
    urls = [wado_uri_url(setup, study, "application/dicom"),
            wado_uri_url(setup, study, "image/jpeg"),
            wado_uri_url(setup, study, "image/jpeg", columns="64")]
    with httpx.Client(timeout=30) as client:
        tags = []
        for url in urls:
            first, second = client.get(url), client.get(url)
            assert first.status_code == 200, first.text
            tags.append(first.headers["etag"])
            assert tags[-1].startswith('"')
            assert second.headers["etag"] == tags[-1]
            assert first.headers["cache-control"] == "private, max-age=86400"
        assert len(set(tags)) == len(urls)
        setup.pacs.stop()
        for url, etag in zip(urls, tags, strict=True):
            revalidated = client.get(url, headers={"If-None-Match": etag})
            assert revalidated.status_code == 304, revalidated.text
            assert revalidated.headers["etag"] == etag


def test_an_anonymized_wado_uri_object_is_never_kept(
        setup: DemoSetup, two_studies: tuple[Study, Study]) -> None:
    """Its new UIDs come from a key each process makes: another replica, or the same
    one restarted, answers the same link with other bytes, so no ETag and no reuse."""
    url = wado_uri_url(setup, two_studies[0], "application/dicom", anonymize="yes")
    with httpx.Client(timeout=30) as client:
        answer = client.get(url)
        assert answer.status_code == 200, answer.text
        assert "etag" not in answer.headers
        assert answer.headers["cache-control"] == "no-store"
        assert client.get(url, headers={"If-None-Match": "*"}).status_code == 200


def test_study_and_series_answers_revalidate_over_the_instance_list(
        setup: DemoSetup, two_studies: tuple[Study, Study], tmp_path: Path) -> None:
    study = two_studies[0]
    base = setup.gateway.dicomweb()
    study_url = f"{base}/studies/{study.study_uid}/metadata"
    series_url = f"{base}/studies/{study.study_uid}/series/{study.series_uid}/metadata"
    with httpx.Client(timeout=30) as client:
        client.get(study_url, headers={"Accept": DICOM_JSON})  # cold: now complete in the cache
        first = client.get(study_url, headers={"Accept": DICOM_JSON})
        assert first.status_code == 200
        assert "no-cache" in first.headers["cache-control"]
        assert "max-age" not in first.headers["cache-control"]
        etag = first.headers["etag"]
        series_tag = client.get(series_url, headers={"Accept": DICOM_JSON}).headers["etag"]
        assert series_tag != etag
        assert client.get(study_url, headers={"Accept": DICOM_JSON,
                                              "If-None-Match": etag}).status_code == 304
        # A new instance of the study, stored through the gateway: the list changed.
        added = make_instance(tmp_path / "new", study.study_uid, study.series_uid, 9)
        stow_dataset(base, pydicom.dcmread(added))
        after = client.get(study_url, headers={"Accept": DICOM_JSON, "If-None-Match": etag})
        assert after.status_code == 200
        assert len(after.json()) == 4
        again = client.get(study_url, headers={"Accept": DICOM_JSON})
        assert again.headers["etag"] not in (etag, None)


def test_study_retrieve_revalidates_on_the_cached_instance_list(
        setup: DemoSetup, two_studies: tuple[Study, Study]) -> None:
    study = two_studies[0]
    url = f"{setup.gateway.dicomweb()}/studies/{study.study_uid}"
    dicom = {"Accept": 'multipart/related; type="application/dicom"'}
    with httpx.Client(timeout=30) as client:
        client.get(url, headers=dicom)  # cold: streamed while it arrives, no ETag yet
        warm = client.get(url, headers=dicom)
        assert warm.headers["cache-control"] == "private, no-cache"
        etag = warm.headers["etag"]
        assert etag.startswith('W/"')
        setup.pacs.stop()
        again = client.get(url, headers={**dicom, "If-None-Match": etag})
        assert again.status_code == 304
        assert again.headers["etag"] == etag


def test_multipart_xml_metadata_revalidates_whatever_its_boundary(
        setup: DemoSetup, two_studies: tuple[Study, Study]) -> None:
    study = two_studies[0]
    url = f"{setup.gateway.dicomweb()}/studies/{study.study_uid}/series/{study.series_uid}/metadata"
    xml = {"Accept": 'multipart/related; type="application/dicom+xml"'}
    with httpx.Client(timeout=30) as client:
        first, second = client.get(url, headers=xml), client.get(url, headers=xml)
        assert first.headers["content-type"] != second.headers["content-type"]  # boundaries
        assert first.headers["etag"] == second.headers["etag"]
        assert client.get(url, headers={**xml, "If-None-Match": first.headers["etag"]}
                          ).status_code == 304


def test_qido_answers_revalidate_without_etag(setup: DemoSetup,
                                              two_studies: tuple[Study, Study]) -> None:
    response = httpx.get(f"{setup.gateway.dicomweb()}/studies",
                         params={"StudyInstanceUID": two_studies[0].study_uid}, timeout=30)
    assert response.status_code == 200
    assert "no-cache" in response.headers["cache-control"]
    assert "etag" not in response.headers


def test_errors_carry_no_caching_headers(setup: DemoSetup,
                                         two_studies: tuple[Study, Study]) -> None:
    url = instance_url(setup, two_studies[0]) + "/frames/99"
    response = httpx.get(url, headers={"Accept": OCTET}, timeout=30)
    assert response.status_code == 404
    assert "etag" not in response.headers
    assert "cache-control" not in response.headers


def test_compressed_answers_have_their_own_etag_and_revalidate(
        setup: DemoSetup, two_studies: tuple[Study, Study]) -> None:
    url = instance_url(setup, two_studies[0]) + "/metadata"
    with httpx.Client(timeout=30) as client:
        plain = client.get(url, headers={"Accept": DICOM_JSON, "Accept-Encoding": "identity"})
        packed = client.get(url, headers={"Accept": DICOM_JSON, "Accept-Encoding": "gzip"})
        assert packed.headers["content-encoding"] == "gzip"
        assert packed.headers["etag"] == plain.headers["etag"][:-1] + '-gzip"'
        assert packed.content == plain.content  # httpx decodes gzip
        assert packed.num_bytes_downloaded < len(plain.content)
        revalidated = client.get(url, headers={"Accept": DICOM_JSON, "Accept-Encoding": "gzip",
                                               "If-None-Match": packed.headers["etag"]})
        assert revalidated.status_code == 304
        assert revalidated.headers["etag"] == packed.headers["etag"]
        assert "Accept-Encoding" in revalidated.headers["vary"]


def test_no_store_turns_it_all_off(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s", 1)
    with demo_gateway(tmp_path, study.files, http_cache="no-store") as running:
        url = instance_url(running, study) + "/metadata"
        with httpx.Client(timeout=30) as client:
            first = client.get(url, headers={"Accept": DICOM_JSON})
            assert first.headers["cache-control"] == "no-store"
            assert "etag" not in first.headers
            again = client.get(url, headers={"Accept": DICOM_JSON, "If-None-Match": "*"})
            assert again.status_code == 200


def test_max_age_is_the_setting(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s", 1)
    with demo_gateway(tmp_path, study.files, http_cache_max_age=60) as running:
        response = httpx.get(instance_url(running, study) + "/metadata", timeout=30)
        assert response.headers["cache-control"] == "private, max-age=60"


def test_with_authentication_answers_vary_on_the_credential(tmp_path: Path) -> None:
    """Still ``private``: a browser keeps it for the user who asked, no shared cache does."""
    key = "http-cache-key-0123456789"
    study = make_study(tmp_path / "s", 1)
    with demo_gateway(tmp_path, study.files, api_keys=(key,)) as running:
        url = instance_url(running, study) + "/metadata"
        with httpx.Client(timeout=30) as client:
            response = client.get(url, headers={"Authorization": f"Bearer {key}"})
            assert response.headers["cache-control"] == "private, max-age=86400"
            vary = [v.strip() for v in response.headers["vary"].split(",")]
            assert {"Accept", "Authorization", "X-API-Key"} <= set(vary)
            refused = client.get(url, headers={"If-None-Match": response.headers["etag"]})
            assert refused.status_code == 401  # no 304 without credentials


def test_if_none_match_parsing() -> None:
    from dicomweb_gw.http.http_caching import etag_with_coding, matches

    assert matches('"abc"', "abc") == '"abc"'
    assert matches('W/"abc"', "abc") == 'W/"abc"'
    assert matches('"x", W/"abc-br" ,"y"', "abc") == 'W/"abc-br"'
    assert matches('"a,b", "abc-zstd"', "abc") == '"abc-zstd"'
    assert matches(" * ", "abc") == "*"
    assert matches('"abcd"', "abc") is None
    assert matches("abc", "abc") is None  # unquoted: malformed, matches nothing
    assert matches('"abc-deflate"', "abc") is None
    assert etag_with_coding('"abc"', "gzip") == '"abc-gzip"'
    assert etag_with_coding('W/"abc"', "br") == 'W/"abc-br"'
