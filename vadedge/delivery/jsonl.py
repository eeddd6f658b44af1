"""JSON-lines event sink: append-only, one fsynced line per message, rotated by size.

Lines are taken from the feed's spool in order, so a message spooled before a kill is written
after the restart, once (a line already written is recognised by its message_id). Opening never
truncates: records of earlier runs stay, and a torn last line left by a kill is cut off first, so
the file always holds whole lines. When a record would take the file past `max_bytes`, the file
is renamed to `<name>.1` (older ones shift to `.2` ... `.<keep>`, the oldest is removed) and a
new file is started.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import ConfigError, DataError
from .base import FailureHook, register, sink_id
from .durable import append_record, cut_torn_tail
from .spool import SpoolReader

logger = logging.getLogger(__name__)


@dataclass
class JsonLinesSettings:
    path: str
    max_bytes: int = 10 * 1024 * 1024  # rotate when the file would grow past this (0: never)
    keep: int = 5  # rotated files kept

    def __post_init__(self) -> None:
        if self.max_bytes < 0 or self.keep < 1:
            raise ConfigError(f"jsonl sink: max_bytes must be >= 0 and keep >= 1, got {self.max_bytes}, {self.keep}")


@register("jsonl", JsonLinesSettings)
class JsonLinesSink:
    """Appends each message as one JSON line, fsynced before `send` returns."""

    def __init__(self, settings: JsonLinesSettings, on_failure: Optional[FailureHook] = None) -> None:
        self.settings = settings
        self.path = Path(settings.path)
        self.name = sink_id("jsonl", str(self.path.absolute()))
        self._on_failure = on_failure
        self.written = 0
        self.reader: Optional[SpoolReader] = None
        self._last_id: Optional[str] = None  # message_id of the file's last line
        self._open()

    def open(self, reader: SpoolReader) -> None:
        """Take messages from `reader`; catch up with what an earlier run spooled but did not write."""
        self.reader = reader
        head = reader.peek()
        if head is not None and self._last_id is not None and json.loads(head).get("message_id") == self._last_id:
            reader.ack(head)  # written, then killed before the acknowledgement: not twice
        self.pump()

    def pump(self) -> None:
        """Write every spooled message not yet written (called after each message is spooled)."""
        assert self.reader is not None
        while (line := self.reader.peek()) is not None:
            self._write(line)
            self.reader.ack(line)

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("ab+", buffering=0)
            size = cut_torn_tail(self._fh, self.path)
            self._size = size
            if size:
                self._fh.seek(0)
                last = self._fh.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
                try:
                    self._last_id = json.loads(last).get("message_id")
                except ValueError:
                    self._last_id = None
        except OSError as exc:
            raise DataError(f"cannot write events to {self.path}: {exc.strerror or exc}") from exc

    def _rotate(self) -> None:
        self._fh.close()
        keep = self.settings.keep
        oldest = self.path.with_name(f"{self.path.name}.{keep}")
        if oldest.exists():
            oldest.unlink()
        for i in range(keep - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._open()

    def _write(self, line: str) -> None:
        data = (line + "\n").encode()
        try:
            if self.settings.max_bytes and self._size and self._size + len(data) > self.settings.max_bytes:
                self._rotate()
            append_record(self._fh, data, self._size)
        except OSError as exc:
            if self._on_failure is not None:
                self._on_failure(self.name)
            raise DataError(f"cannot write events to {self.path}: {exc.strerror or exc}") from exc
        self._size += len(data)
        self.written += 1
        self._last_id = None

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
