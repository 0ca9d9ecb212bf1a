"""A one-line progress meter for long command-line jobs: count, percentage, rate and ETA on a terminal.

`Progress` is cheap when disabled (`advance` is one addition and one comparison), so callers may create one
unconditionally and pass ``enabled=False`` when stderr is not a terminal or the user asked for quiet.
A job whose amount of work is not known ahead (a compaction, a check) gets a ticker thread instead of
`advance` calls (`Progress.ticking`), so the line still shows that work goes on and for how long.
The line is redrawn at most every `interval` seconds, with ``\\r`` and an erase-to-end-of-line code.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import TextIO

_BAR_WIDTH = 20
_ERASE_LINE = "\x1b[K"


def _si(number: float) -> str:
    """A short human count: 950, 12.3k, 4.5M, 1.2G."""
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(number) >= scale:
            return f"{number / scale:.1f}{suffix}"
    return f"{number:.0f}"


def _clock(seconds: float) -> str:
    """H:MM:SS, as `time` and `rsync` print durations."""
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class Progress:
    """Shows ``label done/total unit pct% [bar] rate unit/s ETA h:mm:ss`` on `stream`, redrawn in place.

    With ``total=None`` the line shows the count, the rate and the time elapsed. `close()` draws the final
    state and ends the line; the instance is a context manager that closes on exit. Not thread-safe
    except for the ticker that `ticking()` runs, which only redraws.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        unit: str = "",
        enabled: bool = True,
        stream: TextIO | None = None,
        interval: float = 0.1,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.enabled = enabled
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._interval = interval
        self._start = time.monotonic()
        # Counts are only compared with this threshold on each advance; the clock is read when it is passed.
        self._next_check = 0 if enabled else float("inf")
        self._next_draw = self._start
        self._finished = False
        self._last_line = ""
        self._stop_ticker: threading.Event | None = None
        self._ticker: threading.Thread | None = None

    def advance(self, count: int = 1) -> None:
        """Record `count` more units of work done; redraws when `interval` has passed."""
        self.done += count
        if self.done >= self._next_check:
            now = time.monotonic()
            if now >= self._next_draw:
                self._draw(now)
            # Read the clock again after about as much work as was done in one interval so far.
            elapsed = max(now - self._start, 1e-9)
            self._next_check = self.done + max(1, int(self.done / elapsed * self._interval))

    def line(self, now: float | None = None) -> str:
        """The text of the meter at time `now` (the monotonic clock), without control codes."""
        elapsed = max((time.monotonic() if now is None else now) - self._start, 1e-9)
        rate = self.done / elapsed
        if self.total is None:
            if self.done == 0:
                return f"{self.label}  {'done' if self._finished else 'working...'}  {_clock(elapsed)}"
            return f"{self.label}  {_si(self.done)}{self.unit}  {_si(rate)}{self.unit}/s  {_clock(elapsed)}"
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        filled = int(fraction * _BAR_WIDTH)
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        eta = _clock((self.total - self.done) / rate) if rate > 0 and self.done < self.total else "0:00:00"
        return (
            f"{self.label}  {_si(self.done)}/{_si(self.total)}{self.unit}  {fraction * 100:3.0f}% [{bar}]"
            f"  {_si(rate)}{self.unit}/s  ETA {eta}"
        )

    def ticking(self) -> Progress:
        """Start a daemon thread that redraws every `interval` (for work that cannot call `advance`)."""
        if self.enabled and self._ticker is None:
            stop = threading.Event()

            def tick() -> None:
                while not stop.wait(self._interval):
                    self._draw(time.monotonic())

            self._stop_ticker = stop
            self._ticker = threading.Thread(target=tick, name=f"progress {self.label}", daemon=True)
            self._ticker.start()
        return self

    def close(self) -> None:
        """Stop the ticker, draw the final state and end the line (nothing when disabled). Idempotent."""
        if self._stop_ticker is not None and self._ticker is not None:
            self._stop_ticker.set()
            self._ticker.join()
            self._ticker = None
        if self.enabled:
            self._finished = True
            self._draw(time.monotonic())
            self._stream.write("\n")
            self._stream.flush()
            self.enabled = False
            self._next_check = float("inf")

    def _draw(self, now: float) -> None:
        self._next_draw = now + self._interval
        line = self.line(now)
        if line != self._last_line:  # the ticker often redraws the same second
            self._stream.write("\r" + line + _ERASE_LINE)
            self._stream.flush()
            self._last_line = line

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
