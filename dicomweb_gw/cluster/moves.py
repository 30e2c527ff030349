"""C-MOVE across replicas: the PACS's C-STOREs land on whichever replica the Service picks.

The PACS knows one AE title, host and port for the gateway. With several
replicas behind one Service, the sub-operations of a move started by replica
A can arrive at replica B. So:

- Move Originator Message IDs are allocated cluster-wide (a Redis counter),
  and each in-flight move is registered with the replica and PACS node that
  own it.
- A replica receiving an instance for a move it does not own stores it in the
  node's shared store (so it is in the cache either way) and announces it on
  the owner's Redis stream.
- Each replica reads its own stream and hands announced instances to the
  waiting move, as if its own storage SCP had received them.

The reader must outlive anything the stream or the store can throw at it: once
it stops, every move whose instances land elsewhere ends short. So a bad entry
is logged and skipped, a Redis outage is waited out with back-off, and if the
reader dies all the same ``problem`` says so (``/readyz`` reports it). Each
move gets its announced instances through a bounded queue and a thread of its
own: a client that reads slowly holds up its own move, never the others, and
one that falls too far behind has its move ended with an error.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dicomweb_gw.cache.protocol import CacheFull, InstanceStore, InvalidInstance
from dicomweb_gw.cluster.link import KEY_PREFIX, RedisLink, text
from dicomweb_gw.codecs.part10 import instance_from_file
from dicomweb_gw.errors import PacsFailure
from dicomweb_gw.model import RetrievedInstance
from dicomweb_gw.pacs.sink import STORE_REFUSED, STORE_SUCCESS

__all__ = ["Abandon", "Deliver", "MoveRouting"]

log = logging.getLogger(__name__)

#: Hands an instance to our move (by Message ID); returns the C-STORE status.
Deliver = Callable[[int, RetrievedInstance], int]
#: Ends our move (by Message ID) with an error: its instances can no longer reach it.
Abandon = Callable[[int, Exception], None]

_COUNTER = f"{KEY_PREFIX}move-message-id"
#: A move registration outlives any sane move; it is deleted when the move ends.
_REGISTRATION_SECONDS = 3600
_STREAM_SECONDS = 600
_READ_BLOCK_MS = 1000
#: Announcements a move may have waiting. They are small (the instance is in the
#: shared store), so this is generous: only a client that has all but stopped
#: reading gets this far behind.
_MOVE_QUEUE = 1000
#: A move's hand-over thread ends after this long without announcements.
_IDLE_SECONDS = 5.0
_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 30.0
_FIELDS = ("msg_id", "node", "study", "series", "sop")
_MESSAGE_ID = re.compile(r"[0-9]{1,5}")


@dataclass(frozen=True, slots=True)
class _Announcement:
    """One entry of a replica's inbox: an instance of its move, now in the shared store."""

    msg_id: int
    node: str
    study: str
    series: str
    sop: str

    @classmethod
    def parse(cls, raw: object) -> _Announcement:
        """The entry's fields, checked; ValueError says what is wrong with them."""
        if not isinstance(raw, Mapping):
            raise ValueError("no fields")
        try:
            fields = {text(key): text(value) for key, value in raw.items()}
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 ({exc.reason})") from None
        missing = [name for name in _FIELDS if not fields.get(name)]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        msg_id = str(fields["msg_id"])
        if not _MESSAGE_ID.fullmatch(msg_id) or not 1 <= int(msg_id) <= 65535:
            raise ValueError(f"msg_id {msg_id[:20]!r} is not a Message ID")
        return cls(int(msg_id), str(fields["node"]), str(fields["study"]),
                   str(fields["series"]), str(fields["sop"]))


class _Move:
    """The announcements waiting for one of our moves, and whether it was dropped."""

    def __init__(self, msg_id: int, node: str, capacity: int) -> None:
        self.msg_id = msg_id
        self.node = node
        self.waiting: queue.Queue[_Announcement] = queue.Queue(capacity)
        #: Why the move no longer gets instances (None while it does).
        self.dropped: str | None = None


class _Backoff:
    """Waits that double after each failure in a row, up to a cap."""

    def __init__(self) -> None:
        self._next = _BACKOFF_FIRST

    def next(self) -> float:
        wait, self._next = self._next, min(self._next * 2, _BACKOFF_MAX)
        return wait

    def reset(self) -> None:
        self._next = _BACKOFF_FIRST


class MoveRouting:
    def __init__(self, link: RedisLink, stores: Callable[[str], InstanceStore], *,
                 move_queue: int = _MOVE_QUEUE) -> None:
        self._link = link
        self._stores = stores
        self._move_queue = move_queue
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._died: str | None = None
        self._unreadable: str | None = None
        #: Where reading resumes. The inbox is this process's own (the replica id is new
        #: each start), so all of it is ours to read.
        self._last = "0-0"
        self._deliver: Deliver | None = None
        self._abandon: Abandon | None = None
        self._lock = threading.Lock()
        self._owned: dict[int, str] = {}  # our registered moves: Message ID -> node
        self._moves: dict[int, _Move] = {}  # those with a hand-over thread running
        self.forwarded = 0  # instances this replica received for another replica's move
        self.received = 0   # instances of this replica's moves received by another replica
        self.dropped = 0    # moves ended because their client fell too far behind

    # -- health -----------------------------------------------------------------
    @property
    def problem(self) -> str | None:
        """Why instances other replicas receive cannot reach our moves; None when they can."""
        thread = self._thread
        if thread is None:
            return None
        if not thread.is_alive():
            return self._died or "the move routing thread has stopped"
        return self._unreadable

    @property
    def healthy(self) -> bool:
        return self.problem is None

    # -- the owner's side ----------------------------------------------------
    def register(self, node: str) -> int | None:
        """A cluster-wide Message ID for a new move of ``node``; None without Redis."""

        def allocate() -> int:
            msg_id = int(self._link.sync.incr(_COUNTER)) % 65535 + 1
            self._link.sync.set(_registration(msg_id), f"{self._link.replica_id}|{node}",
                                ex=_REGISTRATION_SECONDS)
            return msg_id

        msg_id = self._link.call_sync(allocate, "move registration")
        if msg_id is not None:
            with self._lock:
                self._owned[msg_id] = node
        return msg_id

    def unregister(self, msg_id: int) -> None:
        with self._lock:
            self._owned.pop(msg_id, None)
        self._link.call_sync(lambda: self._link.sync.delete(_registration(msg_id)),
                             "move registration")

    def start(self, deliver: Deliver, abandon: Abandon | None = None) -> None:
        """Hand instances other replicas received for our moves to ``deliver``; a move
        whose client falls too far behind is ended through ``abandon``."""
        self._deliver, self._abandon = deliver, abandon
        self._stop.clear()
        self._died = None
        self._thread = threading.Thread(target=self._listen, name="move-routing", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=_READ_BLOCK_MS / 1000 + 3)
            self._thread = None

    def _listen(self) -> None:
        try:
            self._read_inbox()
        except BaseException as exc:  # said in the log and in /readyz, not lost with the thread
            self._died = f"the move routing thread died ({type(exc).__name__})"
            log.critical("%s: C-MOVE instances that other replicas receive no longer reach "
                         "this replica's moves", self._died, exc_info=True)

    def _read_inbox(self) -> None:
        stream = _inbox(self._link.replica_id)
        backoff = _Backoff()
        while not self._stop.is_set():
            try:
                entries = self._read(stream)
            except Exception:  # not Redis failing (RedisLink handles that): a reply we cannot read
                self._read_failed()
                entries = None
            if entries is None:
                self._stop.wait(backoff.next())
                continue
            backoff.reset()
            self._unreadable = None
            for entry_id, raw in entries:
                self._last = entry_id  # past it whatever becomes of it: no entry is read twice
                self._route_safely(entry_id, raw)

    def _read(self, stream: str) -> list[tuple[str, object]] | None:
        """The entries after the last one read; None when Redis failed."""
        answer: Any = self._link.call_sync(  # redis-py's reply types say little
            lambda: self._link.sync.xread({stream: self._last}, count=50,
                                          block=_READ_BLOCK_MS),
            "move routing")
        if answer is None:
            return None  # RedisLink has said so, once for the whole outage
        return [(str(text(entry_id)), raw) for entry_id, raw in (answer[0][1] if answer else [])]

    def _read_failed(self) -> None:
        if self._unreadable is None:  # once per streak, not once per attempt
            log.error("move routing: cannot read the inbox; retrying with back-off",
                      exc_info=True)
        self._unreadable = "the move routing cannot read its Redis stream (see the log)"

    def _route_safely(self, entry_id: str, raw: object) -> None:
        try:
            self._route(entry_id, raw)
        except Exception:
            log.exception("move routing: skipped entry %s", entry_id)

    def _route(self, entry_id: str, raw: object) -> None:
        """Queue one inbox entry for its move; a malformed entry is logged and skipped."""
        try:
            announced = _Announcement.parse(raw)
        except ValueError as exc:
            log.error("move routing: skipped malformed entry %s: %s", entry_id, exc)
            return
        with self._lock:
            if self._owned.get(announced.msg_id) != announced.node:
                log.info("move routing: instance %s is for C-MOVE %d of PACS '%s', which is "
                         "not in flight here", announced.sop, announced.msg_id, announced.node)
                return
            move = self._moves.get(announced.msg_id)
            if move is None:
                move = _Move(announced.msg_id, announced.node, self._move_queue)
                self._moves[move.msg_id] = move
                threading.Thread(target=self._serve, args=(move,), daemon=True,
                                 name=f"move-routing-{move.msg_id}").start()
            if move.dropped is not None:
                return
            try:
                move.waiting.put_nowait(announced)
            except queue.Full:
                self._drop(move)

    def _drop(self, move: _Move) -> None:
        """Give up on a move whose client does not keep up (called with the lock held)."""
        move.dropped = (f"C-MOVE {move.msg_id} ended: its client reads too slowly (more than "
                        f"{self._move_queue} instances received by other replicas were waiting "
                        "for it)")
        while not move.waiting.empty():
            move.waiting.get_nowait()
        self.dropped += 1
        log.error("move routing: %s", move.dropped)

    def _serve(self, move: _Move) -> None:
        """Hand a move its announced instances in order, until it goes quiet or is dropped."""
        try:
            while move.dropped is None:
                try:
                    announced = move.waiting.get(timeout=_IDLE_SECONDS)
                except queue.Empty:
                    if self._retire(move):
                        return
                    continue
                if move.dropped is None:
                    self._hand_over_safely(announced)
            if self._abandon is not None:
                self._abandon(move.msg_id, PacsFailure(move.node, str(move.dropped)))
        except Exception:  # this move is lost, the routing goes on
            log.exception("move routing: handing instances to C-MOVE %d failed", move.msg_id)
        finally:
            self._retire(move, always=True)

    def _retire(self, move: _Move, *, always: bool = False) -> bool:
        """Forget a move's hand-over if nothing waits for it (or ``always``). Under the lock
        ``_route`` queues with, so no announcement slips in between the check and the end."""
        with self._lock:
            if not always and not move.waiting.empty():
                return False
            if self._moves.get(move.msg_id) is move:
                del self._moves[move.msg_id]
            return True

    def _hand_over_safely(self, announced: _Announcement) -> None:
        try:
            self._hand_over(announced)
        except Exception:  # a broken file or store: this instance is lost, not the routing
            log.exception("move routing: cannot hand instance %s to C-MOVE %d",
                          announced.sop, announced.msg_id)

    def _hand_over(self, announced: _Announcement) -> None:
        store = self._stores(announced.node)
        cached = store.get(announced.sop, study_uid=announced.study,
                           series_uid=announced.series)
        if cached is None:
            log.warning("instance %s, received by another replica for our C-MOVE, is not in "
                        "the shared store", announced.sop)
            return
        try:
            instance = instance_from_file(cached.path)
        except FileNotFoundError:
            return
        self.received += 1
        if self._deliver is not None:
            self._deliver(announced.msg_id, instance)

    # -- a receiving replica's side ------------------------------------------
    def forward(self, msg_id: int, instance: RetrievedInstance) -> int | None:
        """Route an instance of a move this replica does not own; the C-STORE status,
        or None when no replica owns ``msg_id``."""
        owner = self._link.call_sync(lambda: self._link.sync.get(_registration(msg_id)),
                                     "move routing")
        registered = text(owner)
        if registered is None:
            return None
        replica, _, node = registered.partition("|")
        if replica == self._link.replica_id:
            return None  # ours, but no longer expected here: the move is over
        try:
            cached = self._stores(node).put(instance)
        except (CacheFull, InvalidInstance) as exc:
            log.warning("cannot keep %s for another replica's C-MOVE: %s",
                        instance.sop_instance_uid, exc)
            return STORE_REFUSED

        def announce() -> bool:
            stream = _inbox(replica)
            self._link.sync.xadd(stream, {"msg_id": str(msg_id), "node": node,
                                          "study": cached.study_uid, "series": cached.series_uid,
                                          "sop": cached.sop_instance_uid})
            self._link.sync.expire(stream, _STREAM_SECONDS)
            return True

        if self._link.call_sync(announce, "move routing") is None:
            return STORE_REFUSED
        self.forwarded += 1
        return STORE_SUCCESS


def _registration(msg_id: int) -> str:
    return f"{KEY_PREFIX}move:{msg_id}"


def _inbox(replica: str) -> str:
    return f"{KEY_PREFIX}move-inbox:{replica}"
