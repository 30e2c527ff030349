"""Keep patient data out of the debug log unless the administrator lets it in.

The debug log is read by whoever operates the gateway and is shipped to log
stores with wider access than a PACS; patient data belongs in the audit log
only. Two kinds of line can carry it:

* uvicorn's access log, which prints the query string: ``GET
  /dicom-web/studies?PatientName=DOE*`` (the path holds only UIDs);
* messages quoting a value next to its attribute, like the gateway's own
  ``PatientBirthDate '19991399' is not a valid DA value`` or a URL with a
  query string;
* exception tracebacks, whose messages quote values with no attribute next
  to them (pydicom's ``Invalid value for VR DA: '19991399'``): every quoted
  value in an exception's message is replaced, while the frames (file, line,
  code) are kept, so the traceback still tells where it went wrong.

``DICOMWEB_GW_LOG_PATIENT_DATA=true`` turns the filter into a no-op. One
filter object serves the whole process (logging is process-wide anyway):
``configure_logging`` puts it on its handler, redacting from the first line,
and the app's start-up sets the switch from the settings.
"""

from __future__ import annotations

import logging
import re
import traceback
from types import TracebackType

from pydicom.datadict import keyword_dict

__all__ = ["PATIENT_DATA_FILTER", "PatientDataFilter", "install_patient_data_filter",
           "redact", "redacted_traceback", "strip_query"]

REDACTED = "[redacted]"
_ACCESS_LOGGER = "uvicorn.access"

# The Patient module and its relatives (group 0010: name, IDs, birth date, address...)
# plus the two identifiers outside it that name a patient's examination or doctor.
_KEYWORDS = sorted({keyword for keyword, tag in keyword_dict.items()
                    if tag >> 16 == 0x0010 and keyword}
                   | {"AccessionNumber", "ReferringPhysicianName"}, key=len, reverse=True)
_TAGS = r"0010[0-9A-Fa-f]{4}|00080050|00080090|\(0010,\s?[0-9A-Fa-f]{4}\)"
# "PatientName=DOE*", "PatientID: 123", "PatientBirthDate '1999'", '"00100010": "DOE"'.
_ATTRIBUTE_VALUE = re.compile(
    r"(?<![A-Za-z0-9])(?P<key>" + "|".join(_KEYWORDS) + "|" + _TAGS + r")(?P<quote>['\"]?)"
    r"(?P<sep>\s*[=:]\s*|\s+(?=['\"]))(?P<value>'[^']*'|\"[^\"]*\"|[^\s&;,'\"]+)")
# A query string after a path or URL: "/dicom-web/studies?PatientName=DOE".
_QUERY = re.compile(r"(?P<path>/[^\s?#'\"]*)\?[^\s'\"#]+")


# A quoted value in an exception message: 'DOE^JOHN', "O'Brien", b'DOE'. Not the
# apostrophe of "doesn't" (a letter before the quote).
_QUOTED = re.compile(r"""(?<![A-Za-z0-9_])(?P<prefix>[bB]?)(?:'[^'\n]*'|"[^"\n]*")""")
# The lines of a traceback that say where, not what: '  File "x.py", line 3, in f'
# (with the code line under it), also inside an exception group's "| " margin.
_FRAME = re.compile(r"^[ |]*File \"")
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def strip_query(path: str) -> str:
    """``path`` without its query string, marked so the reader knows there was one."""
    bare, mark, _ = path.partition("?")
    return bare + mark + REDACTED if mark else bare


def redact(text: str) -> str:
    """``text`` with query strings and values of patient attributes replaced."""
    text = _QUERY.sub(lambda m: f"{m['path']}?{REDACTED}", text)
    return _ATTRIBUTE_VALUE.sub(
        lambda m: f"{m['key']}{m['quote']}{m['sep']}{REDACTED}", text)


def redacted_traceback(exc_info: ExcInfo) -> str:
    """The traceback ``logging`` would print, with the exception messages redacted: the
    values they quote and those next to a patient attribute are replaced."""
    kind, value, trace = exc_info
    chunks = traceback.TracebackException(kind, value, trace, compact=True).format()
    text = "".join(chunk if _FRAME.match(chunk) else _redact_message(chunk)
                   for chunk in chunks)
    return text.removesuffix("\n")


def _redact_message(text: str) -> str:
    return _QUOTED.sub(lambda m: f"{m['prefix']}'{REDACTED}'", redact(text))


class PatientDataFilter(logging.Filter):
    """Rewrites records in place (never drops one): a redacted line still tells what happened."""

    def __init__(self) -> None:
        super().__init__()
        #: Redacting until the settings say otherwise: safe before they are read.
        self.redact = True

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.redact or getattr(record, "_patient_data_redacted", False):
            return True
        record._patient_data_redacted = True  # once per record, whoever filters
        if record.exc_info and record.exc_info[1] is not None:
            # Formatters print exc_text when it is set (and cache it there otherwise).
            record.exc_text = redacted_traceback(record.exc_info)
        args = record.args
        if record.name == _ACCESS_LOGGER and isinstance(args, tuple) and len(args) == 5:
            # uvicorn: (client, method, path with query, HTTP version, status). The
            # tuple shape is kept, as uvicorn's own AccessFormatter unpacks it.
            path = args[2]
            if isinstance(path, str):
                record.args = (*args[:2], strip_query(path), *args[3:])
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: logging reports it when formatting
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


PATIENT_DATA_FILTER = PatientDataFilter()


def install_patient_data_filter(log_patient_data: bool) -> None:
    """Set the switch, and filter uvicorn's access logger and every root handler.

    On the access logger itself because uvicorn's default logging config gives
    it handlers of its own that do not propagate to the root; on the root's
    handlers (not the root logger) because a logger's filters do not apply to
    records of its child loggers, while a handler's do.
    """
    PATIENT_DATA_FILTER.redact = not log_patient_data
    access = logging.getLogger(_ACCESS_LOGGER)
    if PATIENT_DATA_FILTER not in access.filters:
        access.addFilter(PATIENT_DATA_FILTER)
    for handler in logging.getLogger().handlers:
        if PATIENT_DATA_FILTER not in handler.filters:
            handler.addFilter(PATIENT_DATA_FILTER)
