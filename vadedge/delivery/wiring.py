"""Build what a run delivers events through: the metrics server and an EventFeed over the sinks.

Used by `vadedge run` (its --webhook / --mqtt / --metrics options) and by the multi-camera runner
(a config file's `sinks` and `metrics`), so both wire sinks, spool gauges and event counters alike.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Optional, Union

from .base import build_sink
from .feed import EventFeed, check_camera_name
from .snapshots import SnapshotWriter


def open_delivery(
    cameras: Iterable[str],
    sinks: Sequence[tuple[str, Any]],
    metrics: Optional[str],
    state_dir: Union[str, Path],
    snapshots: Union[str, Path, None] = None,
    clips: Union[str, Path, None] = None,
    pre_roll: float = 5.0,
    post_roll: float = 5.0,
) -> tuple[Optional[EventFeed], Any]:
    """(EventFeed over `sinks` [(kind, settings)] writing event snapshots under `snapshots` and
    clips (`pre_roll` s before to `post_roll` s after each event) under `clips`, or None without
    sinks, snapshots and clips; Metrics serving at the `metrics` address or None); everything
    opened so far is closed again when one part fails."""
    for camera in cameras:
        check_camera_name(camera)
    meter = None
    recorder = None
    built: list[Any] = []
    try:
        if metrics is not None:
            from .metrics import Metrics, parse_address

            meter = Metrics()
            host, port = parse_address(metrics)
            meter.serve(host, port)
        on_failure = meter.failure if meter is not None else None
        for kind, settings in sinks:
            built.append(build_sink(kind, settings, on_failure))
        on_message = None
        if meter is not None:
            for sink in built:
                if hasattr(sink, "pending"):
                    meter.watch_spool(sink.name, functools.partial(getattr, sink, "pending"))
            counter = meter

            def on_message(m) -> None:  # noqa: ANN001 - an EventMessage
                counter.event(m.camera, m.type)

        writer = SnapshotWriter(snapshots) if snapshots is not None else None
        if clips is not None:
            from .clips import ClipRecorder

            recorder = ClipRecorder(clips, pre_roll, post_roll)
        feed = None
        if built or writer is not None or recorder is not None:
            feed = EventFeed(built, state_dir, on_message=on_message, snapshots=writer, clips=recorder)
    except BaseException:
        close_quietly(*built, recorder, meter)
        raise
    return feed, meter


def close_quietly(*things: Any) -> None:
    """Close each (None skipped) while already failing: the original error is the one reported."""
    for s in things:
        if s is not None:
            try:
                s.close()
            except Exception:  # noqa: BLE001
                pass


__all__ = ["close_quietly", "open_delivery"]
