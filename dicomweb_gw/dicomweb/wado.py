"""WADO-RS retrieve: instances from the PACS become parts, as they arrive."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass

import anyio
from pydicom import uid
from pydicom.dataset import Dataset

from dicomweb_gw.codecs.part10 import part10_chunks, to_explicit_little_endian
from dicomweb_gw.errors import GatewayError, NotFound, PacsError, PacsFailure
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


async def _exists(pacs: PacsClient, keys: RetrieveKeys) -> bool:
    query = Dataset()
    query.StudyInstanceUID = keys.study_uid
    if keys.series_uid is not None:
        query.SeriesInstanceUID = keys.series_uid
    if keys.instance_uid is not None:
        query.SOPInstanceUID = keys.instance_uid
    try:
        async with aclosing(pacs.find(keys.level, query)) as found:
            async for _ in found:
                return True
    except PacsError:
        return True  # cannot tell: report the original failure
    return False


class ConversionFailed(GatewayError):
    status_code = 406


class WadoService:
    def __init__(self, *, codec_threads: int = 2) -> None:
        # Decompression is CPU-bound: a small pool so two cores are not oversubscribed.
        self._codec_limiter = anyio.CapacityLimiter(codec_threads)

    async def retrieve(
        self, pacs: PacsClient, keys: RetrieveKeys, selection: InstanceSelection
    ) -> AsyncGenerator[Part, None]:
        delivered = False
        try:
            async with aclosing(pacs.retrieve(keys)) as instances:
                async for instance in instances:
                    converted = await self._convert(instance, selection)
                    delivered = True
                    yield Part(
                        content_type=(
                            f"application/dicom; transfer-syntax={converted.transfer_syntax_uid}"
                        ),
                        chunks=part10_chunks(converted),
                    )
        except PacsFailure:
            # Orthanc answers a retrieve of an unknown UID with 0xC000: find out
            # whether the object exists before calling it a PACS failure.
            if not delivered and not await _exists(pacs, keys):
                raise NotFound(f"{keys.describe()} not found on PACS '{pacs.name}'") from None
            raise

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
