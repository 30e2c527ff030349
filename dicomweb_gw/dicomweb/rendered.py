"""WADO-RS rendered and thumbnail resources (PS3.18 8.3.5, 10.4.1.1.3-4).

One image per request, from the cached instance file:

- instance and frame level: that instance; frame N, else the first frame
  (rendered) or the middle one (thumbnail). Multi-frame instances render a
  single frame, never an animation.
- series and study level: one representative instance. PS3.18 would have
  rendered series and studies as a multipart of every instance; we send one
  image, like the thumbnail: the first instance by InstanceNumber (rendered)
  or the middle one (thumbnail), of the first series by SeriesNumber that
  has images. Choosing retrieves (and caches) the whole series or study.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from io import BytesIO
from pathlib import Path

import anyio
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID

from dicomweb_gw.cache.protocol import CachedInstance
from dicomweb_gw.codecs.frames import FrameNotFound
from dicomweb_gw.codecs.part10 import part10_chunks
from dicomweb_gw.codecs.render import RenderParams, Viewport, render_frame
from dicomweb_gw.dicomweb.flights import Landed
from dicomweb_gw.dicomweb.pixels import PixelService, evicted_as_503, on_disk
from dicomweb_gw.errors import NotAcceptable, NotFound
from dicomweb_gw.model import InstanceHandle, MemoryInstance, RetrieveKeys
from dicomweb_gw.pacs.protocol import PacsClient

__all__ = ["THUMBNAIL_VIEWPORT", "NoPixelData", "RenderService"]

THUMBNAIL_VIEWPORT = (128, 128)  # when a thumbnail request has no viewport
_HEADERS = 256  # parsed headers kept (a few KB each): a series' thumbnails, a few frames
_ORDERS = 20_000  # instances whose place in their series is remembered (~200 bytes each)
_ORDER_TAGS = ["SeriesNumber", "InstanceNumber", "Rows"]


class NoPixelData(NotAcceptable):
    """The resource has nothing to render (a structured report, say)."""


@dataclass(frozen=True)
class _Place:
    """What orders an instance among the others, read from its header."""

    series_number: int
    instance_number: int
    is_image: bool


@dataclass(frozen=True)
class _Candidate:
    place: _Place
    series_uid: str
    sop_instance_uid: str
    handle: InstanceHandle

    @property
    def order(self) -> tuple[int, str, int, str]:
        return (self.place.series_number, self.series_uid, self.place.instance_number,
                self.sop_instance_uid)


def _first(items: Sequence[_Candidate]) -> _Candidate:
    return items[0]


def _middle(items: Sequence[_Candidate]) -> _Candidate:
    return items[len(items) // 2]


class RenderService:
    def __init__(self, pixels: PixelService, *, render_threads: int = 2) -> None:
        self._pixels = pixels
        # Rendering is CPU-bound: a few threads, so it cannot starve frame serving.
        self._limiter = anyio.CapacityLimiter(render_threads)
        self._headers: OrderedDict[tuple[Path, int], Dataset] = OrderedDict()
        self._lock = threading.Lock()  # the caches below are used from several threads
        # A warm series thumbnail would otherwise reread every instance's header.
        self._places: OrderedDict[tuple[Path, int], _Place] = OrderedDict()

    async def rendered(self, pacs: PacsClient, keys: RetrieveKeys, frame: int | None,
                       params: RenderParams) -> bytes:
        """Frame ``frame`` (default: the first) of the instance, or of the first instance
        of a series or study, encoded as ``params.media_type``."""
        handle = await self._choose(pacs, keys, _first)
        return await self._render(handle, frame, params, middle_frame=False)

    async def thumbnail(self, pacs: PacsClient, keys: RetrieveKeys, frame: int | None,
                        params: RenderParams) -> bytes:
        """A small image of the middle instance (and, of a multi-frame one, its middle frame)."""
        if params.viewport is None:
            params = replace(params, viewport=Viewport(*THUMBNAIL_VIEWPORT))
        handle = await self._choose(pacs, keys, _middle)
        return await self._render(handle, frame, params, middle_frame=True)

    # -- which instance ------------------------------------------------------

    async def _choose(self, pacs: PacsClient, keys: RetrieveKeys,
                      pick: Callable[[Sequence[_Candidate]], _Candidate]) -> InstanceHandle:
        if keys.instance_uid is not None:
            return await self._pixels.instance(pacs, keys)
        landed: list[Landed] = []
        async with aclosing(self._pixels.source.instances(pacs, keys)) as arriving:
            async for item in arriving:
                landed.append(item)
        if not landed:
            raise NotFound(f"{keys.describe()} not found on PACS '{pacs.name}'")
        with evicted_as_503():
            candidates = await anyio.to_thread.run_sync(self._candidates, landed)
        images = sorted((c for c in candidates if c.place.is_image), key=lambda c: c.order)
        if not images:
            raise NoPixelData(f"{keys.describe()} has no instance with pixel data to render")
        first_series = images[0].series_uid
        return pick([c for c in images if c.series_uid == first_series]).handle

    # -- rendering -----------------------------------------------------------

    async def _render(self, handle: InstanceHandle, frame: int | None, params: RenderParams, *,
                      middle_frame: bool) -> bytes:
        with evicted_as_503(), on_disk(handle) as path:
            return await anyio.to_thread.run_sync(
                self._render_file, path, isinstance(handle, CachedInstance), frame, params,
                middle_frame, limiter=self._limiter)

    def _render_file(self, path: Path, cached: bool, frame: int | None, params: RenderParams,
                     middle_frame: bool) -> bytes:
        """Worker thread: header, frame, pixels, encoded image."""
        header = self._header(path) if cached else dcmread(path, stop_before_pixels=True)
        try:
            reader = self._pixels.reader(path)
        except FrameNotFound:
            raise NoPixelData(_no_pixels_message(header, params.media_type)) from None
        if frame is None:
            total = reader.info.number_of_frames
            frame = (total + 1) // 2 if middle_frame else 1
        return render_frame(reader, frame, header, params)

    def _header(self, path: Path) -> Dataset:
        """The attributes before the pixel data, parsed once per cache file."""
        key = (path, path.stat().st_mtime_ns)  # a re-cached file is parsed anew
        with self._lock:
            header = self._headers.get(key)
            if header is not None:
                self._headers.move_to_end(key)
                return header
        header = dcmread(path, stop_before_pixels=True)
        with self._lock:
            self._headers[key] = header
            while len(self._headers) > _HEADERS:
                self._headers.popitem(last=False)
        return header

    def _candidates(self, landed: list[Landed]) -> list[_Candidate]:
        """Each instance with its place in the study (worker thread)."""
        return [_Candidate(self._place(item.handle), item.series_uid, item.sop_instance_uid,
                           item.handle) for item in landed]

    def _place(self, handle: InstanceHandle) -> _Place:
        if isinstance(handle, MemoryInstance):
            return _place(BytesIO(b"".join(part10_chunks(handle.instance))))
        key = (handle.path, handle.path.stat().st_mtime_ns)
        with self._lock:
            place = self._places.get(key)
        if place is None:
            place = _place(handle.path)
            with self._lock:
                self._places[key] = place
                while len(self._places) > _ORDERS:
                    self._places.popitem(last=False)
        return place


def _place(source: Path | BytesIO) -> _Place:
    header = dcmread(source, stop_before_pixels=True, specific_tags=_ORDER_TAGS)
    return _Place(_integer(header.get("SeriesNumber")), _integer(header.get("InstanceNumber")),
                  "Rows" in header)


def _integer(value: object) -> int:
    """An IS value for sorting; absent or malformed ones sort last."""
    try:
        return int(str(value)) if value not in (None, "") else 2**31
    except ValueError:
        return 2**31


def _no_pixels_message(header: Dataset, media_type: str) -> str:
    sop_class = UID(str(header.get("SOPClassUID", "")))
    kind = f" ({sop_class.name})" if sop_class else ""
    uid = header.get("SOPInstanceUID", "")
    return f"instance {uid}{kind} has no pixel data, so it cannot be rendered as {media_type}"
