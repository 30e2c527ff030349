"""``GET /openapi.json``: the OpenAPI document of the gateway.

The source is ``openapi/openapi.yaml`` at the top of the repository; the
package carries its JSON rendering (``openapi.json`` beside this module,
written by ``openapi/build.py``) so the gateway needs no YAML parser.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["openapi_document", "openapi_json"]


@cache
def openapi_document() -> bytes:
    """The packaged OpenAPI document, as JSON bytes, read once."""
    return files(__package__ or "dicomweb_gw.http").joinpath("openapi.json").read_bytes()


async def openapi_json(request: Request) -> Response:
    return Response(openapi_document(), media_type="application/json")
