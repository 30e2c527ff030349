"""No patient data in the debug log unless ``log_patient_data`` lets it in.

The end-to-end tests run uvicorn the way ``dicomweb-gw serve`` does
(``log_config=None``, access log on, records reaching the root handlers) in
front of a PACS that is down: the request lines are logged all the same.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydicom import config as pydicom_config
from pydicom.valuerep import validate_value

from corpus import Corpus
from dicomweb_gw.app import Gateway, create_app
from dicomweb_gw.logs import _JsonFormatter
from dicomweb_gw.redaction import PATIENT_DATA_FILTER, redact, redacted_traceback, strip_query
from dicomweb_gw.settings import PacsNode, Settings, load_settings
from gateway_fixtures import RunningGateway, make_settings
from pacs_fixtures import free_port

NAME = "Moriarty"
BIRTH_DATE = "19991399"  # not a date: the gateway's 400 quotes it in its log line


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("uvicorn", "dicomweb_gw")):  # not the test's httpx client
            self.lines.append(self.format(record))


@pytest.fixture(autouse=True)
def _restore_switch() -> Iterator[None]:
    yield
    PATIENT_DATA_FILTER.redact = True  # the process-wide default for the next tests


@contextmanager
def _served(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, _Lines]]:
    """The gateway under uvicorn as the CLI runs it, and what reached a root handler."""
    lines = _Lines()
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", logging.INFO)
    # An earlier test's uvicorn (default log config) gave uvicorn's loggers handlers
    # of their own and stopped them propagating; the CLI's (log_config=None) does not.
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error"):
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
        monkeypatch.setattr(logging.getLogger(name), "handlers", [])
    root.addHandler(lines)  # before start-up, like the CLI's handler
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_app(gateway=Gateway(settings)), host="127.0.0.1", port=port, log_config=None,
        access_log=True, log_level="info", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}", lines
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        root.removeHandler(lines)


def _settings(tmp_path: Path, **extra: object) -> Settings:
    node = PacsNode(name="down", host="127.0.0.1", port=free_port(), ae_title="DOWN",
                    retrieve="c-get", timeout=5)
    return make_settings((node,), store_port=free_port(), tmp=tmp_path,
                         **extra)  # type: ignore[arg-type]


def _ask(base: str) -> None:
    search = httpx.get(f"{base}/dicom-web/studies", params={"PatientName": NAME}, timeout=20)
    assert search.status_code == 503  # the PACS is down: still a logged request
    bad = httpx.get(f"{base}/dicom-web/studies", params={"PatientBirthDate": BIRTH_DATE},
                    timeout=20)
    assert bad.status_code == 400


def test_patient_data_stays_out_of_the_log_by_default(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with _served(_settings(tmp_path), monkeypatch) as (base, lines):
        _ask(base)
    text = "\n".join(lines.lines)
    assert '"GET /dicom-web/studies?[redacted] HTTP/1.1" 503' in text  # the line is kept
    assert "PatientBirthDate [redacted]" in text
    assert NAME not in text
    assert BIRTH_DATE not in text


def test_the_switch_lets_patient_data_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _served(_settings(tmp_path, log_patient_data=True), monkeypatch) as (base, lines):
        _ask(base)
    text = "\n".join(lines.lines)
    assert f"/dicom-web/studies?PatientName={NAME}" in text
    assert BIRTH_DATE in text


# --- the filter ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("GET /dicom-web/studies -> 400: PatientBirthDate '19991399' is not a valid DA value",
     "GET /dicom-web/studies -> 400: PatientBirthDate [redacted] is not a valid DA value"),
    ("PatientID=12345&limit=5", "PatientID=[redacted]&limit=5"),
    ('{"PatientName": "DOE^JOHN", "00100020": "123"}',
     '{"PatientName": [redacted], "00100020": [redacted]}'),
    ("AccessionNumber: A123 OtherPatientIDs=X9", "AccessionNumber: [redacted] "
                                                 "OtherPatientIDs=[redacted]"),
    ("fetching http://gw/dicom-web/studies?PatientName=DOE* failed",
     "fetching http://gw/dicom-web/studies?[redacted] failed"),
    # Key names, UIDs and prose stay readable.
    ("query key 'PatientName' is given more than once",
     "query key 'PatientName' is given more than once"),
    ("PatientID required at STUDY level", "PatientID required at STUDY level"),
    ("retrieve of study 1.2.3 broke off", "retrieve of study 1.2.3 broke off"),
])
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_strip_query() -> None:
    assert strip_query("/dicom-web/studies?PatientName=DOE") == "/dicom-web/studies?[redacted]"
    assert strip_query("/dicom-web/studies/1.2.3") == "/dicom-web/studies/1.2.3"


def test_access_record_keeps_the_shape_uvicorn_formats() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("10.0.0.1:5000", "GET", "/wado?studyUID=1.2&x=DOE", "1.1", 200),
                               None)
    assert PATIENT_DATA_FILTER.filter(record)
    assert record.args == ("10.0.0.1:5000", "GET", "/wado?[redacted]", "1.1", 200)


def test_switched_on_the_filter_changes_nothing() -> None:
    PATIENT_DATA_FILTER.redact = False
    record = logging.LogRecord("dicomweb_gw.x", logging.INFO, __file__, 1,
                               "PatientName=%s", ("DOE",), None)
    assert PATIENT_DATA_FILTER.filter(record)
    assert record.getMessage() == "PatientName=DOE"


def _log_a_pydicom_error(formatter: logging.Formatter) -> str:
    """What a handler filtered like the gateway's prints for pydicom rejecting a value."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(PATIENT_DATA_FILTER)
    handler.setFormatter(formatter)
    logger = logging.getLogger("dicomweb_gw.test_tracebacks")
    logger.addHandler(handler)
    try:
        try:
            # pydicom says "Invalid value for VR DA: '<the name>'."
            validate_value("DA", NAME, pydicom_config.RAISE)
        except ValueError:
            logger.exception("cannot read the data set")
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


FORMATTERS = {"text": logging.Formatter, "json": _JsonFormatter}


@pytest.mark.parametrize("formatter", FORMATTERS.values(), ids=FORMATTERS.keys())
def test_tracebacks_keep_their_frames_but_not_the_values_they_quote(
    formatter: type[logging.Formatter],
) -> None:
    text = _log_a_pydicom_error(formatter())
    assert NAME not in text
    assert "ValueError: Invalid value for VR DA: '[redacted]'" in text
    assert "in validate_value" in text  # where it went wrong is still there


@pytest.mark.parametrize("formatter", FORMATTERS.values(), ids=FORMATTERS.keys())
def test_switched_on_tracebacks_keep_the_values(formatter: type[logging.Formatter]) -> None:
    PATIENT_DATA_FILTER.redact = False
    text = _log_a_pydicom_error(formatter())
    assert f"ValueError: Invalid value for VR DA: '{NAME}'" in text


@pytest.mark.parametrize(("message", "expected"), [
    ("Invalid value for VR PN: 'DOE^JOHN'", "Invalid value for VR PN: '[redacted]'"),
    ('no match for "O\'Brien"', "no match for '[redacted]'"),
    ("bad bytes b'DOE'", "bad bytes b'[redacted]'"),
    ("PatientID=12345 doesn't exist", "PatientID=[redacted] doesn't exist"),
])
def test_redacted_traceback_messages(message: str, expected: str) -> None:
    try:
        raise ValueError(message)
    except ValueError as exc:
        text = redacted_traceback((ValueError, exc, exc.__traceback__))
    assert text.startswith("Traceback (most recent call last):")
    assert text.endswith(f"ValueError: {expected}")


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("on", True),
                                                 ("false", False), ("no", False)])
def test_log_patient_data_from_the_environment(value: str, expected: bool) -> None:
    settings = load_settings(environ={"DICOMWEB_GW_LOG_PATIENT_DATA": value})
    assert settings.log_patient_data is expected


def test_log_patient_data_is_off_by_default_and_checked(tmp_path: Path) -> None:
    assert load_settings(environ={}).log_patient_data is False
    config = tmp_path / "gw.toml"
    config.write_text("log_patient_data = true\n", encoding="utf-8")
    assert load_settings(environ={}, config_file=config).log_patient_data is True
    config.write_text('log_patient_data = "maybe"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="log_patient_data"):
        load_settings(environ={}, config_file=config)


@pytest.mark.pacs
def test_pynetdicom_logs_no_identifiers(gateway: RunningGateway, corpus: Corpus,
                                        caplog: pytest.LogCaptureFixture) -> None:
    """pynetdicom logs every C-FIND identifier at INFO unless told not to: patient data."""
    study = corpus.study("ct_small")
    caplog.set_level(logging.INFO, logger="pynetdicom")
    answer = httpx.get(f"{gateway.dicomweb('dcmqrscp')}/studies",
                       params={"PatientID": study.patient_id, "includefield": "PatientName"},
                       timeout=30)
    assert answer.status_code == 200
    assert answer.json()[0]["00100010"]["Value"][0]["Alphabetic"] == study.patient_name
    pynetdicom_lines = [r.getMessage() for r in caplog.records if r.name.startswith("pynetdicom")]
    assert any("Find" in line for line in pynetdicom_lines)  # it did log, at INFO
    assert not any(study.patient_id in line or study.patient_name in line
                   for line in pynetdicom_lines)
