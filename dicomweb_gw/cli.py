"""``dicomweb-gw``: serve, demo, echo, cache, and the admin commands (find, prefetch,
doctor, config check) whose logic lives in ``dicomweb_gw.admin``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from dicomweb_gw import __version__
from dicomweb_gw.errors import PacsError
from dicomweb_gw.logs import configure_logging
from dicomweb_gw.settings import (
    PacsNode,
    Settings,
    SettingsError,
    load_settings,
    log_format_from,
)

__all__ = ["main"]

log = logging.getLogger("dicomweb_gw")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # The admin commands print their own results: INFO lines would only bury them.
    quiet = args.quiet or getattr(args, "admin", False)
    try:
        configure_logging(json_lines=log_format_from(os.environ) == "json",
                          level=logging.WARNING if quiet else logging.INFO)
        result: int = args.run(args)
        return result
    except SettingsError as exc:
        print(f"dicomweb-gw: invalid settings: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dicomweb-gw",
                                     description="DICOMweb gateway in front of DIMSE PACS")
    parser.add_argument("--version", action="version", version=f"dicomweb-gw {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    serve.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    serve.add_argument("--config", type=Path, help="TOML config file (or DICOMWEB_GW_CONFIG)")
    serve.set_defaults(run=_serve)

    demo = commands.add_parser("demo", help="run the gateway over an embedded demo PACS")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    demo.add_argument("--data-dir", type=Path,
                      help="where the demo PACS keeps its files (default: a temporary folder)")
    demo.set_defaults(run=_demo)

    echo = commands.add_parser("echo", help="C-ECHO the configured PACS and report")
    echo.add_argument("--config", type=Path, help="TOML config file (or DICOMWEB_GW_CONFIG)")
    echo.add_argument("--pacs", help="only this node (default: every node)")
    echo.set_defaults(run=_echo)

    cache = commands.add_parser("cache", help="inspect or purge the instance cache")
    cache.add_argument("--config", type=Path, help="TOML config file (or DICOMWEB_GW_CONFIG)")
    cache.add_argument("--pacs", help="only this node's cache (default: every node)")
    actions = cache.add_subparsers(dest="action", required=True)
    actions.add_parser("stats", help="instances, bytes, hits and evictions per node")
    purge = actions.add_parser("purge", help="forget a study (or one series) so it is "
                                             "retrieved again from the PACS")
    purge.add_argument("study", help="StudyInstanceUID")
    purge.add_argument("series", nargs="?", help="SeriesInstanceUID (default: the whole study)")
    cache.set_defaults(run=_cache)
    _admin_commands(commands)
    return parser


def _admin_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    find = commands.add_parser(
        "find", help="search the PACS like QIDO-RS and print a table",
        description="Search a PACS node with the gateway's own QIDO-RS code. KEY=VALUE terms "
                    "are QIDO query parameters: PatientID=12345 PatientName=DOE* "
                    "StudyDate=20240101-20240131 ModalitiesInStudy=CT includefield=all.")
    find.add_argument("--config", type=Path, help="TOML config file (or DICOMWEB_GW_CONFIG)")
    find.add_argument("--node", "--pacs", dest="node", help="PACS node (default: the default)")
    find.add_argument("--level", choices=["studies", "series", "instances"],
                      help="what to list (default: studies; series with --study; "
                           "instances with --series)")
    find.add_argument("--study", help="only in this StudyInstanceUID")
    find.add_argument("--series", help="only in this SeriesInstanceUID")
    find.add_argument("--limit", type=int, default=100, help="most results (default 100)")
    find.add_argument("--json", action="store_true", help="print DICOM JSON, as QIDO-RS would")
    find.add_argument("terms", nargs="*", metavar="KEY=VALUE", help="matching keys")
    find.set_defaults(run=_find, admin=True)

    prefetch = commands.add_parser(
        "prefetch", help="warm the cache with whole studies",
        description="Retrieve studies into the cache. With --url (or DICOMWEB_GW_URL), through "
                    "the running gateway; without, in this process, with the gateway stopped.")
    prefetch.add_argument("--config", type=Path,
                          help="TOML config file (or DICOMWEB_GW_CONFIG); without --url only")
    prefetch.add_argument("--node", "--pacs", dest="node", help="PACS node (default: the default)")
    prefetch.add_argument("--url", default=os.environ.get("DICOMWEB_GW_URL"),
                          help="running gateway, e.g. http://gw.example:8080 (or DICOMWEB_GW_URL)")
    prefetch.add_argument("--token", default=os.environ.get("DICOMWEB_GW_TOKEN"),
                          help="bearer token or API key for --url (or DICOMWEB_GW_TOKEN)")
    prefetch.add_argument("studies", nargs="+", metavar="STUDY_UID")
    prefetch.set_defaults(run=_prefetch, admin=True)

    doctor = commands.add_parser(
        "doctor", help="probe the PACS nodes and say which settings they need",
        description="Probe each PACS node (or --node NAME) like an integrator would: C-ECHO, "
                    "associations, query models and levels, match limit, relational queries, "
                    "matching keys, character set, C-GET, the C-MOVE destination, C-CANCEL and "
                    "a sample retrieve. Prints the findings with the setting that handles each; "
                    "exit 1 if a node is not usable.")
    doctor.add_argument("--config", type=Path, help="TOML config file (or DICOMWEB_GW_CONFIG)")
    doctor.add_argument("--node", "--pacs", dest="node",
                        help="only this node (default: every node)")
    doctor.add_argument("--write", type=Path, metavar="FILE",
                        help="write a TOML config with the findings applied, for serve --config")
    doctor.set_defaults(run=_doctor, admin=True)

    config = commands.add_parser("config", help="check the configuration")
    config_actions = config.add_subparsers(dest="action", required=True)
    check = config_actions.add_parser(
        "check", help="validate settings, C-ECHO every node, check cache and ports",
        description="Validate the settings, C-ECHO every PACS node, check the cache folder and "
                    "the C-MOVE port, and print what to register on the PACS. Exit 1 if a "
                    "check failed.")
    check.add_argument("--config", type=Path, help="TOML config file (or DICOMWEB_GW_CONFIG)")
    check.add_argument("--no-echo", dest="echo", action="store_false",
                       help="do not C-ECHO the PACS nodes")
    check.set_defaults(run=_config_check, admin=True)


def _serve(args: argparse.Namespace) -> int:
    settings = load_settings(config_file=args.config)
    return _run_gateway(settings, args.host, args.port)


def _run_gateway(settings: Settings, host: str, port: int) -> int:
    import uvicorn

    from dicomweb_gw.app import Gateway, create_app
    from dicomweb_gw.http.middleware import SERVER_HEAD_BUFFER

    gateway = Gateway(settings)
    gateway.start()  # bind the storage SCP now, so a port clash is one clear line
    app = create_app(gateway=gateway)
    # log_config=None: uvicorn logs through our handler (request ids, JSON when asked).
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=True, log_config=None,
                h11_max_incomplete_event_size=SERVER_HEAD_BUFFER)
    return 0


def _echo(args: argparse.Namespace) -> int:
    from dicomweb_gw.pacs.dimse import DimsePacsClient

    settings = load_settings(config_file=args.config)
    try:
        nodes = [settings.node(args.pacs)] if args.pacs else list(settings.nodes)
    except KeyError:
        known = ", ".join(node.name for node in settings.nodes)
        print(f"dicomweb-gw: no PACS node named '{args.pacs}' (known: {known})",
              file=sys.stderr)
        return 2

    async def echo_all() -> int:
        failed = 0
        for node in nodes:
            client = DimsePacsClient(node, ae_title=settings.ae_title)
            where = f"{node.ae_title}@{node.host}:{node.port}"
            try:
                await client.echo()
                print(f"{node.name}: C-ECHO to {where} succeeded")
            except PacsError as exc:
                failed += 1
                print(f"{node.name}: C-ECHO to {where} failed: {exc.message}", file=sys.stderr)
            finally:
                await client.aclose()
        return 1 if failed else 0

    return asyncio.run(echo_all())


def _cache(args: argparse.Namespace) -> int:
    from dicomweb_gw.app import Gateway
    from dicomweb_gw.cache.disk import CacheInUse

    settings = load_settings(config_file=args.config)
    names = [node.name for node in settings.nodes]
    if args.pacs and args.pacs not in names:
        print(f"dicomweb-gw: no PACS node named '{args.pacs}' (known: {', '.join(names)})",
              file=sys.stderr)
        return 2
    gateway = Gateway(settings)
    for name in [args.pacs] if args.pacs else names:
        try:
            store = gateway.store(name)
        except CacheInUse:
            print(f"dicomweb-gw: the cache of '{name}' is in use by a running gateway; purge "
                  f"through it instead: curl -X DELETE http://HOST:PORT/pacs/{name}/cache/"
                  "studies/STUDY_UID", file=sys.stderr)
            return 1
        try:
            if args.action == "purge":
                count = store.purge(args.study, args.series)
                what = f"series {args.series}" if args.series else f"study {args.study}"
                print(f"{name}: purged {count} instance(s) of {what}")
            else:
                stats = store.stats()
                print(f"{name}: {stats.instances} instances, {stats.bytes} bytes, "
                      f"{stats.hits} hits, {stats.misses} misses, {stats.evictions} evictions")
        finally:
            store.close()
    return 0


def _find(args: argparse.Namespace) -> int:
    from dicomweb_gw.admin.find import FindRequest, run_find

    settings = load_settings(config_file=args.config)
    return run_find(settings, FindRequest(node=args.node, level=args.level, study=args.study,
                                          series=args.series, limit=args.limit,
                                          as_json=args.json, terms=args.terms))


def _prefetch(args: argparse.Namespace) -> int:
    from dicomweb_gw.admin.prefetch import PrefetchRequest, run_prefetch

    return run_prefetch(PrefetchRequest(studies=args.studies, node=args.node, url=args.url,
                                        token=args.token, config=args.config))


def _doctor(args: argparse.Namespace) -> int:
    from dicomweb_gw.admin.doctor import DoctorRequest, run_doctor

    return run_doctor(DoctorRequest(config=args.config, node=args.node, write=args.write))


def _config_check(args: argparse.Namespace) -> int:
    from dicomweb_gw.admin.config_check import run_config_check

    return run_config_check(args.config, echo=args.echo)


def _demo(args: argparse.Namespace) -> int:
    from dicomweb_gw.demo import DemoPacs, generate_sample_data

    data_dir: Path = args.data_dir or Path(tempfile.mkdtemp(prefix="dicomweb-gw-demo-"))
    storage = data_dir / "pacs"
    storage.mkdir(parents=True, exist_ok=True)
    fresh = not any(storage.rglob("*.dcm"))
    settings = load_settings(environ={k: v for k, v in os.environ.items()
                                      if not k.startswith("DICOMWEB_GW_PACS_")})
    store_port = _free_port()
    settings = replace(settings, store_port=store_port, store_host="127.0.0.1",
                       cache_dir=data_dir / "cache")
    pacs = DemoPacs(storage, ae_title="DEMOPACS",
                    move_destinations={settings.ae_title: ("127.0.0.1", store_port)})
    if fresh:
        pacs.add_files(generate_sample_data(data_dir / "samples"))
    pacs.start()
    node = PacsNode(name="demo", host="127.0.0.1", port=pacs.port, ae_title="DEMOPACS",
                    retrieve="c-move")
    settings = replace(settings, nodes=(node,), default_pacs="demo")
    base = f"http://{args.host}:{args.port}"
    print(f"""
dicomweb-gw demo: a demo PACS (DEMOPACS on 127.0.0.1:{pacs.port}, data in {storage})
and the gateway in front of it. Try:

  curl '{base}/dicom-web/studies'
  curl '{base}/dicom-web/studies?PatientName=*&includefield=all'
  curl -H 'Accept: multipart/related; type="application/dicom"' \\
       '{base}/dicom-web/studies/<StudyInstanceUID>' -o study.multipart
  curl '{base}/readyz'

OHIF or any DICOMweb client: QIDO and WADO root {base}/dicom-web
Status page (nodes, retrieves in flight, cache): {base}/status
Press Ctrl+C to stop.
""", flush=True)
    try:
        return _run_gateway(settings, args.host, args.port)
    finally:
        pacs.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
