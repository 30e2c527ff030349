"""Status snapshots as ``GET /admin/status`` answers them (issue #20 contract), for the
status page's tests: the page is rendered from this dict alone.

``snapshot()`` builds a full one (two nodes, one failing; a retrieve in flight; a
cache with studies; a cluster); keyword arguments replace top-level keys, so a test
can say ``snapshot(auth=AUTH_ON, cluster=None)``.
"""

from __future__ import annotations

import copy
from typing import Any

STUDY_A = "1.2.826.0.1.3680043.8.498.10"
STUDY_B = "1.2.826.0.1.3680043.8.498.20"
CSRF_TOKEN = "csrf-0123456789abcdef"
AUTH_OFF_WARNING = ("Authentication is off: anyone who can reach this port can read images "
                    "and use this page.")
AUTH_OFF: dict[str, Any] = {"enabled": False, "methods": [], "warning": AUTH_OFF_WARNING}
AUTH_ON: dict[str, Any] = {"enabled": True, "methods": ["api_key", "oidc"], "warning": None}

_SNAPSHOT: dict[str, Any] = {
    "generated_at": "2026-12-03T02:40:00Z",
    "gateway": {"version": "0.1.0", "started_at": "2026-12-03T00:35:00Z",
                "uptime_seconds": 7500.0, "replica_id": "ab12cd34ef56",
                "base_url": "http://127.0.0.1:8042/dicom-web"},
    "auth": AUTH_OFF,
    "csrf_token": CSRF_TOKEN,
    "config": [{"name": "pacs_host", "value": "127.0.0.1"},
               {"name": "api_keys", "value": "•••• (2 keys)"},
               {"name": "cache_max_bytes", "value": "10737418240"}],
    "nodes": [
        {"name": "default", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": 4242,
         "calling_ae": "DICOMWEB_GW", "retrieve": "c-get", "health": "ok",
         "health_message": "C-ECHO answered in 3 ms",
         "echo": {"at": "2026-12-03T02:39:58Z", "ok": True, "milliseconds": 3.1,
                  "message": "Success"},
         "doctor": {"at": "2026-12-02T18:00:00Z", "findings": [
             {"check": "C-GET", "outcome": "accepted", "status": "ok",
              "meaning": "the PACS answers C-GET", "setting": "retrieve = \"c-get\""}]},
         "associations": {"open": 1, "max": 8},
         "operations_per_minute": [
             {"operation": "C-FIND", "outcome": "success", "count": 12},
             {"operation": "C-GET", "outcome": "failure", "count": 1}],
         "failures": [
             {"at": "2026-12-03T02:30:00Z", "operation": "C-MOVE", "status": "0xA801",
              "status_words": "Move destination unknown",
              "message": "ORTHANC refused the C-MOVE: move destination DICOMWEB_GW unknown",
              "fix": "register AE DICOMWEB_GW at 10.0.0.5:11113 on ORTHANC"}]},
        {"name": "archive", "ae_title": "ARCHIVE", "host": "10.0.0.9", "port": 104,
         "calling_ae": "DICOMWEB_GW", "retrieve": "c-move", "health": "failing",
         "health_message": "C-ECHO failed: connection refused by ARCHIVE at 10.0.0.9:104",
         "echo": {"at": "2026-12-03T02:39:59Z", "ok": False, "milliseconds": None,
                  "message": "connection refused"},
         "doctor": None,
         "associations": {"open": 0, "max": 4},
         "operations_per_minute": [],
         "failures": []},
    ],
    "retrieves": [
        {"id": "r-1", "node": "default", "level": "STUDY", "study": STUDY_A, "series": None,
         "instance": None, "received": 12, "expected": 120, "bytes": 4_500_000,
         "mb_per_second": 3.2, "age_seconds": 1.4, "waiters": 1, "prefetch": False}],
    "cache": {"bytes": 123_456_789, "max_bytes": 10_737_418_240, "studies": 2,
              "instances": 130, "hits": 10,
              "misses": 2, "hit_rate": 0.83, "evictions": 0,
              "largest_studies": [
                  {"node": "default", "study": STUDY_A, "bytes": 100_000_000, "instances": 120},
                  {"node": "default", "study": STUDY_B, "bytes": 23_456_789, "instances": 10}]},
    "cluster": {"redis": {"url": "redis://***@redis:6379/0", "reachable": True},
                "replicas": [{"id": "ab12cd34ef56", "last_heartbeat": "2026-12-03T02:39:59Z",
                              "age_seconds": 1.0, "self": True},
                             {"id": "99ff00aa11bb", "last_heartbeat": "2026-12-03T02:39:50Z",
                              "age_seconds": 10.0, "self": False}],
                "shared_store": {"url": "s3://images/(masked)", "reachable": False}},
}


def snapshot(**replace: Any) -> dict[str, Any]:
    """A fresh deep copy of the full snapshot, with top-level keys replaced."""
    result = copy.deepcopy(_SNAPSHOT)
    result.update(copy.deepcopy(replace))
    return result


def empty_snapshot(**replace: Any) -> dict[str, Any]:
    """A gateway just started: one node never echoed, nothing in flight, an empty cache."""
    result = snapshot(
        nodes=[{"name": "default", "ae_title": "PACS", "host": "127.0.0.1", "port": 104,
                "calling_ae": "DICOMWEB_GW", "retrieve": "c-move", "health": "unknown",
                "health_message": "no C-ECHO yet", "echo": None, "doctor": None,
                "associations": {"open": 0, "max": 8}, "operations_per_minute": [],
                "failures": []}],
        retrieves=[],
        cache={"bytes": 0, "max_bytes": 1000, "studies": 0, "hits": 0, "misses": 0,
               "hit_rate": None, "evictions": 0, "largest_studies": []},
        cluster=None)
    result.update(copy.deepcopy(replace))
    return result
