"""The sink interface, the name -> sink registry, and the spooled base of the network sinks.

A sink takes `EventMessage`s in order (`send`) and releases its resources on `close`. Sinks are
built by name from a settings dataclass (`build_sink("webhook", {"url": ...}, state_dir)`), which
is what a config file will use. Network sinks (`SpooledSink`) only append the message to their
own durable `Spool` in `send`; a delivery thread sends the spool's head, retrying with capped,
jittered exponential backoff, and acknowledges it once the receiver confirmed it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Optional, Protocol, Union, runtime_checkable

from ..errors import ConfigError
from .messages import EventMessage
from .spool import SpoolReader

logger = logging.getLogger(__name__)


@runtime_checkable
class Sink(Protocol):
    """Where event messages go. Every sink reads the feed's shared spool through its own reader:
    `open(reader)` once, then the sink delivers in spool order and acknowledges each message.
    Synchronous sinks (JSON lines) also have `pump()`, called after each message is spooled."""

    name: str

    def open(self, reader: SpoolReader) -> None: ...

    def close(self) -> None: ...


_REGISTRY: dict[str, tuple[type, type]] = {}
# called as metrics hooks by sinks: (sink name) -> None
FailureHook = Callable[[str], None]


def register(kind: str, settings: type) -> Callable[[type], type]:
    """Class decorator: make a sink buildable by `kind` from a `settings` dataclass."""

    def deco(cls: type) -> type:
        _REGISTRY[kind] = (cls, settings)
        setattr(cls, "kind", kind)  # noqa: B010 - set on any class, typed or not
        return cls

    return deco


def sink_kinds() -> list[str]:
    from . import jsonl, mqtt, webhook  # noqa: F401 - registration side effects

    return sorted(_REGISTRY)


def build_sink(kind: str, settings: Union[Mapping[str, Any], Any], on_failure: Optional[FailureHook] = None) -> Sink:
    """Instantiate the sink registered as `kind` from a settings mapping (unknown keys are an error)
    or a settings dataclass; `on_failure(sink name)` is called on each failed delivery attempt."""
    cls = _sink_class(kind)[0]
    return cls(parse_settings(kind, settings), on_failure=on_failure)


def _sink_class(kind: str) -> tuple[type, type]:
    from . import jsonl, mqtt, webhook  # noqa: F401 - registration side effects

    if kind not in _REGISTRY:
        raise ConfigError(f"unknown sink {kind!r}; known: {', '.join(sink_kinds())}")
    return _REGISTRY[kind]


def parse_settings(kind: str, settings: Union[Mapping[str, Any], Any]) -> Any:
    """The settings dataclass of sink `kind` from a mapping (unknown keys and bad values are a
    ConfigError), or `settings` itself when it already is one; checks without opening anything."""
    settings_cls = _sink_class(kind)[1]
    if isinstance(settings, Mapping):
        names = {f.name for f in dataclasses.fields(settings_cls)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise ConfigError(
                f"sink {kind!r}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
        try:
            settings = settings_cls(**settings)
        except TypeError as exc:
            raise ConfigError(f"sink {kind!r}: {exc}") from exc
    return settings


@dataclasses.dataclass
class Backoff:
    """Exponential backoff: `initial` * 2**n seconds, capped at `maximum`, each wait drawn uniformly
    from [ (1 - jitter) * d, d ] so reconnecting clients do not retry in lock-step."""

    initial: float = 0.5
    maximum: float = 30.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum) or not (0 <= self.jitter <= 1):
            raise ConfigError(f"backoff needs 0 < initial <= maximum and 0 <= jitter <= 1, got {self}")

    def delay(self, attempt: int) -> float:
        d = min(self.maximum, self.initial * (2 ** min(attempt, 30)))
        return d * (1 - self.jitter * random.random())


def sink_id(kind: str, key: str) -> str:
    """A stable, file-name-safe sink name: kind + a short hash of what identifies it (url, path)."""
    return f"{kind}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


class SpooledSink:
    """Base of the network sinks: a thread delivers the head of the sink's spool reader in order.

    Subclasses implement `_deliver(message) -> bool` (True: confirmed, False: try again later;
    raising `Rejected` drops the message as undeliverable).
    """

    kind: ClassVar[str] = "spooled"

    class Rejected(Exception):
        """The receiver refused the message for good (it would never accept it)."""

    def __init__(
        self, name: str, backoff: Backoff, drain_timeout: float, on_failure: Optional[FailureHook] = None
    ) -> None:
        self.name = name
        self.reader: Optional[SpoolReader] = None
        self.backoff = backoff
        self.drain_timeout = drain_timeout
        self.delivered = 0
        self.failures = 0
        self._on_failure = on_failure
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def open(self, reader: SpoolReader) -> None:
        """Start delivering from `reader` in a daemon thread."""
        self.reader = reader
        self._thread = threading.Thread(target=self._loop, name=f"vadedge-{self.name}", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Messages spooled for this sink and not yet confirmed."""
        return self.reader.pending if self.reader is not None else 0

    def _deliver(self, message: EventMessage) -> bool:
        raise NotImplementedError

    def _failed(self, why: str) -> None:
        self.failures += 1
        if self._on_failure is not None:
            self._on_failure(self.name)
        logger.debug("%s: delivery failed: %s", self.name, why)

    def _loop(self) -> None:
        assert self.reader is not None
        attempt = 0
        while not self._stop.is_set():
            line = self.reader.peek(timeout=0.5)
            if line is None:
                continue
            message = EventMessage.from_dict(json.loads(line))
            try:
                ok = self._deliver(message)
            except self.Rejected as exc:
                logger.error(
                    "%s: receiver rejected event %s (%s) for good; dropped: %s",
                    self.name,
                    message.id,
                    message.type,
                    exc,
                )
                self._failed(str(exc))
                self.reader.ack(line)
                continue
            except Exception as exc:  # noqa: BLE001 - any transport error: retry later
                ok = False
                why = f"{type(exc).__name__}: {exc}"
            else:
                why = "not confirmed"
            if ok:
                self.reader.ack(line)
                self.delivered += 1
                attempt = 0
                continue
            self._failed(why)
            if attempt == 0:
                logger.warning("%s: cannot deliver (%s); spooling and retrying with backoff", self.name, why)
            self._stop.wait(self.backoff.delay(attempt))
            attempt += 1

    def close(self) -> None:
        """Give the thread up to `drain_timeout` s to deliver what is spooled, then stop; anything
        undelivered stays in the spool for the next run."""
        deadline = time.monotonic() + self.drain_timeout
        while self.pending and time.monotonic() < deadline and self._thread and self._thread.is_alive():
            time.sleep(0.05)
        self._stop.set()
        if self.reader is not None:
            self.reader.spool.wake()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.pending:
            logger.warning("%s: %d messages stay spooled for the next run", self.name, self.pending)
