"""The node's only clock: monotonic milliseconds, with an offset fault tests can inject.

Ticks are derived from elapsed monotonic time (never counted from timer callbacks), so a
paused process delivers every tick it missed before it handles anything else (driver
contract item 7). ``KVSTORE_CLOCK_OFFSET_MS`` shifts this node's clock for clock-skew tests;
``KVSTORE_CLOCK_RATE`` (e.g. 1.05) makes it run fast or slow.
"""

from __future__ import annotations

import os
import time


class Clock:
    def __init__(self, *, offset_ms: float | None = None, rate: float | None = None) -> None:
        env_offset = os.environ.get("KVSTORE_CLOCK_OFFSET_MS", "0")
        env_rate = os.environ.get("KVSTORE_CLOCK_RATE", "1")
        self._offset_ms = float(env_offset) if offset_ms is None else offset_ms
        self._rate = float(env_rate) if rate is None else rate
        self._origin = time.monotonic()

    def now_ms(self) -> float:
        return (time.monotonic() - self._origin) * 1000.0 * self._rate + self._offset_ms


class TickSource:
    """Turns elapsed clock time into a count of whole ticks not yet delivered."""

    def __init__(self, clock: Clock, tick_ms: float) -> None:
        self._clock = clock
        self._tick_ms = tick_ms
        self._start = clock.now_ms()
        self._delivered = 0

    def due(self) -> int:
        elapsed = int((self._clock.now_ms() - self._start) // self._tick_ms)
        due = max(0, elapsed - self._delivered)
        self._delivered += due
        return due
