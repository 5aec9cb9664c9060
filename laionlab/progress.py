"""Progress lines for long loops: done/total, rate, ETA, at a steady rate.

Library code logs through the ``laionlab`` logger; dagster.yaml lists it under
``python_logs.managed_python_loggers``, so the lines appear in the run's event log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Progress", "format_duration", "phase"]


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """``update(n)`` after each chunk; a line is logged at most every ``every_s`` seconds
    (and by ``close()``): ``<what>: 12,000/50,000 (24.0 %), 812.3 /s, ETA 0:47``.

    ``quiet_below_s``: ``close()`` logs only when the loop ran at least this long, so a
    function called many times on small inputs (a k-means inside a sweep) stays silent;
    library loops pass their ``every_s``, so only a loop long enough to report logs at all.
    """

    def __init__(
        self,
        what: str,
        total: int | None = None,
        every_s: float = 30.0,
        log: logging.Logger | None = None,
        unit: str = "rows",
        quiet_below_s: float = 0.0,
    ):
        self.what, self.total, self.every_s, self.unit = what, total, every_s, unit
        self.quiet_below_s = quiet_below_s
        self.log = log or logging.getLogger("laionlab.progress")
        self.done = 0
        self.start = self.last = time.perf_counter()

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            eta_text = format_duration(eta) if eta != float("inf") else "?"
            share = 100 * self.done / self.total
            return (
                f"{self.what}: {self.done:,}/{self.total:,} {self.unit} ({share:.1f} %), "
                f"{rate:,.1f} {self.unit}/s, ETA {eta_text}"
            )
        return f"{self.what}: {self.done:,} {self.unit}, {rate:,.1f} {self.unit}/s, {format_duration(elapsed)} elapsed"

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            self.log.info(self.line())

    def close(self) -> str:
        text = self.line()
        if time.perf_counter() - self.start >= self.quiet_below_s:
            self.log.info(text)
        return text


@contextmanager
def phase(what: str, log: logging.Logger, level: int = logging.INFO) -> Iterator[None]:
    """Log ``<what>`` before a step that reports no progress of its own (a faiss training
    call) and ``<what>: done in 12.3 s`` (or ``1:23``) after it."""
    log.log(level, what)
    start = time.perf_counter()
    yield
    took = time.perf_counter() - start
    log.log(level, f"{what}: done in {took:.1f} s" if took < 60 else f"{what}: done in {format_duration(took)}")
