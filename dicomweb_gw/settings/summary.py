"""Every setting and its value, secrets masked: the status page's configuration table.

Read from the registry, so a new setting shows up without a change here. A
``secret`` setting never shows its value: API keys are counted, a URL keeps its
host and loses its credentials, anything else is a mask.
"""

from __future__ import annotations

from pathlib import Path

from dicomweb_gw.settings.model import Settings
from dicomweb_gw.settings.registry import GATEWAY_SETTINGS, NODE_SETTINGS, Setting

__all__ = ["MASK", "mask_url_credentials", "settings_summary"]

MASK = "••••"


def settings_summary(settings: Settings) -> list[tuple[str, str]]:
    """(name, value as shown) of every setting: the gateway's, then each node's as
    ``pacs.NAME.setting``."""
    rows = [(s.name, _shown(s, getattr(settings, s.name))) for s in GATEWAY_SETTINGS]
    for node in settings.nodes:
        rows += [(f"pacs.{node.name}.{s.name}", _shown(s, getattr(node, s.name)))
                 for s in NODE_SETTINGS]
    return rows


def mask_url_credentials(url: str) -> str:
    """``url`` with any user and password before the host replaced by ``***``
    (``redis://:secret@host:6379/0`` -> ``redis://***@host:6379/0``)."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    return f"{scheme}://***@{authority.rpartition('@')[2]}{slash}{path}"


def _shown(setting: Setting, value: object) -> str:
    if value is None or value == ():
        # None stands for a word ("auto", "default") where the registry's default says so.
        return setting.default if value is None and setting.default is not None else "none"
    if setting.secret:
        if setting.name == "api_keys" and isinstance(value, tuple):
            admins = sum(1 for key in value if getattr(key, "admin", False))
            return f"{MASK} ({len(value)} key{'s' if len(value) != 1 else ''}, {admins} admin)"
        if isinstance(value, str) and "://" in value:
            masked = mask_url_credentials(value)
            return masked if masked != value else value  # no credentials in it: as it is
        return MASK
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple | list):
        return ", ".join(str(item) for item in value)
    if isinstance(value, Path):
        return str(value)
    text = str(value)
    # Not marked secret, but a URL may still carry a password (s3://, https://).
    return mask_url_credentials(text) if "://" in text else text
