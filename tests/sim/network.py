"""The simulated network: per-DC-pair latency with jitter, loss, duplication, partitions.

Reordering comes from jitter (two messages on one path overtake each other). Partitions are
a set of blocked *directed* links, so one-way cuts are as easy to express as full ones.
All times are integer microseconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from paxos import NodeId


@dataclass
class NetworkFaults:
    loss_permille: int = 0
    duplicate_permille: int = 0
    jitter_us: int = 1_000
    blocked: set[tuple[NodeId, NodeId]] = field(default_factory=set)


class Network:
    def __init__(
        self,
        rng: random.Random,
        dc_of: dict[NodeId, int],
        one_way_us: dict[tuple[int, int], int],
    ) -> None:
        self._rng = rng
        self._dc_of = dc_of
        self._one_way_us = one_way_us
        self.faults = NetworkFaults()

    def latency_us(self, src: NodeId, dst: NodeId) -> int:
        a, b = self._dc_of[src], self._dc_of[dst]
        base = self._one_way_us[(min(a, b), max(a, b))]
        return base + self._rng.randrange(0, self.faults.jitter_us + 1)

    def deliveries(self, src: NodeId, dst: NodeId) -> list[int]:
        """Latencies of the copies of one message that arrive (empty: it was lost)."""
        faults = self.faults
        if (src, dst) in faults.blocked:
            return []
        if faults.loss_permille and self._rng.randrange(1000) < faults.loss_permille:
            return []
        copies = [self.latency_us(src, dst)]
        if faults.duplicate_permille and self._rng.randrange(1000) < faults.duplicate_permille:
            copies.append(self.latency_us(src, dst))
        return copies

    def heal(self) -> None:
        self.faults = NetworkFaults(jitter_us=self.faults.jitter_us)
