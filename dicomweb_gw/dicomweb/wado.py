"""WADO-RS retrieve: instances from the PACS become parts, as they arrive."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass

import anyio
from pydicom import uid

from dicomweb_gw.codecs.part10 import part10_chunks, to_explicit_little_endian
from dicomweb_gw.errors import GatewayError
from dicomweb_gw.model import RetrievedInstance, RetrieveKeys
from dicomweb_gw.pacs.protocol import PacsClient

__all__ = ["InstanceSelection", "Part", "WadoService"]


@dataclass(frozen=True, slots=True)
class InstanceSelection:
    """What the client accepts for each instance: a transfer syntax, or None for as stored."""

    transfer_syntax: str | None = uid.ExplicitVRLittleEndian


@dataclass(frozen=True, slots=True)
class Part:
    content_type: str
    chunks: tuple[bytes, ...]


class ConversionFailed(GatewayError):
    status_code = 406


class WadoService:
    def __init__(self, *, codec_threads: int = 2) -> None:
        # Decompression is CPU-bound: a small pool so two cores are not oversubscribed.
        self._codec_limiter = anyio.CapacityLimiter(codec_threads)

    async def retrieve(
        self, pacs: PacsClient, keys: RetrieveKeys, selection: InstanceSelection
    ) -> AsyncGenerator[Part, None]:
        async with aclosing(pacs.retrieve(keys)) as instances:
            async for instance in instances:
                converted = await self._convert(instance, selection)
                yield Part(
                    content_type=(
                        f"application/dicom; transfer-syntax={converted.transfer_syntax_uid}"
                    ),
                    chunks=part10_chunks(converted),
                )

    async def _convert(
        self, instance: RetrievedInstance, selection: InstanceSelection
    ) -> RetrievedInstance:
        wanted = selection.transfer_syntax
        if wanted is None or instance.transfer_syntax_uid == wanted:
            return instance
        try:
            return await anyio.to_thread.run_sync(
                to_explicit_little_endian, instance, limiter=self._codec_limiter
            )
        except Exception as exc:
            raise ConversionFailed(
                f"instance {instance.sop_instance_uid} is stored as "
                f"{uid.UID(instance.transfer_syntax_uid).name} and could not be converted to "
                f"Explicit VR Little Endian ({exc}); ask with transfer-syntax=* to get it as stored"
            ) from exc
