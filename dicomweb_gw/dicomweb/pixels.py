"""WADO-RS frames and bulk data, served from cached instance files.

A frame request for an uncached instance retrieves just that instance, never
the whole study; frames are cut from the file without decoding unless the
client needs them uncompressed.
"""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio

from dicomweb_gw.cache.protocol import CachedInstance
from dicomweb_gw.codecs.bulkdata import BulkLocation, locate, read_range
from dicomweb_gw.codecs.frames import FrameReader
from dicomweb_gw.codecs.mediatypes import (
    NATIVE_FRAME_SYNTAX,
    frame_media_type,
    is_native_syntax,
    part_content_type,
)
from dicomweb_gw.codecs.part10 import part10_chunks
from dicomweb_gw.dicomweb.selection import PixelRequest, choose_pixels
from dicomweb_gw.dicomweb.source import InstanceSource, MemoryInstance
from dicomweb_gw.dicomweb.wado import EVICTED_MESSAGE, CacheEvicted, Part, exists
from dicomweb_gw.errors import NotFound, PacsFailure
from dicomweb_gw.model import RetrieveKeys
from dicomweb_gw.pacs.protocol import PacsClient

__all__ = ["BulkData", "PixelService"]

PIXEL_DATA = 0x7FE00010
_READERS = 64  # parsed files kept: a viewer asks for the frames of a few instances at a time


@dataclass(frozen=True)
class BulkData:
    path: Path
    location: BulkLocation
    content_type: str
    keep: CachedInstance | None  # keeps the cache entry referenced while serving


class PixelService:
    def __init__(self, source: InstanceSource, *, codec_threads: int = 2) -> None:
        self._source = source
        self._codec_limiter = anyio.CapacityLimiter(codec_threads)
        self._readers: OrderedDict[tuple[Path, int], FrameReader] = OrderedDict()
        self._readers_lock = threading.Lock()

    async def frames(
        self, pacs: PacsClient, keys: RetrieveKeys, numbers: Sequence[int], request: PixelRequest
    ) -> list[Part]:
        # The warm path (the viewer's frame after frame) in one thread hop:
        # cache look-up, parsed file, frame bytes.
        with _evicted_as_503():
            warm = await anyio.to_thread.run_sync(self._warm_frames, keys, numbers, request)
        if warm is not None:
            return warm
        handle = await self._instance(pacs, keys)
        with _evicted_as_503(), _on_disk(handle) as path:
            reader = await anyio.to_thread.run_sync(self._reader, path)
            syntax = reader.info.transfer_syntax_uid
            as_stored, _ = choose_pixels(request, syntax, frame_media_type(syntax))
            if as_stored:
                return _parts(part_content_type(syntax),
                              await anyio.to_thread.run_sync(_stored, reader, numbers))
            frames = await anyio.to_thread.run_sync(_native, reader, numbers,
                                                    limiter=self._codec_limiter)
            return _parts(part_content_type(NATIVE_FRAME_SYNTAX), frames)

    def _warm_frames(
        self, keys: RetrieveKeys, numbers: Sequence[int], request: PixelRequest
    ) -> list[Part] | None:
        """Stored frames of a cached instance (worker thread); None to take the general path."""
        assert keys.instance_uid is not None
        cached = self._source.store.get(keys.instance_uid)
        if cached is None or cached.study_uid != keys.study_uid:
            return None
        reader = self._reader(cached.path)
        syntax = reader.info.transfer_syntax_uid
        as_stored, _ = choose_pixels(request, syntax, frame_media_type(syntax))
        if not as_stored:
            return None  # decoding goes through the codec limiter
        return _parts(part_content_type(syntax), _stored(reader, numbers))

    async def bulkdata(
        self, pacs: PacsClient, keys: RetrieveKeys, tag_path: Sequence[int | str],
        request: PixelRequest,
    ) -> BulkData | list[Part]:
        """One element's value; compressed pixel data comes as its frames instead.

        Encapsulated pixel data is item-encoded (offset table, fragments): no
        client could use those bytes, so it is served frame by frame, labelled
        with the media type of each frame, as for the frames resource.
        """
        handle = await self._instance(pacs, keys)
        if not isinstance(handle, CachedInstance):
            raise NotFound("bulk data of an instance the cache could not keep is not available")
        syntax = handle.transfer_syntax_uid
        if list(tag_path) == [PIXEL_DATA] and not is_native_syntax(syntax):
            reader = await anyio.to_thread.run_sync(self._reader, handle.path)
            numbers = range(1, reader.info.number_of_frames + 1)
            return await self.frames(pacs, keys, numbers, request)
        location = await anyio.to_thread.run_sync(locate, handle.path, tag_path)
        # Native bulk data is sent as it is in the file: octet-stream, little endian.
        choose_pixels(request, NATIVE_FRAME_SYNTAX, "application/octet-stream")
        return BulkData(handle.path, location, part_content_type(NATIVE_FRAME_SYNTAX), handle)

    async def read(self, bulk: BulkData, start: int = 0, end: int | None = None) -> bytes:
        with _evicted_as_503():
            return await anyio.to_thread.run_sync(read_range, bulk.path, bulk.location, start,
                                                  end)

    async def _instance(self, pacs: PacsClient, keys: RetrieveKeys) -> object:
        try:
            async with aclosing(self._source.instances(pacs, keys)) as landed:
                async for item in landed:
                    return item.handle
        except PacsFailure:
            if not await exists(pacs, keys):
                raise NotFound(f"{keys.describe()} not found on PACS '{pacs.name}'") from None
            raise
        raise NotFound(f"{keys.describe()} not found on PACS '{pacs.name}'")

    def _reader(self, path: Path) -> FrameReader:
        """A parsed reader per cache file, reused: a viewer asks frame by frame."""
        key = (path, path.stat().st_mtime_ns)  # a re-cached file is parsed anew
        with self._readers_lock:  # called from several worker threads at once
            reader = self._readers.get(key)
            if reader is not None:
                self._readers.move_to_end(key)
                return reader
        reader = FrameReader(path)
        with self._readers_lock:
            self._readers[key] = reader
            while len(self._readers) > _READERS:
                self._readers.popitem(last=False)
        return reader


def _parts(content_type: str, frames: list[bytes]) -> list[Part]:
    return [Part(content_type, (frame,)) for frame in frames]


def _stored(reader: FrameReader, numbers: Sequence[int]) -> list[bytes]:
    return [reader.stored(number) for number in numbers]


def _native(reader: FrameReader, numbers: Sequence[int]) -> list[bytes]:
    return [reader.native(number) for number in numbers]


@contextmanager
def _evicted_as_503() -> Iterator[None]:
    try:
        yield
    except FileNotFoundError:
        raise CacheEvicted(EVICTED_MESSAGE) from None


@contextmanager
def _on_disk(handle: object) -> Iterator[Path]:
    """A path to the instance: its cache file, or a temporary one for an uncached instance."""
    if isinstance(handle, CachedInstance):
        yield handle.path
        return
    assert isinstance(handle, MemoryInstance)
    with tempfile.NamedTemporaryFile(suffix=".dcm") as spill:
        for chunk in part10_chunks(handle.instance):
            spill.write(chunk)
        spill.flush()
        yield Path(spill.name)
