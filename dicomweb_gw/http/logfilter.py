"""Keep deliberate stream aborts out of the server's error log as tracebacks.

A retrieve that breaks mid-stream is ended by raising ``StreamAborted`` (the
only way to make the ASGI server cut the connection). The endpoint has
already logged one clear line; the server's "Exception in ASGI application"
traceback would only alarm whoever reads the log at 3 a.m.
"""

from __future__ import annotations

import logging

__all__ = ["StreamAborted", "install_stream_abort_filter", "is_stream_abort"]


class StreamAborted(Exception):
    """Raised inside a started response: the connection is cut so the client
    sees a truncated multipart body rather than a complete-looking short one."""


def is_stream_abort(exc: BaseException | None) -> bool:
    """Is ``exc`` (or what it wraps, e.g. in an exception group) a deliberate abort?"""
    while exc is not None:
        if isinstance(exc, StreamAborted):
            return True
        if isinstance(exc, BaseExceptionGroup):
            return any(is_stream_abort(inner) for inner in exc.exceptions)
        exc = exc.__cause__ or exc.__context__
    return False


class _DropStreamAborts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not is_stream_abort(record.exc_info[1] if record.exc_info else None)


_FILTER = _DropStreamAborts()


def install_stream_abort_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
