"""The simulated disk: one FIFO queue per node; a write is durable only when it completes.

A crash throws away every write not yet completed (what an fsync-less page cache loses);
completed writes live in a ``MemoryStorage`` that survives restarts.
"""

from __future__ import annotations

import random
from collections import deque

from paxos import DiskWrite, MemoryStorage


class SimDisk:
    def __init__(self, rng: random.Random, latency_us: tuple[int, int]) -> None:
        self._rng = rng
        self._latency_us = latency_us
        self.storage = MemoryStorage()
        self.pending: deque[DiskWrite] = deque()
        self._busy_until_us = 0

    def submit(self, write: DiskWrite, now_us: int) -> int:
        """Queue ``write``; returns when it will be durable (after every earlier write)."""
        lo, hi = self._latency_us
        start = max(now_us, self._busy_until_us)
        self._busy_until_us = start + self._rng.randrange(lo, hi + 1)
        self.pending.append(write)
        return self._busy_until_us

    def complete(self) -> DiskWrite:
        write = self.pending.popleft()
        self.storage.apply(write.record)
        return write

    def crash(self) -> int:
        lost = len(self.pending)
        self.pending.clear()
        self._busy_until_us = 0
        return lost
