"""The durable, ordered on-disk journal every delivery sink reads from.

Layout in the spool folder: `queue.jsonl` (append-only; one message per line; each append is
written whole and fsynced before `put` returns) and one `offset-<reader>` file per sink (the byte
offset of the prefix that sink has delivered, replaced atomically and fsynced after each
acknowledged message). Once `put` returned, a message reaches every sink even if the process is
killed (SIGKILL) a moment later: on open, a torn last line is cut off, and every reader resumes
after its own offset. The offset is written after the delivery, so a kill between the two hands
that one message to the sink again (at-least-once, the same message). When every reader has
delivered everything, the queue file is truncated first and the offsets reset after, so a kill
in between leaves offsets past the end, which open treats as 0 of the now empty file. One queue
keeps messages in append order, hence in order per camera.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Optional, Union

from ..errors import DataError
from .durable import append_record, cut_torn_tail, fsync_dir

logger = logging.getLogger(__name__)


class Spool:
    """Append-only fsynced queue with one persisted delivered-offset per reader; thread-safe."""

    def __init__(self, folder: Union[str, Path]) -> None:
        self.folder = Path(folder)
        self._queue = self.folder / "queue.jsonl"
        self._cond = threading.Condition()
        self._readers: dict[str, SpoolReader] = {}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._fh = self._queue.open("ab+", buffering=0)
            self._size = cut_torn_tail(self._fh, self._queue)
        except OSError as exc:
            raise DataError(f"cannot use spool folder {self.folder}: {exc.strerror or exc}") from exc

    def reader(self, name: str) -> SpoolReader:
        """The reader `name` (a sink); it resumes after what it acknowledged in earlier runs."""
        if not re.match(r"^[A-Za-z0-9_.-]+$", name):
            raise ValueError(f"spool reader names are plain file names, got {name!r}")
        with self._cond:
            if name not in self._readers:
                self._readers[name] = SpoolReader(self, name)
            return self._readers[name]

    def put(self, line: str) -> None:
        """Append one message (one line of text); on disk for every reader when this returns."""
        if "\n" in line:
            raise ValueError("a spooled message must be one line")
        data = line.encode() + b"\n"
        with self._cond:
            try:
                append_record(self._fh, data, self._size)
            except OSError as exc:
                raise DataError(f"cannot write spool {self._queue}: {exc.strerror or exc}") from exc
            self._size += len(data)
            for r in self._readers.values():
                r.pending += 1
            self._cond.notify_all()

    def _read_at(self, offset: int) -> bytes:
        self._fh.seek(offset)
        return self._fh.readline()

    def _compact(self) -> None:
        """All readers are at the end: start the file afresh (called with the lock held)."""
        if self._size and all(r.offset >= self._size for r in self._readers.values()):
            os.ftruncate(self._fh.fileno(), 0)
            os.fsync(self._fh.fileno())
            self._size = 0
            for r in self._readers.values():
                r._write_offset(0)
            for f in self.folder.glob("offset-*"):  # sinks not open in this run start afresh later
                if f.name[len("offset-") :] not in self._readers:
                    f.unlink(missing_ok=True)

    def wake(self) -> None:
        """Wake readers blocked in `peek` (used when stopping)."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            if not self._fh.closed:
                self._fh.close()


class SpoolReader:
    """One sink's position in the spool: `peek` the oldest undelivered message, `ack` it."""

    def __init__(self, spool: Spool, name: str) -> None:
        self.spool, self.name = spool, name
        self._file = spool.folder / f"offset-{name}"
        try:
            value = int(self._file.read_text().strip() or 0)
        except FileNotFoundError:
            value = 0
        except (OSError, ValueError):
            logger.warning("spool %s: unreadable offset of %s; delivering everything again", spool.folder, name)
            value = 0
        self.offset = min(max(value, 0), spool._size)
        if self.offset and spool._read_at(self.offset - 1)[:1] != b"\n":
            self.offset = 0  # not on a line boundary: start over rather than send half a line
        spool._fh.seek(self.offset)
        self.pending = spool._fh.read(spool._size - self.offset).count(b"\n")
        if self.pending:
            logger.info("spool %s: %d undelivered messages for %s", spool.folder, self.pending, name)

    def peek(self, timeout: Optional[float] = None) -> Optional[str]:
        """The oldest message this reader has not acknowledged (waiting up to `timeout` s), or None."""
        sp = self.spool
        with sp._cond:
            if self.offset >= sp._size and timeout:
                sp._cond.wait(timeout)
            if self.offset >= sp._size or sp._fh.closed:
                return None
            return sp._read_at(self.offset)[:-1].decode()

    def ack(self, line: str) -> None:
        """Mark the message returned by `peek` delivered (persisted before returning)."""
        sp = self.spool
        with sp._cond:
            self.offset += len(line.encode()) + 1
            self.pending -= 1
            try:
                self._write_offset(self.offset)
                sp._compact()
            except OSError as exc:
                raise DataError(f"cannot write spool offset {self._file}: {exc.strerror or exc}") from exc

    def _write_offset(self, value: int) -> None:
        self.offset = value
        tmp = self._file.with_name(self._file.name + ".tmp")
        with tmp.open("w") as fh:
            fh.write(str(value))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._file)
        fsync_dir(self.spool.folder)
