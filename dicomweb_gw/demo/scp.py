"""The demo PACS: a pynetdicom Query/Retrieve SCP over a folder of DICOM files.

It serves C-ECHO, C-FIND, C-GET and C-MOVE (Patient Root and Study Root) and
accepts C-STORE, so ``dicomweb-gw demo`` has a PACS with sample data and the
tests have one whose failures they can choose (:class:`Fault`).

This module runs the server and wires the handlers; the rest of the package
does the work:

* :mod:`~dicomweb_gw.demo.find_handler`, :mod:`~dicomweb_gw.demo.retrieve_handlers`:
  C-FIND, C-GET and C-MOVE; :mod:`~dicomweb_gw.demo.storage`: the folder and C-STORE.
* :mod:`~dicomweb_gw.demo.ae_setup`: the AE's contexts; :mod:`~dicomweb_gw.demo.faults`:
  the fault switches; :mod:`~dicomweb_gw.demo.move_subassociation`: the Move
  Originator fix-up.
* :mod:`~dicomweb_gw.demo.index` and :mod:`~dicomweb_gw.demo.query`: the
  in-memory index and the matching over it.

TCP_NODELAY: pynetdicom never sets it, and Nagle plus delayed ACKs add ~45 ms
to every request/response exchange. Every socket the demo accepts or opens gets
it from an ``EVT_CONN_OPEN`` handler.
"""

from __future__ import annotations

import logging
import socketserver
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.events import Event, EventHandlerType
from pynetdicom.transport import ThreadedAssociationServer

from dicomweb_gw.demo.ae_setup import make_ae, quiet_pynetdicom
from dicomweb_gw.demo.faults import Fault
from dicomweb_gw.demo.find_handler import FindHandler
from dicomweb_gw.demo.index import InstanceIndex
from dicomweb_gw.demo.move_subassociation import DemoAE
from dicomweb_gw.demo.retrieve_handlers import RetrieveHandlers
from dicomweb_gw.demo.storage import StorageFolder
from dicomweb_gw.pacs.sockets import set_nodelay

__all__ = ["DemoPacs", "Fault", "set_tcp_nodelay"]

#: One TCP_NODELAY handler for the gateway and the demo PACS alike.
set_tcp_nodelay = set_nodelay

LOGGER = logging.getLogger("dicomweb_gw.demo")

_SHUTDOWN_POLL_SECONDS: Final = 0.1


class DemoPacs:
    """A Query/Retrieve SCP serving the DICOM files in ``storage_dir``.

    >>> with DemoPacs(Path("/tmp/pacs"), move_destinations={"GW": ("127.0.0.1", 11113)}) as pacs:
    ...     print(pacs.port)
    """

    def __init__(
        self,
        storage_dir: Path,
        *,
        ae_title: str = "DEMOPACS",
        host: str = "127.0.0.1",
        port: int = 0,
        move_destinations: Mapping[str, tuple[str, int]] | None = None,
        fault: Fault | None = None,
    ) -> None:
        self._storage_dir = Path(storage_dir)
        self._ae_title = ae_title
        self._host = host
        self._port = port
        self._fault = fault or Fault()
        self._stopping = threading.Event()
        index = InstanceIndex()
        self._storage = StorageFolder(self._storage_dir, index)
        self._find = FindHandler(index, self._fault, ae_title=ae_title, stopping=self._stopping)
        self._retrieve = RetrieveHandlers(
            index,
            self._fault,
            move_destinations={
                aet.strip(): (dest_host, int(dest_port))
                for aet, (dest_host, dest_port) in (move_destinations or {}).items()
            },
            stopping=self._stopping,
        )
        self._ae: DemoAE | None = None
        self._server: ThreadedAssociationServer | None = None

    @property
    def port(self) -> int:
        """The listening port (the real one once started with ``port=0``)."""
        return self._port

    @property
    def ae_title(self) -> str:
        return self._ae_title

    def add_files(self, paths: Iterable[Path]) -> int:
        """Copy DICOM files into ``storage_dir`` and index them; return how many.

        Files already under ``storage_dir`` are indexed where they are; files
        that are not DICOM instances are skipped (and logged).
        """
        return self._storage.add_files(paths)

    def start(self) -> None:
        """Index ``storage_dir`` and start listening; returns once bound."""
        if self._server is not None:
            raise RuntimeError("DemoPacs is already running")
        quiet_pynetdicom()
        count = self._storage.scan()
        self._stopping.clear()
        self._ae = self._make_ae()
        server = self._ae.make_server(
            (self._host, self._port),
            evt_handlers=self._handlers(),
            server_class=ThreadedAssociationServer,
        )
        # What ae.start_server(block=False) does, but polling for shutdown
        # every 0.1 s instead of 0.5 s: tests start and stop many of these.
        threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": _SHUTDOWN_POLL_SECONDS},
            name=f"DemoPacs@{self._ae_title}",
            daemon=True,
        ).start()
        self._server = server
        self._port = int(server.server_address[1])
        LOGGER.info(
            "demo PACS %s listening on %s:%d with %d instances from %s",
            self._ae_title,
            self._host,
            self._port,
            count,
            self._storage_dir,
        )

    def stop(self) -> None:
        """Abort open associations and stop listening. Safe to call twice."""
        self._stopping.set()  # wakes stalled handlers
        if self._server is not None:
            # Not server.shutdown(): pynetdicom's also unregisters the server
            # from its AE, where only start_server() registers it.
            socketserver.BaseServer.shutdown(self._server)
            self._server.server_close()
        if self._ae is not None:
            self._ae.shutdown()  # aborts the associations still open
        self._ae = None
        self._server = None

    def __enter__(self) -> DemoPacs:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _make_ae(self) -> DemoAE:
        """The AE to serve with; a subclass (tests/quirky_pacs.py) may change its contexts."""
        return make_ae(self._ae_title, self._fault)

    def _handlers(self) -> list[EventHandlerType]:
        return [
            (evt.EVT_CONN_OPEN, set_tcp_nodelay),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_GET, self._on_get),
            (evt.EVT_C_MOVE, self._on_move),
            (evt.EVT_C_STORE, self._on_store),
        ]

    # The handlers pynetdicom calls stay methods of DemoPacs so that a subclass
    # (tests/test_pacs_quirks.py) can watch the requests by overriding them.

    def _on_find(self, event: Event) -> Iterator[tuple[int, Dataset | None]]:
        return self._find.on_find(event)

    def _on_get(self, event: Event) -> Iterator[int | tuple[int, Dataset | None]]:
        return self._retrieve.on_get(event)

    def _on_move(self, event: Event) -> Iterator[Any]:
        return self._retrieve.on_move(event)

    def _on_store(self, event: Event) -> int:
        return self._storage.on_store(event)
