"""The simulated link (tests/link_proxy.py): delay, pipelining, rate cap, back-pressure, closes.

Timings are only checked from below: a lower bound derived from the delay is
a property of the link, an upper bound would be a property of the machine.
"""

from __future__ import annotations

import random
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import pytest

from link_proxy import _CHUNK, LinkProxy, Schedule
from pacs_fixtures import LOOPBACK, free_port

DELAY_MS = 20
MB = 10**6


@contextmanager
def serving(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A threaded TCP server on loopback running ``handle`` per connection; yields its port."""
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            handle(self.request)

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer((LOOPBACK, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def echo(conn: socket.socket) -> None:
    while data := conn.recv(1 << 16):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


def count_then_reply(conn: socket.socket) -> None:
    """Read to the end of the stream (the client's FIN), then answer the byte count."""
    total = 0
    while data := conn.recv(1 << 16):
        total += len(data)
    conn.sendall(str(total).encode())


def connect(port: int, **options: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    for option, value in options.items():
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, option), value)
    sock.settimeout(10)  # a hang fails the test instead of the run
    sock.connect((LOOPBACK, port))
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(1 << 20):
        chunks.append(data)
    return b"".join(chunks)


def test_chunks_are_pipelined_not_serialized_by_the_delay() -> None:
    schedule = Schedule(delay=0.010)
    assert schedule.due(0.000, 1000) == pytest.approx(0.010)
    # Read 1 ms later, due 1 ms later: not one delay after the previous chunk.
    assert schedule.due(0.001, 1000) == pytest.approx(0.011)
    assert schedule.due(0.002, 0) == pytest.approx(0.012)  # the FIN, like data


def test_a_rate_serializes_chunks_and_the_handshake_holds_the_first_bytes() -> None:
    schedule = Schedule(delay=0.010, rate=1e6)
    assert schedule.due(0.0, 1000) == pytest.approx(0.011)
    assert schedule.due(0.0, 1000) == pytest.approx(0.012)  # after the first is out
    assert schedule.due(1.0, 0) == pytest.approx(1.010)  # an idle link is free again
    assert Schedule(delay=0.010, not_before=0.030).due(0.0, 10) == pytest.approx(0.030)


def test_a_round_trip_takes_at_least_two_delays() -> None:
    with serving(echo) as port, LinkProxy(LOOPBACK, port, delay_ms=DELAY_MS) as link, \
            connect(link.port) as sock:
        round_trips = []
        for _ in range(3):
            started = time.perf_counter()
            sock.sendall(b"ping")
            assert sock.recv(16) == b"ping"
            round_trips.append(time.perf_counter() - started)
    # The first one also pays for the connection's handshake.
    assert round_trips[0] >= 4 * DELAY_MS / 1000
    assert min(round_trips) >= 2 * DELAY_MS / 1000
    assert link.connections == 1


def test_a_large_payload_arrives_intact_and_in_order_both_ways() -> None:
    payload = random.Random(16).randbytes(20 * MB)
    with serving(echo) as port, LinkProxy(LOOPBACK, port, delay_ms=DELAY_MS) as link, \
            connect(link.port) as sock:
        def send() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        sender = threading.Thread(target=send)
        sender.start()
        received = read_all(sock)
        sender.join()
    assert len(received) == len(payload)
    assert received == payload
    assert link.forwarded["to_target"] == link.forwarded["to_client"] == len(payload)


def test_the_rate_cap_limits_throughput() -> None:
    size, rate = 400_000, 2e6
    with serving(count_then_reply) as port, \
            LinkProxy(LOOPBACK, port, delay_ms=1, rate=rate) as link, \
            connect(link.port) as sock:
        started = time.perf_counter()
        sock.sendall(bytes(size))
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == str(size).encode()
        assert time.perf_counter() - started >= size / rate


def test_a_half_close_reaches_the_target_and_its_answer_comes_back() -> None:
    with serving(count_then_reply) as port, LinkProxy(LOOPBACK, port, delay_ms=DELAY_MS) as link, \
            connect(link.port) as sock:
        sock.sendall(b"x" * 1000)
        sock.shutdown(socket.SHUT_WR)
        # The target saw our FIN (else it would not answer), its answer and close came back.
        assert read_all(sock) == b"1000"


def test_the_targets_close_reaches_the_client_after_its_data() -> None:
    def greet_and_close(conn: socket.socket) -> None:
        conn.sendall(b"bye")
        conn.close()

    with serving(greet_and_close) as port, LinkProxy(LOOPBACK, port, delay_ms=DELAY_MS) as link, \
            connect(link.port) as sock:
        started = time.perf_counter()
        assert read_all(sock) == b"bye"
        assert time.perf_counter() - started >= DELAY_MS / 1000


def test_a_refused_target_closes_the_client() -> None:
    nobody = free_port()
    with LinkProxy(LOOPBACK, nobody, delay_ms=DELAY_MS) as link, connect(link.port) as sock, \
            suppress(ConnectionResetError):  # a close or a reset: either ends the stream
        assert sock.recv(16) == b""


def test_a_slow_reader_holds_the_queue_to_its_bound() -> None:
    payload = random.Random(17).randbytes(20 * MB)
    bound = 2**20

    def flood(conn: socket.socket) -> None:
        conn.sendall(payload)
        conn.close()

    with serving(flood) as port, \
            LinkProxy(LOOPBACK, port, delay_ms=DELAY_MS, max_queued=bound) as link, \
            connect(link.port, SO_RCVBUF=64 * 1024) as sock:
        time.sleep(1)  # let the target push as much as the proxy takes
        peak = link.forwarded["peak_queued"]
        received = read_all(sock)
    assert 0 < peak <= bound + _CHUNK
    assert received == payload
