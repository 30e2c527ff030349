"""Errors that cross layers, each carrying the HTTP status it becomes.

A leaf module: the DIMSE layer raises these, the HTTP layer turns them into
responses, and neither needs to know about the other.
"""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "Forbidden",
    "GatewayError",
    "NotAcceptable",
    "NotFound",
    "PacsError",
    "PacsFailure",
    "PacsMisconfigured",
    "PacsTimeout",
    "PacsUnavailable",
]


class GatewayError(Exception):
    """An error with a status code and a message meant for the HTTP client."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(GatewayError):
    status_code = 400


class Forbidden(GatewayError):
    status_code = 403


class NotFound(GatewayError):
    status_code = 404


class NotAcceptable(GatewayError):
    status_code = 406


class PacsError(GatewayError):
    """The PACS behind the gateway failed; the message names the PACS."""

    status_code = 502

    def __init__(self, pacs: str, message: str) -> None:
        super().__init__(f"PACS '{pacs}': {message}")
        self.pacs = pacs


class PacsUnavailable(PacsError):
    """Could not reach the PACS or it refused the association."""

    status_code = 503


class PacsTimeout(PacsError):
    """The PACS did not answer within the configured timeout."""

    status_code = 504


class PacsFailure(PacsError):
    """The PACS answered with a DIMSE failure status or broke the transfer."""

    status_code = 502


class PacsMisconfigured(PacsError):
    """The PACS cannot serve us as configured (e.g. it does not know our AE title)."""

    status_code = 502
