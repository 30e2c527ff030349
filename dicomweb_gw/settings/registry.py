"""Every setting in one table: type, environment variable, TOML key, Helm value, doc.

``load.py`` parses the TOML file and the environment from these entries alone, and
tests/test_settings_registry.py checks them against the README's settings table
(``markdown_table()`` renders it: ``python -m dicomweb_gw.settings``) and
the Helm chart, so that a setting cannot be added to one and forgotten in another.
"""

from __future__ import annotations

from dataclasses import dataclass

from dicomweb_gw.settings import parsers
from dicomweb_gw.settings.parsers import Parser

__all__ = ["CONFIG_FILE", "ENV_PREFIX", "GATEWAY_SETTINGS", "LOG_FORMAT", "NODE_SETTINGS",
           "Setting", "all_settings", "markdown_table"]

ENV_PREFIX = "DICOMWEB_GW_"


@dataclass(frozen=True)
class Setting:
    """One setting and every name it goes by."""

    #: Field of ``Settings`` (of ``PacsNode`` in NODE_SETTINGS).
    name: str
    parse: Parser
    #: The default as the README shows it; the code's default parses from it. None: unset.
    default: str | None
    #: The README table's "meaning" cell.
    doc: str
    #: Environment variable (for a node setting: the default node's). None: not in the env.
    env: str | None = None
    #: TOML key, top level (in each ``[pacs.NAME]`` table for a node setting). None: env only.
    toml: str | None = None
    #: values.yaml paths of the Helm chart that set it (the chart does not set it: empty).
    helm: tuple[str, ...] = ()
    #: Required in a ``[pacs.NAME]`` table (the environment alone falls back on ``default``).
    required: bool = False
    #: Never repeat the value in an error message (it may hold a password or a key).
    secret: bool = False

    def __post_init__(self) -> None:
        if self.env is not None and not self.env.startswith(ENV_PREFIX):
            raise ValueError(f"{self.env}: environment variables start with {ENV_PREFIX}")


#: Where the TOML file is: read before everything else, so not a ``Settings`` field.
CONFIG_FILE = Setting(
    "config_file", parsers.path, None, "path of a TOML config file",
    env="DICOMWEB_GW_CONFIG", helm=("extraPacs",))

#: Read by the CLI before it knows of any config file: the environment only.
LOG_FORMAT = Setting(
    "log_format", parsers.choice("text", "json"), "text",
    "`json` for one JSON object per log line (for log collectors); every line carries the "
    "request id, also sent back as `X-Request-ID`; environment only (logging starts before "
    "the config file is read)",
    env="DICOMWEB_GW_LOG_FORMAT", helm=("gateway.logFormat",))

#: Each PACS node: a ``[pacs.NAME]`` table; the variables describe the default node.
NODE_SETTINGS: tuple[Setting, ...] = (
    Setting("host", parsers.host, "127.0.0.1",
            "host of the PACS (the `DICOMWEB_GW_PACS_*` variables and `DICOMWEB_GW_RETRIEVE` "
            "describe the default node)",
            env="DICOMWEB_GW_PACS_HOST", toml="host", helm=("pacs.host",), required=True),
    Setting("port", parsers.port, "11112", "DIMSE port of the PACS",
            env="DICOMWEB_GW_PACS_PORT", toml="port", helm=("pacs.port",), required=True),
    Setting("ae_title", parsers.ae_title, "ANY-SCP", "the PACS's AE title (called AE)",
            env="DICOMWEB_GW_PACS_AE_TITLE", toml="ae_title", helm=("pacs.aeTitle",),
            required=True),
    Setting("retrieve", parsers.choice("c-get", "c-move"), "c-move",
            "`c-move` or `c-get` to retrieve from the PACS",
            env="DICOMWEB_GW_RETRIEVE", toml="retrieve", helm=("pacs.retrieve",)),
    Setting("max_associations", parsers.positive_int, "4",
            "associations open to the PACS at once (many PACS allow 2 to 4)",
            env="DICOMWEB_GW_PACS_MAX_ASSOCIATIONS", toml="max_associations",
            helm=("pacs.maxAssociations",)),
    Setting("timeout", parsers.seconds, "30",
            "seconds for connect, association and each DIMSE response",
            env="DICOMWEB_GW_PACS_TIMEOUT", toml="timeout", helm=("pacs.timeout",)),
    Setting("query_model", parsers.choice("auto", "study", "patient"), "auto",
            "Q/R information model: `auto` (Study Root if accepted, else Patient Root), or "
            "`study`/`patient` for a PACS that accepts a model it then mishandles",
            env="DICOMWEB_GW_PACS_QUERY_MODEL", toml="query_model"),
    Setting("move_originator", parsers.boolean, "true",
            "`false` for a PACS that omits the Move Originator in C-MOVE's C-STOREs; moves "
            "to it then run one at a time (instances are matched by UID)",
            env="DICOMWEB_GW_PACS_MOVE_ORIGINATOR", toml="move_originator"),
    Setting("fallback_charset", parsers.charset, "ISO_IR 100",
            "character set of text the PACS sends without a usable Specific Character Set "
            "(`ISO_IR 100` is Latin-1, `ISO_IR 192` UTF-8, `GB18030` Chinese)",
            env="DICOMWEB_GW_PACS_FALLBACK_CHARSET", toml="fallback_charset"),
    Setting("max_matches", parsers.whole_number_or_off, "0",
            "the PACS's C-FIND match limit (`0`: none known); broad study searches are then "
            "split by StudyDate range. A limit hit anyway returns what came, with a `Warning`",
            env="DICOMWEB_GW_PACS_MAX_MATCHES", toml="max_matches"),
    Setting("relational", parsers.boolean_or_auto, "auto",
            "`false` for a PACS that answers series or instance searches only under given "
            "parent UIDs: the gateway then walks study by study, series by series (`auto` "
            "does so once the PACS refuses)",
            env="DICOMWEB_GW_PACS_RELATIONAL", toml="relational"),
    Setting("post_filter", parsers.boolean, "true",
            "check each C-FIND match against the search and drop those a PACS that ignores "
            "some matching keys let through",
            env="DICOMWEB_GW_PACS_POST_FILTER", toml="post_filter"),
    Setting("cancel", parsers.choice("c-cancel", "abort"), "c-cancel",
            "how a retrieve nobody waits for any more is stopped: `c-cancel` (then A-ABORT "
            "if the PACS keeps sending) or `abort` at once",
            env="DICOMWEB_GW_PACS_CANCEL", toml="cancel"),
    Setting("idle_timeout", parsers.seconds_or_default, "default",
            "seconds without any DIMSE message before an operation counts as dead "
            "(`default`: `timeout`); Pending responses reset it",
            env="DICOMWEB_GW_PACS_IDLE_TIMEOUT", toml="idle_timeout"),
    Setting("total_timeout", parsers.seconds_or_off, "0",
            "seconds a whole C-FIND, C-GET or C-MOVE may take (`0`: no limit)",
            env="DICOMWEB_GW_PACS_TOTAL_TIMEOUT", toml="total_timeout"),
    Setting("compressed", parsers.boolean, "true",
            "`false` offers the PACS only uncompressed transfer syntaxes (for a PACS that "
            "fails to send what it stores compressed); the gateway compresses when asked",
            env="DICOMWEB_GW_PACS_COMPRESSED", toml="compressed"),
    Setting("retrieve_associations", parsers.positive_int, "4",
            "most associations one study or series retrieve is split across (an IMAGE-level "
            "C-FIND, then UID lists), when `retrieve_split_above` says the link is slow; "
            "capped by `max_associations`; `1`: one request",
            env="DICOMWEB_GW_PACS_RETRIEVE_ASSOCIATIONS", toml="retrieve_associations"),
    Setting("retrieve_split_above", parsers.seconds_or_off, "0.005",
            "round trip to this PACS (seconds, timed on every A-RELEASE) from which a "
            "retrieve is split: below it the gateway's CPU, not the link, bounds a "
            "retrieve and one request is faster; `0`: always split",
            env="DICOMWEB_GW_PACS_RETRIEVE_SPLIT_ABOVE", toml="retrieve_split_above"),
    Setting("prefetch", parsers.boolean, "true",
            "a viewer's first series request for a cold study starts the whole study's "
            "retrieve in the background, which answers its next series requests",
            env="DICOMWEB_GW_PACS_PREFETCH", toml="prefetch"),
    Setting("prefetch_studies", parsers.positive_int, "2",
            "studies prefetched at once for this PACS (interactive retrieves come first)",
            env="DICOMWEB_GW_PACS_PREFETCH_STUDIES", toml="prefetch_studies"),
    Setting("prefetch_idle", parsers.seconds, "30",
            "seconds without a request for a prefetched study before its retrieve is dropped",
            env="DICOMWEB_GW_PACS_PREFETCH_IDLE", toml="prefetch_idle"),
)

GATEWAY_SETTINGS: tuple[Setting, ...] = (
    Setting("default_pacs", parsers.node_name, "default",
            "the node served at `/dicom-web` (with a config file: its first node by default)",
            toml="default_pacs", helm=("pacs.name",)),
    Setting("ae_title", parsers.ae_title, "DICOMWEB_GW",
            "our AE title: calling AE and C-MOVE destination",
            env="DICOMWEB_GW_AE_TITLE", toml="ae_title", helm=("gateway.aeTitle",)),
    Setting("store_port", parsers.port, "11113",
            "port of our storage SCP that receives C-MOVE sub-operations",
            env="DICOMWEB_GW_STORE_PORT", toml="store_port", helm=("gateway.storePort",)),
    Setting("store_host", parsers.host, "0.0.0.0",
            "address our storage SCP listens on (`127.0.0.1`: C-MOVE from this machine only)",
            env="DICOMWEB_GW_STORE_HOST", toml="store_host"),
    Setting("cache_dir", parsers.path, "~/.cache/dicomweb-gw",
            "instance cache folder; each PACS node gets a subfolder",
            env="DICOMWEB_GW_CACHE_DIR", toml="cache_dir", helm=("cache.mountPath",)),
    Setting("cache_max_bytes", parsers.size, "10GB",
            "cache size bound, shared by the nodes; accepts `500MB`, `10GiB`, plain bytes",
            env="DICOMWEB_GW_CACHE_MAX_BYTES", toml="cache_max_bytes",
            helm=("cache.size", "cache.maxBytesPercent")),
    Setting("cache_ttl", parsers.seconds, "300",
            "seconds a cached study/series counts as complete before it is asked of the PACS "
            "again",
            env="DICOMWEB_GW_CACHE_TTL", toml="cache_ttl", helm=("gateway.cacheTtl",)),
    Setting("cors_origins", parsers.origins, None,
            "comma list of browser origins (e.g. `https://viewer.example.org`) allowed to call "
            "the gateway from another origin; every response carries "
            "`Cross-Origin-Resource-Policy: cross-origin`",
            env="DICOMWEB_GW_CORS_ORIGINS", toml="cors_origins", helm=("gateway.corsOrigins",)),
    Setting("upload_max_bytes", parsers.size, "2GB",
            "largest STOW-RS request body (413 beyond); uploads are spooled to disk",
            env="DICOMWEB_GW_UPLOAD_MAX_BYTES", toml="upload_max_bytes",
            helm=("gateway.uploadMaxBytes",)),
    Setting("qido_max_results", parsers.positive_int, "1000",
            "most QIDO results per request; larger `limit`s are capped with a `Warning`",
            env="DICOMWEB_GW_QIDO_MAX_RESULTS", toml="qido_max_results",
            helm=("gateway.qidoMaxResults",)),
    LOG_FORMAT,
    Setting("api_keys", parsers.api_keys, None,
            "API keys (each grants read and write): a comma list, or a file of keys, one a "
            "line with `#` comments, when the value starts with `/` or `@` (e.g. a mounted "
            "Kubernetes secret). Keys are at least 16 characters. `KEY admin` (an item or a "
            "line) also opens the status page. Setting this turns authentication on",
            env="DICOMWEB_GW_API_KEYS", toml="api_keys", helm=("auth.apiKeys.existingSecret",),
            secret=True),
    Setting("oidc_issuer", parsers.word, None,
            "OIDC issuer (`iss`) of accepted bearer JWTs; turns authentication on and needs "
            "the next two",
            env="DICOMWEB_GW_OIDC_ISSUER", toml="oidc_issuer", helm=("auth.oidc.issuer",)),
    Setting("oidc_audience", parsers.word, None, "required audience (`aud`) of the tokens",
            env="DICOMWEB_GW_OIDC_AUDIENCE", toml="oidc_audience", helm=("auth.oidc.audience",)),
    Setting("oidc_jwks_url", parsers.jwks_url, None,
            "the issuer's JWKS URL (https; http only for a loopback host)",
            env="DICOMWEB_GW_OIDC_JWKS_URL", toml="oidc_jwks_url", helm=("auth.oidc.jwksUrl",)),
    Setting("oidc_read_scope", parsers.word, "dicomweb.read",
            "scope needed for GETs (QIDO, WADO-RS/URI, metadata, rendered)",
            env="DICOMWEB_GW_OIDC_READ_SCOPE", toml="oidc_read_scope",
            helm=("auth.oidc.readScope",)),
    Setting("oidc_write_scope", parsers.word, "dicomweb.write",
            "scope needed for STOW-RS POSTs and cache DELETEs",
            env="DICOMWEB_GW_OIDC_WRITE_SCOPE", toml="oidc_write_scope",
            helm=("auth.oidc.writeScope",)),
    Setting("oidc_admin_scope", parsers.word, "dicomweb.admin",
            "scope needed for the status page (`/`, `/status`) and `/admin/*`",
            env="DICOMWEB_GW_OIDC_ADMIN_SCOPE", toml="oidc_admin_scope",
            helm=("auth.oidc.adminScope",)),
    Setting("status_echo_interval", parsers.seconds, "10",
            "seconds between the C-ECHOs the gateway sends every PACS node while the status "
            "page is open (none when nobody has looked for a minute)",
            env="DICOMWEB_GW_STATUS_ECHO_INTERVAL", toml="status_echo_interval"),
    Setting("auth_open_paths", parsers.open_paths, "/healthz,/readyz,/metrics,/openapi.json",
            "comma list of path prefixes served without authentication",
            env="DICOMWEB_GW_AUTH_OPEN_PATHS", toml="auth_open_paths", helm=("auth.openPaths",)),
    Setting("audit_log", parsers.audit_target, "off",
            "audit log of patient-data access: `off`, `stdout`, `stderr` or a file path (see "
            "[Audit log](#audit-log))",
            env="DICOMWEB_GW_AUDIT_LOG", toml="audit_log", helm=("audit.log",)),
    Setting("log_patient_data", parsers.boolean, "false",
            "`true` lets patient names, IDs and QIDO query strings into the debug log (see "
            "[Logging and patient data](#logging-and-patient-data))",
            env="DICOMWEB_GW_LOG_PATIENT_DATA", toml="log_patient_data",
            helm=("logPatientData",)),
    Setting("redis_url", parsers.redis_url, None,
            "several replicas: Redis (`redis://host:6379/0`) for cluster-wide single flight, "
            "C-MOVE routing, shared metadata and QIDO caches (see [Several replicas]"
            "(docs/scale-out.md)); if it fails, each replica carries on alone",
            env="DICOMWEB_GW_REDIS_URL", toml="redis_url",
            helm=("cluster.redis.url", "cluster.redis.existingSecret"), secret=True),
    Setting("shared_store", parsers.shared_store, None,
            "instances shared by the replicas: `file:///mnt/shared` (a ReadWriteMany volume) "
            "or `s3://bucket/prefix`",
            env="DICOMWEB_GW_SHARED_STORE", toml="shared_store",
            helm=("cluster.sharedStore.type", "cluster.sharedStore.s3.url")),
    Setting("s3_endpoint", parsers.word, None,
            "S3-compatible endpoint (MinIO, Ceph; none: AWS); credentials from "
            "`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`",
            env="DICOMWEB_GW_S3_ENDPOINT", toml="s3_endpoint",
            helm=("cluster.sharedStore.s3.endpoint",)),
    Setting("s3_region", parsers.word, None, "S3 region",
            env="DICOMWEB_GW_S3_REGION", toml="s3_region",
            helm=("cluster.sharedStore.s3.region",)),
    Setting("lease_seconds", parsers.seconds, "10",
            "how long a replica's claim on a retrieve lasts unrenewed (a dead replica's "
            "retrieve is taken over after this)",
            env="DICOMWEB_GW_LEASE_SECONDS", toml="lease_seconds", helm=("cluster.leaseSeconds",)),
    Setting("qido_cache_ttl", parsers.seconds_or_off, "15",
            "seconds QIDO answers stay in the shared cache (Redis only; `0`: off); STOW and "
            "purges invalidate them",
            env="DICOMWEB_GW_QIDO_CACHE_TTL", toml="qido_cache_ttl",
            helm=("cluster.qidoCacheTtl",)),
    Setting("http_cache", parsers.choice("private", "no-store"), "private",
            "browser caching of instance retrieve, metadata, frames, rendered and bulk data "
            "(and WADO-URI objects): "
            "`private` (an `ETag`, `Cache-Control: private, max-age`, 304 on `If-None-Match`) "
            "or `no-store`; study and series answers revalidate (`no-cache`)",
            env="DICOMWEB_GW_HTTP_CACHE", toml="http_cache", helm=("gateway.httpCache",)),
    Setting("http_cache_max_age", parsers.whole_number_or_off, "86400",
            "seconds a browser may reuse an instance-level answer without revalidating",
            env="DICOMWEB_GW_HTTP_CACHE_MAX_AGE", toml="http_cache_max_age",
            helm=("gateway.httpCacheMaxAge",)),
    Setting("compression", parsers.choice("auto", "off"), "auto",
            "`auto` compresses DICOM JSON/XML and QIDO answers over 1 KB with zstd, brotli or "
            "gzip as the client's `Accept-Encoding` offers; never pixel or bulk data",
            env="DICOMWEB_GW_COMPRESSION", toml="compression", helm=("gateway.compression",)),
)


def all_settings() -> tuple[Setting, ...]:
    """Every entry, in the README table's order."""
    return (*NODE_SETTINGS, CONFIG_FILE, *GATEWAY_SETTINGS)


def markdown_table() -> str:
    """The README's settings table, one row per entry."""
    rows = ["| variable | TOML key | default | meaning |", "|---|---|---|---|"]
    for setting in all_settings():
        variable = f"`{setting.env}`" if setting.env else "—"
        if setting.toml is None:
            key = "—"
        elif setting in NODE_SETTINGS:
            key = f"`[pacs.NAME] {setting.toml}`"
        else:
            key = f"`{setting.toml}`"
        default = f"`{setting.default}`" if setting.default is not None else "none"
        rows.append(f"| {variable} | {key} | {default} | {setting.doc} |")
    return "\n".join(rows) + "\n"
