"""Real "legacy PACS" for the test suite: DCMTK dcmqrscp and Orthanc.

Loaded as a pytest plugin (``pytest_plugins = ["pacs_fixtures", "corpus"]``).

Session fixtures:

* ``gateway_store_port``: a free loopback port reserved for the gateway's
  C-MOVE storage SCP. Both PACS know ``GATEWAY_AE_TITLE`` at 127.0.0.1:<port>
  as a move destination; ``UNKNOWN_AE_TITLE`` is deliberately unknown to both.
* ``dcmqrscp_pacs``: DCMTK ``dcmqrscp`` holding every uncompressed corpus study
  (each file in its own transfer syntax: ``mr_implicit`` stays Implicit VR LE).
* ``orthanc_pacs``: Orthanc (DICOMweb plugin only) holding the whole corpus; its
  REST API is at ``http_url`` and its own DICOMweb at ``http_url + "/dicom-web"``.

Both run on free loopback ports with configs rendered from ``tests/configs``
into a tmp dir, ``TCP_NODELAY=1`` in their environment (Debian's DCMTK and
Orthanc leave Nagle on otherwise: +45 ms per exchange), and are terminated at
session end. A missing binary is an error naming the Debian package, never a
silent skip: CI installs them (``.ci/test``).

Set ``GW_TEST_PACS_VERBOSE=1`` for verbose PACS logs (``RunningPacs.log_path``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import string
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # generated

if TYPE_CHECKING:
    # Not imported at run time: conftest registers this plugin before `corpus`,
    # and importing it here first would keep pytest from rewriting its asserts.
    from corpus import Corpus, InstanceInfo

GATEWAY_AE_TITLE = "DICOMWEB_GW"
# Must NOT appear in any PACS move table: tests use it to provoke
# "unknown move destination" (dcmqrscp 0xA801, Orthanc 0xC000).
UNKNOWN_AE_TITLE = "NOT_KNOWN_AE"
DCMQRSCP_AE_TITLE = "DCMQRSCP"
ORTHANC_AE_TITLE = "ORTHANC"
# Calling AE title of the fixtures' own C-ECHOs and loads; not the gateway's,
# so PACS logs tell fixture traffic from gateway traffic.
FIXTURE_AE_TITLE = "GW_TEST_FIXTURE"

LOOPBACK = "127.0.0.1"
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
ORTHANC_DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
STARTUP_TIMEOUT = 30.0
LOAD_TIMEOUT = 120.0
LOG_TAIL_LINES = 40
VERBOSE_ENV = "GW_TEST_PACS_VERBOSE"


@dataclass(frozen=True)
class RunningPacs:
    name: str
    host: str
    port: int
    ae_title: str
    # Orthanc REST base URL (its DICOMweb is under "/dicom-web"); None for dcmqrscp.
    http_url: str | None
    storage_dir: Path
    log_path: Path

    @property
    def dicomweb_url(self) -> str:
        """Orthanc's own DICOMweb root: a reference server to compare answers with."""
        if self.http_url is None:
            raise ValueError(f"{self.name} has no HTTP interface")
        return f"{self.http_url}/dicom-web"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _tail(self.log_path, lines)


class PacsStartupError(RuntimeError):
    """A PACS did not start or could not be loaded; the message carries its log tail."""


# --------------------------------------------------------------------------- helpers

_handed_out_ports: set[int] = set()


def free_port() -> int:
    """A currently free loopback TCP port, never the same one twice per session.

    The port is only free at the time of the call (the socket is closed so the
    PACS can bind it); remembering what was handed out avoids giving two
    servers of one session the same number.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out_ports:
            _handed_out_ports.add(port)
            return port
    raise RuntimeError("could not find a free loopback TCP port")


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<no log at {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _require_binary(name: str, package: str, extra_dirs: Sequence[str] = ()) -> str:
    """Absolute path of ``name``, or an error that says which Debian package to install."""
    found = shutil.which(name)
    if found is None:
        # /usr/sbin (Orthanc) is not on PATH for non-root users.
        for directory in extra_dirs:
            candidate = Path(directory) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                found = str(candidate)
                break
    if found is None:
        raise PacsStartupError(
            f"`{name}` not found: install the Debian package `{package}` "
            f"(apt-get install -y {package}; see .ci/test)"
        )
    return found


def _render(template_name: str, destination: Path, values: dict[str, object]) -> Path:
    template = string.Template((CONFIG_DIR / template_name).read_text(encoding="utf-8"))
    # substitute() (not safe_substitute) so a forgotten placeholder fails loudly.
    destination.write_text(
        template.substitute({key: str(value) for key, value in values.items()}),
        encoding="utf-8",
    )
    return destination


def _pacs_env() -> dict[str, str]:
    env = dict(os.environ)
    # Debian's DCMTK and Orthanc's DIMSE layer disable Nagle only when asked to.
    env["TCP_NODELAY"] = "1"
    return env


def _verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


# Loaded up front: the forked child (preexec_fn) should do as little as possible.
_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: have Linux SIGTERM the PACS if pytest itself dies (e.g. SIGKILL),

    so an aborted run does not leave servers holding ports.
    """
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _start(command: list[str], log_path: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        # Own session/process group: teardown signals the group, which also
        # reaches dcmqrscp's per-association child processes.
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=_pacs_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """terminate, wait, kill: the whole process group this fixture created."""
    if process.poll() is not None:
        return
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _startup_error(
    what: str, name: str, log_path: Path, process: subprocess.Popen[bytes] | None = None
) -> PacsStartupError:
    status = ""
    if process is not None and process.poll() is not None:
        status = f" (process exited with {process.returncode})"
    return PacsStartupError(
        f"{name}: {what}{status}\n--- last lines of {log_path} ---\n{_tail(log_path)}"
    )


def wait_until(
    ready: Callable[[], bool],
    *,
    name: str,
    what: str,
    process: subprocess.Popen[bytes],
    log_path: Path,
    timeout: float = STARTUP_TIMEOUT,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise _startup_error(f"exited while waiting for {what}", name, log_path, process)
        if ready():
            return
        if time.monotonic() > deadline:
            raise _startup_error(f"no {what} after {timeout:.0f} s", name, log_path, process)
        time.sleep(0.05)


@contextlib.contextmanager
def _quiet_pynetdicom() -> Iterator[None]:
    """Silence pynetdicom while polling: every refused attempt would log an ERROR."""
    logger = logging.getLogger("pynetdicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def c_echo(host: str, port: int, ae_title: str, timeout: float = 5.0) -> int | None:
    """C-ECHO status (0x0000 = success), or None if no association could be made."""
    ae = AE(ae_title=FIXTURE_AE_TITLE)
    ae.add_requested_context(Verification)
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    ae.connection_timeout = timeout
    assoc = ae.associate(host, port, ae_title=ae_title)
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_echo()
        return int(status.Status) if "Status" in status else None
    finally:
        assoc.release()


def _wait_for_dicom(
    name: str, host: str, port: int, ae_title: str,
    process: subprocess.Popen[bytes], log_path: Path,
) -> None:
    # A real C-ECHO, not a bare TCP connect: that would make dcmqrscp log an
    # "Association Reject Failed" error for each probe.
    with _quiet_pynetdicom():
        wait_until(
            lambda: c_echo(host, port, ae_title, timeout=2.0) == 0x0000,
            name=name, what=f"successful C-ECHO to {ae_title}@{host}:{port}",
            process=process, log_path=log_path,
        )


# --------------------------------------------------------------------------- loading


def _storescu_option(transfer_syntax_uid: str) -> str:
    """storescu proposal that makes the PACS store the file in its own transfer syntax.

    By default storescu proposes all uncompressed syntaxes and dcmqrscp accepts
    Explicit VR LE, so storescu would silently convert Implicit VR files.
    (dcmsend behaves the same.) ``-xi`` proposes Implicit VR LE only.
    """
    if transfer_syntax_uid == ImplicitVRLittleEndian:
        return "-xi"
    if transfer_syntax_uid == ExplicitVRLittleEndian:
        return "-xe"
    raise PacsStartupError(
        f"dcmqrscp only gets uncompressed Little Endian instances, not {transfer_syntax_uid}"
    )


def load_with_storescu(
    pacs: RunningPacs, instances: Sequence[InstanceInfo], storescu: str
) -> None:
    by_syntax: dict[str, list[InstanceInfo]] = {}
    for inst in instances:
        by_syntax.setdefault(inst.transfer_syntax_uid, []).append(inst)
    for syntax, group in sorted(by_syntax.items()):
        command = [
            # -R: propose the SOP classes of the files, not storescu's default list,
            # which lacks some the corpus has (Encapsulated CDA).
            storescu, "-aet", FIXTURE_AE_TITLE, "-aec", pacs.ae_title, "-R",
            _storescu_option(syntax), "-to", "10", "-ta", "10", "-td", "60",
            pacs.host, str(pacs.port), *[str(inst.path) for inst in group],
        ]
        result = subprocess.run(
            command, env=_pacs_env(), capture_output=True, text=True,
            timeout=LOAD_TIMEOUT, check=False,
        )
        if result.returncode != 0:
            raise PacsStartupError(
                f"{pacs.name}: storescu exited with {result.returncode} loading "
                f"{len(group)} instances ({syntax}):\n{result.stdout}{result.stderr}"
                f"\n--- last lines of {pacs.log_path} ---\n{pacs.log_tail()}"
            )


def _load_into_orthanc(pacs: RunningPacs, instances: Sequence[InstanceInfo]) -> None:
    """POST every file to Orthanc's REST API (a few threads: Orthanc stores in parallel)."""
    assert pacs.http_url is not None

    def post(client: httpx.Client, inst: InstanceInfo) -> None:
        response = client.post(
            "/instances", content=inst.path.read_bytes(),
            headers={"Content-Type": "application/dicom"},
        )
        status = response.json().get("Status") if response.is_success else None
        if status not in ("Success", "AlreadyStored"):
            raise PacsStartupError(
                f"{pacs.name}: POST /instances for {inst.path} answered "
                f"{response.status_code} {response.text[:500]}"
                f"\n--- last lines of {pacs.log_path} ---\n{pacs.log_tail()}"
            )

    with (
        httpx.Client(base_url=pacs.http_url, timeout=LOAD_TIMEOUT) as client,
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        # list() re-raises the first failure here.
        list(pool.map(lambda inst: post(client, inst), instances))


# --------------------------------------------------------------------------- fixtures


def _storage_path_for_cfg(path: Path) -> Path:
    # dcmqrscp's config tokenizer splits on whitespace.
    if any(ch.isspace() for ch in str(path)):
        raise PacsStartupError(f"dcmqrscp storage path must not contain whitespace: {path}")
    return path


@pytest.fixture(scope="session")
def gateway_store_port() -> int:
    """Loopback port for the gateway's C-MOVE storage SCP; both PACS move there."""
    return free_port()


@pytest.fixture(scope="session")
def dcmqrscp_pacs(
    tmp_path_factory: pytest.TempPathFactory, corpus: Corpus, gateway_store_port: int
) -> Iterator[RunningPacs]:
    """DCMTK dcmqrscp with every uncompressed corpus study loaded."""
    instances = [inst for study in corpus.uncompressed_studies for inst in study.instances]
    with running_dcmqrscp(tmp_path_factory.mktemp("dcmqrscp"), instances,
                          gateway_store_port) as pacs:
        yield pacs


@contextmanager
def running_dcmqrscp(workdir: Path, instances: Sequence[InstanceInfo],
                     gateway_port: int) -> Iterator[RunningPacs]:
    """A dcmqrscp holding ``instances`` that moves to the gateway AE at ``gateway_port``.

    Runs in its default fork mode: Debian's dcmqrscp 3.6.7-9~deb12u4 crashes
    (SIGSEGV in DUL_DropAssociation) after the first association with
    ``--single-process``.
    """
    dcmqrscp = _require_binary("dcmqrscp", "dcmtk")
    storescu = _require_binary("storescu", "dcmtk")
    storage_dir = _storage_path_for_cfg(workdir / "storage" / DCMQRSCP_AE_TITLE)
    storage_dir.mkdir(parents=True)
    port = free_port()
    config = _render(
        "dcmqrscp.cfg.template", workdir / "dcmqrscp.cfg",
        {
            "port": port,
            "ae_title": DCMQRSCP_AE_TITLE,
            "storage_dir": storage_dir,
            "gateway_ae_title": GATEWAY_AE_TITLE,
            "gateway_port": gateway_port,
            "unknown_ae_title": UNKNOWN_AE_TITLE,
        },
    )
    log_path = workdir / "dcmqrscp.log"
    # -dhl: no reverse DNS lookup of every calling peer.
    command = [dcmqrscp, "-dhl", "-c", str(config)]
    if _verbose():
        command.insert(1, "-v")
    pacs = RunningPacs(
        name="dcmqrscp", host=LOOPBACK, port=port, ae_title=DCMQRSCP_AE_TITLE,
        http_url=None, storage_dir=storage_dir, log_path=log_path,
    )
    process = _start(command, log_path, workdir)
    try:
        _wait_for_dicom(pacs.name, pacs.host, pacs.port, pacs.ae_title, process, log_path)
        load_with_storescu(pacs, instances, storescu)
        # dcmqrscp keeps one file per instance next to its index.dat.
        stored = [p for p in storage_dir.iterdir() if p.name != "index.dat"]
        if len(stored) != len(instances):
            raise _startup_error(
                f"holds {len(stored)} files after loading {len(instances)} instances",
                pacs.name, log_path, process,
            )
        yield pacs
    finally:
        stop_process(process)


def wait_for_orthanc(pacs: RunningPacs, process: subprocess.Popen[bytes]) -> None:
    """Until Orthanc answers over HTTP and DICOM (or exits: then a startup error)."""
    http_url = pacs.http_url

    def http_ready() -> bool:
        try:
            return httpx.get(f"{http_url}/system", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(http_ready, name=pacs.name, what=f"HTTP answer from {http_url}/system",
                process=process, log_path=pacs.log_path)
    _wait_for_dicom(pacs.name, pacs.host, pacs.port, pacs.ae_title, process, pacs.log_path)


@pytest.fixture(scope="session")
def orthanc_pacs(
    tmp_path_factory: pytest.TempPathFactory, corpus: Corpus, gateway_store_port: int
) -> Iterator[RunningPacs]:
    """Orthanc with the whole corpus loaded (compressed studies included)."""
    orthanc = _require_binary("Orthanc", "orthanc", extra_dirs=["/usr/sbin"])
    if not ORTHANC_DICOMWEB_PLUGIN.is_file():
        raise PacsStartupError(
            f"{ORTHANC_DICOMWEB_PLUGIN} not found: install the Debian package "
            "`orthanc-dicomweb` (apt-get install -y orthanc-dicomweb; see .ci/test)"
        )
    workdir = tmp_path_factory.mktemp("orthanc")
    storage_dir = workdir / "storage"
    storage_dir.mkdir()
    dicom_port = free_port()
    http_port = free_port()
    config = _render(
        "orthanc.json.template", workdir / "orthanc.json",
        {
            # String values go in JSON-encoded (quotes, escapes).
            "storage_dir": json.dumps(str(storage_dir)),
            "dicomweb_plugin": json.dumps(str(ORTHANC_DICOMWEB_PLUGIN)),
            "ae_title": json.dumps(ORTHANC_AE_TITLE),
            "gateway_ae_title": json.dumps(GATEWAY_AE_TITLE),
            "unknown_ae_title": json.dumps(UNKNOWN_AE_TITLE),
            "http_port": http_port,
            "dicom_port": dicom_port,
            "gateway_port": gateway_store_port,
        },
    )
    log_path = workdir / "orthanc.log"
    command = [orthanc, str(config)]
    if _verbose():
        command.insert(1, "--verbose")
    http_url = f"http://{LOOPBACK}:{http_port}"
    pacs = RunningPacs(
        name="orthanc", host=LOOPBACK, port=dicom_port, ae_title=ORTHANC_AE_TITLE,
        http_url=http_url, storage_dir=storage_dir, log_path=log_path,
    )
    process = _start(command, log_path, workdir)
    try:
        wait_for_orthanc(pacs, process)
        _load_into_orthanc(pacs, corpus.instances)
        count = httpx.get(f"{http_url}/statistics", timeout=10.0).json()["CountInstances"]
        if count != len(corpus.instances):
            raise _startup_error(
                f"holds {count} instances after loading {len(corpus.instances)}",
                pacs.name, log_path, process,
            )
        yield pacs
    finally:
        stop_process(process)


_PACS_FIXTURES = frozenset({"dcmqrscp_pacs", "orthanc_pacs"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a real PACS with ``pacs`` (so ``-m "not pacs"`` works)."""
    for item in items:
        if _PACS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.pacs)
