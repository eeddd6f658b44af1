"""Event delivery (JSON lines, webhook, MQTT) and operations metrics; see docs/integrations.md.

`EventFeed` turns the detector's events into new / update / end `EventMessage`s for a list of
sinks built by name with `build_sink(kind, settings)`. Each message is first appended to one
fsynced spool; every sink reads it in order through its own persisted offset (at-least-once).
`Metrics` serves Prometheus metrics and /healthz. paho-mqtt and prometheus-client (the
`integrations` extra) are imported only when an MQTT sink or metrics are used.
"""

from __future__ import annotations

from .base import Backoff, Sink, SpooledSink, build_sink, register, sink_kinds
from .feed import EventFeed, check_camera_name
from .jsonl import JsonLinesSettings, JsonLinesSink
from .messages import EventIds, EventMessage, peak_box
from .mqtt import MqttSettings, MqttSink
from .spool import Spool, SpoolReader
from .webhook import WebhookSettings, WebhookSink

__all__ = [
    "Backoff",
    "EventFeed",
    "EventIds",
    "EventMessage",
    "JsonLinesSettings",
    "JsonLinesSink",
    "MqttSettings",
    "MqttSink",
    "Sink",
    "Spool",
    "SpoolReader",
    "SpooledSink",
    "WebhookSettings",
    "WebhookSink",
    "build_sink",
    "check_camera_name",
    "peak_box",
    "register",
    "sink_kinds",
]
