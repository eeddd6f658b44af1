"""One progress style for long library calls: step messages through `logging`, bars only on a terminal.

A long call (`train`, `evaluate`, `export_bundle`, `run_bench`, ...) takes `progress: bool` and reports
through a `Progress`:

- `Progress.info(msg)` logs a step message on the call's logger: at INFO when progress is on, at DEBUG
  when it is off (a nested call, e.g. an export inside the benchmark, stays quiet unless asked with -v).
  Whether INFO reaches the console is the application's logging set-up (the CLI maps -v/-q to levels).
- `Progress.bar(iterable)` is a tqdm bar on stderr when progress is on, stderr is a terminal and tqdm is
  installed; otherwise a silent stand-in with the same small interface. Bars never go to logs or pipes.

The library never prints: messages are log records, bars are terminal decorations.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import Any, Optional


def stderr_is_terminal() -> bool:
    """True when stderr is an interactive terminal (bars and status lines are drawn only there)."""
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class _SilentBar:
    """The part of tqdm's interface the library uses, doing nothing (no terminal, or progress off)."""

    def __init__(self, iterable: Optional[Iterable] = None, total: Optional[int] = None) -> None:
        self.iterable, self.total, self.n = iterable, total, 0

    def __iter__(self) -> Iterator:
        for item in self.iterable if self.iterable is not None else ():
            self.n += 1
            yield item

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_description(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _SilentBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(
    iterable: Optional[Iterable] = None,
    *,
    total: Optional[int] = None,
    desc: Optional[str] = None,
    enabled: bool = True,
    leave: bool = False,
) -> Any:
    """A tqdm bar on stderr if `enabled`, stderr is a terminal and tqdm is installed; else a silent bar.

    Either way the result iterates `iterable` and has `update`, `set_postfix`, `close` and `with` support.
    """
    if enabled and stderr_is_terminal():
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return tqdm(iterable, total=total, desc=desc, file=sys.stderr, dynamic_ncols=True, leave=leave)
    return _SilentBar(iterable, total)


class Progress:
    """How one long call reports: step messages on `logger` (INFO if enabled, else DEBUG) and bars."""

    def __init__(self, logger: logging.Logger, enabled: bool = True) -> None:
        self.logger, self.enabled = logger, enabled

    @property
    def level(self) -> int:
        return logging.INFO if self.enabled else logging.DEBUG

    def info(self, msg: str, *args: Any) -> None:
        """Log a step message ('exporting to ONNX ...', 'epoch 3/10 loss ...')."""
        self.logger.log(self.level, msg, *args)

    def bar(
        self, iterable: Optional[Iterable] = None, *, total: Optional[int] = None, desc: Optional[str] = None
    ) -> Any:
        """A progress bar for a loop of this call (see `progress_bar`)."""
        return progress_bar(iterable, total=total, desc=desc, enabled=self.enabled)
