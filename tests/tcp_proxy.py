"""A TCP proxy for cluster tests: counts DIMSE requests, balances, throttles.

- In front of a PACS it counts the DIMSE requests the gateways send (C-GET-RQ,
  C-MOVE-RQ, ...), read from the command sets in the P-DATA-TF PDUs: "exactly
  one retrieve reached the PACS" is then something a test can check.
- In front of several gateway storage SCPs it is the Kubernetes Service the
  PACS sends its C-MOVE sub-operations to (each connection to the next target).
- ``bytes_per_second`` slows the PACS down so a test can act mid-transfer.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from collections import Counter
from collections.abc import Sequence

from pacs_fixtures import free_port

__all__ = ["C_FIND_RQ", "C_GET_RQ", "C_MOVE_RQ", "TcpProxy"]

C_GET_RQ = 0x0010
C_FIND_RQ = 0x0020
C_MOVE_RQ = 0x0021
_P_DATA_TF = 0x04
# (0000,0100) Command Field, implicit VR little endian, value length 2.
_COMMAND_FIELD = b"\x00\x00\x00\x01\x02\x00\x00\x00"
_CHUNK = 64 * 1024


class TcpProxy:
    def __init__(self, targets: Sequence[tuple[str, int]], *,
                 bytes_per_second: float | None = None, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.targets = list(targets)
        self.bytes_per_second = bytes_per_second
        self.commands: Counter[int] = Counter()  # DIMSE requests seen, by Command Field
        self.connections: Counter[tuple[str, int]] = Counter()
        self._next = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._connect, "127.0.0.1", self.port), self._loop
        ).result(timeout=5)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._server is not None:
            self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    async def _connect(self, client_reader: asyncio.StreamReader,
                       client_writer: asyncio.StreamWriter) -> None:
        target = self.targets[self._next % len(self.targets)]
        self._next += 1
        self.connections[target] += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            self._pump(client_reader, upstream_writer, count=True),
            self._pump(upstream_reader, client_writer, count=False),
            return_exceptions=True,
        )

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    *, count: bool) -> None:
        pending = b""
        try:
            while data := await reader.read(_CHUNK):
                if count:
                    pending = self._count(pending + data)
                writer.write(data)
                await writer.drain()
                if self.bytes_per_second:
                    await asyncio.sleep(len(data) / self.bytes_per_second)
        except OSError:
            pass
        finally:
            writer.close()

    def _count(self, data: bytes) -> bytes:
        """Count the requests in every whole PDU; return the incomplete rest."""
        while len(data) >= 6:
            pdu_type = data[0]
            (length,) = struct.unpack_from(">I", data, 2)
            if len(data) < 6 + length:
                break
            if pdu_type == _P_DATA_TF:
                self._count_pdvs(data[6:6 + length])
            data = data[6 + length:]
        return data

    def _count_pdvs(self, pdu: bytes) -> None:
        offset = 0
        while offset + 6 <= len(pdu):
            (item_length,) = struct.unpack_from(">I", pdu, offset)
            header = pdu[offset + 5]
            value = pdu[offset + 6:offset + 4 + item_length]
            if header & 0x01:  # a command fragment, not a data set
                at = value.find(_COMMAND_FIELD)
                if at >= 0:
                    (field,) = struct.unpack_from("<H", value, at + len(_COMMAND_FIELD))
                    self.commands[field] += 1
            offset += 4 + item_length
