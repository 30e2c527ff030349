"""What the settings are: the frozen ``Settings`` and ``PacsNode`` the gateway runs on.

The defaults here are the code's; ``registry.py`` documents each one, and
tests/test_settings_registry.py checks that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["ApiKey", "CancelMethod", "Compression", "HttpCache", "LogFormat", "PacsNode",
           "QueryModel", "RetrieveMethod", "Settings", "SettingsError"]

RetrieveMethod = Literal["c-get", "c-move"]
QueryModel = Literal["auto", "study", "patient"]
CancelMethod = Literal["c-cancel", "abort"]
LogFormat = Literal["text", "json"]
HttpCache = Literal["private", "no-store"]
Compression = Literal["auto", "off"]


class ApiKey(str):
    """An API key: the key itself (a ``str``, as callers always had it) and whether it is
    an admin key (a ``KEY admin`` line), which opens the status page and its actions."""

    admin: bool

    def __new__(cls, key: str, *, admin: bool = False) -> ApiKey:
        made = super().__new__(cls, key)
        made.admin = admin
        return made


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
    # The quirks below cannot all be detected; ``dicomweb-gw doctor`` probes for
    # them and writes the values that suit the PACS it finds.
    #: Character set of text the PACS sends without a usable (0008,0005).
    fallback_charset: str = "ISO_IR 100"
    #: The PACS's C-FIND match limit (0: none known). Broad study searches are split
    #: by StudyDate range so that no single C-FIND hits it.
    max_matches: int = 0
    #: Relational queries (SERIES/IMAGE level without every parent UID): None lets
    #: the gateway find out (a refusal makes it walk level by level); False always walks.
    relational: bool | None = None
    #: Check each C-FIND match against the QIDO query, dropping what a PACS that
    #: ignores some matching keys returned anyway.
    post_filter: bool = True
    #: How a retrieve the client gave up on is stopped: C-CANCEL (then A-ABORT if the
    #: PACS keeps sending), or A-ABORT straight away.
    cancel: CancelMethod = "c-cancel"
    #: Seconds without any DIMSE message before an operation counts as dead
    #: (None: ``timeout``). Pending responses reset it.
    idle_timeout: float | None = None
    #: Seconds a whole C-FIND, C-GET or C-MOVE may take (0: no limit).
    total_timeout: float = 0.0
    #: False offers the PACS only uncompressed transfer syntaxes, for a PACS that
    #: fails to send what it stores compressed.
    compressed: bool = True
    #: Associations one study or series retrieve is split across (1: one request).
    retrieve_associations: int = 4
    #: A retrieve is split only from this round trip (s) to the PACS on: a link bound by
    #: round trips; on a shorter one the gateway's CPU is the bound.
    retrieve_split_above: float = 0.005
    #: A viewer's first series request for a cold study starts the whole study's
    #: retrieve in the background, which answers the next series requests.
    prefetch: bool = True
    #: Studies prefetched at once for this node; interactive retrieves come first.
    prefetch_studies: int = 2
    #: Seconds without any request for a prefetched study before its retrieve is dropped.
    prefetch_idle: float = 30.0

    @property
    def dimse_idle_timeout(self) -> float:
        """Seconds of DIMSE silence that end an operation."""
        return self.timeout if self.idle_timeout is None else self.idle_timeout


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
    #: OIDC scope for the status page and its actions (``/``, ``/status``, ``/admin/*``).
    oidc_admin_scope: str = "dicomweb.admin"
    #: While the status page is watched: seconds between the C-ECHOs of every node.
    status_echo_interval: float = 10.0
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
    #: The debug log's lines: plain text, or one JSON object each (for log collectors).
    #: The CLI reads it before any config file (``log_format_from``), so env only.
    log_format: LogFormat = "text"
    #: Browser caching of instance-level answers (retrieve, metadata, frames, rendered,
    #: bulk data): "private" (ETag, max-age, 304s) or "no-store" (none of it).
    http_cache: HttpCache = "private"
    #: Seconds a browser may reuse an instance-level answer without asking again.
    http_cache_max_age: int = 86400
    #: Compression of JSON/XML answers (gzip, brotli, zstd): "auto" or "off".
    compression: Compression = "auto"

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys) or self.oidc_issuer is not None

    def node(self, name: str | None = None) -> PacsNode:
        wanted = self.default_pacs if name is None else name
        for node in self.nodes:
            if node.name == wanted:
                return node
        raise KeyError(wanted)
