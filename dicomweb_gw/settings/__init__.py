"""Typed settings: an optional TOML file, then environment variables on top.

Every setting is validated here so that a bad value stops the gateway at start
with one line naming the setting, where its value came from and what is accepted,
instead of failing on the first request. ``registry.py`` lists every setting with
its type, environment variable, TOML key, Helm value and documentation; ``load.py``
reads them; ``model.py`` holds the resulting ``Settings`` and ``PacsNode``.

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

from dicomweb_gw.settings.load import load_settings, log_format_from
from dicomweb_gw.settings.model import (
    LogFormat,
    PacsNode,
    QueryModel,
    RetrieveMethod,
    Settings,
    SettingsError,
)
from dicomweb_gw.settings.registry import ENV_PREFIX

__all__ = ["ENV_PREFIX", "LogFormat", "PacsNode", "QueryModel", "RetrieveMethod", "Settings",
           "SettingsError", "load_settings", "log_format_from"]
