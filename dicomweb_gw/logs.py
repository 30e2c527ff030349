"""Logging: a request id on every line (HTTP and DIMSE alike), text or JSON.

The request id comes from the client's ``X-Request-ID`` (a reverse proxy or
ingress usually sets one) or is made up, travels in a context variable into
the DIMSE worker threads, and is echoed in the response, so one search in the
log finds everything a request did. Patient data is kept out of every line
(``dicomweb_gw.redaction``); who accessed it goes to the audit log instead.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import time
import uuid

import orjson

from dicomweb_gw.redaction import PATIENT_DATA_FILTER

__all__ = ["REQUEST_ID", "configure_logging", "new_request_id"]

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def new_request_id(offered: str | None) -> str:
    """The client's id if it is a sane token (it ends up in our logs), else a fresh one."""
    if offered and _SAFE_ID.match(offered):
        return offered
    return uuid.uuid4().hex[:16]


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            # exc_text when set: the patient data filter leaves the redacted traceback there.
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(*, json_lines: bool, level: int = logging.INFO) -> None:
    """Root logging for the CLI: one handler on stderr, request ids on every record."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    # Patient data stays out from the first line on; the app's start-up may let it in.
    handler.addFilter(PATIENT_DATA_FILTER)
    handler.setFormatter(_JsonFormatter() if json_lines else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pydicom").setLevel(logging.WARNING)
    # pynetdicom logs every refused connection or timeout as ERROR, with no
    # request id; the gateway reports each DIMSE failure itself, in one line
    # naming the PACS, so pynetdicom's own lines would only be noise.
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
