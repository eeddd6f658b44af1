"""MQTT sink (paho-mqtt 2.x): Frigate-style topics, QoS 1, reconnect with backoff, spooled.

Topics (prefix default "vadedge"):
  <prefix>/events            every message, JSON, with "type": new | update | end (QoS 1, not retained)
  <prefix>/<camera>/anomaly  "ON" on new, "OFF" on end (QoS 1, retained: the current state)
  <prefix>/available         "online" after connecting; "offline" on a clean close and, as the
                             last will, when the process dies (QoS 1, retained)
A message leaves the spool only when the broker acknowledged (PUBACK) every publish it needs, so a
broker that is down or restarts gets the spooled messages, in order, when it is back.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Optional

from .._optional import require
from ..errors import ConfigError
from .base import Backoff, FailureHook, SpooledSink, register, sink_id
from .messages import EventMessage
from .spool import SpoolReader

logger = logging.getLogger(__name__)


@dataclass
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "vadedge"
    client_id: Optional[str] = None
    username: Optional[str] = None
    password: Optional[str] = None
    keepalive: int = 30
    publish_timeout: float = 5.0  # seconds to wait for a PUBACK before retrying
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    drain_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not self.host or not (0 < int(self.port) < 65536):
            raise ConfigError(f"mqtt: need a host and a port in 1..65535, got {self.host!r}:{self.port}")
        if not self.prefix or any(c in self.prefix for c in "#+") or self.prefix.endswith("/"):
            raise ConfigError(f"mqtt prefix must be a topic without wildcards or a trailing '/', got {self.prefix!r}")

    @classmethod
    def parse(cls, text: str, **kw: Any) -> MqttSettings:
        """'HOST[:PORT][/prefix]' -> settings."""
        hostport, _, prefix = text.partition("/")
        host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
        try:
            return cls(host=host, port=int(port) if port else 1883, prefix=prefix or "vadedge", **kw)
        except ValueError:
            raise ConfigError(f"--mqtt expects HOST[:PORT][/prefix], got {text!r}") from None


@register("mqtt", MqttSettings)
class MqttSink(SpooledSink):
    """Publishes spooled messages to a broker; see module doc."""

    def __init__(self, settings: MqttSettings, on_failure: Optional[FailureHook] = None) -> None:
        mqtt = require("paho.mqtt.client")
        super().__init__(
            sink_id("mqtt", f"{settings.host}:{settings.port}/{settings.prefix}"),
            Backoff(settings.backoff_initial, settings.backoff_max),
            settings.drain_timeout,
            on_failure,
        )
        self.settings = settings
        self.available_topic = f"{settings.prefix}/available"
        self._connected = threading.Event()
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=settings.client_id or "", protocol=mqtt.MQTTv311
        )
        if settings.username:
            client.username_pw_set(settings.username, settings.password)
        client.will_set(self.available_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(
            min_delay=max(1, int(settings.backoff_initial)), max_delay=max(1, int(settings.backoff_max))
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client

    def open(self, reader: SpoolReader) -> None:
        """Connect (in paho's thread, reconnecting with backoff) and start delivering."""
        self._client.connect_async(self.settings.host, int(self.settings.port), keepalive=self.settings.keepalive)
        self._client.loop_start()
        super().open(reader)

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            logger.warning("%s: broker refused the connection: %s", self.name, reason_code)
            return
        logger.info("%s: connected", self.name)
        client.publish(self.available_topic, "online", qos=1, retain=True)
        self._connected.set()

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if self._connected.is_set():
            logger.warning("%s: disconnected (%s); reconnecting", self.name, reason_code)
        self._connected.clear()

    def _deliver(self, message: EventMessage) -> bool:
        if not self._connected.wait(timeout=1.0):
            return False
        prefix = self.settings.prefix
        publishes = [(f"{prefix}/events", message.to_json(), False)]
        if message.type in ("new", "end"):
            publishes.append((f"{prefix}/{message.camera}/anomaly", "ON" if message.type == "new" else "OFF", True))
        infos = [self._client.publish(topic, payload, qos=1, retain=retain) for topic, payload, retain in publishes]
        for info in infos:
            info.wait_for_publish(timeout=self.settings.publish_timeout)
            if not info.is_published():
                return False
        return True

    def close(self) -> None:
        super().close()
        if self.reader is None:
            return
        try:
            if self._connected.is_set():
                self._client.publish(self.available_topic, "offline", qos=1, retain=True).wait_for_publish(2.0)
            self._client.disconnect()
        finally:
            self._client.loop_stop()
