"""Benchmark keys: spread over every shard of the cluster, chosen uniformly or by Zipf's law."""

from __future__ import annotations

import bisect
import itertools
import random

from cluster import KeySpan

SUFFIX_HEADS = ("bench", "k", "0", "a", "~")


def spread_keys(spans: list[KeySpan], count: int) -> list[bytes]:
    """``count`` distinct keys, dealt round-robin over the shards' spans."""
    prefixes = [_prefix_inside(span) for span in spans]
    return [prefixes[i % len(prefixes)] + b"%09d" % i for i in range(count)]


def _prefix_inside(span: KeySpan) -> bytes:
    for head in SUFFIX_HEADS:
        prefix = span.start + head.encode()
        # Every key prefix+digits sorts after prefix; it must also sort before the end.
        if span.contains(prefix) and span.contains(prefix + b"999999999"):
            return prefix
    raise ValueError(f"cannot place benchmark keys inside {span}")


class KeyChooser:
    """Picks key indexes: uniform, or zipfian with exponent ``theta`` (YCSB's 0.99)."""

    def __init__(self, count: int, distribution: str, rng: random.Random, theta: float = 0.99):
        self._count = count
        self._rng = rng
        self._cumulative: list[float] | None = None
        if distribution == "zipfian":
            weights = (1.0 / (rank**theta) for rank in range(1, count + 1))
            self._cumulative = list(itertools.accumulate(weights))
            # Hot keys scattered over shards, not all at the start of the key list.
            self._order = list(range(count))
            random.Random(count).shuffle(self._order)
        elif distribution != "uniform":
            raise ValueError(f"unknown key distribution {distribution!r}")

    def next(self) -> int:
        if self._cumulative is None:
            return self._rng.randrange(self._count)
        point = self._rng.random() * self._cumulative[-1]
        return self._order[min(bisect.bisect_left(self._cumulative, point), self._count - 1)]
