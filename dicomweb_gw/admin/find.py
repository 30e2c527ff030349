"""``dicomweb-gw find``: a QIDO-RS search from the terminal, straight to the PACS.

The search goes through the gateway's own QIDO code (``parse_query`` and
``QidoService``), so a query behaves -- and fails -- exactly as it would over
HTTP: the same keys, the same matching, the same one-line 400 messages.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydicom.uid import UID

from dicomweb_gw.admin.tables import (
    data_table,
    element_text,
    error,
    heading,
    node_address,
    resolve_node,
    stderr_console,
    stdout_console,
)
from dicomweb_gw.dicomweb.qido import QidoResult, QidoService
from dicomweb_gw.dicomweb.query import QidoQuery, parse_query
from dicomweb_gw.dicomweb.uids import require_uid
from dicomweb_gw.errors import BadRequest, GatewayError, PacsError
from dicomweb_gw.http.routes import mount_point
from dicomweb_gw.model import QueryLevel
from dicomweb_gw.pacs.dimse import DimsePacsClient
from dicomweb_gw.settings import PacsNode, Settings

__all__ = ["LEVELS", "FindRequest", "parse_key_values", "run_find"]

LEVELS = {"studies": QueryLevel.STUDY, "series": QueryLevel.SERIES,
          "instances": QueryLevel.IMAGE}
#: Where --json results point (RetrieveURL) when DICOMWEB_GW_URL names the gateway.
URL_ENV = "DICOMWEB_GW_URL"
_STUDY_UID = 0x0020000D
_SERIES_UID = 0x0020000E
#: Asked of the table at study level: one series C-FIND per study shown computes both
#: when the PACS leaves them out (dcmqrscp does), and a study list without them is blind.
_TABLE_STUDY_EXTRAS = "ModalitiesInStudy,NumberOfStudyRelatedSeries"


@dataclass(frozen=True)
class FindRequest:
    node: str | None
    level: str | None
    study: str | None
    series: str | None
    limit: int | None
    as_json: bool
    terms: Sequence[str]


@dataclass(frozen=True)
class _Column:
    header: str
    tag: str
    #: UIDs and free text: what may wrap when the terminal is narrow.
    wrap: bool = False


_STUDY_COLUMNS = (
    _Column("PatientName", "00100010", wrap=True), _Column("PatientID", "00100020"),
    _Column("StudyDate", "00080020"), _Column("Modalities", "00080061"),
    _Column("Description", "00081030", wrap=True),
    _Column("StudyInstanceUID", "0020000D", wrap=True),
    _Column("#Series", "00201206"), _Column("#Instances", "00201208"),
)
_SERIES_COLUMNS = (
    _Column("PatientID", "00100020"), _Column("StudyDate", "00080020"),
    _Column("Modality", "00080060"), _Column("#", "00200011"),
    _Column("Description", "0008103E", wrap=True), _Column("#Instances", "00201209"),
    _Column("SeriesInstanceUID", "0020000E", wrap=True),
    _Column("StudyInstanceUID", "0020000D", wrap=True),
)
_INSTANCE_COLUMNS = (
    _Column("#", "00200013"), _Column("SOP Class", "00080016", wrap=True),
    _Column("Rows", "00280010"), _Column("Columns", "00280011"), _Column("Frames", "00280008"),
    _Column("SOPInstanceUID", "00080018", wrap=True),
    _Column("SeriesInstanceUID", "0020000E", wrap=True),
)
_NOUNS = {QueryLevel.STUDY: ("study", "studies"), QueryLevel.SERIES: ("series", "series"),
          QueryLevel.IMAGE: ("instance", "instances")}


def parse_key_values(terms: Sequence[str]) -> list[tuple[str, str]]:
    """``KEY=VALUE`` words as query parameters; ``KEY=`` asks for the attribute back."""
    params: list[tuple[str, str]] = []
    for term in terms:
        key, equals, value = term.partition("=")
        if not equals or not key:
            raise BadRequest(f"'{term}' is not KEY=VALUE (e.g. PatientID=12345, "
                             "StudyDate=20240101-, PatientName=DOE*)")
        params.append((key, value))
    return params


def run_find(settings: Settings, request: FindRequest) -> int:
    node = resolve_node(settings, request.node)
    if node is None:
        return 2
    level = _level(request)
    try:
        pinned = _pinned(request)
        params = parse_key_values(request.terms)
        if request.limit is not None:
            params.insert(0, ("limit", str(request.limit)))  # a limit= term wins
        if not request.as_json and level is QueryLevel.STUDY:
            params.append(("includefield", _TABLE_STUDY_EXTRAS))
        query = parse_query(level, params, pinned)
    except BadRequest as exc:
        error(exc.message)  # the very message the HTTP API answers with its 400
        return 2
    # The administrator's explicit --limit may exceed the per-request cap meant for clients.
    service = QidoService(max_results=max(settings.qido_max_results, query.limit or 0))
    base = os.environ.get(URL_ENV, "").rstrip("/") + mount_point(
        None if node.name == settings.default_pacs else node.name)
    try:
        result = asyncio.run(_search(node, settings.ae_title, service, query, base))
    except PacsError as exc:
        error(f"search on {node.name} ({node_address(node)}) failed: {exc.message}")
        return 1
    except GatewayError as exc:
        error(exc.message)
        return 2 if isinstance(exc, BadRequest) else 1
    _print(result, level, pinned, node, as_json=request.as_json)
    return 0


def _level(request: FindRequest) -> QueryLevel:
    """--level, else the level below the deepest UID given (``--study X`` lists its series)."""
    if request.level is not None:
        return LEVELS[request.level]
    if request.series is not None:
        return QueryLevel.IMAGE
    if request.study is not None:
        return QueryLevel.SERIES
    return QueryLevel.STUDY


def _pinned(request: FindRequest) -> dict[int, str]:
    """--study/--series act like the UIDs of a QIDO path (``/studies/{study}/series``)."""
    pinned: dict[int, str] = {}
    if request.study is not None:
        pinned[_STUDY_UID] = require_uid(request.study, "StudyInstanceUID")
    if request.series is not None:
        pinned[_SERIES_UID] = require_uid(request.series, "SeriesInstanceUID")
    return pinned


async def _search(node: PacsNode, ae_title: str, service: QidoService,
                  query: QidoQuery, base_url: str) -> QidoResult:
    client = DimsePacsClient(node, ae_title=ae_title, receiver=None, metrics=None)
    try:
        return await service.search(client, query, base_url=base_url)
    finally:
        await client.aclose()


def _print(result: QidoResult, level: QueryLevel, pinned: Mapping[int, str], node: PacsNode,
           *, as_json: bool) -> None:
    notes = stderr_console()
    for warning in result.warnings:
        notes.print(f"warning: {warning}", style="yellow", markup=False)
    if as_json:
        sys.stdout.write(orjson.dumps(result.items, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    columns = _columns(level, pinned)
    rows = [[_cell(item, column) for column in columns] for item in result.items]
    singular, plural = _NOUNS[level]
    found = f"{len(rows)} {singular if len(rows) == 1 else plural} on PACS '{node.name}'"
    if not rows:
        notes.print(f"no {plural} found on PACS '{node.name}'", markup=False)
        return
    out = stdout_console()
    heading(out, found)
    out.print(data_table([c.header for c in columns], rows,
                         wrap=frozenset(c.header for c in columns if c.wrap)))


def _columns(level: QueryLevel, pinned: Mapping[int, str]) -> tuple[_Column, ...]:
    """The level's columns, minus what --study/--series already fixed (same on every row)."""
    if level is QueryLevel.STUDY:
        return _STUDY_COLUMNS
    if level is QueryLevel.SERIES:
        if _STUDY_UID in pinned:
            return tuple(c for c in _SERIES_COLUMNS
                         if c.header not in ("PatientID", "StudyDate", "StudyInstanceUID"))
        return _SERIES_COLUMNS
    if _SERIES_UID in pinned:
        return tuple(c for c in _INSTANCE_COLUMNS if c.header != "SeriesInstanceUID")
    return _INSTANCE_COLUMNS


def _cell(item: Mapping[str, Any], column: _Column) -> str:
    text = element_text(item, column.tag)
    if column.header == "SOP Class" and text:
        name = UID(text).name  # "CT Image Storage"; an unknown class stays its UID
        return str(name).removesuffix(" Storage")
    return text
