"""WADO-RS frames and bulk data, served from cached instance files.

A frame request for an uncached instance retrieves just that instance, never
the whole study; frames are cut from the file without decoding unless the
client needs them uncompressed or in another syntax, and then only the frames
asked for are decoded (and encoded), off the event loop under the codec
limiter, and kept in a small LRU for the viewer's next pass.
"""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import anyio

from dicomweb_gw.cache.protocol import CachedInstance
from dicomweb_gw.codecs.bulkdata import BulkLocation, locate, read_range
from dicomweb_gw.codecs.decoders import FAST_DECODERS, decode_fast
from dicomweb_gw.codecs.frames import FrameReader
from dicomweb_gw.codecs.mediatypes import (
    NATIVE_FRAME_SYNTAX,
    frame_media_type,
    is_native_syntax,
    part_content_type,
)
from dicomweb_gw.codecs.part10 import part10_chunks
from dicomweb_gw.codecs.transcode import FrameCache, SampleFormat, encode_frame, sample_format
from dicomweb_gw.dicomweb.selection import PixelChoice, PixelRequest, choose_pixels
from dicomweb_gw.dicomweb.source import InstanceSource
from dicomweb_gw.dicomweb.wado import EVICTED_MESSAGE, CacheEvicted, Part, instance_path
from dicomweb_gw.errors import NotAcceptable, NotFound
from dicomweb_gw.model import InstanceHandle, RetrieveKeys
from dicomweb_gw.pacs.protocol import PacsClient

__all__ = ["BulkData", "PixelService", "evicted_as_503", "on_disk"]

PIXEL_DATA = 0x7FE00010
#: Parsed files kept (a few KB each: offsets and pixel options, no pixel data). A
#: viewer scrolls through whole series, 600 instances and more: 64 thrashed (the
#: 64-client soak spent a fifth of its time re-parsing headers).
_READERS = 2048
_FRAME_CACHE_BYTES = 64 * 1024 * 1024  # decoded/encoded frames kept, ~128 512x512 CT frames


@dataclass(frozen=True)
class BulkData:
    path: Path
    location: BulkLocation
    content_type: str
    keep: CachedInstance | None  # keeps the cache entry referenced while serving


class PixelService:
    def __init__(self, source: InstanceSource, *, codec_threads: int = 2,
                 frame_cache_bytes: int = _FRAME_CACHE_BYTES) -> None:
        self._source = source
        self._codec_limiter = anyio.CapacityLimiter(codec_threads)
        self._readers: OrderedDict[tuple[Path, int], FrameReader] = OrderedDict()
        self._readers_lock = threading.Lock()
        self._converted = FrameCache(frame_cache_bytes)

    async def frames(
        self, pacs: PacsClient, keys: RetrieveKeys, numbers: Sequence[int], request: PixelRequest
    ) -> list[Part]:
        """The frames ``numbers``, each part located at its frame resource."""
        parts = await self._frames(pacs, keys, numbers, request)
        assert keys.series_uid is not None
        assert keys.instance_uid is not None
        instance = instance_path(keys.study_uid, keys.series_uid, keys.instance_uid)
        return [replace(part, location=f"{instance}/frames/{number}")
                for part, number in zip(parts, numbers, strict=True)]

    async def _frames(
        self, pacs: PacsClient, keys: RetrieveKeys, numbers: Sequence[int], request: PixelRequest
    ) -> list[Part]:
        # The warm path (the viewer's frame after frame) in one thread hop:
        # cache look-up, parsed file, frame bytes.
        with evicted_as_503():
            warm = await anyio.to_thread.run_sync(self._warm_frames, keys, numbers, request)
        if warm is not None:
            return warm
        handle = await self.instance(pacs, keys)
        with evicted_as_503(), on_disk(handle) as path:
            reader = await anyio.to_thread.run_sync(self.reader, path)
            choice = _choose(request, reader)
            if choice.as_stored:
                return _parts(choice, await anyio.to_thread.run_sync(_stored, reader, numbers))
            assert keys.instance_uid is not None
            frames = await anyio.to_thread.run_sync(self._convert, keys.instance_uid, reader,
                                                    numbers, choice, limiter=self._codec_limiter)
            return _parts(choice, frames)

    def _warm_frames(
        self, keys: RetrieveKeys, numbers: Sequence[int], request: PixelRequest
    ) -> list[Part] | None:
        """Stored (or already converted) frames of a cached instance (worker
        thread); None to take the general path."""
        assert keys.instance_uid is not None
        cached = self._source.store.get(keys.instance_uid)
        if cached is None or not keys.covers(cached.study_uid, cached.series_uid,
                                             cached.sop_instance_uid):
            return None  # the general path answers 404 for an instance under the wrong parents
        reader = self.reader(cached.path)
        choice = _choose(request, reader)
        if choice.as_stored:
            return _parts(choice, _stored(reader, numbers))
        frames = [self._converted.get(keys.instance_uid, number, choice.transfer_syntax)
                  for number in numbers]
        if any(frame is None for frame in frames):
            return None  # decoding and encoding go through the codec limiter
        return _parts(choice, [frame for frame in frames if frame is not None])

    def _convert(self, sop_instance_uid: str, reader: FrameReader, numbers: Sequence[int],
                 choice: PixelChoice) -> list[bytes]:
        """Frames decoded and, if asked, encoded: one frame at a time (worker thread)."""
        target = choice.transfer_syntax
        sample = _sample_format(reader.path)
        frames: list[bytes] = []
        for number in numbers:
            frame = self._converted.get(sop_instance_uid, number, target)
            if frame is None:
                frame = _native(reader, number, sample)
                if choice.action == "encode":
                    frame = encode_frame(frame, reader.native_info(), target, sample)
                self._converted.put(sop_instance_uid, number, target, frame)
            frames.append(frame)
        return frames

    async def bulkdata(
        self, pacs: PacsClient, keys: RetrieveKeys, tag_path: Sequence[int | str],
        request: PixelRequest,
    ) -> BulkData | list[Part]:
        """One element's value; compressed pixel data comes as its frames instead.

        Encapsulated pixel data is item-encoded (offset table, fragments): no
        client could use those bytes, so it is served frame by frame, labelled
        with the media type of each frame, as for the frames resource.
        """
        handle = await self.instance(pacs, keys)
        if not isinstance(handle, CachedInstance):
            raise NotFound("bulk data of an instance the cache could not keep is not available")
        syntax = handle.transfer_syntax_uid
        if list(tag_path) == [PIXEL_DATA] and not is_native_syntax(syntax):
            reader = await anyio.to_thread.run_sync(self.reader, handle.path)
            numbers = range(1, reader.info.number_of_frames + 1)
            return await self.frames(pacs, keys, numbers, request)
        location = await anyio.to_thread.run_sync(locate, handle.path, tag_path)
        # Native bulk data is sent as it is in the file: octet-stream, little endian.
        choose_pixels(request, NATIVE_FRAME_SYNTAX, "application/octet-stream", encode=False)
        return BulkData(handle.path, location, part_content_type(NATIVE_FRAME_SYNTAX), handle)

    async def read(self, bulk: BulkData, start: int = 0, end: int | None = None) -> bytes:
        with evicted_as_503():
            return await anyio.to_thread.run_sync(read_range, bulk.path, bulk.location, start,
                                                  end)

    @property
    def source(self) -> InstanceSource:
        return self._source

    async def instance(self, pacs: PacsClient, keys: RetrieveKeys) -> InstanceHandle:
        """The instance under ``keys``: a CachedInstance, or a MemoryInstance the cache refused."""
        async with aclosing(self._source.instances(pacs, keys)) as landed:
            async for item in landed:
                return item.handle
        raise NotFound(f"{keys.describe()} not found on PACS '{pacs.name}'")

    def reader(self, path: Path) -> FrameReader:
        """A parsed reader per cache file, reused: a viewer asks frame by frame."""
        key = (path, path.stat().st_mtime_ns)  # a re-cached file is parsed anew
        with self._readers_lock:  # called from several worker threads at once
            reader = self._readers.get(key)
            if reader is not None:
                self._readers.move_to_end(key)
                return reader
        reader = FrameReader(path)
        if reader.holds_pixel_data:
            return reader
        with self._readers_lock:
            self._readers[key] = reader
            while len(self._readers) > _READERS:
                self._readers.popitem(last=False)
        return reader


def _choose(request: PixelRequest, reader: FrameReader) -> PixelChoice:
    syntax = reader.info.transfer_syntax_uid
    try:
        media_type: str | None = frame_media_type(syntax)
    except NotAcceptable:
        media_type = None  # video and the like: frames can only be decoded
    return choose_pixels(request, syntax, media_type)


def _parts(choice: PixelChoice, frames: list[bytes]) -> list[Part]:
    # The label follows the bytes: the stored syntax, Explicit VR Little
    # Endian for native frames, or the syntax they were encoded in.
    content_type = part_content_type(choice.transfer_syntax)
    return [Part(content_type, (frame,)) for frame in frames]


def _native(reader: FrameReader, number: int, sample: SampleFormat) -> bytes:
    """Frame ``number`` decoded: by imagecodecs where it is the faster decoder
    (codecs/decoders.py), else by the reader (pydicom's decoders)."""
    stored_syntax = reader.info.transfer_syntax_uid
    if stored_syntax in FAST_DECODERS:
        fast = decode_fast(stored_syntax, reader.stored(number), reader.native_info(), sample)
        if fast is not None:
            return fast
    return reader.native(number)


def _stored(reader: FrameReader, numbers: Sequence[int]) -> list[bytes]:
    return [reader.stored(number) for number in numbers]


@lru_cache(maxsize=_READERS)
def _sample_format_at(path: Path, mtime_ns: int) -> SampleFormat:
    return sample_format(path)


def _sample_format(path: Path) -> SampleFormat:
    """Bits Stored and Pixel Representation, read once per cache file: encoders need them."""
    return _sample_format_at(path, path.stat().st_mtime_ns)


@contextmanager
def evicted_as_503() -> Iterator[None]:
    try:
        yield
    except FileNotFoundError:
        raise CacheEvicted(EVICTED_MESSAGE) from None


@contextmanager
def on_disk(handle: InstanceHandle) -> Iterator[Path]:
    """A path to the instance: its cache file, or a temporary one for an uncached instance."""
    if isinstance(handle, CachedInstance):
        yield handle.path
        return
    with tempfile.NamedTemporaryFile(suffix=".dcm") as spill:
        for chunk in part10_chunks(handle.instance):
            spill.write(chunk)
        spill.flush()
        yield Path(spill.name)
