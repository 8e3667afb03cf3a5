"""The node's only clock: monotonic milliseconds, with skew fault tests can inject.

Ticks are derived from elapsed monotonic time (never counted from timer callbacks), so a
paused process delivers every tick it missed before it handles anything else (driver
contract item 7).

Fault injection, all read by this one clock:
- ``KVSTORE_CLOCK_OFFSET_MS`` shifts the clock and ``KVSTORE_CLOCK_RATE`` (e.g. 1.05) makes
  it run fast or slow, from start-up;
- ``KVSTORE_CLOCK_FILE`` names a file holding ``{"rate": r, "offset_ms": o}`` that is re-read
  (at most every 50 ms) while the node runs: a new rate applies from that instant, a new
  offset makes the clock jump by the difference. The fault-test harness writes it.
The lease is safe while every rate stays within ``1 +- clock_drift_max_permille/1000`` and
the clock never jumps; beyond that, see docs/jepsen.md.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

POLL_S = 0.05


class Clock:
    def __init__(self, *, offset_ms: float | None = None, rate: float | None = None) -> None:
        env_offset = os.environ.get("KVSTORE_CLOCK_OFFSET_MS", "0")
        env_rate = os.environ.get("KVSTORE_CLOCK_RATE", "1")
        control = os.environ.get("KVSTORE_CLOCK_FILE")
        self._offset_ms = float(env_offset) if offset_ms is None else offset_ms
        self._rate = float(env_rate) if rate is None else rate
        self._origin = time.monotonic()
        self._base_ms = self._offset_ms  # the reading at ``_origin``
        self._control = Path(control) if control else None
        self._control_version: int | None = None
        self._next_poll = 0.0

    def now_ms(self) -> float:
        mono = time.monotonic()
        if self._control is not None and mono >= self._next_poll:
            self._poll(mono)
        return self._reading(mono)

    def _reading(self, mono: float) -> float:
        return self._base_ms + (mono - self._origin) * 1000.0 * self._rate

    def _poll(self, mono: float) -> None:
        assert self._control is not None
        self._next_poll = mono + POLL_S
        try:
            version = self._control.stat().st_mtime_ns
            if version == self._control_version:
                return
            skew = json.loads(self._control.read_text())
            rate, offset_ms = float(skew.get("rate", 1.0)), float(skew.get("offset_ms", 0.0))
        except (OSError, ValueError, AttributeError):
            return  # absent or half-written: keep the current skew
        if rate <= 0:
            return
        self._control_version = version
        self._base_ms = self._reading(mono) + (offset_ms - self._offset_ms)
        self._origin = mono
        self._rate, self._offset_ms = rate, offset_ms


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
