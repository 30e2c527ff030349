"""A simulated network link: a TCP proxy that delays every byte, for tests and benchmarks.

A hospital PACS is rarely on the gateway's loopback: a LAN, a VPN or a
cloud-to-site link sits in between, with 10-40 ms of round trip. DIMSE
retrieves wait for each C-STORE response before the next instance, so round
trips, not CPU, bound them there. ``LinkProxy`` puts such a link between two
loopback peers::

    with LinkProxy(pacs.host, pacs.port, delay_ms=10) as link:
        ...  # talk to 127.0.0.1:link.port instead of the PACS

- Every chunk read at ``t`` is written at ``t + delay`` on the other side, in
  both directions. Chunks are queued with their due time and a writer per
  direction sends each when due while reading goes on, so bytes are
  pipelined: the delay adds latency, it does not cap throughput.
- ``rate`` (bytes/s, per connection and direction) serializes the chunks as a
  link of that bandwidth would: a chunk starts when the previous one is out.
- A new connection costs one round trip before its first bytes arrive, as
  TCP's handshake does on a real link (here the kernel accepts at once).
- Back-pressure: at most ``max_queued`` bytes wait per direction; beyond it
  the proxy stops reading, so a slow reader does not grow memory without
  limit. With delay ``d`` this caps throughput at ``max_queued / d``
  (800 MB/s for the defaults), well above what DIMSE reaches on loopback.
- A half-close (FIN) and a close travel with the same delay as the data
  before them; a reset or a failed connect to the target closes the client's
  side after the delay.

It runs on its own event loop in a daemon thread, like ``tcp_proxy.TcpProxy``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections import deque
from dataclasses import dataclass, field

from pacs_fixtures import LOOPBACK, free_port

__all__ = ["LinkProxy", "Schedule"]

_CHUNK = 256 * 1024
DEFAULT_MAX_QUEUED = 8 * 2**20


@dataclass
class Schedule:
    """When each chunk of one direction reaches the other side (loop time, seconds).

    A pure function of the read times, kept apart from the sockets so tests can
    check the pipelining without a clock.
    """

    delay: float
    rate: float | None = None
    # Nothing is delivered before this (the handshake's round trip).
    not_before: float = 0.0
    # When the link has finished sending the previous chunk (rate cap only).
    _free_at: float = field(default=0.0, repr=False)

    def due(self, now: float, size: int) -> float:
        """The arrival time of ``size`` bytes read at ``now`` (0 bytes: the FIN)."""
        start = max(now, self._free_at)
        if self.rate:
            start += size / self.rate
            self._free_at = start
        return max(start + self.delay, self.not_before)


class _Direction:
    """One direction of one proxied connection: a reader, a queue, a writer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 schedule: Schedule, max_queued: int, counts: dict[str, int], name: str) -> None:
        self._reader = reader
        self._writer = writer
        self._schedule = schedule
        self._max_queued = max_queued
        self._counts = counts
        self._name = name
        self._queue: deque[tuple[float, bytes]] = deque()  # b"": the end of the stream
        self._queued = 0
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()

    async def read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await self._reader.read(_CHUNK)
            except OSError:  # reset by the peer: it ends the stream like a FIN does
                data = b""
            self._queue.append((self._schedule.due(loop.time(), len(data)), data))
            self._queued += len(data)
            self._counts["peak_queued"] = max(self._counts["peak_queued"], self._queued)
            self._arrived.set()
            if not data:
                return
            while self._queued > self._max_queued:
                self._room.clear()
                await self._room.wait()

    async def write(self) -> None:
        """Send every chunk when due; at the end, pass the FIN on."""
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            wait = self._queue[0][0] - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            now = loop.time()
            batch: list[bytes] = []
            # Everything due by now goes out in one write (fewer syscalls).
            while self._queue and self._queue[0][0] <= now and self._queue[0][1]:
                batch.append(self._queue.popleft()[1])
            if batch:
                size = sum(map(len, batch))
                self._queued -= size
                self._counts[self._name] += size
                if self._queued <= self._max_queued:
                    self._room.set()
                self._writer.writelines(batch)
                await self._writer.drain()
            if self._queue and self._queue[0][0] <= now and not self._queue[0][1]:
                if self._writer.can_write_eof():
                    self._writer.write_eof()
                return


def _nodelay(writer: asyncio.StreamWriter) -> None:
    # asyncio sets TCP_NODELAY itself; said again here, as the link's contract.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class LinkProxy:
    """127.0.0.1:``port`` -> ``target_host``:``target_port`` over a simulated link.

    ``delay_ms``: one-way delay; ``rate``: bytes/s per connection and direction
    (None: unlimited); ``port``: a port reserved beforehand (default: a free one).
    ``connections`` and ``forwarded`` (bytes "to_target" and "to_client") tell
    a test that the traffic really went through the link.
    """

    def __init__(self, target_host: str, target_port: int, *, delay_ms: float = 10.0,
                 rate: float | None = None, port: int | None = None,
                 max_queued: int = DEFAULT_MAX_QUEUED) -> None:
        self.target = (target_host, target_port)
        self.delay = delay_ms / 1000
        self.rate = rate
        self.port = port if port is not None else free_port()
        self.max_queued = max_queued
        self.connections = 0
        # "peak_queued": the most bytes one direction ever held (back-pressure check).
        self.forwarded = {"to_target": 0, "to_client": 0, "peak_queued": 0}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"link-proxy-{self.port}")

    def __enter__(self) -> LinkProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, LOOPBACK, self.port, limit=_CHUNK), self._loop
        ).result(timeout=5)
        return self

    def __exit__(self, *_exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _accept(self, client_reader: asyncio.StreamReader,
                client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(
            self._connection(client_reader, client_writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connection(self, client_reader: asyncio.StreamReader,
                          client_writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        accepted = loop.time()
        self.connections += 1
        _nodelay(client_writer)
        writers = [client_writer]
        try:
            # The SYN reaches the target after one delay...
            await asyncio.sleep(self.delay)
            try:
                target_reader, target_writer = await asyncio.open_connection(
                    *self.target, limit=_CHUNK)
            except OSError:
                # ... and the refusal comes back after another.
                await asyncio.sleep(self.delay)
                return
            writers.append(target_writer)
            _nodelay(target_writer)
            # The client's first bytes leave once its handshake is done (one round trip
            # after it called connect) and take one more delay to arrive.
            up = _Direction(client_reader, target_writer,
                            Schedule(self.delay, self.rate, not_before=accepted + 3 * self.delay),
                            self.max_queued, self.forwarded, "to_target")
            down = _Direction(target_reader, client_writer, Schedule(self.delay, self.rate),
                              self.max_queued, self.forwarded, "to_client")
            # A failed write means that side is gone: stop everything, close both.
            async with asyncio.TaskGroup() as group:
                for direction in (up, down):
                    group.create_task(direction.read())
                    group.create_task(direction.write())
        except* OSError:
            pass
        finally:
            for writer in writers:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
