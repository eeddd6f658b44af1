"""Console logging for the CLI: `-v/-q` on every subcommand, mapped once to levels (vadedge, OpenCV, FFmpeg).

| flags | vadedge logs | other libraries | OpenCV / FFmpeg | progress bars / status lines |
|-------|--------------|-----------------|-----------------|------------------------------|
| -q    | WARNING      | WARNING         | errors / silent | off                          |
| none  | INFO         | WARNING         | errors / silent | on (on a terminal)           |
| -v    | DEBUG        | WARNING         | warnings / own  | on                           |
| -vv   | DEBUG        | DEBUG           | debug / own     | on                           |

The library only logs (`vadedge.progress`); this module is the one place that decides what reaches the
console. Messages keep their plain text at the default level (what the commands printed before), and
gain level and logger name under -v. OPENCV_LOG_LEVEL / OPENCV_FFMPEG_LOGLEVEL set by the user win.
FFmpeg reads its level when OpenCV first opens a video, so the env knob must be set before that. FFmpeg is
silenced by default (a damaged stream prints a line per broken macroblock; vadedge reports what it means:
a short read, a lost source); with -v it keeps its own default (errors, on stderr). Setting any level
routes FFmpeg's messages through OpenCV's callback, which prints them on stdout, so -v sets none.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, Optional

import click

QUIET, DEFAULT, VERBOSE, DEBUG_ALL = -1, 0, 1, 2

# OpenCV's own levels (cv2.utils.logging): 0 silent, 1 fatal, 2 error, 3 warning, 4 info, 5 debug.
_OPENCV_LEVEL = {QUIET: ("ERROR", 2), DEFAULT: ("ERROR", 2), VERBOSE: ("WARNING", 3), DEBUG_ALL: ("DEBUG", 5)}
# FFmpeg's av_log level (-8 = quiet), read by OpenCV's FFmpeg backend when it first opens a video;
# None = leave FFmpeg's own (errors, on stderr).
_FFMPEG_LEVEL = {QUIET: "-8", DEFAULT: "-8", VERBOSE: None, DEBUG_ALL: None}


class _ConsoleHandler(logging.Handler):
    """Writes to the current sys.stderr (so click's test runner captures it), through tqdm.write while a
    bar is drawn so the bar stays intact."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            tqdm_mod = sys.modules.get("tqdm")
            if tqdm_mod is not None and getattr(tqdm_mod.tqdm, "_instances", None):
                tqdm_mod.tqdm.write(msg, file=sys.stderr)
            else:
                sys.stderr.write(msg + "\n")
                sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never break the command
            self.handleError(record)


def _opencv_settings(verbosity: int) -> dict[str, str]:
    """OpenCV's and FFmpeg's env knobs for `verbosity`, minus those the user set."""
    wanted = {"OPENCV_LOG_LEVEL": _OPENCV_LEVEL[verbosity][0], "OPENCV_FFMPEG_LOGLEVEL": _FFMPEG_LEVEL[verbosity]}
    return {k: v for k, v in wanted.items() if v is not None and k not in os.environ}


def _cv2_level(level: Optional[int]) -> Optional[int]:
    """Set OpenCV's live log level if cv2 is imported (else the env var takes effect on import); return the old."""
    if level is None or "cv2" not in sys.modules:
        return None
    try:
        from cv2.utils import logging as cv_logging  # cv2.utils.logging.{get,set}LogLevel in OpenCV 4.x
    except ImportError:
        return None
    old = int(cv_logging.getLogLevel())
    cv_logging.setLogLevel(level)
    return old


@contextlib.contextmanager
def console_logging(verbosity: int) -> Iterator[None]:
    """Within the block, log records reach stderr at the levels of `verbosity` (QUIET, DEFAULT, VERBOSE,
    DEBUG_ALL) and OpenCV / FFmpeg follow; everything is restored after (commands run in-process in tests)."""
    verbosity = max(QUIET, min(DEBUG_ALL, verbosity))
    root, pkg = logging.getLogger(), logging.getLogger("vadedge")
    saved_levels = root.level, pkg.level
    handler = _ConsoleHandler()
    handler.setFormatter(
        logging.Formatter("%(message)s" if verbosity <= DEFAULT else "%(levelname)s %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbosity >= DEBUG_ALL else logging.WARNING)
    pkg.setLevel({QUIET: logging.WARNING, DEFAULT: logging.INFO}.get(verbosity, logging.DEBUG))
    env = _opencv_settings(verbosity)
    os.environ.update(env)
    old_cv2 = _cv2_level(_OPENCV_LEVEL[verbosity][1] if "OPENCV_LOG_LEVEL" in env else None)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_levels[0])
        pkg.setLevel(saved_levels[1])
        for k, v in env.items():
            if os.environ.get(k) == v:
                del os.environ[k]
        _cv2_level(old_cv2)


def verbosity_options(fn: Callable) -> Callable:
    """Add -v/--verbose (repeatable) and -q/--quiet to a command and configure logging before it runs.

    The command receives `quiet: bool` if its signature has it (to turn progress bars / status lines off).
    """
    wants_quiet = "quiet" in inspect.signature(fn).parameters

    @click.option(
        "-v",
        "--verbose",
        count=True,
        help="More log output: -v debug messages of vadedge, -vv also of the libraries it uses.",
    )
    @click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors: no progress messages or bars.")
    @functools.wraps(fn)
    def wrapper(*args: Any, verbose: int, quiet: bool, **kwargs: Any) -> Any:
        if quiet and verbose:
            raise click.UsageError("-q/--quiet and -v/--verbose exclude each other")
        if wants_quiet:
            kwargs["quiet"] = quiet
        with console_logging(QUIET if quiet else verbose):
            return fn(*args, **kwargs)

    return wrapper
