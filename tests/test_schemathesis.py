"""Property-based tests of the whole HTTP surface from the OpenAPI document.

schemathesis generates requests from ``openapi/openapi.yaml`` (valid ones and,
in its negative mode, invalid ones) and sends them to the real gateway in front
of the real dcmqrscp and Orthanc. Whatever it sends, the gateway must answer
without a 5xx of its own making (``not_a_server_error``; 502-504 are the PACS's
and documented), with a status code, content type and (for JSON) body the
document allows.

Path UIDs and PACS names are drawn half the time from the corpus and the
configured nodes, so the requests reach the PACS and the codecs rather than
stopping at UID validation. Generation is derandomized: the same requests
every run. GET and OPTIONS only (DELETE would purge caches other tests use);
STOW-RS gets a few hand-made cases below.
"""

from __future__ import annotations

import copy
import io
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from corpus import Corpus
from gateway_fixtures import RunningGateway
from test_openapi import load_spec

pytestmark = pytest.mark.pacs

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
#: Small studies only: the 100-slice CT would make each retrieve of it take seconds.
STUDIES = ("ct_small", "mr_implicit", "charset", "jpeg_colour")
MAX_EXAMPLES = 15


def _either(real: list[str], schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [{"enum": [str(value) for value in real]}, schema]}


def spec_with_corpus(spec: dict[str, Any], corpus: Corpus, nodes: list[str]) -> dict[str, Any]:
    """The document with real UIDs and node names offered beside the generic schemas."""
    spec = copy.deepcopy(spec)
    studies = [corpus.study(label) for label in STUDIES]
    series = [s.series_uid for study in studies for s in study.series]
    instances = [i.sop_instance_uid for study in studies for i in study.instances]
    parameters = spec["components"]["parameters"]
    for name, real in (("study", [s.study_uid for s in studies]), ("series", series),
                       ("instance", instances), ("pacs", nodes)):
        parameters[name]["schema"] = _either(real, parameters[name]["schema"])
    # WADO-URI names the object in the query; a few real triples as examples.
    wado = spec["paths"]["/wado"]["get"]["parameters"]
    for parameter in wado:
        key = {"studyUID": "study", "seriesUID": "series", "objectUID": "instance"}.get(
            parameter.get("name", ""))
        if key is not None:
            parameter["schema"] = copy.deepcopy(parameters[key]["schema"])
    return spec


@pytest.fixture(scope="module")
def api_schema(gateway: RunningGateway, corpus: Corpus) -> Any:
    nodes = [node.name for node in gateway.settings.nodes]
    schema = schemathesis.openapi.from_dict(spec_with_corpus(load_spec(), corpus, nodes))
    schema.config.update(base_url=gateway.url, request_timeout=30)
    return schema


def _operations() -> list[Any]:
    """(METHOD, path) of every GET and OPTIONS operation: one pytest case each."""
    cases = []
    for path, item in load_spec()["paths"].items():
        for method in (m.upper() for m in item if m in ("get", "options")):
            cases.append(pytest.param(method, path, id=f"{method} {path}"))
    return cases


# Not schemathesis's pytest plugin (``from_fixture(...).parametrize()``): with pytest 9 it
# fails on Function._nodeid. Its strategies and checks are used directly instead.
@pytest.mark.parametrize(("method", "path"), _operations())
def test_no_server_errors(api_schema: Any, method: str, path: str) -> None:
    operation = api_schema[path][method]
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                         operation.as_strategy(GenerationMode.NEGATIVE))

    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=(Phase.explicit, Phase.generate, Phase.shrink),
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: Case) -> None:
        case.call_and_validate(checks=CHECKS)

    run()


# Found by this fuzzing: a non-ASCII value for a CS key could not be encoded into
# the C-FIND and came back as a 502 blaming the PACS. Now a 400 naming the key.
@pytest.mark.parametrize("value", ["\U000f0c0f", "\u0416"])  # a private-use char, Cyrillic Zhe
def test_qido_non_ascii_cs_value_is_a_client_error(gateway: RunningGateway,
                                                     value: str) -> None:
    response = httpx.get(f"{gateway.dicomweb()}/studies", params={"Modality": value},
                         timeout=30)
    assert response.status_code == 400, response.text
    assert "Modality" in response.json()["message"]


# -- STOW-RS: hand-made bodies, checked by the same schemathesis checks ------

def _part10(corpus: Corpus) -> bytes:
    instance = corpus.study("ct_small").instances[0]
    return instance.path.read_bytes()


def _multipart(parts: list[bytes], boundary: str = "BOUNDARY") -> bytes:
    out = io.BytesIO()
    for part in parts:
        out.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        out.write(part + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue()


STOW = 'multipart/related; type="application/dicom"; boundary=BOUNDARY'


def _stow_cases(corpus: Corpus) -> list[tuple[str, str, dict[str, str], bytes]]:
    """(label, path, headers, body)."""
    real = _part10(corpus)
    study = corpus.study("ct_small").study_uid
    not_dicom = b"this is not a DICOM file" * 10
    return [
        ("stow a corpus instance again", "/dicom-web/studies",
         {"Content-Type": STOW}, _multipart([real])),
        ("stow into its study", f"/dicom-web/studies/{study}",
         {"Content-Type": STOW}, _multipart([real])),
        ("stow into another study", "/dicom-web/studies/1.2.3.4",
         {"Content-Type": STOW}, _multipart([real])),
        ("stow a part that is not DICOM", "/pacs/orthanc/dicom-web/studies",
         {"Content-Type": STOW}, _multipart([not_dicom])),
        ("stow a truncated body", "/dicom-web/studies",
         {"Content-Type": STOW}, _multipart([real])[:-20]),
        ("stow without boundary", "/dicom-web/studies",
         {"Content-Type": 'multipart/related; type="application/dicom"'}, b"x"),
        ("stow as application/json", "/dicom-web/studies",
         {"Content-Type": "application/json"}, b"{}"),
        ("stow with a bad study UID", "/dicom-web/studies/01.2",
         {"Content-Type": STOW}, _multipart([real])),
    ]


def test_stow_cases_conform(api_schema: Any, gateway: RunningGateway,
                            corpus: Corpus) -> None:
    failures: list[str] = []
    for label, path, headers, body in _stow_cases(corpus):
        template = "/pacs/{pacs}/dicom-web/studies" if path.startswith("/pacs/") else (
            "/dicom-web/studies" if path == "/dicom-web/studies" else "/dicom-web/studies/{study}")
        operation = api_schema[template]["POST"]
        response = httpx.post(gateway.url + path, headers=headers, content=body, timeout=30)
        path_parameters = {}
        if "{pacs}" in template:
            path_parameters["pacs"] = path.split("/")[2]
        if "{study}" in template:
            path_parameters["study"] = path.rsplit("/", 1)[1]
        case = operation.Case(path_parameters=path_parameters, headers=headers, body=body,
                              media_type='multipart/related; type="application/dicom"')
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as exc:
            failures.append(f"{label}: POST {path} -> {response.status_code}: {exc}")
    assert not failures, "\n".join(failures)
