"""Messages and progress for people: Python ``logging`` on stderr, and a progress display that
suits where stderr goes (a live bar on a terminal, a line every ~10 s into a file or pipe).

Library code logs to the ``sitekit`` logger and never prints; :func:`configure` (called by the
command line) attaches one stderr handler. Without it, Python's default shows only warnings.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

LOGGER = logging.getLogger("sitekit")
#: seconds between progress lines when stderr is not a terminal
LINE_INTERVAL_S = 10.0
#: seconds between redraws of the live bar on a terminal
BAR_INTERVAL_S = 0.2

_HANDLER_NAME = "sitekit-cli"


class _Format(logging.Formatter):
    """``sitekit: message``; warnings and errors say so; debug lines name their logger."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            msg = f"{msg}\n{record.exc_text}"
        if record.levelno >= logging.ERROR:
            return f"sitekit: error: {msg}"
        if record.levelno >= logging.WARNING:
            return f"sitekit: warning: {msg}"
        if record.levelno <= logging.DEBUG:
            return f"sitekit: debug: [{record.name}] {msg}"
        return f"sitekit: {msg}"


def verbosity_level(verbose: int, quiet: bool) -> int:
    """The ``sitekit`` logger level for ``-v`` (count) and ``-q``: quiet → WARNING, none → INFO,
    ``-v`` → DEBUG. Quiet wins."""
    if quiet:
        return logging.WARNING
    return logging.DEBUG if verbose >= 1 else logging.INFO


def configure(verbose: int = 0, quiet: bool = False, stream: TextIO | None = None) -> None:
    """Send ``sitekit`` log records to ``stream`` (default: the current ``sys.stderr``) at the
    level :func:`verbosity_level` gives. Idempotent: calling it again replaces the handler, so
    ``sitekit -q demo`` and ``sitekit demo -q`` end up the same. ``-vv`` also shows other
    libraries' (dask, distributed) debug records."""
    for h in list(LOGGER.handlers):
        if h.get_name() == _HANDLER_NAME:
            LOGGER.removeHandler(h)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(_Format())
    LOGGER.addHandler(handler)
    LOGGER.setLevel(verbosity_level(verbose, quiet))
    LOGGER.propagate = False
    if verbose >= 2 and not quiet:
        logging.basicConfig(level=logging.DEBUG, stream=handler.stream)


def quiet() -> bool:
    """True when progress should not be shown (the ``sitekit`` logger is above INFO)."""
    return not LOGGER.isEnabledFor(logging.INFO)


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class ProgressLines:
    """Turns a stream of ``(done, total)`` updates into what a person should see.

    On a terminal: one bar redrawn in place (``\\r``) at most every :data:`BAR_INTERVAL_S`.
    Elsewhere (a file, a pipe, a CI log): a line at the start, then at most one line every
    ``interval_s`` seconds — or every tenth of the time elapsed once that is longer, so an hour
    writes ~50 lines, not 360 — then one line at the end: a 1-minute run writes a handful of
    lines, not hundreds of redraws.
    """

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        tty: bool | None = None,
        interval_s: float = LINE_INTERVAL_S,
        clock: Any = time.monotonic,
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _is_tty(self.stream) if tty is None else tty
        self.interval_s = BAR_INTERVAL_S if self.tty else interval_s
        self.clock = clock
        self.t0 = clock()
        self._last: float | None = None
        self._frac = -1.0

    def _text(self, done: int, total: int) -> str:
        frac = done / total if total else 1.0
        elapsed = self.clock() - self.t0
        if self.tty:
            bar = "#" * int(30 * frac)
            return f"\r  {self.label} [{bar:<30}] {100 * frac:3.0f}% {elapsed:5.1f} s"
        return f"sitekit: {self.label}: {100 * frac:.0f}% ({done}/{total} tasks, {elapsed:.0f} s)\n"

    def update(self, done: int, total: int) -> None:
        """Show ``done`` of ``total`` if it is time to (the first update always shows)."""
        now = self.clock()
        frac = done / total if total else 1.0
        wait = self.interval_s if self.tty else max(self.interval_s, 0.1 * (now - self.t0))
        if self._last is not None and now - self._last < wait:
            return
        if not self.tty and frac == self._frac:
            return  # nothing new to say
        self._last, self._frac = now, frac
        self.stream.write(self._text(done, total))
        self.stream.flush()

    def finish(self, done: int, total: int, failed: bool = False) -> None:
        """The last word: the finished bar (terminal) or a final line."""
        end = " failed" if failed else ""
        if self.tty:
            self.stream.write(self._text(done, total) + end + "\n")
        else:
            elapsed = self.clock() - self.t0
            self.stream.write(
                f"sitekit: {self.label}: {'failed' if failed else 'done'} "
                f"({done}/{total} tasks, {elapsed:.0f} s)\n"
            )
        self.stream.flush()


def progress(futures: list[Any], label: str) -> None:
    """Block until ``futures`` (distributed) finish, showing progress on stderr unless quiet.

    Progress counts every task the futures depend on (distributed's scheduler-side ``Progress``
    plugin, polled every 0.2 s); display by :class:`ProgressLines`.
    """
    if quiet() or not futures:
        return
    from distributed.diagnostics.progressbar import TextProgressBar

    lines = ProgressLines(label)

    class _Bar(TextProgressBar):
        def _draw_bar(self, remaining: int, all: int, **kwargs: Any) -> None:  # noqa: A002
            lines.update(all - remaining, all)

        def _draw_stop(self, remaining: int = 0, all: int = 0, **kwargs: Any) -> None:  # noqa: A002
            lines.finish(all - remaining, all, failed=kwargs.get("status") == "error")

    _Bar(futures, interval=f"{int(BAR_INTERVAL_S * 1000)}ms")
