"""Frame sources: camera index / /dev/videoN, video file, rtsp:// or http:// URL, frames folder, or any
iterable of frames. Decoding runs in its own thread, so inference never waits on a decoder.

* Files, folders and iterables are *paced by the consumer*: the decoder thread stays at most
  `queue_size` frames ahead and nothing is dropped.
* Live sources (cameras, URLs) never block the decoder: when the consumer falls behind, the oldest
  queued frame is dropped and counted in `Source.dropped`, so results stay current. A read failure
  on a live source releases the capture and reopens it with exponential backoff (`reconnects`),
  each attempt logged at WARNING; after `max_reconnects` attempts in a row that brought no frame
  the source fails with a DataError (None = retry forever).
* A URL is live or finite by what it reports: a remote file with a frame count (an ordinary video
  served over HTTP) is read like a local file, paced by the consumer, and ends at its last frame.
* `sample_at(fps)` (or `open_source(..., sample_fps=)`) keeps frames at a uniform stride in time,
  the model's trained rate, in the decoder thread (`vadedge.runtime.sampling`): a 30 fps video
  scored by a 10 fps model yields every 3rd frame (`Frame.index` stays the source's index,
  `Source.skipped` counts the others); a source slower than that rate is warned about once.
  A source that reports no rate (a frames folder without `fps`) is taken to run at that rate.
* Opening a camera / URL runs in a helper thread that the caller waits on, so Ctrl-C (or SIGTERM)
  interrupts an open that FFmpeg would otherwise block for its whole timeout.

    with open_source("rtsp://cam/stream") as src:
        for f in src:                  # Frame(image BGR uint8, index, timestamp)
            det.process(f.image, f.timestamp)
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import cv2
import numpy as np

from ..datasets import list_frame_files, read_image
from ..errors import DataError
from .sampling import FrameSampler

logger = logging.getLogger(__name__)
DEFAULT_MAX_RECONNECTS = 10  # attempts in a row without a frame before a live source gives up
OPEN_TIMEOUT_S = 10.0  # FFmpeg open / read timeout for URLs (the open itself stays interruptible)
URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
_CAMERA = re.compile(r"^(?:camera|cam)?(\d+)$", re.IGNORECASE)
_END = object()


@dataclass
class Frame:
    """One decoded frame: BGR uint8 image, its index in the source and a timestamp in seconds.

    Files and folders give media time (index / fps); live sources give wall-clock time.
    """

    image: np.ndarray
    index: int
    timestamp: float


class Source:
    """Base class: subclasses implement `_open()`, `_read() -> image | None` and `_release()`."""

    live = False

    def __init__(self, name: str, *, queue_size: Optional[int] = None, fps: Optional[float] = None) -> None:
        self.name = name
        self.fps = fps
        self.total: Optional[int] = None  # frame count when known (files, folders)
        self.dropped = 0  # frames discarded because the consumer was behind (live sources)
        self.reconnects = 0
        self.decoded = 0
        self.skipped = 0  # frames left out by the sampler (a source faster than the model's rate)
        self.sampler: Optional[FrameSampler] = None
        self._assumed_fps: Optional[float] = None  # the sampling rate, for a source that reports none
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size or (2 if self.live else 16))
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._opened = False

    # subclass hooks -------------------------------------------------------------
    def _open(self) -> None:
        """Open the device / file; raise DataError if it cannot be opened."""

    def _read(self) -> Optional[np.ndarray]:
        raise NotImplementedError

    def _release(self) -> None:
        """Release the device / file."""

    def _timestamp(self, index: int) -> float:
        return time.time() if self.live else index / (self.fps or self._assumed_fps or 25.0)

    @property
    def output_fps(self) -> Optional[float]:
        """The rate of the frames this source yields: the sampling rate when it subsamples, else its own."""
        own = self.fps or self._assumed_fps
        if self.sampler is not None and (own is None or own > self.sampler.target_fps):
            return self.sampler.target_fps
        return own

    def sample_at(self, fps: Optional[float]) -> Source:
        """Keep frames at `fps` from their timestamps (None: keep every frame); call before iterating.

        A finite source that reports no frame rate is taken to run at `fps` (nothing is skipped).
        """
        if self._thread is not None:
            raise RuntimeError("sample_at() must be called before the source is iterated")
        if fps is None:
            self.sampler = None
            return self
        self.sampler = FrameSampler(fps, name=self.name)
        if self.fps:
            self.sampler.note_source_fps(self.fps)
        elif not self.live:
            self._assumed_fps = self.sampler.target_fps
            logger.info(
                "%s reports no frame rate: taken to run at the model's %g fps (pass fps / --fps to say otherwise)",
                self.name,
                self.sampler.target_fps,
            )
        return self

    # public -----------------------------------------------------------------------
    def open(self) -> Source:
        """Open now (errors surface here rather than on the first frame)."""
        if not self._opened:
            self._open()
            self._opened = True
        return self

    def __enter__(self) -> Source:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        for item in self.poll():
            if item is not None:
                yield item

    def poll(self, idle: float = 0.25) -> Iterator[Optional[Frame]]:
        """Like iterating, but yields None whenever no frame arrived for `idle` seconds, so a
        caller can notice a live source that is down (reconnecting) while it waits."""
        self.open()
        if self._thread is None:
            self._thread = threading.Thread(target=self._worker, name=f"vadedge-decode-{self.name}", daemon=True)
            self._thread.start()
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=idle)
            except queue.Empty:
                if self._thread is not None and not self._thread.is_alive() and self._queue.empty():
                    return
                yield None
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    @property
    def queue_depth(self) -> int:
        """Decoded frames waiting in the queue for the consumer (approximate, like `Queue.qsize`)."""
        return self._queue.qsize()

    def request_stop(self) -> None:
        """Ask the decoder and the iterator to stop soon (safe to call from a signal handler)."""
        self._stop.set()

    def close(self) -> None:
        """Stop the decoder thread and release the source."""
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if self._opened:
            self._release()
            self._opened = False

    # decoder thread -----------------------------------------------------------------
    def _put(self, item: Any) -> None:
        if self.live and isinstance(item, Frame):
            while True:
                try:
                    self._queue.put_nowait(item)
                    return
                except queue.Full:
                    try:
                        old = self._queue.get_nowait()
                        if isinstance(old, Frame):
                            self.dropped += 1
                    except queue.Empty:
                        pass
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _worker(self) -> None:
        try:
            index = 0
            while not self._stop.is_set():
                img = self._read()
                if img is None:
                    break
                self.decoded += 1
                t = self._timestamp(index)
                index += 1
                if self.sampler is not None and not self.sampler.keep(t):
                    self.skipped += 1
                    continue
                self._put(Frame(img, index - 1, t))
        except BaseException as exc:  # surfaced to the consumer
            self._put(exc)
        finally:
            self._put(_END)

    def status(self) -> str:
        extra = f", {self.skipped} skipped by sampling" if self.sampler is not None else ""
        extra += f", {self.dropped} dropped" if self.live else ""
        extra += f", {self.reconnects} reconnects" if self.reconnects else ""
        return f"{self.name}: {self.decoded} frames decoded{extra}"


class FolderSource(Source):
    """A folder of image frames, in natural order of the file names."""

    def __init__(self, folder: Path, *, fps: Optional[float] = None, queue_size: Optional[int] = None) -> None:
        super().__init__(str(folder), queue_size=queue_size, fps=fps)
        self.folder = Path(folder)
        self._files: list[Path] = []
        self._pos = 0

    def _open(self) -> None:
        self._files = list_frame_files(self.folder)
        if not self._files:
            raise DataError(f"frames folder {self.folder} contains no images")
        self.total = len(self._files)
        self._pos = 0

    def _read(self) -> Optional[np.ndarray]:
        if self._pos >= len(self._files):
            return None
        img = read_image(self._files[self._pos])
        self._pos += 1
        return img


CaptureFactory = Callable[[Union[int, str]], Any]


def open_capture(target: Union[int, str], timeout: float = OPEN_TIMEOUT_S) -> Any:
    """cv2.VideoCapture; URLs get FFmpeg open / read timeouts of `timeout` seconds."""
    if isinstance(target, str) and target.lower().startswith(URL_SCHEMES):
        ms = int(timeout * 1000)
        return cv2.VideoCapture(
            target, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        )
    return cv2.VideoCapture(target)


class CaptureSource(Source):
    """OpenCV VideoCapture: video files (consumer-paced) and cameras / URLs (live, reconnecting).

    live=None decides after opening: finite when the capture reports a frame count (a remote file),
    live otherwise (a camera or stream). max_reconnects bounds the reconnect attempts in a row
    that bring no frame (None = forever).
    """

    def __init__(
        self,
        target: Union[int, str],
        *,
        live: Optional[bool],
        name: Optional[str] = None,
        fps: Optional[float] = None,
        queue_size: Optional[int] = None,
        capture_factory: Optional[CaptureFactory] = None,
        backoff: tuple[float, float] = (0.5, 10.0),
        max_reconnects: Optional[int] = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._auto_live = live is None
        self.live = True if live is None else live
        self._queue_size = queue_size
        super().__init__(name or str(target), queue_size=queue_size, fps=fps)
        self.target = target
        self._factory = capture_factory or open_capture
        self._cap: Any = None
        self.backoff = backoff
        self.max_reconnects = max_reconnects
        self._sleep = sleep
        self._failures = 0  # reconnect attempts since the last decoded frame

    def _describe(self) -> str:
        if isinstance(self.target, int):
            return f"camera {self.target} (/dev/video{self.target})"
        return f"{'stream' if self.live else 'video file'} {self.target}"

    def _connect(self) -> bool:
        cap = self._factory(self.target)
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            return False
        if self.live:
            try:
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep latency low where the backend supports it
            except Exception:
                pass
        self._cap = cap
        return True

    def _open(self) -> None:
        if not self._connect_interruptibly():
            hint = (
                " (is it connected, and not in use by another program?)"
                if isinstance(self.target, int)
                else " (is the URL reachable?)"
                if self.live
                else " (not a video, or a codec OpenCV lacks)"
            )
            raise DataError(f"cannot open {self._describe()}{hint}")
        if self.fps is None:
            fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
            self.fps = fps if 0 < fps < 1000 else None
        n = _frame_count(self._cap)
        if self._auto_live:
            self.live = n is None  # a stream reports no frame count; a remote file does
            self._queue = queue.Queue(maxsize=self._queue_size or (2 if self.live else 16))
            logger.info("%s: %s", self.target, "live stream" if self.live else f"finite video of {n} frames")
        if not self.live:
            self.total = n
        logger.debug(
            "opened %s: %s frames, %s fps",
            self._describe(),
            n if n is not None else "unknown",
            f"{self.fps:g}" if self.fps else "unknown",
        )

    def _connect_interruptibly(self) -> bool:
        """`_connect` in a helper thread, waited on in short slices so that a signal handler (Ctrl-C,
        SIGTERM) runs while FFmpeg blocks; an abandoned open releases its capture when it returns."""
        if threading.current_thread() is not threading.main_thread():
            return self._connect()
        done = threading.Event()
        box: dict[str, Any] = {}
        abandoned = threading.Event()

        def work() -> None:
            try:
                box["ok"] = self._connect()
            except BaseException as exc:  # surfaced below
                box["error"] = exc
            finally:
                done.set()
                if abandoned.is_set():
                    self._release()

        threading.Thread(target=work, name=f"vadedge-open-{self.name}", daemon=True).start()
        try:
            while not done.wait(0.1):
                pass
        except BaseException:
            abandoned.set()
            if done.is_set():
                self._release()
            raise
        if "error" in box:
            raise box["error"]
        return bool(box["ok"])

    def _read(self) -> Optional[np.ndarray]:
        while not self._stop.is_set():
            ok, img = self._cap.read() if self._cap is not None else (False, None)
            if ok and img is not None:
                self._failures = 0
                return img
            if not self.live:
                if self.total is not None and self.decoded < self.total:
                    logger.warning("%s ended after %d of %d frames", self._describe(), self.decoded, self.total)
                return None
            if not self._reconnect():
                return None
        return None

    def _reconnect(self) -> bool:
        """Reopen with exponential backoff, each attempt logged (WARNING); False when stopping.

        Raises DataError once `max_reconnects` attempts in a row brought no frame, which also
        bounds a URL that connects but never yields one.
        """
        delay, cap_delay = self.backoff
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        limit = "" if self.max_reconnects is None else f"/{self.max_reconnects}"
        while not self._stop.is_set():
            if self.max_reconnects is not None and self._failures >= self.max_reconnects:
                raise DataError(
                    f"lost {self._describe()} and could not reconnect after {self._failures} "
                    f"attempts without a frame (max_reconnects={self.max_reconnects})"
                )
            self._failures += 1
            logger.warning(
                "%s: no frame; reconnecting in %.1f s (attempt %d%s)", self._describe(), delay, self._failures, limit
            )
            self._sleep(delay)
            if self._stop.is_set():
                return False
            if self._connect():
                self.reconnects += 1
                logger.warning("%s: reconnected (%d reconnects so far)", self._describe(), self.reconnects)
                return True
            delay = min(delay * 2, cap_delay)
        return False

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class IterableSource(Source):
    """Any iterable of BGR uint8 frames (or (frame, timestamp) pairs): a custom source."""

    def __init__(
        self,
        frames: Iterable,
        *,
        name: str = "iterable",
        live: bool = False,
        fps: Optional[float] = None,
        queue_size: Optional[int] = None,
    ) -> None:
        self.live = live
        super().__init__(name, queue_size=queue_size, fps=fps)
        self._iterable = frames
        self._it: Optional[Iterator] = None
        self._ts: Optional[float] = None

    def _open(self) -> None:
        self._it = iter(self._iterable)

    def _read(self) -> Optional[np.ndarray]:
        assert self._it is not None, "read before open"
        try:
            item = next(self._it)
        except StopIteration:
            return None
        self._ts = None
        if isinstance(item, tuple):
            item, self._ts = item
        return item

    def _timestamp(self, index: int) -> float:
        return float(self._ts) if self._ts is not None else super()._timestamp(index)


def _frame_count(cap: Any) -> Optional[int]:
    """The capture's frame count, None when it reports none (a live stream or camera)."""
    try:
        n = float(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    except Exception:  # noqa: BLE001 - a capture without the property is a stream
        return None
    return int(n) if n > 0 and n < 2**31 else None


def parse_camera(spec: Union[str, int]) -> Optional[int]:
    """'camera0' / 'cam0' / '0' / 0 / '/dev/video0' -> 0; None if `spec` is not a camera."""
    if isinstance(spec, int):
        return spec
    m = _CAMERA.match(spec.strip())
    if m:
        return int(m.group(1))
    m = re.match(r"^/dev/video(\d+)$", spec.strip())
    return int(m.group(1)) if m else None


def open_source(
    spec: Union[str, int, Path, Iterable, Source],
    *,
    fps: Optional[float] = None,
    queue_size: Optional[int] = None,
    capture_factory: Optional[CaptureFactory] = None,
    backoff: tuple[float, float] = (0.5, 10.0),
    max_reconnects: Optional[int] = DEFAULT_MAX_RECONNECTS,
    live: Optional[bool] = None,
    sample_fps: Optional[float] = None,
) -> Source:
    """Open a frame source from a CLI-style spec, a Path, or an iterable of frames (see module doc).

    live=None: cameras are live, local files are not, a URL is live unless it reports a frame count.
    sample_fps: keep frames at this rate (a bundle's `Detector.frame_rate`; see `Source.sample_at`).

    Raises DataError for a missing file/folder, an unknown spec, or a camera / URL that cannot be
    opened (checked here, before any frame is read).
    """
    src = _open_source(
        spec,
        fps=fps,
        queue_size=queue_size,
        capture_factory=capture_factory,
        backoff=backoff,
        max_reconnects=max_reconnects,
        live=live,
    )
    return src.sample_at(sample_fps) if sample_fps is not None else src


def _open_source(
    spec: Union[str, int, Path, Iterable, Source],
    *,
    fps: Optional[float],
    queue_size: Optional[int],
    capture_factory: Optional[CaptureFactory],
    backoff: tuple[float, float],
    max_reconnects: Optional[int],
    live: Optional[bool],
) -> Source:
    if isinstance(spec, Source):
        return spec.open()
    if not isinstance(spec, (str, int, Path)):
        if isinstance(spec, np.ndarray):
            raise DataError("open_source got one array; pass an iterable of frames (e.g. a list or generator)")
        return IterableSource(spec, fps=fps, queue_size=queue_size, live=bool(live)).open()
    kw: dict[str, Any] = dict(fps=fps, queue_size=queue_size, capture_factory=capture_factory)
    cam = parse_camera(spec) if not isinstance(spec, Path) else None
    if cam is not None:
        dev = Path(f"/dev/video{cam}")
        if isinstance(spec, str) and spec.startswith("/dev/") and not dev.exists() and capture_factory is None:
            raise DataError(f"camera {spec} does not exist (no such device)")
        return CaptureSource(
            cam,
            live=True if live is None else live,
            name=f"camera{cam}",
            backoff=backoff,
            max_reconnects=max_reconnects,
            **kw,
        ).open()
    text = str(spec)
    if text.lower().startswith(URL_SCHEMES):
        return CaptureSource(text, live=live, backoff=backoff, max_reconnects=max_reconnects, **kw).open()
    path = Path(text)
    if path.is_dir():
        return FolderSource(path, fps=fps, queue_size=queue_size).open()
    if path.is_file():
        return CaptureSource(str(path), live=bool(live), name=path.name, **kw).open()
    raise DataError(
        f"source {text!r} not found: give a video file, a folder of frames, a camera "
        f"(camera0, 0, /dev/video0) or an rtsp:// / http:// URL"
    )
