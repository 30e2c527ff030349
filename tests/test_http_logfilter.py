"""The stream-abort filter drops only deliberate aborts from the server log."""

from __future__ import annotations

import logging
import sys

from dicomweb_gw.http.logfilter import StreamAborted, install_stream_abort_filter


def _record(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    return logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1,
                             "Exception in ASGI application", None, info)


def test_stream_aborts_are_dropped_and_other_errors_kept() -> None:
    install_stream_abort_filter()
    install_stream_abort_filter()  # idempotent
    logger = logging.getLogger("uvicorn.error")
    assert len([f for f in logger.filters if type(f).__name__ == "_DropStreamAborts"]) == 1
    assert not logger.filter(_record(StreamAborted("PACS went away")))
    wrapped = RuntimeError("group")
    wrapped.__cause__ = StreamAborted("inside an exception group")
    assert not logger.filter(_record(wrapped))
    assert logger.filter(_record(ValueError("a real bug")))
