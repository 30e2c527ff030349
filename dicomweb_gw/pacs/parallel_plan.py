"""Planning a retrieve split across associations: which instances each request asks for.

A C-GET or C-MOVE waits for each C-STORE response before the PACS sends the
next instance, so one association moves one instance per round trip, however
fast both ends are. Several associations, each asking for its share of the
instances by SOP Instance UID, multiply that (``parallel.py`` runs them).

A request (a ``Unit``) names instances of one series only: most PACS take an
IMAGE-level retrieve only with a single Series Instance UID above the list.

The shares are interleaved, not cut into contiguous chunks: in a series of N
instances split k ways, request j asks for instances j, j+k, j+2k, ... The k
associations then deliver instances 0..k-1 first, k..2k-1 next, and so on: the
series fills from its first image on, k at a time, which is what a viewer
showing the first image and scrolling from there waits for. Contiguous chunks
would bring instances 0, N/k, 2N/k, ... first, and the first k images in order
only after k round trips. Both give every association the same work.

The instances are listed in the order the series came from the PACS, and by
Instance Number within a series, so the first images are those asked first.
A series with few instances is not split (a request costs a round trip of its
own); requests of a large series are capped at ``PER_REQUEST`` UIDs, so an
association ends a request often enough to give way to an operation waiting
for room, and the identifier stays small.

Splitting pays only where round trips are the bound. On loopback or a fast LAN
the gateway's CPU is (pynetdicom decodes every PDU in Python, under one GIL):
four associations there were measured slower than one, and the listing C-FIND
delays the first instance. ``link_bound`` decides from the round trip to the
PACS (``round_trips.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["MIN_PER_REQUEST", "PER_REQUEST", "Listed", "Unit", "fan_out", "in_order",
           "link_bound", "plan_units", "worth_splitting"]

#: At most this many SOP Instance UIDs in one request.
PER_REQUEST = 64
#: A series is split only into requests of at least this many instances.
MIN_PER_REQUEST = 2


@dataclass(frozen=True)
class Listed:
    """One instance, as an IMAGE-level C-FIND listed it."""

    sop_instance_uid: str
    series_uid: str
    #: Instance Number (0020,0013); None when the PACS did not give one.
    number: int | None = None


@dataclass(frozen=True)
class Unit:
    """One IMAGE-level C-GET or C-MOVE: instances of one series, by SOP Instance UID."""

    series_uid: str
    sop_instance_uids: tuple[str, ...]


def fan_out(wanted: int, limit: int) -> int:
    """Associations for one retrieve: the node's ``retrieve_associations``, within its
    association limit (configured or learned)."""
    return max(1, min(wanted, limit))


def link_bound(round_trip: float | None, split_above: float) -> bool:
    """Whether round trips bound a retrieve from a node ``round_trip`` seconds away
    (None: not measured), so that splitting it pays: at least ``split_above`` (the
    node's ``retrieve_split_above``; 0: always)."""
    if split_above <= 0:
        return True
    return round_trip is not None and round_trip >= split_above


def worth_splitting(count: int, parts: int) -> bool:
    """Whether ``count`` instances are worth ``parts`` associations: not a single
    instance, and at least two per association (else one request does as well)."""
    return parts > 1 and count > 1 and count >= 2 * parts


def in_order(listed: Iterable[Listed]) -> list[Listed]:
    """Series in the order they first came, each by Instance Number (none: last, as
    they came); every SOP Instance UID once."""
    seen: set[str] = set()
    series: dict[str, list[Listed]] = {}
    for instance in listed:
        if instance.sop_instance_uid in seen:
            continue
        seen.add(instance.sop_instance_uid)
        series.setdefault(instance.series_uid, []).append(instance)
    ordered: list[Listed] = []
    for members in series.values():
        # sorted() is stable: instances without a number, or with the same one, keep
        # the order the PACS gave.
        ordered += sorted(members, key=lambda i: (i.number is None, i.number or 0))
    return ordered


def plan_units(instances: Sequence[Listed], parts: int, *,
               per_request: int = PER_REQUEST) -> list[Unit]:
    """The requests for ``instances`` (in order, see ``in_order``) over ``parts``
    associations, in the order they should start: the first images first.

    Each series is split k ways (k = ``parts``, fewer for a short series), in
    blocks of k x ``per_request`` instances; within a block, request j takes
    every k-th instance from the j-th on. Associations take the next request as
    they finish one.
    """
    if parts < 1 or per_request < 1:
        raise ValueError("parts and per_request must be >= 1")
    units: list[Unit] = []
    for series_uid, members in _by_series(instances):
        ways = min(parts, max(1, len(members) // MIN_PER_REQUEST))
        block = ways * per_request
        for start in range(0, len(members), block):
            chunk = members[start:start + block]
            chunk_ways = min(ways, len(chunk))
            units += [Unit(series_uid, tuple(chunk[j::chunk_ways])) for j in range(chunk_ways)]
    return units


def _by_series(instances: Sequence[Listed]) -> list[tuple[str, list[str]]]:
    series: dict[str, list[str]] = {}
    for instance in instances:
        series.setdefault(instance.series_uid, []).append(instance.sop_instance_uid)
    return list(series.items())
