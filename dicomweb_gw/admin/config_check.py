"""``dicomweb-gw config check``: is this configuration going to work, and if not, why?

Everything the gateway needs from its surroundings, checked from where it
will run: the settings parse, every PACS answers C-ECHO, the cache folder is
writable, the C-MOVE storage port can be bound. It ends with what the PACS
administrator must register for C-MOVE, the usual missing piece.
Secrets (API keys) are counted, never printed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dicomweb_gw.admin.checks import Check, millis
from dicomweb_gw.admin.cluster_check import check_redis, check_shared_store
from dicomweb_gw.admin.doctor_toml import differs, toml_text
from dicomweb_gw.admin.tables import (
    data_table,
    heading,
    key_value_table,
    node_address,
    stdout_console,
)
from dicomweb_gw.errors import PacsError
from dicomweb_gw.pacs.dimse import DimsePacsClient
from dicomweb_gw.pacs.probe_findings import load_report
from dicomweb_gw.pacs.probe_target import local_addresses
from dicomweb_gw.settings import PacsNode, Settings, load_settings

__all__ = ["Check", "local_addresses", "run_config_check"]

#: An echo of our own storage port (is a gateway already listening there?) must be quick.
_SELF_ECHO_TIMEOUT = 3.0
_WILDCARDS = ("0.0.0.0", "::", "")


def run_config_check(config: Path | None, *, echo: bool) -> int:
    settings = load_settings(config_file=config)  # invalid: one line and exit 2, in cli.main
    out = stdout_console()
    heading(out, "Gateway")
    out.print(_gateway_table(settings, config))
    heading(out, "PACS nodes")
    out.print(_nodes_table(settings))
    checks: list[Check] = []
    if echo:
        checks.extend(asyncio.run(_echo_all(settings)))
    checks.append(check_cache_dir(settings.cache_dir, settings.cache_max_bytes))
    if _move_nodes(settings):
        checks.append(asyncio.run(check_store_port(settings)))
    if settings.redis_url is not None:
        checks.append(check_redis(settings.redis_url))
    if settings.shared_store is not None:
        checks.append(check_shared_store(settings))
    heading(out, "Checks")
    out.print(_checks_table(checks))
    heading(out, "Doctor findings (last probe of each node)")
    out.print(_findings_table(settings))
    _print_registration(out, settings)
    failed = [check for check in checks if check.ok is False]
    if failed:
        out.print(Text(f"{len(failed)} check(s) failed: "
                       f"{', '.join(check.what for check in failed)}", style="bold red"))
        return 1
    out.print(Text("all checks passed", style="bold green"))
    return 0


# -- summaries --------------------------------------------------------------------------------


def _gateway_table(settings: Settings, config: Path | None) -> Table:
    source = str(config or os.environ.get("DICOMWEB_GW_CONFIG") or "environment only")
    rows = [
        ("config", source),
        ("our AE title", settings.ae_title),
        ("default PACS", settings.default_pacs),
        ("cache", f"{settings.cache_dir} (at most {settings.cache_max_bytes / 1e9:g} GB, "
                  f"complete for {settings.cache_ttl:g} s)"),
        ("authentication", auth_summary(settings)),
    ]
    if _move_nodes(settings):
        rows.insert(2, ("C-MOVE storage SCP", f"{settings.store_host}:{settings.store_port}"))
    return key_value_table(rows)


def auth_summary(settings: Settings) -> str:
    """What protects the gateway, without a single secret in it."""
    parts: list[str] = []
    if settings.api_keys:
        count = len(settings.api_keys)
        parts.append(f"{count} API key{'s' if count != 1 else ''}")
    if settings.oidc_issuer is not None:
        parts.append(f"OIDC issuer {settings.oidc_issuer} (audience {settings.oidc_audience}; "
                     f"scopes {settings.oidc_read_scope} / {settings.oidc_write_scope})")
    if not parts:
        return "off: anyone who reaches the port can read and store"
    return " and ".join(parts) + f"; open paths: {', '.join(settings.auth_open_paths) or 'none'}"


def _nodes_table(settings: Settings) -> Table:
    rows = [
        [node.name + (" (default)" if node.name == settings.default_pacs else ""),
         f"{node.host}:{node.port}", node.ae_title, node.retrieve, str(node.max_associations),
         f"{node.timeout:g} s"]
        for node in settings.nodes
    ]
    return data_table(["node", "host:port", "AE title", "retrieve", "max associations",
                       "timeout"], rows, wrap=frozenset({"host:port"}))


def _checks_table(checks: list[Check]) -> Table:
    table = data_table(["check", "result", "detail"], [], wrap=frozenset({"check", "detail"}))
    labels = {True: ("OK", "green"), False: ("FAILED", "bold red"), None: ("WARNING", "yellow")}
    for check in checks:
        label, style = labels[check.ok]
        table.add_row(Text(check.what), Text(label, style=style), Text(check.detail))
    return table


def _findings_table(settings: Settings) -> Table:
    """What ``dicomweb-gw doctor`` found last, and where the config still disagrees."""
    table = data_table(["node", "probed", "verdict", "quirks", "config vs findings"], [],
                       wrap=frozenset({"quirks", "config vs findings"}))
    for node in settings.nodes:
        report = load_report(settings.cache_dir, node.name)
        if report is None:
            table.add_row(Text(node.name), Text("never"),
                          Text("never probed: run dicomweb-gw doctor", style="yellow"),
                          Text(""), Text(""))
            continue
        when = f"{report.probed_at:%Y-%m-%d %H:%M:%S} UTC"
        if report.address != node_address(node):
            when += f" (as {report.address}: probe again)"
        blocking = [finding.check for finding in report.findings if finding.blocking]
        verdict = (Text("usable", style="green") if not blocking
                   else Text(f"NOT usable: {', '.join(blocking)}", style="bold red"))
        quirks = ", ".join(finding.check for finding in report.findings
                           if finding.status == "quirk") or "none"
        changes = [f"{name} = {toml_text(value)}" for name, value in report.settings.items()
                   if differs(node, name, value)]
        advice = ("set " + ", ".join(changes)) if changes else "the configuration fits"
        table.add_row(Text(node.name), Text(when), verdict, Text(quirks), Text(advice))
    return table


def _print_registration(out: Console, settings: Settings) -> None:
    nodes = _move_nodes(settings)
    if not nodes:
        out.print("No node retrieves by C-MOVE: nothing to register on the PACS "
                  "(C-GET comes back on our own association).", markup=False)
        return
    if settings.store_host in _WILDCARDS:
        addresses = ", ".join(local_addresses()) or "(none found: use this host's name)"
    else:
        addresses = settings.store_host
    rows = [("AE title", settings.ae_title),
            ("host", socket.getfqdn()),
            ("address(es)", addresses),
            ("port", str(settings.store_port))]
    names = ", ".join(f"{node.name} ({node.ae_title})" for node in nodes)
    heading(out, f"For C-MOVE, register on {names} this destination:")
    out.print(key_value_table(rows))
    kubernetes = "KUBERNETES_SERVICE_HOST" in os.environ
    out.print(("Running in Kubernetes: " if kubernetes else "In Kubernetes: ")
              + "register the Service's address (its DNS name, ClusterIP or LoadBalancer IP) "
              "and port, not a pod's: pods come and go.", markup=False)


def _move_nodes(settings: Settings) -> list[PacsNode]:
    return [node for node in settings.nodes if node.retrieve == "c-move"]


# -- the checks -------------------------------------------------------------------------------


async def _echo_all(settings: Settings) -> list[Check]:
    """Every node at once: a dead PACS costs its timeout once, not once per node before it."""
    return list(await asyncio.gather(*(echo_node(node, settings.ae_title)
                                       for node in settings.nodes)))


async def echo_node(node: PacsNode, ae_title: str) -> Check:
    what = f"C-ECHO {node.name} ({node_address(node)})"
    client = DimsePacsClient(node, ae_title=ae_title, receiver=None, metrics=None)
    started = time.perf_counter()
    try:
        await asyncio.wait_for(client.echo(), node.timeout + 5)
        return Check(what, True, f"answered in {millis(started)}")
    except TimeoutError:
        return Check(what, False, f"no answer within {node.timeout:g} s")
    except PacsError as exc:
        return Check(what, False, f"{exc.message} (after {millis(started)})")
    finally:
        await client.aclose()


def check_cache_dir(folder: Path, max_bytes: int) -> Check:
    what = f"cache folder {folder}"
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return Check(what, False, f"{existing} is not a folder")
    try:
        # Writing a file is the only sure test: access() ignores read-only mounts and ACLs.
        with tempfile.TemporaryFile(dir=existing, prefix=".dicomweb-gw-check-"):
            pass
    except OSError as exc:
        return Check(what, False, f"cannot write in {existing}: {exc.strerror or exc}")
    free = shutil.disk_usage(existing).free
    detail = "writable" if existing == folder else f"will be created in {existing} (writable)"
    detail += f", {free / 1e9:.1f} GB free"
    if free < max_bytes:
        return Check(what, None, f"{detail}: less than the cache may use "
                                 f"({max_bytes / 1e9:g} GB, DICOMWEB_GW_CACHE_MAX_BYTES)")
    return Check(what, True, detail)


async def check_store_port(settings: Settings) -> Check:
    """Can the C-MOVE storage SCP listen? If not, is it because a gateway already does?"""
    where = f"{settings.store_host}:{settings.store_port}"
    what = f"storage SCP port {where}"
    try:
        _try_bind(settings.store_host, settings.store_port)
        return Check(what, True, "free to listen on")
    except OSError as exc:
        reason = exc.strerror or str(exc)
    # Busy: a running gateway answers C-ECHO there as our AE title, and that is fine.
    local = "127.0.0.1" if settings.store_host in _WILDCARDS else settings.store_host
    listener = PacsNode(name="storage-scp", host=local, port=settings.store_port,
                        ae_title=settings.ae_title, timeout=_SELF_ECHO_TIMEOUT)
    client = DimsePacsClient(listener, ae_title=settings.ae_title)
    try:
        await asyncio.wait_for(client.echo(), _SELF_ECHO_TIMEOUT + 2)
    except (PacsError, TimeoutError):
        return Check(what, False, f"cannot listen: {reason} (DICOMWEB_GW_STORE_PORT)")
    finally:
        await client.aclose()
    return Check(what, None, f"in use by a storage SCP answering as {settings.ae_title}: "
                             "a running gateway, presumably")


def _try_bind(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As pynetdicom's server does: a port in TIME_WAIT is free for it too.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
