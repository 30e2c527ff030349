"""WADO-RS retrieve: instances become parts, from the cache or as they arrive from the PACS."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass

import anyio
from pydicom import uid

from dicomweb_gw.cache.protocol import CachedInstance
from dicomweb_gw.codecs.part10 import instance_from_file, part10_chunks
from dicomweb_gw.codecs.transcode import TranscodeError, producible, transcode_instance
from dicomweb_gw.dicomweb.flights import Landed
from dicomweb_gw.dicomweb.selection import InstanceSelection
from dicomweb_gw.dicomweb.source import InstanceSource
from dicomweb_gw.errors import GatewayError
from dicomweb_gw.model import InstanceHandle, MemoryInstance, RetrievedInstance, RetrieveKeys
from dicomweb_gw.pacs.protocol import PacsClient

__all__ = ["InstanceSelection", "Part", "WadoService", "instance_path"]


@dataclass(frozen=True, slots=True)
class Part:
    content_type: str
    chunks: tuple[bytes, ...]
    #: The resource the part is, relative to the DICOMweb base (``studies/…/instances/…``):
    #: its Content-Location (PS3.18 8.6.1.2), once the HTTP layer prefixes the base URL.
    location: str | None = None


def instance_path(study_uid: str, series_uid: str, sop_instance_uid: str) -> str:
    """An instance's resource path, relative to the DICOMweb base."""
    return f"studies/{study_uid}/series/{series_uid}/instances/{sop_instance_uid}"


EVICTED_MESSAGE = ("an instance was evicted from the cache while being served (the cache is "
                   "too small for the traffic); retry the request")


class CacheEvicted(GatewayError):
    status_code = 503


class ConversionFailed(GatewayError):
    status_code = 406


class WadoService:
    def __init__(self, source: InstanceSource, *, codec_threads: int = 2) -> None:
        self._source = source
        # Decompression is CPU-bound: a small pool so two cores are not oversubscribed.
        self._codec_limiter = anyio.CapacityLimiter(codec_threads)

    @property
    def source(self) -> InstanceSource:
        return self._source

    async def retrieve(
        self, pacs: PacsClient, keys: RetrieveKeys, selection: InstanceSelection
    ) -> AsyncGenerator[Part, None]:
        async with aclosing(self._source.instances(pacs, keys)) as landed:
            if selection.provisional:
                # Whether each instance can be sent depends on its stored syntax
                # alone: know them all before the first part, so that a refusal
                # is a 406 rather than a multipart stream broken off midway.
                items = [item async for item in landed]
                _check_sendable(items, selection)
                for item in items:
                    yield await self._part(item, selection)
                return
            async for item in landed:
                yield await self._part(item, selection)

    async def _part(self, item: Landed, selection: InstanceSelection) -> Part:
        handle = item.handle
        location = instance_path(item.study_uid, item.series_uid, item.sop_instance_uid)
        stored = _stored_syntax(handle)
        targets = selection.candidates(stored)
        try:
            if isinstance(handle, CachedInstance) and targets[:1] in ([None], [stored]):
                # The cache file is already the Part 10 file to send: no parsing at all.
                body = await anyio.Path(handle.path).read_bytes()
                return Part(_content_type(stored), (body,), location)
            instance = await anyio.to_thread.run_sync(as_retrieved, handle)
        except FileNotFoundError:
            raise CacheEvicted(EVICTED_MESSAGE) from None
        converted = await self._convert(instance, targets)
        return Part(_content_type(converted.transfer_syntax_uid), part10_chunks(converted),
                    location)

    async def _convert(
        self, instance: RetrievedInstance, targets: list[str | None]
    ) -> RetrievedInstance:
        """The instance in the first target it can be produced in; the later
        targets are the client's fallbacks for when an encoder refuses it."""
        failures: list[str] = []
        for wanted in targets:
            if wanted is None or instance.transfer_syntax_uid == wanted:
                return instance
            try:
                return await anyio.to_thread.run_sync(
                    transcode_instance, instance, wanted, limiter=self._codec_limiter
                )
            except TranscodeError as exc:
                failures.append(exc.message)
        stored = uid.UID(instance.transfer_syntax_uid)
        available = ", ".join(producible(stored))
        raise ConversionFailed(
            f"instance {instance.sop_instance_uid} is stored as {stored.name} and could not be "
            f"sent in any accepted transfer syntax ({'; '.join(failures) or 'none accepted'}); "
            f"ask with transfer-syntax=* to get it as stored (the gateway can produce: "
            f"{available})"
        )


def _check_sendable(items: list[Landed], selection: InstanceSelection) -> None:
    """406 if an instance cannot be sent in any syntax ``selection`` accepts."""
    for item in items:
        stored = _stored_syntax(item.handle)
        if not selection.candidates(stored):
            raise ConversionFailed(selection.refusal(item.sop_instance_uid, stored))


def _stored_syntax(handle: InstanceHandle) -> str:
    if isinstance(handle, CachedInstance):
        return handle.transfer_syntax_uid
    return handle.instance.transfer_syntax_uid


def _content_type(transfer_syntax_uid: str) -> str:
    return f"application/dicom; transfer-syntax={transfer_syntax_uid}"


def as_retrieved(handle: InstanceHandle) -> RetrievedInstance:
    """The instance's bytes, from the cache file or from memory (worker thread)."""
    if isinstance(handle, MemoryInstance):
        return handle.instance
    return instance_from_file(handle.path)
