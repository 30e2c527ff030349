"""Typed settings: an optional TOML file, then environment variables on top.

Every setting is validated here so that a bad value stops the gateway at start
with one line naming the setting, instead of failing on the first request.

The TOML file looks like::

    ae_title = "DICOMWEB_GW"
    store_port = 11113
    default_pacs = "main"

    [pacs.main]
    host = "pacs.example.org"
    port = 104
    ae_title = "MAINPACS"
    retrieve = "c-move"

    [pacs.research]
    host = "10.0.0.7"
    port = 11112
    ae_title = "RESEARCH"
    retrieve = "c-get"

The ``DICOMWEB_GW_PACS_*`` and ``DICOMWEB_GW_RETRIEVE`` variables override the
default PACS node; with no file they define it.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = ["PacsNode", "Settings", "SettingsError", "load_settings"]

ENV_PREFIX = "DICOMWEB_GW_"
RetrieveMethod = Literal["c-get", "c-move"]
_RETRIEVE_METHODS: tuple[RetrieveMethod, ...] = ("c-get", "c-move")
QueryModel = Literal["auto", "study", "patient"]
_QUERY_MODELS: tuple[QueryModel, ...] = ("auto", "study", "patient")
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}


class SettingsError(ValueError):
    """A setting is missing or invalid; the message is one line for the operator."""


@dataclass(frozen=True)
class PacsNode:
    """One PACS the gateway fronts."""

    name: str
    host: str
    port: int
    ae_title: str
    retrieve: RetrieveMethod = "c-move"
    #: Associations the gateway opens to this PACS at once (many PACS allow 2 to 4).
    max_associations: int = 4
    #: Seconds to wait for a connection, an association or a DIMSE response.
    timeout: float = 30.0
    #: Q/R information model: "auto" (Study Root if accepted, else Patient Root),
    #: or "study"/"patient" for a PACS that accepts a model it then mishandles.
    query_model: QueryModel = "auto"
    #: False for a PACS whose C-MOVE sub-operations omit the Move Originator
    #: Message ID: instances are then routed by UID, so moves to it run one at a time.
    move_originator: bool = True


@dataclass(frozen=True)
class Settings:
    nodes: tuple[PacsNode, ...]
    default_pacs: str
    #: Our own AE title: the calling AE and the C-MOVE destination.
    ae_title: str = "DICOMWEB_GW"
    #: Port of the storage SCP that receives C-MOVE sub-operations.
    store_port: int = 11113
    store_host: str = "0.0.0.0"
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "dicomweb-gw")
    cache_max_bytes: int = 10 * 1000**3
    #: Seconds a cached series counts as complete. Instances never change, but a
    #: PACS can receive more of them: after this, a series is asked for again.
    cache_ttl: float = 300.0
    #: Largest STOW-RS request body (413 beyond); uploads are spooled to disk, not memory.
    upload_max_bytes: int = 2 * 1000**3
    #: Origins allowed to call the gateway from a browser (CORS); none by default.
    cors_origins: tuple[str, ...] = ()
    #: Upper bound on QIDO results per request (the client's limit is capped to it).
    qido_max_results: int = 1000
    #: API keys (bearer or X-API-Key); each grants read and write.
    api_keys: tuple[str, ...] = ()
    #: OIDC: tokens must come from this issuer, for this audience, signed by a JWKS key.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_read_scope: str = "dicomweb.read"
    oidc_write_scope: str = "dicomweb.write"
    #: Path prefixes served without authentication (probes, metrics, the API description).
    auth_open_paths: tuple[str, ...] = ("/healthz", "/readyz", "/metrics", "/openapi.json")
    #: Several replicas: Redis for cluster-wide single flight, C-MOVE routing and
    #: shared metadata/QIDO caches. None: one process on its own (the default).
    redis_url: str | None = None
    #: Instances shared by every replica: ``file:///mnt/shared`` (a ReadWriteMany
    #: volume) or ``s3://bucket/prefix``. None: each replica's local cache only.
    shared_store: str | None = None
    s3_endpoint: str | None = None
    s3_region: str | None = None
    #: Seconds a replica's claim on a retrieve lasts without renewal (a dead
    #: replica's retrieve is taken over after this).
    lease_seconds: float = 10.0
    #: Seconds QIDO answers stay in the shared cache (with Redis only; 0: never cached).
    qido_cache_ttl: float = 15.0
    #: Where audit events go: "off", "stdout", "stderr" or a file path (appended to).
    audit_log: str = "off"
    #: Let patient names, IDs and QIDO query strings into the debug log (not the audit log).
    log_patient_data: bool = False

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys) or self.oidc_issuer is not None

    def node(self, name: str | None = None) -> PacsNode:
        wanted = self.default_pacs if name is None else name
        for node in self.nodes:
            if node.name == wanted:
                return node
        raise KeyError(wanted)


def load_settings(
    environ: Mapping[str, str] | None = None, config_file: Path | str | None = None
) -> Settings:
    """Build settings from ``config_file`` (or ``DICOMWEB_GW_CONFIG``) and the environment."""
    env = os.environ if environ is None else environ
    path = config_file if config_file is not None else env.get(ENV_PREFIX + "CONFIG")
    data = _read_toml(Path(path)) if path else {}
    return _apply_env(_from_toml(data), env)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None


def _from_toml(data: Mapping[str, Any]) -> Settings:
    known = {"ae_title", "store_port", "store_host", "cache_dir", "cache_max_bytes",
             "cache_ttl", "upload_max_bytes", "qido_max_results", "cors_origins",
             "default_pacs", "pacs", *_AUTH_KEYS, *_LOG_KEYS, *_CLUSTER_KEYS}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SettingsError(f"unknown setting(s) in config file: {', '.join(unknown)}")
    pacs_tables = data.get("pacs", {})
    if not isinstance(pacs_tables, Mapping):
        raise SettingsError("config file: [pacs.NAME] tables expected")
    nodes = tuple(_node_from_toml(name, table) for name, table in pacs_tables.items())
    default = data.get("default_pacs", nodes[0].name if nodes else "default")
    settings = Settings(nodes=nodes, default_pacs=str(default))
    if "ae_title" in data:
        settings = replace(settings, ae_title=_ae_title("ae_title", data["ae_title"]))
    if "store_host" in data:
        settings = replace(settings, store_host=_host("store_host", data["store_host"]))
    if "store_port" in data:
        settings = replace(settings, store_port=_port("store_port", data["store_port"]))
    if "cache_dir" in data:
        settings = replace(settings, cache_dir=Path(str(data["cache_dir"])).expanduser())
    if "cache_max_bytes" in data:
        settings = replace(settings,
                           cache_max_bytes=_size("cache_max_bytes", data["cache_max_bytes"]))
    if "cors_origins" in data:
        settings = replace(settings, cors_origins=_origins("cors_origins", data["cors_origins"]))
    if "upload_max_bytes" in data:
        settings = replace(settings, upload_max_bytes=_size("upload_max_bytes",
                                                            data["upload_max_bytes"]))
    if "cache_ttl" in data:
        settings = replace(settings, cache_ttl=_positive_float("cache_ttl", data["cache_ttl"]))
    if "qido_max_results" in data:
        settings = replace(settings, qido_max_results=_positive_int(
            "qido_max_results", data["qido_max_results"]))
    settings = _cluster(settings, {key: data[key] for key in _CLUSTER_KEYS if key in data}, "")
    settings = _logging(settings, {key: data[key] for key in _LOG_KEYS if key in data}, "")
    return _auth(settings, {key: data[key] for key in _AUTH_KEYS if key in data}, "")


_CLUSTER_KEYS = ("redis_url", "shared_store", "s3_endpoint", "s3_region", "lease_seconds",
                 "qido_cache_ttl")


def _cluster(settings: Settings, values: Mapping[str, Any], prefix: str) -> Settings:
    """Scale-out settings from TOML (``prefix=""``) or the environment (``DICOMWEB_GW_``)."""

    def name(key: str) -> str:
        return prefix + key.upper() if prefix else key

    urls: dict[str, Any] = {key: _token_free(name(key), values[key])
                            for key in ("redis_url", "shared_store", "s3_endpoint", "s3_region")
                            if key in values}
    if "redis_url" in urls and not urls["redis_url"].startswith(
            ("redis://", "rediss://", "unix://")):
        raise SettingsError(f"{name('redis_url')}={urls['redis_url']!r}: must start with "
                            "redis://, rediss:// or unix://")
    if "shared_store" in urls and not urls["shared_store"].startswith(("file://", "s3://", "/")):
        raise SettingsError(f"{name('shared_store')}={urls['shared_store']!r}: must be "
                            "file:///path, an absolute path or s3://bucket/prefix")
    settings = replace(settings, **urls)
    if "lease_seconds" in values:
        settings = replace(settings, lease_seconds=_positive_float(name("lease_seconds"),
                                                                   values["lease_seconds"]))
    if "qido_cache_ttl" in values:
        off = str(values["qido_cache_ttl"]).strip() in ("0", "0.0")  # 0 turns it off
        settings = replace(settings, qido_cache_ttl=0.0 if off else _positive_float(
            name("qido_cache_ttl"), values["qido_cache_ttl"]))
    return settings


_AUTH_KEYS = ("api_keys", "oidc_issuer", "oidc_audience", "oidc_jwks_url", "oidc_read_scope",
              "oidc_write_scope", "auth_open_paths")


def _auth(settings: Settings, values: Mapping[str, Any], prefix: str) -> Settings:
    """Auth settings from TOML (``prefix=""``) or the environment (``DICOMWEB_GW_``)."""

    def name(key: str) -> str:
        return prefix + key.upper() if prefix else key

    if "api_keys" in values:
        settings = replace(settings, api_keys=_api_keys(name("api_keys"), values["api_keys"]))
    words: dict[str, Any] = {key: _token_free(name(key), values[key])
                             for key in ("oidc_issuer", "oidc_audience", "oidc_jwks_url",
                                         "oidc_read_scope", "oidc_write_scope")
                             if key in values}
    settings = replace(settings, **words)
    if "auth_open_paths" in values:
        settings = replace(settings, auth_open_paths=_open_paths(name("auth_open_paths"),
                                                                 values["auth_open_paths"]))
    return settings


_LOG_KEYS = ("audit_log", "log_patient_data")


def _logging(settings: Settings, values: Mapping[str, Any], prefix: str) -> Settings:
    """Audit and patient-data settings from TOML (``prefix=""``) or the environment."""

    def name(key: str) -> str:
        return prefix + key.upper() if prefix else key

    if "audit_log" in values:
        settings = replace(settings, audit_log=_audit_target(name("audit_log"),
                                                             values["audit_log"]))
    if "log_patient_data" in values:
        settings = replace(settings, log_patient_data=_bool(name("log_patient_data"),
                                                            values["log_patient_data"]))
    return settings


def _node_from_toml(name: str, table: Any) -> PacsNode:
    where = f"[pacs.{name}]"
    if not _NODE_NAME.match(name):
        raise SettingsError(f"{where}: node names use letters, digits, '-' and '_' only")
    if not isinstance(table, Mapping):
        raise SettingsError(f"{where}: must be a table")
    allowed = {"host", "port", "ae_title", "retrieve", "max_associations", "timeout",
               "query_model", "move_originator"}
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SettingsError(f"{where}: unknown key(s) {', '.join(unknown)}")
    for required in ("host", "port", "ae_title"):
        if required not in table:
            raise SettingsError(f"{where}: '{required}' is required")
    return PacsNode(
        name=name,
        host=_host(f"{where} host", table["host"]),
        port=_port(f"{where} port", table["port"]),
        ae_title=_ae_title(f"{where} ae_title", table["ae_title"]),
        retrieve=_retrieve(f"{where} retrieve", table.get("retrieve", "c-move")),
        max_associations=_positive_int(f"{where} max_associations",
                                       table.get("max_associations", 4)),
        timeout=_positive_float(f"{where} timeout", table.get("timeout", 30.0)),
        query_model=_query_model(f"{where} query_model", table.get("query_model", "auto")),
        move_originator=_bool(f"{where} move_originator", table.get("move_originator", True)),
    )


def _apply_env(settings: Settings, env: Mapping[str, str]) -> Settings:
    def var(name: str) -> str | None:
        value = env.get(ENV_PREFIX + name)
        return None if value is None or value.strip() == "" else value.strip()

    if (value := var("AE_TITLE")) is not None:
        settings = replace(settings, ae_title=_ae_title(ENV_PREFIX + "AE_TITLE", value))
    if (value := var("STORE_PORT")) is not None:
        settings = replace(settings, store_port=_port(ENV_PREFIX + "STORE_PORT", value))
    if (value := var("CACHE_DIR")) is not None:
        settings = replace(settings, cache_dir=Path(value).expanduser())
    if (value := var("CACHE_MAX_BYTES")) is not None:
        settings = replace(settings, cache_max_bytes=_size(ENV_PREFIX + "CACHE_MAX_BYTES", value))
    if (value := var("CORS_ORIGINS")) is not None:
        settings = replace(settings, cors_origins=_origins(ENV_PREFIX + "CORS_ORIGINS",
                                                           value.split(",")))
    if (value := var("UPLOAD_MAX_BYTES")) is not None:
        settings = replace(settings, upload_max_bytes=_size(ENV_PREFIX + "UPLOAD_MAX_BYTES",
                                                            value))
    if (value := var("CACHE_TTL")) is not None:
        settings = replace(settings, cache_ttl=_positive_float(ENV_PREFIX + "CACHE_TTL", value))
    if (value := var("QIDO_MAX_RESULTS")) is not None:
        settings = replace(settings, qido_max_results=_positive_int(
            ENV_PREFIX + "QIDO_MAX_RESULTS", value))
    settings = _auth(settings, {key: value for key in _AUTH_KEYS
                                if (value := var(key.upper())) is not None}, ENV_PREFIX)
    settings = _logging(settings, {key: value for key in _LOG_KEYS
                                   if (value := var(key.upper())) is not None}, ENV_PREFIX)
    settings = _cluster(settings, {key: value for key in _CLUSTER_KEYS
                                   if (value := var(key.upper())) is not None}, ENV_PREFIX)

    overrides: dict[str, Any] = {}
    if (value := var("PACS_HOST")) is not None:
        overrides["host"] = _host(ENV_PREFIX + "PACS_HOST", value)
    if (value := var("PACS_PORT")) is not None:
        overrides["port"] = _port(ENV_PREFIX + "PACS_PORT", value)
    if (value := var("PACS_AE_TITLE")) is not None:
        overrides["ae_title"] = _ae_title(ENV_PREFIX + "PACS_AE_TITLE", value)
    if (value := var("RETRIEVE")) is not None:
        overrides["retrieve"] = _retrieve(ENV_PREFIX + "RETRIEVE", value)

    nodes = list(settings.nodes)
    existing = [i for i, node in enumerate(nodes) if node.name == settings.default_pacs]
    if nodes and not existing:
        known = ", ".join(node.name for node in nodes)
        raise SettingsError(
            f"default_pacs={settings.default_pacs!r} names no [pacs.NAME] node (known: {known})")
    if existing:
        nodes[existing[0]] = replace(nodes[existing[0]], **overrides)
    else:
        # No config file node: the environment alone describes the default PACS,
        # with the conventional local defaults for what it leaves out.
        base = PacsNode(name=settings.default_pacs, host="127.0.0.1", port=11112,
                        ae_title="ANY-SCP")
        nodes.insert(0, replace(base, **overrides))
    settings = replace(settings, nodes=tuple(nodes))
    if settings.store_port in {n.port for n in settings.nodes if n.host in _LOOPBACK}:
        raise SettingsError(
            f"{ENV_PREFIX}STORE_PORT={settings.store_port} is the port of a local PACS; "
            "the gateway's storage SCP needs a port of its own")
    _check_oidc(settings)
    return settings


def _check_oidc(settings: Settings) -> None:
    """OIDC needs all three settings; half a configuration must not silently mean 'open'."""
    given = {"OIDC_ISSUER": settings.oidc_issuer, "OIDC_AUDIENCE": settings.oidc_audience,
             "OIDC_JWKS_URL": settings.oidc_jwks_url}
    missing = [ENV_PREFIX + key for key, value in given.items() if value is None]
    if missing and len(missing) < len(given):
        raise SettingsError(f"OIDC needs {', '.join(missing)} as well")
    if settings.oidc_jwks_url is None:
        return
    url = urlsplit(settings.oidc_jwks_url)
    # Keys fetched over plain HTTP could be swapped by anyone on the path; only
    # a loopback JWKS (a sidecar, the tests) may skip TLS.
    if url.scheme != "https" and not (url.scheme == "http" and url.hostname in _LOOPBACK):
        raise SettingsError(f"{ENV_PREFIX}OIDC_JWKS_URL={settings.oidc_jwks_url!r}: must be an "
                            "https:// URL (http:// only for a loopback host)")
    if not url.hostname:
        raise SettingsError(f"{ENV_PREFIX}OIDC_JWKS_URL={settings.oidc_jwks_url!r}: no host")


_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
#: Shorter keys are guessable; 16 characters is the least a generated key has.
_MIN_API_KEY_LENGTH = 16


def _api_keys(name: str, value: object) -> tuple[str, ...]:
    """A list of keys, or a file of keys (one a line, ``#`` comments) named by a value
    starting with ``/`` or ``@`` -- a mounted Kubernetes secret keeps keys out of the env."""
    if isinstance(value, list | tuple):
        items = [str(item) for item in value]
    else:
        text = str(value).strip()
        if text.startswith(("/", "@")):
            path = Path(text.removeprefix("@")).expanduser()
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or "not UTF-8 text"
                raise SettingsError(f"{name}: cannot read key file {path}: {reason}") from None
            items = [line.split("#", 1)[0] for line in lines]
            if not any(item.strip() for item in items):
                raise SettingsError(f"{name}: key file {path} holds no key")
        else:
            items = text.split(",")
    keys = tuple(dict.fromkeys(item.strip() for item in items if item.strip()))
    for index, key in enumerate(keys, 1):
        # The message names the key by position only: keys must not reach logs.
        if len(key) < _MIN_API_KEY_LENGTH or not key.isascii() or not key.isprintable() \
                or any(ch.isspace() or ch == "," for ch in key):
            raise SettingsError(
                f"{name}: key #{index} must be at least {_MIN_API_KEY_LENGTH} printable ASCII "
                "characters without spaces or commas")
    return keys


def _token_free(name: str, value: object,
                what: str = "one non-empty word without spaces") -> str:
    """A single word: an issuer, audience, URL, scope name or host."""
    text = str(value).strip()
    if not text or any(ch.isspace() for ch in text):
        raise SettingsError(f"{name}={value!r}: must be {what}")
    return text


def _open_paths(name: str, value: object) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    paths = tuple(str(item).strip() for item in items if str(item).strip())
    for path in paths:
        if not path.startswith("/") or any(ch.isspace() for ch in path):
            raise SettingsError(f"{name}: '{path}' is not a path prefix like /healthz")
    return paths


def _origins(name: str, value: object) -> tuple[str, ...]:
    """Browser origins: ``scheme://host[:port]``, or ``*`` for any (not recommended)."""
    items = value if isinstance(value, list | tuple) else [value]
    origins = tuple(str(item).strip().rstrip("/") for item in items if str(item).strip())
    for origin in origins:
        if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
            raise SettingsError(f"{name}: '{origin}' is not an origin like https://viewer.example.org")
    return origins


def _host(name: str, value: object) -> str:
    return _token_free(name, value, "a host name or IP address")


def _port(name: str, value: object) -> int:
    port = _int(name, value)
    if not 1 <= port <= 65535:
        raise SettingsError(f"{name}={value!r}: must be a TCP port between 1 and 65535")
    return port


def _positive_int(name: str, value: object) -> int:
    number = _int(name, value)
    if number < 1:
        raise SettingsError(f"{name}={value!r}: must be a whole number of at least 1")
    return number


def _int(name: str, value: object) -> int:
    if isinstance(value, bool):
        raise SettingsError(f"{name}={value!r}: must be a whole number")
    try:
        return int(str(value).strip())
    except ValueError:
        raise SettingsError(f"{name}={value!r}: must be a whole number") from None


def _positive_float(name: str, value: object) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise SettingsError(f"{name}={value!r}: must be a number of seconds") from None
    if not number > 0:
        raise SettingsError(f"{name}={value!r}: must be greater than 0")
    return number


def _ae_title(name: str, value: object) -> str:
    text = str(value).strip()
    # PS3.5 AE VR: at most 16 characters of the default repertoire, no backslash
    # or control characters, and not all spaces.
    if not text or len(text) > 16 or "\\" in text or not text.isascii() or not text.isprintable():
        raise SettingsError(
            f"{name}={value!r}: an AE title is 1 to 16 printable ASCII characters, no backslash")
    return text


def _retrieve(name: str, value: object) -> RetrieveMethod:
    text = str(value).strip().lower()
    for method in _RETRIEVE_METHODS:
        if text == method:
            return method
    raise SettingsError(f"{name}={value!r}: must be 'c-get' or 'c-move'")


def _query_model(name: str, value: object) -> QueryModel:
    text = str(value).strip().lower()
    for model in _QUERY_MODELS:
        if text == model:
            return model
    raise SettingsError(f"{name}={value!r}: must be 'auto', 'study' or 'patient'")


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _bool(name: str, value: object) -> bool:
    """A TOML boolean, or true/false (1/0, yes/no, on/off) from the environment."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if isinstance(value, str) and text in _TRUE | _FALSE:
        return text in _TRUE
    raise SettingsError(f"{name}={value!r}: must be true or false")


def _audit_target(name: str, value: object) -> str:
    """``off``, ``stdout``, ``stderr`` or the path of a file to append to."""
    if not isinstance(value, str) or not value.strip():
        raise SettingsError(f"{name}={value!r}: must be off, stdout, stderr or a file path")
    text = value.strip()
    if text.lower() in ("off", "stdout", "stderr"):
        return text.lower()
    return str(Path(text).expanduser())


def _size(name: str, value: object) -> int:
    """Parse a byte count: ``1073741824``, ``500MB``, ``10GiB``, ``2G``."""
    match = _SIZE.match(str(value))
    if not match:
        raise SettingsError(f"{name}={value!r}: must be a size such as 10GB, 500MiB or 1048576")
    number, unit = float(match.group(1)), (match.group(2) or "").upper()
    base = 1024 if "I" in unit else 1
    factor = _SIZE_UNITS[unit[:1]] if base == 1 else 1024 ** "BKMGT".index(unit[:1])
    size = int(number * factor)
    if size < 1:
        raise SettingsError(f"{name}={value!r}: must be at least 1 byte")
    return size
