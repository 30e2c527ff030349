"""Terminal output shared by the admin commands: consoles, tables, DICOM JSON values.

Everything is drawn by ``rich``. When the output is not a terminal (a pipe,
a log file, a test), lines are not wrapped: a UID cut in two cannot be
grepped or pasted into the next command.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dicomweb_gw.settings import PacsNode, Settings

__all__ = [
    "PIPE_WIDTH",
    "data_table",
    "element_text",
    "error",
    "heading",
    "key_value_table",
    "logs_above",
    "node_address",
    "resolve_node",
    "stderr_console",
    "stdout_console",
]

#: Width when writing to a pipe or file: wide enough that no row of ours wraps.
PIPE_WIDTH = 512


def stdout_console() -> Console:
    return _console(stderr=False)


def stderr_console() -> Console:
    return _console(stderr=True)


def _console(*, stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    interactive = bool(getattr(stream, "isatty", lambda: False)())
    # highlight=False: rich would colour numbers inside UIDs at random places.
    return Console(stderr=stderr, highlight=False, width=None if interactive else PIPE_WIDTH)


def error(message: str) -> None:
    """One line on stderr, prefixed like every other CLI error (plain text: no markup)."""
    print(f"dicomweb-gw: {message}", file=sys.stderr)


def resolve_node(settings: Settings, name: str | None) -> PacsNode | None:
    """The node called ``name`` (the default one for None); None after saying which exist."""
    try:
        return settings.node(name)
    except KeyError:
        known = ", ".join(node.name for node in settings.nodes)
        error(f"no PACS node named '{name}' (known: {known})")
        return None


def node_address(node: PacsNode) -> str:
    """How the node is named in every admin message: ``AE@host:port``."""
    return f"{node.ae_title}@{node.host}:{node.port}"


def heading(console: Console, title: str) -> None:
    """A table's title on a line of its own: as a rich title it would wrap to the table's width."""
    console.print(Text(title, style="bold"))


def data_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *,
               wrap: frozenset[str] = frozenset()) -> Table:
    """A plain table. Only the ``wrap`` columns (UIDs, free text) give way in a narrow
    terminal, folding rather than losing characters; short values (IDs, dates, counts)
    stay on one line, as squeezing them to a letter per line helps no one."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for header in headers:
        if header in wrap:
            table.add_column(header, overflow="fold")
        else:
            table.add_column(header, no_wrap=True)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def key_value_table(rows: Sequence[tuple[str, str]]) -> Table:
    table = Table(box=box.SIMPLE, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(Text(key), Text(value))
    return table


def element_text(item: Mapping[str, Any], tag: str, *, separator: str = ", ") -> str:
    """The value(s) of one DICOM JSON element as text; person names in their DICOM form
    (``Doe^John``), which is also what a PatientName query takes."""
    element = item.get(tag)
    if not isinstance(element, Mapping):
        return ""
    values = element.get("Value")
    if not isinstance(values, list):
        return ""
    rendered: list[str] = []
    for value in values:
        if isinstance(value, Mapping):
            value = value.get("Alphabetic") or value.get("Ideographic") or ""
        rendered.append(str(value))
    return separator.join(rendered)


@contextmanager
def logs_above(console: Console) -> Iterator[None]:
    """Route log lines through ``console`` while a live display (progress bar) runs.

    The root handler keeps the stderr it was created with; writing there
    directly would tear the progress bar apart, while rich prints whatever
    reaches its proxy for ``sys.stderr`` above the bar.
    """
    handlers = [h for h in logging.getLogger().handlers
                if isinstance(h, logging.StreamHandler) and h.stream is sys.__stderr__]
    if not console.is_terminal:  # no live display: nothing to protect
        yield
        return
    previous = [h.setStream(sys.stderr) for h in handlers]
    try:
        yield
    finally:
        for handler, stream in zip(handlers, previous, strict=True):
            handler.setStream(stream or sys.__stderr__)
