"""Crash-safe file primitives shared by the spool, the JSON-lines sink and the event numbers.

Files are line-oriented and opened unbuffered in binary append mode ("ab+"). A record is written
whole and fsynced, or cut off again, so a file only ever holds complete lines; a line torn by a
kill (no newline at the end) is cut off when the file is opened.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)


def append_record(fh: IO[bytes], data: bytes, good_size: int) -> None:
    """Write `data` whole and fsync; on an OSError truncate back to `good_size`, then re-raise."""
    try:
        view = memoryview(data)
        while view:
            view = view[fh.write(view) :]
        os.fsync(fh.fileno())
    except OSError:
        try:
            os.ftruncate(fh.fileno(), good_size)  # never leave a partial line
        except OSError:
            pass
        raise


def cut_torn_tail(fh: IO[bytes], what: object) -> int:
    """Cut everything after the last newline (a write interrupted by a kill); returns the size."""
    size = os.fstat(fh.fileno()).st_size
    if size == 0:
        return 0
    fh.seek(size - 1)
    if fh.read(1) == b"\n":
        return size
    fh.seek(0)
    keep = fh.read().rfind(b"\n") + 1
    logger.warning("%s: dropping a torn last line (%d bytes)", what, size - keep)
    os.ftruncate(fh.fileno(), keep)
    os.fsync(fh.fileno())
    return keep


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
