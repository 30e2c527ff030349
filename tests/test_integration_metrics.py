"""/metrics in Prometheus text: HTTP, DIMSE, bytes, cache and associations."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from corpus import Corpus
from dicomweb_gw.metrics import route_label
from gateway_fixtures import RunningGateway

pytestmark = pytest.mark.pacs


def _samples(gateway: RunningGateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{gateway.url}/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples}


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_what_happened(gateway: RunningGateway, corpus: Corpus) -> None:
    study = corpus.study("mr_implicit")
    before = _samples(gateway)
    httpx.get(f"{gateway.dicomweb('dcmqrscp')}/studies", params={"limit": "1"}, timeout=30)
    httpx.get(f"{gateway.dicomweb('dcmqrscp')}/studies/{study.study_uid}", timeout=60)
    httpx.get(f"{gateway.dicomweb('dcmqrscp')}/studies/1.2.bad", timeout=30)
    after = _samples(gateway)
    route = "/pacs/dcmqrscp/dicom-web/studies"
    assert _value(after, "dicomweb_gw_http_requests_total", route=route, method="GET",
                  status="200") == _value(before, "dicomweb_gw_http_requests_total",
                                          route=route, method="GET", status="200") + 1
    assert _value(after, "dicomweb_gw_http_requests_total", route=route + "/{uid}",
                  method="GET", status="400") >= 1
    assert _value(after, "dicomweb_gw_dimse_operations_total", pacs="dcmqrscp",
                  operation="C-FIND", outcome="success") > _value(
        before, "dicomweb_gw_dimse_operations_total", pacs="dcmqrscp", operation="C-FIND",
        outcome="success")
    assert _value(after, "dicomweb_gw_retrieved_bytes_total", pacs="dcmqrscp") >= _value(
        before, "dicomweb_gw_retrieved_bytes_total", pacs="dcmqrscp")
    assert _value(after, "dicomweb_gw_cache_instances", pacs="dcmqrscp") >= len(
        study.instances)
    assert ("dicomweb_gw_associations_open", (("pacs", "dcmqrscp"),)) in after


def test_route_labels_hide_uids_and_frame_lists() -> None:
    assert route_label("/dicom-web/studies/1.2.3/series/4.5.6/instances/7.8/frames/1,2") == (
        "/dicom-web/studies/{uid}/series/{uid}/instances/{uid}/frames/{frames}")
    assert route_label("/dicom-web/studies/1.2/series/3.4/instances/5.6/bulkdata/7FE00010") == (
        "/dicom-web/studies/{uid}/series/{uid}/instances/{uid}/bulkdata/{tag}")
    assert route_label("/healthz") == "/healthz"
    assert route_label("/dicom-web/studies/../../etc", 400) == "/dicom-web/studies/{uid}/../etc"
    assert route_label("/anything/a-client/typed", 404) == "{unmatched}"


def test_in_flight_counts_open_streams(gateway: RunningGateway, corpus: Corpus) -> None:
    study = corpus.study("big_ct")
    url = f"{gateway.dicomweb('dcmqrscp')}/studies/{study.study_uid}"
    idle = _value(_samples(gateway), "dicomweb_gw_http_requests_in_flight")
    with httpx.stream("GET", url, timeout=60) as response:
        assert response.status_code == 200
        during = _value(_samples(gateway), "dicomweb_gw_http_requests_in_flight")
        response.read()
    after = _value(_samples(gateway), "dicomweb_gw_http_requests_in_flight")
    # Each scrape counts itself; the open study stream adds one.
    assert idle == after == 1
    assert during == 2
