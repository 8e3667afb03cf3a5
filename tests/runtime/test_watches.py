"""The runtime's watches: floors for compaction, and a watch over keys not hosted here."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from cluster.keys import KeySpan
from cluster.position import Position
from cluster.ranges import RangeDescriptor
from kvstore.model import Engine, MemoryStore
from kvstore.runtime.watches import Watches, WatchNotHostedError

SHARDS = [
    RangeDescriptor(1, b"", b"g", (1, 2, 3), 1),
    RangeDescriptor(2, b"g", b"p", (1, 2, 3), 1),
    RangeDescriptor(3, b"p", b"", (1, 2, 3), 1),
]


def watches(hosted: list[RangeDescriptor]) -> Watches:
    store = MemoryStore()

    @contextmanager
    def read(shard: int) -> Iterator[Engine]:
        yield store.engine(shard)

    return Watches(lambda: hosted, read)


def test_each_shard_s_floor_is_at_most_what_every_watcher_over_it_has_seen() -> None:
    async def main() -> None:
        w = watches(SHARDS)
        w.add(KeySpan(b"a", b"c"), None, prev_kv=False)  # now: everything at 0
        behind = Position.at(KeySpan(b"h", b"z"), 0).advanced(KeySpan(b"h", b"z"), 7)
        w.add(KeySpan(b"h", b"z"), behind, prev_kv=False)
        floors = w.floors()
        assert floors == {1: 0, 2: 7, 3: 7}

    asyncio.run(main())


def test_a_watch_over_keys_this_node_holds_no_replica_of_is_refused() -> None:
    async def main() -> None:
        w = watches([SHARDS[0], SHARDS[2]])
        w.add(KeySpan(b"a", b"f"), None, prev_kv=False)
        with pytest.raises(WatchNotHostedError, match="holds no replica"):
            w.add(KeySpan(b"a", b"q"), None, prev_kv=False)

    asyncio.run(main())
