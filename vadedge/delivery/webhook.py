"""Webhook sink: HTTP POST of every event message (JSON body), spooled, in order, at-least-once.

A 2xx answer confirms a message. A connection error, a timeout, a 5xx, 408 or 429 leaves it at the
head of the spool and retries with backoff; any other 4xx means the receiver will never take it:
it is logged, counted as a failure and dropped so it cannot block later events. The same message
(same `id` and `message_id`) is sent again after a crash between sending and acknowledging, so
receivers that must not double-count de-duplicate on `message_id`.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import Backoff, FailureHook, SpooledSink, register, sink_id
from .messages import EventMessage

RETRY_STATUS = (408, 429)


@dataclass
class WebhookSettings:
    url: str
    timeout: float = 5.0  # seconds per request
    headers: dict[str, str] = field(default_factory=dict)
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    drain_timeout: float = 5.0  # on close: how long to keep delivering what is spooled

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"webhook url must be http(s)://host[:port]/path, got {self.url!r}")
        if not self.timeout > 0:
            raise ConfigError(f"webhook timeout must be > 0, got {self.timeout}")


@register("webhook", WebhookSettings)
class WebhookSink(SpooledSink):
    """POSTs messages to `settings.url` from a delivery thread; see module doc."""

    def __init__(self, settings: WebhookSettings, on_failure: Optional[FailureHook] = None) -> None:
        super().__init__(
            sink_id("webhook", settings.url),
            Backoff(settings.backoff_initial, settings.backoff_max),
            settings.drain_timeout,
            on_failure,
        )
        self.settings = settings

    def _deliver(self, message: EventMessage) -> bool:
        req = urllib.request.Request(
            self.settings.url,
            data=message.to_json().encode(),
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "vadedge", **self.settings.headers},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.settings.timeout) as resp:  # noqa: S310 - http(s) only
                resp.read()
                return 200 <= resp.status < 300
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500 and exc.code not in RETRY_STATUS:
                raise self.Rejected(f"HTTP {exc.code} {exc.reason}") from exc
            raise
