"""``PacsClient`` over DIMSE with pynetdicom.

Every operation runs in a worker thread of its own under the node's
association limit (``workers.py``). This class puts together the modules that
do the work, one job each: C-FIND and the query model (``find.py``), C-GET and
C-MOVE (``retrieve.py``, planned from ``holdings.py``; split across several
associations by ``parallel.py``), C-STORE
(``storescu.py``), and the ``PacsError`` a failed operation ends in
(``failures.py``); C-ECHO is short enough to stay here.

Two per-node quirk switches: ``query_model`` forces Study or Patient Root
(``auto`` prefers Study Root and falls back; see ``find.py``), and
``move_originator = false`` runs C-MOVEs to the node one at a time (see
``Workers._acquire``).

C-ECHO goes on a pooled query association when the PACS accepts Verification
there; some reject it next to Query/Retrieve contexts (DICOM-RST 0.3.1), and
then every echo gets an association of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import Any, TypeVar

from pydicom.dataset import Dataset
from pynetdicom import _config as pynetdicom_config
from pynetdicom import build_context
from pynetdicom.association import Association

from dicomweb_gw.errors import PacsError, PacsFailure
from dicomweb_gw.metrics import GatewayMetrics
from dicomweb_gw.model import (
    FindReport,
    QueryLevel,
    RetrievedInstance,
    RetrieveKeys,
    RetrieveReport,
)
from dicomweb_gw.pacs import contexts, storescu
from dicomweb_gw.pacs.activity import NodeActivity, outcome_of
from dicomweb_gw.pacs.associations import Associations
from dicomweb_gw.pacs.bridge import Channel
from dicomweb_gw.pacs.failures import Failures
from dicomweb_gw.pacs.find import Finder
from dicomweb_gw.pacs.listing import Lister
from dicomweb_gw.pacs.parallel import ParallelRetriever
from dicomweb_gw.pacs.protocol import StoreOutcome, StoreRequest
from dicomweb_gw.pacs.retrieve import Retriever
from dicomweb_gw.pacs.sink import InstanceSink
from dicomweb_gw.pacs.sockets import FAST_POLL_HANDLER
from dicomweb_gw.pacs.status import SUCCESS
from dicomweb_gw.pacs.storescp import MoveReceiver
from dicomweb_gw.pacs.workers import MessageIds, Workers
from dicomweb_gw.settings import PacsNode

__all__ = ["DimsePacsClient"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# pynetdicom formats every C-FIND/C-GET/C-MOVE identifier it sends or receives for
# its INFO log, whatever the log level: about 0.2 ms per C-FIND answer (a fifth of
# a 1,000-study search), and the identifiers are patient data, which stays out of
# logs (see dicomweb_gw/redaction.py).
pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False
pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False

_FIND_QUEUE = 64
_RETRIEVE_QUEUE = 4


class DimsePacsClient:
    def __init__(
        self, node: PacsNode, *, ae_title: str, receiver: MoveReceiver | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._node = node
        self._associations = Associations(node, ae_title=ae_title, metrics=metrics)
        limit = self._associations.limit
        self._workers = Workers(node, metrics, limit=lambda: limit.value)
        self._message_ids = MessageIds()
        self._failures = Failures(node, ae_title=ae_title, receiver=receiver)
        self._finder = Finder(node, self._associations, self._failures, self._message_ids.next)
        self._retriever = Retriever(
            node, ae_title=ae_title, associations=self._associations, finder=self._finder,
            failures=self._failures, message_id=self._message_ids.next, receiver=receiver)
        self._parallel = ParallelRetriever(
            node, self._retriever, Lister(self._finder), associations=self._associations,
            failures=self._failures, receiver=receiver)
        if receiver is not None and not node.compressed:
            receiver.accept_only_uncompressed_from(node.ae_title)
        #: Learned: the PACS rejects Verification on a query association.
        self._echo_alone = False
        #: What the node has been doing lately (the status page reads it).
        self.activity = NodeActivity(node.ae_title)

    @property
    def name(self) -> str:
        return self._node.name

    @property
    def node(self) -> PacsNode:
        return self._node

    def association_use(self) -> tuple[int, int]:
        """(associations open now, the most the node allows as learned so far)."""
        return self._associations.open, self._associations.limit.value

    # -- PacsClient ----------------------------------------------------------
    async def echo(self) -> None:
        started = time.monotonic()
        try:
            async for _ in self._workers.stream(self._echo_worker, 1, "C-ECHO"):
                pass
        except PacsError as exc:
            self.activity.echoed((time.monotonic() - started) * 1000, exc)
            raise
        self.activity.echoed((time.monotonic() - started) * 1000)

    def find(
        self, level: QueryLevel, identifier: Dataset, *, report: FindReport | None = None,
    ) -> AsyncGenerator[Dataset, None]:
        def worker(channel: Channel[Dataset]) -> None:
            self._finder.stream(level, identifier, channel, report or FindReport())

        return self._recorded(self._workers.stream(worker, _FIND_QUEUE, "C-FIND"), "C-FIND")

    def retrieve(
        self, keys: RetrieveKeys, *, report: RetrieveReport | None = None,
    ) -> AsyncGenerator[RetrievedInstance, None]:
        def worker(channel: Channel[RetrievedInstance]) -> None:
            self._parallel.retrieve(keys, InstanceSink(channel, report))

        operation = "C-MOVE" if self._retriever.by_move else "C-GET"
        return self._recorded(self._workers.stream(worker, _RETRIEVE_QUEUE, operation,
                                                   size=lambda instance: len(instance.dataset)),
                              operation)

    async def store(self, requests: Sequence[StoreRequest]) -> list[StoreOutcome]:
        """C-STORE over one association of its own, under the same slot limit as the rest."""
        if not requests:
            return []
        results: list[list[StoreOutcome]] = []

        def worker(channel: Channel[list[StoreOutcome]]) -> None:
            channel.put(self._store_worker(requests))

        async for outcomes in self._recorded(self._workers.stream(worker, 1, "C-STORE"),
                                             "C-STORE"):
            results.append(outcomes)
        if not results:
            raise PacsFailure(self._node.name, "C-STORE batch ended without outcomes")
        return results[0]

    async def aclose(self) -> None:
        await asyncio.to_thread(self._associations.close_idle)

    async def _recorded(self, stream: AsyncGenerator[T, None], operation: str,
                        ) -> AsyncGenerator[T, None]:
        """``stream``, its end recorded in ``activity`` (closing this closes ``stream``:
        that is what C-CANCELs a retrieve the client left)."""
        outcome, error = "success", None
        try:
            async with aclosing(stream):
                async for item in stream:
                    yield item
        except PacsError as exc:
            outcome, error = outcome_of(exc), exc
            raise
        except (GeneratorExit, asyncio.CancelledError):
            # A C-FIND closed once the page is full ended as it should.
            outcome = "success" if operation == "C-FIND" else "cancelled"
            raise
        finally:
            self.activity.ended(operation, outcome, error)

    # -- operations (worker threads) -----------------------------------------
    def _echo_worker(self, channel: Channel[None]) -> None:
        if self._echo_alone:
            self._echo_on_its_own()
            return
        for attempt in range(2):
            with self._associations.pooled() as (assoc, reused):
                if not _accepted(assoc, contexts.VERIFICATION):
                    break
                status = assoc.send_c_echo(msg_id=self._message_ids.next())
                if "Status" in status and status.Status == SUCCESS:
                    return
                if reused and attempt == 0:
                    continue
                raise self._failures.no_response("C-ECHO", time.monotonic())
        if not self._echo_alone:
            self._echo_alone = True
            log.info("PACS '%s' rejects Verification next to Query/Retrieve contexts: "
                     "C-ECHO goes on an association of its own", self._node.name)
        self._echo_on_its_own()

    def _echo_on_its_own(self) -> None:
        assoc = self._associations.associate([build_context(contexts.VERIFICATION)])
        try:
            status = assoc.send_c_echo(msg_id=self._message_ids.next())
        finally:
            self._associations.close(assoc)
        if "Status" not in status or status.Status != SUCCESS:
            raise self._failures.no_response("C-ECHO", time.monotonic())

    def _store_worker(self, requests: Sequence[StoreRequest]) -> list[StoreOutcome]:
        def associate(requested: list[Any], handlers: Sequence[Any]) -> Association:
            return self._associations.associate(requested, handlers=[FAST_POLL_HANDLER, *handlers])

        try:
            return storescu.store_batch(associate, requests, release=self._associations.close,
                                        message_id=self._message_ids.next)
        except storescu.StoreInterrupted as exc:
            raise self._failures.no_response("C-STORE", exc.last_activity) from None


def _accepted(assoc: Association, abstract_syntax: str) -> bool:
    return any(cx.abstract_syntax == abstract_syntax for cx in assoc.accepted_contexts)
