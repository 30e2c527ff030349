"""``dicomweb-gw prefetch``: warm the cache with whole studies before anyone opens them.

Two ways, because a running gateway owns its cache folder (one process at a
time, by lock):

* ``--url``: ask the running gateway for each study over WADO-RS and count
  what streams back. The gateway caches as it serves, so this warms exactly
  the cache the viewers use, and works from any machine that can reach it.
* no URL: open the node's cache here and retrieve from the PACS through the
  gateway's own ``InstanceSource`` -- for a gateway that is stopped, or to
  fill a cache volume before the first start.

Studies are fetched one after the other: prefetching is background work and
must not take every association the PACS grants.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from pathlib import Path

from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from dicomweb_gw.admin.prefetch_sources import (
    HttpRetrieval,
    LocalRetrieval,
    PartCounter,
    PrefetchFailed,
    Retrieval,
    StopAll,
)
from dicomweb_gw.admin.tables import (
    error,
    logs_above,
    node_address,
    resolve_node,
    stderr_console,
    stdout_console,
)
from dicomweb_gw.dicomweb.source import InstanceSource
from dicomweb_gw.dicomweb.uids import require_uid
from dicomweb_gw.errors import BadRequest, GatewayError, NotFound, PacsUnavailable
from dicomweb_gw.http.routes import mount_point
from dicomweb_gw.settings import SettingsError, load_settings

__all__ = ["PartCounter", "PrefetchRequest", "StudyOutcome", "run_prefetch"]


@dataclass(frozen=True)
class PrefetchRequest:
    studies: Sequence[str]
    node: str | None = None
    url: str | None = None
    token: str | None = None
    #: The TOML config file, for the in-process mode (the URL mode needs no settings).
    config: Path | None = None


@dataclass
class StudyOutcome:
    study_uid: str
    instances: int = 0
    bytes: int = 0
    seconds: float = 0.0
    #: NumberOfStudyRelatedInstances according to the PACS, when it said.
    expected: int | None = None
    from_cache: bool = False
    error: str | None = None
    #: Set when the next studies would fail the same way (no gateway, no credentials):
    #: why they are not tried.
    stop: str | None = None

    def summary(self) -> str:
        if self.error is not None:
            return f"{self.study_uid}: {self.error}"
        rate = self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0
        noun = "instance" if self.instances == 1 else "instances"
        line = (f"{self.study_uid}: {self.instances} {noun}, {self.bytes / 1e6:.1f} MB "
                f"in {self.seconds:.1f} s ({rate:.1f} MB/s)")
        if self.from_cache:
            line += ", already cached"
        if self.expected is not None and self.expected != self.instances:
            line += f" (the PACS listed {self.expected})"
        return line


def run_prefetch(request: PrefetchRequest) -> int:
    try:
        studies = [require_uid(uid, "StudyInstanceUID") for uid in request.studies]
    except BadRequest as exc:
        error(exc.message)
        return 2
    if request.url:
        root = request.url.rstrip("/") + mount_point(request.node)
        return _report(asyncio.run(_prefetch(HttpRetrieval(root, request.token), studies)))
    return _prefetch_here(request, studies)


def _prefetch_here(request: PrefetchRequest, studies: list[str]) -> int:
    from dicomweb_gw.app import Gateway  # the whole app, only for the in-process mode
    from dicomweb_gw.cache.disk import CacheInUse

    settings = load_settings(config_file=request.config)
    node = resolve_node(settings, request.node)
    if node is None:
        return 2
    # Only this node: no storage SCP for a C-GET node, no lock on the other caches.
    # Its cache keeps the share of the budget the gateway gives it.
    alone = replace(settings, nodes=(node,), default_pacs=node.name,
                    cache_max_bytes=settings.cache_max_bytes // max(1, len(settings.nodes)))
    gateway = Gateway(alone)
    hint = (f"prefetch through it: dicomweb-gw prefetch --url http://HOST:PORT"
            f"{'' if node.name == settings.default_pacs else f' --node {node.name}'} "
            "STUDY_UID...")
    try:
        try:
            gateway.start()
        except CacheInUse:
            error(f"the cache of '{node.name}' ({settings.cache_dir / node.name}) is in use by "
                  f"a running gateway; {hint}")
            return 1
        except SettingsError as exc:  # the storage SCP port: most likely that gateway again
            error(f"{exc}; if a gateway is running, {hint}")
            return 1
        retrieval = LocalRetrieval(gateway.clients[node.name],
                                    InstanceSource(lambda: gateway.store(node.name),
                                                   ttl=settings.cache_ttl))
        outcomes = asyncio.run(_prefetch(retrieval, studies))
    finally:
        asyncio.run(gateway.stop())
    return _report(outcomes, where=f"PACS '{node.name}' ({node_address(node)})")


async def _prefetch(retrieval: Retrieval, studies: list[str]) -> list[StudyOutcome]:
    console = stderr_console()
    progress = Progress(
        TextColumn("{task.description}", markup=False), BarColumn(bar_width=30),
        _InstancesColumn(), _MegabytesColumn(), _RateColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )
    outcomes: list[StudyOutcome] = []
    try:
        with progress, logs_above(console):
            for index, study_uid in enumerate(studies):
                outcome = await _one(retrieval, study_uid, progress)
                outcomes.append(outcome)
                if outcome.stop is not None:
                    outcomes.extend(StudyOutcome(skipped, error=f"not tried: {outcome.stop}")
                                    for skipped in studies[index + 1 :])
                    break
    finally:
        await retrieval.aclose()
    return outcomes


async def _one(retrieval: Retrieval, study_uid: str, progress: Progress) -> StudyOutcome:
    outcome = StudyOutcome(study_uid)
    task = progress.add_task(_short(study_uid), total=None, bytes=0, expected=None)
    started = time.monotonic()
    try:
        outcome.expected = await retrieval.expected(study_uid)
        progress.update(task, total=outcome.expected, expected=outcome.expected)
        async with aclosing(retrieval.stream(study_uid)) as steps:
            async for instances, size in steps:
                outcome.instances += instances
                outcome.bytes += size
                progress.update(task, completed=outcome.instances, bytes=outcome.bytes)
        outcome.from_cache = retrieval.cache_hit()
    except NotFound as exc:
        outcome.error = exc.message if "not found" in exc.message else f"not found: {exc.message}"
    except StopAll as exc:
        outcome.error, outcome.stop = str(exc), exc.skipped
    except PacsUnavailable as exc:  # down, or refusing us: so it will be for the next study
        outcome.error, outcome.stop = f"failed: {exc.message}", "the PACS is not available"
    except (PrefetchFailed, GatewayError) as exc:
        reason = exc.message if isinstance(exc, GatewayError) else str(exc)
        after = f" after {outcome.instances} instance(s)" if outcome.instances else ""
        outcome.error = f"failed{after}: {reason}"
    outcome.seconds = time.monotonic() - started
    _finish(progress, task, outcome)
    return outcome


def _finish(progress: Progress, task: TaskID, outcome: StudyOutcome) -> None:
    if outcome.error is None:
        progress.update(task, total=outcome.instances, completed=outcome.instances,
                        expected=outcome.instances)
    else:  # a total, so the bar shows how little came rather than pulsing on
        progress.update(task, description=f"{_short(outcome.study_uid)} (failed)",
                        total=outcome.expected or max(outcome.instances, 1))
    progress.stop_task(task)


def _short(study_uid: str) -> str:
    """The end of a UID tells studies apart; their common root only takes room."""
    return study_uid if len(study_uid) <= 28 else "…" + study_uid[-27:]


def _report(outcomes: list[StudyOutcome], where: str | None = None) -> int:
    out = stdout_console()
    for outcome in outcomes:
        out.print(outcome.summary(), style="red" if outcome.error else None, markup=False)
    failed = sum(1 for outcome in outcomes if outcome.error is not None)
    source = f" from {where}" if where else ""
    out.print(f"prefetched {len(outcomes) - failed} of {len(outcomes)} "
              f"stud{'y' if len(outcomes) == 1 else 'ies'}{source}"
              f"{f'; {failed} failed' if failed else ''}", markup=False)
    return 1 if failed else 0


# -- progress columns: instances, MB and MB/s of each study -----------------------------------


class _InstancesColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        # The bar's total may be a stand-in (a failed study); "of N" only when N is known.
        expected = task.fields.get("expected")
        total = f"/{expected}" if expected is not None else ""
        return Text(f"{int(task.completed)}{total} instances")


class _MegabytesColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.fields.get('bytes', 0) / 1e6:8.1f} MB")


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        rate = task.fields.get("bytes", 0) / 1e6 / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:7.1f} MB/s")
