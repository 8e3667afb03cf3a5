"""Which shard holds a key: a sorted map of spans, looked up by bisection.

Rules: spans are disjoint and cover the key space (``ClusterConfig`` guarantees it); a lookup
is O(log shards).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

from cluster.config import ShardSpec
from cluster.keys import END_OF_KEYSPACE


class RangeMap:
    def __init__(self, shards: Iterable[ShardSpec]) -> None:
        self._shards = sorted(shards, key=lambda s: s.span.start)
        self._starts = [s.span.start for s in self._shards]

    def lookup(self, key: bytes) -> ShardSpec:
        index = bisect.bisect_right(self._starts, key) - 1
        shard = self._shards[index]
        assert shard.span.contains(key), (key, shard)
        return shard

    def overlapping(self, start: bytes, end: bytes) -> list[ShardSpec]:
        """Shards that hold any key of ``[start, end)`` (``end == b""``: to the end), in order."""
        first = bisect.bisect_right(self._starts, start) - 1
        out = []
        for shard in self._shards[first:]:
            if end != END_OF_KEYSPACE and shard.span.start >= end:
                break
            out.append(shard)
        return out

    def __iter__(self) -> Iterator[ShardSpec]:
        return iter(self._shards)
