"""Single flight across replicas: one PACS retrieve per study/series/instance cluster-wide.

Each replica still merges its own concurrent requests in its local
``FlightTable``; this module decides, per local flight, whether *this*
replica retrieves from the PACS (it won the lease) or follows the replica
that did.

- The **lease** is a Redis key ``SET NX PX``: whoever sets it retrieves, and
  renews it while the retrieve runs. A replica that dies stops renewing, the
  lease expires, and a follower takes over (retrieving again, skipping what it
  already streamed). When the retrieve ends well the lease turns into a
  short-lived ``done:`` marker, so late arrivals still find the stream.
- The **stream** (a Redis stream per lease) carries one entry per instance as
  it lands in the shared store, then ``done``, ``error`` or ``abandoned``.
  Followers fetch each announced instance from the shared store and stream it
  to their own clients as it arrives. Each entry also carries how many
  instances the owner's flight expects, when it knows: a follower asking for
  the same keys shows that on its own status page.

Redis failing at any point means per-replica behaviour: the flight retrieves
by itself, as a gateway without Redis does.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing, suppress
from dataclasses import dataclass

from dicomweb_gw.cluster.link import KEY_PREFIX, RedisLink, stream_entries, text
from dicomweb_gw.dicomweb.flights import Fetch, Landed, Producer, flying
from dicomweb_gw.errors import (
    GatewayError,
    NotFound,
    PacsError,
    PacsFailure,
    PacsTimeout,
    PacsUnavailable,
)
from dicomweb_gw.model import RetrieveKeys, RetrieveReport

__all__ = ["ClusterFlights", "FlightRoles"]

log = logging.getLogger(__name__)


_DONE = "done:"
#: How long a finished flight's stream stays findable (the completeness record
#: in the shared store answers after that).
_DONE_SECONDS = 60
_STREAM_SECONDS = 600
_READ_BLOCK_MS = 1000

# Compare-and-act on the lease: only its holder may renew or end it.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_END = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  if ARGV[2] == '' then return redis.call('del', KEYS[1]) end
  return redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 0
"""


@dataclass
class FlightRoles:
    """What this replica's flights did, for tests and metrics."""

    owned: int = 0      # won the lease: retrieved from the PACS
    followed: int = 0   # streamed another replica's retrieve
    took_over: int = 0  # the owner vanished mid-way: retrieved the rest ourselves
    alone: int = 0      # Redis unavailable: retrieved without coordination


class _OwnerGone(Exception):
    """The lease holder stopped renewing (died) or gave up: take over."""


class _CannotFollow(Exception):
    """Redis or the shared store failed while following: retrieve alone."""


class ClusterFlights:
    def __init__(self, link: RedisLink, *, lease_seconds: float = 10.0) -> None:
        self._link = link
        self._lease_ms = max(1000, int(lease_seconds * 1000))
        self.roles = FlightRoles()

    def producer(self, pacs: str, produce: Producer, fetch: Fetch) -> Producer:
        """Wrap a local producer (a PACS retrieve) so it runs once cluster-wide."""

        async def coordinated(keys: RetrieveKeys) -> AsyncGenerator[Landed, None]:
            streamed: set[str] = set()
            taking_over = False
            while True:
                lease = await self._acquire(pacs, keys)
                if lease is None:
                    break  # no Redis: retrieve alone
                key, token, mine = lease
                if mine:
                    if taking_over:
                        self.roles.took_over += 1
                    else:
                        self.roles.owned += 1
                    async with aclosing(self._own(key, token, produce(keys))) as owned:
                        async for item in _skipping(owned, streamed):
                            yield item
                    return
                self.roles.followed += 1
                # The owner's count is for its keys: shown here only if they are ours.
                same_keys = key == _lease_keys(pacs, keys)[-1]
                try:
                    async with aclosing(self._follow(pacs, key, token, keys, fetch,
                                                     same_keys)) as followed:
                        async for item in _skipping(followed, streamed):
                            yield item
                    return
                except _OwnerGone:
                    log.warning("the replica retrieving %s from '%s' stopped; taking over",
                                keys.describe(), pacs)
                    taking_over = True
                except _CannotFollow as exc:
                    log.warning("cannot follow the retrieve of %s from '%s' (%s); "
                                "retrieving it here", keys.describe(), pacs, exc)
                    break
            self.roles.alone += 1
            async for item in _skipping(produce(keys), streamed):
                yield item

        return coordinated

    # -- the lease ---------------------------------------------------------
    async def _acquire(self, pacs: str, keys: RetrieveKeys) -> tuple[str, str, bool] | None:
        """(lease key, token, True if ours) of the flight to join; None without Redis.

        A lease on a broader key (the study, when a series is asked for) covers
        this request too, so it is followed rather than retrieving twice.
        """
        candidates = _lease_keys(pacs, keys)
        mine = candidates[-1]
        token = f"{self._link.replica_id}-{uuid.uuid4().hex[:8]}"
        for _ in range(3):  # a lease can end between the GET and the SET: look again
            held = await self._link.call(lambda: self._link.aio.mget(candidates), "lease lookup")
            if held is None:
                return None
            for key, value in zip(candidates, held, strict=True):
                current = text(value)
                if current is not None:
                    return key, current.removeprefix(_DONE), False
            taken = await self._link.call(
                lambda: self._take(mine, token), "lease")
            if taken is None:
                return None
            if taken:
                return mine, token, True
        return None

    async def _take(self, key: str, token: str) -> bool:
        # SET NX answers None when the key exists: made a bool, so None means "Redis failed".
        return bool(await self._link.aio.set(key, token, nx=True, px=self._lease_ms))

    async def _own(self, key: str, token: str,
                   instances: AsyncGenerator[Landed, None]) -> AsyncGenerator[Landed, None]:
        """Retrieve from the PACS, announcing each instance, renewing the lease meanwhile."""
        stream = _stream_key(token)
        renewing = asyncio.create_task(self._renew(key, token))
        outcome: dict[str, str] = {"kind": "abandoned"}
        flight = flying()
        try:
            async with aclosing(instances) as landed:
                async for item in landed:
                    entry = {"kind": "landed", "study": item.study_uid,
                             "series": item.series_uid, "sop": item.sop_instance_uid}
                    if flight is not None and (expected := flight.expected) is not None:
                        entry["expected"] = str(expected)
                    await self._announce(stream, entry)
                    yield item
            outcome = {"kind": "done"}
        except PacsError as exc:
            prefix = f"PACS '{exc.pacs}': "
            outcome = {"kind": "error", "status": str(exc.status_code),
                       "message": exc.message.removeprefix(prefix)}
            raise
        except GatewayError as exc:
            outcome = {"kind": "error", "status": str(exc.status_code), "message": exc.message}
            raise
        except Exception as exc:
            outcome = {"kind": "error", "status": "502", "message": str(exc)}
            raise
        finally:
            renewing.cancel()
            # Cancelled (every client left): abandon, so a follower takes over at once.
            ending = asyncio.shield(self._end(key, token, stream, outcome))
            with suppress(asyncio.CancelledError):
                await ending

    async def _renew(self, key: str, token: str) -> None:
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            renewed = await self._link.call(
                lambda: self._link.aio.eval(_RENEW, 1, key, token, self._lease_ms), "lease renewal")
            if renewed == 0:
                log.warning("lost the lease %s (paused longer than its %d ms?); another replica "
                            "may retrieve the same objects", key, self._lease_ms)
                return

    async def _end(self, key: str, token: str, stream: str, outcome: dict[str, str]) -> None:
        await self._announce(stream, outcome)
        done = outcome["kind"] == "done"
        await self._link.call(
            lambda: self._link.aio.eval(_END, 1, key, token, _DONE + token if done else "",
                                        _DONE_SECONDS * 1000),
            "lease release")

    async def _announce(self, stream: str, fields: dict[str, str]) -> None:
        async def add() -> None:
            async with self._link.aio.pipeline(transaction=False) as pipe:
                pipe.xadd(stream, fields)  # type: ignore[arg-type]
                pipe.expire(stream, _STREAM_SECONDS)
                await pipe.execute()

        await self._link.call(add, "announce")

    # -- following ---------------------------------------------------------
    async def _follow(self, pacs: str, key: str, token: str, keys: RetrieveKeys,
                      fetch: Fetch, same_keys: bool) -> AsyncGenerator[Landed, None]:
        stream = _stream_key(token)
        flight = flying() if same_keys else None
        last = "0-0"
        while True:
            answer = await self._link.call(
                lambda since=last: self._link.aio_blocking.xread(  # type: ignore[misc]
                    {stream: since}, count=100, block=_READ_BLOCK_MS),
                "follow")
            if answer is None:
                raise _CannotFollow("Redis failed")
            if not answer:
                lease = await self._link.call(lambda: self._link.aio.get(key), "lease check")
                if text(lease) not in (token, _DONE + token):
                    raise _OwnerGone
                continue
            entries = stream_entries(answer)
            last = entries[-1][0]
            for _, fields in entries:
                kind = fields.get("kind")
                if kind == "landed":
                    if flight is not None and fields.get("expected", "").isdigit():
                        if flight.progress is None:
                            flight.progress = RetrieveReport()
                        flight.progress.expected = int(fields["expected"])
                    if not keys.covers(fields["study"], fields["series"], fields["sop"]):
                        continue
                    item = await fetch(fields["study"], fields["series"], fields["sop"])
                    if item is None:
                        raise _CannotFollow(f"instance {fields['sop']} is not in the shared store")
                    yield item
                elif kind == "done":
                    return
                elif kind == "error":
                    raise _error(pacs, fields)
                elif kind == "abandoned":
                    raise _OwnerGone


async def _skipping(instances: AsyncGenerator[Landed, None],
                    streamed: set[str]) -> AsyncGenerator[Landed, None]:
    """Each instance once, even when a take-over retrieves the first ones again."""
    async with aclosing(instances) as items:
        async for item in items:
            if item.sop_instance_uid in streamed:
                continue
            streamed.add(item.sop_instance_uid)
            yield item


def _lease_keys(pacs: str, keys: RetrieveKeys) -> list[str]:
    """Broadest first; the last one is this request's own."""
    base = f"{KEY_PREFIX}lease:{pacs}:{keys.study_uid}"
    found = [f"{base}:*:*"]
    if keys.series_uid is not None:
        found.append(f"{base}:{keys.series_uid}:*")
        if keys.instance_uid is not None:
            found.append(f"{base}:{keys.series_uid}:{keys.instance_uid}")
    elif keys.instance_uid is not None:
        found.append(f"{base}:*:{keys.instance_uid}")
    return found


def _stream_key(token: str) -> str:
    return f"{KEY_PREFIX}landed:{token}"


def _error(pacs: str, fields: dict[str, str]) -> GatewayError:
    """The owner's failure, as the same kind of error for this replica's clients."""
    message = fields.get("message", "the retrieve failed on another replica")
    status = fields.get("status", "")
    if status == "404":
        return NotFound(message)
    kinds: dict[str, type[PacsError]] = {"503": PacsUnavailable, "504": PacsTimeout}
    return kinds.get(status, PacsFailure)(pacs, message)
