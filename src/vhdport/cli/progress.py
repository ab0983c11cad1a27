"""Progress reporting for long transfers: a rich bar on a terminal, JSON lines, or nothing.

The layers below take a plain ``progress(done_bytes, total_bytes_or_None)`` callable,
so all presentation lives here.
"""

import contextlib
import json
import sys
import time

import click

MODES = ("auto", "json", "none")


def progress_option(func):
    return click.option(
        "--progress", "progress_mode", type=click.Choice(MODES), default="auto",
        show_default=True,
        help="auto: a progress bar on a terminal (stderr), else nothing; "
             "json: {\"done\": N, \"total\": M} lines on stderr; none: silent.")(func)


class JsonLines(object):
    """Writes ``{"done": N, "total": M}`` lines to stderr, at most every ``interval`` seconds."""

    def __init__(self, stream=None, interval=0.2):
        self.stream = stream or sys.stderr
        self.interval = interval
        self._last_time = None
        self._last = None
        self._emitted = None

    def __call__(self, done, total=None):
        self._last = (done, total)
        now = time.monotonic()
        if self._last_time is None or now - self._last_time >= self.interval:
            self._emit(done, total)
            self._last_time = now

    def _emit(self, done, total):
        self.stream.write(json.dumps({"done": done, "total": total}) + "\n")
        self.stream.flush()
        self._emitted = (done, total)

    def finish(self):
        """Always end with the final count, even when it fell inside the throttle window."""
        if self._last is not None and self._emitted != self._last:
            self._emit(*self._last)


MIB = 1 << 20


def mib_speed(bytes_per_second):
    """Speed in the same binary unit as the byte counts beside it (rich's own column is MB/s)."""
    if bytes_per_second is None:
        return "? MiB/s"
    return "{:.1f} MiB/s".format(bytes_per_second / MIB)


def _speed_column():
    from rich.progress import ProgressColumn
    from rich.text import Text

    class MibSpeedColumn(ProgressColumn):
        def render(self, task):
            speed = task.finished_speed or task.speed
            return Text(mib_speed(speed), style="progress.data.speed")

    return MibSpeedColumn()


class RichBar(object):
    """A rich progress bar on stderr in binary units (MiB, MiB/s); an unknown total pulses."""

    def __init__(self, label, console=None):
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                   TimeRemainingColumn)

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                  DownloadColumn(binary_units=True), _speed_column(),
                                  TimeRemainingColumn(), console=console or Console(stderr=True),
                                  transient=False)
        self._task = self._progress.add_task(label, total=None)
        self._progress.start()

    def __call__(self, done, total=None):
        self._progress.update(self._task, completed=done, total=total)

    def finish(self):
        self._progress.stop()


@contextlib.contextmanager
def reporter(mode, label="transfer"):
    """Yield a progress callable for ``mode`` (or None when silent); tidy up afterwards."""
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "none"
    if mode == "none":
        yield None
        return
    sink = JsonLines() if mode == "json" else RichBar(label)
    try:
        yield sink
    finally:
        sink.finish()
