"""Prometheus metrics: what an administrator watches at 3 a.m.

A leaf module (like settings.py) so the DIMSE layer can count operations
without importing the HTTP layer. Each gateway (app) gets its own registry,
so tests and several apps in one process do not collide.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from dicomweb_gw.cache.protocol import CacheStats

__all__ = ["CONTENT_TYPE", "UNMATCHED", "GatewayMetrics", "route_label"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: The segment after each of these is a variable, whatever the client put there
#: (valid or not), so label values stay bounded even under garbage requests.
_PLACEHOLDERS = {"studies": "{uid}", "series": "{uid}", "instances": "{uid}",
                 "frames": "{frames}"}
UNMATCHED = "{unmatched}"


def route_label(path: str, status: int = 200) -> str:
    """The path with UIDs, frame lists and bulk data paths replaced: bounded label values.

    Unknown routes (404) all share one label: their paths are whatever a client typed.
    """
    if status == 404:
        return UNMATCHED
    segments = path.split("/")
    for index in range(1, len(segments)):
        previous = segments[index - 1]
        if previous in _PLACEHOLDERS:
            segments[index] = _PLACEHOLDERS[previous]
        elif previous == "bulkdata":
            return "/".join([*segments[:index], "{tag}"])
    return "/".join(segments)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "dicomweb_gw_http_requests", "HTTP requests by route, method and status",
            ["route", "method", "status"], registry=self.registry)
        self.http_latency = Histogram(
            "dicomweb_gw_http_request_duration_seconds",
            "Time to the response's first byte, by route and method", ["route", "method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry)
        self.dimse_operations = Counter(
            "dicomweb_gw_dimse_operations", "DIMSE operations by PACS, operation and outcome",
            ["pacs", "operation", "outcome"], registry=self.registry)
        self.retrieved_bytes = Counter(
            "dicomweb_gw_retrieved_bytes", "Bytes of instances received from each PACS",
            ["pacs"], registry=self.registry)
        self.associations = Gauge(
            "dicomweb_gw_associations_open", "DIMSE associations open to each PACS",
            ["pacs"], registry=self.registry)
        self.prefetches = Counter(
            "dicomweb_gw_prefetches", "Study prefetches by PACS and outcome: started, completed, "
            "failed, idle (dropped: nobody asked), preempted (gave way to a request), skipped "
            "(prefetch_studies reached)", ["pacs", "outcome"], registry=self.registry)

        self.in_flight = Gauge(
            "dicomweb_gw_http_requests_in_flight",
            "HTTP requests being answered now, streams included", registry=self.registry)
        self.redis_up = Gauge(
            "dicomweb_gw_redis_up", "1 while Redis answers (several replicas share work); "
            "0 while each replica works alone", registry=self.registry)

    def watch_cluster(self, redis_errors: Callable[[], int],
                      flight_roles: Callable[[], Mapping[str, int]] | None) -> None:
        """Redis errors and how this replica's retrieves were shared (retrieves by role:
        owned, followed, took_over, alone), read at scrape time."""
        self.redis_up.set(1)
        self.registry.register(_ClusterCollector(redis_errors, flight_roles))

    def watch_caches(self, stats: Callable[[], Mapping[str, CacheStats]]) -> None:
        """Cache figures are read from the stores at scrape time, not tracked twice."""
        self.registry.register(_CacheCollector(stats))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe_request(self, path: str, method: str, status: int, started: float) -> None:
        route = route_label(path, status)
        self.http_requests.labels(route, method, str(status)).inc()
        self.http_latency.labels(route, method).observe(time.perf_counter() - started)


class _CacheCollector(Collector):
    def __init__(self, stats: Callable[[], Mapping[str, CacheStats]]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        figures = self._stats()
        gauges = {
            "instances": GaugeMetricFamily("dicomweb_gw_cache_instances",
                                           "Instances in the cache", labels=["pacs"]),
            "bytes": GaugeMetricFamily("dicomweb_gw_cache_bytes", "Bytes in the cache",
                                       labels=["pacs"]),
        }
        counters = {
            name: CounterMetricFamily(f"dicomweb_gw_cache_{name}",
                                      f"Cache {name} since start", labels=["pacs"])
            for name in ("hits", "misses", "evictions")
        }
        for pacs, stats in figures.items():
            for name, family in gauges.items():
                family.add_metric([pacs], getattr(stats, name))
            for name, counter in counters.items():
                counter.add_metric([pacs], getattr(stats, name))
        yield from gauges.values()
        yield from counters.values()


class _ClusterCollector(Collector):
    def __init__(self, redis_errors: Callable[[], int],
                 flight_roles: Callable[[], Mapping[str, int]] | None) -> None:
        self._redis_errors = redis_errors
        self._flight_roles = flight_roles

    def collect(self) -> Iterable[CounterMetricFamily]:
        errors = CounterMetricFamily("dicomweb_gw_redis_errors",
                                     "Redis operations that failed (the replica then works alone)")
        errors.add_metric([], self._redis_errors())
        yield errors
        if self._flight_roles is not None:
            roles = CounterMetricFamily(
                "dicomweb_gw_cluster_flights",
                "Retrieves by this replica's role: owner (asked the PACS), follower (streamed "
                "another replica's), took_over (finished a dead replica's), alone (no Redis)",
                labels=["role"])
            for role, count in self._flight_roles().items():
                roles.add_metric([role], count)
            yield roles
