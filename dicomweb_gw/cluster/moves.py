"""C-MOVE across replicas: the PACS's C-STOREs land on whichever replica the Service picks.

The PACS knows one AE title, host and port for the gateway. With several
replicas behind one Service, the sub-operations of a move started by replica
A can arrive at replica B. So:

- Move Originator Message IDs are allocated cluster-wide (a Redis counter),
  and each in-flight move is registered with the replica and PACS node that
  own it.
- A replica receiving an instance for a move it does not own stores it in the
  node's shared store (so it is in the cluster's cache either way) and
  announces it on the owner's Redis stream.
- Each replica reads its own stream and hands announced instances to the
  waiting move, as if its own storage SCP had received them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from dicomweb_gw.cache.protocol import CacheFull, InstanceStore, InvalidInstance
from dicomweb_gw.cluster.link import KEY_PREFIX, RedisLink, stream_entries, text
from dicomweb_gw.codecs.part10 import instance_from_file
from dicomweb_gw.model import RetrievedInstance
from dicomweb_gw.pacs.sink import STORE_REFUSED, STORE_SUCCESS

__all__ = ["MoveRouting"]

log = logging.getLogger(__name__)

_COUNTER = f"{KEY_PREFIX}move-message-id"
#: A move registration outlives any sane move; it is deleted when the move ends.
_REGISTRATION_SECONDS = 3600
_STREAM_SECONDS = 600
_READ_BLOCK_MS = 1000



class MoveRouting:
    def __init__(self, link: RedisLink, stores: Callable[[str], InstanceStore]) -> None:
        self._link = link
        self._stores = stores
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.forwarded = 0  # instances this replica received for another replica's move
        self.received = 0   # instances of this replica's moves received by another replica

    # -- the owner's side ----------------------------------------------------
    def register(self, node: str) -> int | None:
        """A cluster-wide Message ID for a new move of ``node``; None without Redis."""

        def allocate() -> int:
            msg_id = int(self._link.sync.incr(_COUNTER)) % 65535 + 1
            self._link.sync.set(_registration(msg_id), f"{self._link.replica_id}|{node}",
                                ex=_REGISTRATION_SECONDS)
            return msg_id

        return self._link.call_sync(allocate, "move registration")

    def unregister(self, msg_id: int) -> None:
        self._link.call_sync(lambda: self._link.sync.delete(_registration(msg_id)),
                             "move registration")

    def start(self, deliver: Callable[[int, RetrievedInstance], int]) -> None:
        """Hand instances other replicas received for our moves to ``deliver``."""
        self._thread = threading.Thread(target=self._listen, args=(deliver,),
                                        name="move-routing", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=_READ_BLOCK_MS / 1000 + 3)
            self._thread = None

    def _listen(self, deliver: Callable[[int, RetrievedInstance], int]) -> None:
        stream = _inbox(self._link.replica_id)
        last = "$"  # only what arrives from now on: earlier entries were for a previous run
        while not self._stop.is_set():
            answer = self._link.call_sync(
                lambda since=last: self._link.sync.xread(  # type: ignore[misc]
                    {stream: since}, count=50, block=_READ_BLOCK_MS),
                "move routing")
            if answer is None:
                self._stop.wait(1.0)  # Redis down: try again later
                continue
            entries = stream_entries(answer)
            for _, fields in entries:
                self._hand_over(fields, deliver)
            if entries:
                last = entries[-1][0]

    def _hand_over(self, fields: dict[str, str],
                   deliver: Callable[[int, RetrievedInstance], int]) -> None:
        store = self._stores(fields["node"])
        cached = store.get(fields["sop"], study_uid=fields["study"], series_uid=fields["series"])
        if cached is None:
            log.warning("instance %s, received by another replica for our C-MOVE, is not in "
                        "the shared store", fields["sop"])
            return
        try:
            instance = instance_from_file(cached.path)
        except FileNotFoundError:
            return
        self.received += 1
        deliver(int(fields["msg_id"]), instance)

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
