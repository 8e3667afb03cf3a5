"""The runtime's watches: floors for compaction, a watch over keys not hosted here, and a
catch-up that reads a split the node has not heard of yet."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from cluster.keys import KeySpan
from cluster.position import Position
from cluster.ranges import RangeDescriptor
from kvstore.model import (
    Engine,
    KvStateMachine,
    MemoryStore,
    Put,
    RequestId,
    SplitDone,
    encode_command,
)
from kvstore.model.commands import Split
from kvstore.model.watch import WatchNotHostedError
from kvstore.runtime.watches import Watches

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


def test_a_catch_up_that_reads_a_split_the_node_has_not_heard_of_lists_the_shards_again() -> None:
    """A split's job committed but its job_done has not run: the node still lists the
    parent whole, the read finds it cut. The catch-up lists the shards again once the node
    hears, and delivers the change the new shard's keys had before the split (sim seed
    1585: read as the parent's left part only, it was skipped)."""

    async def main() -> None:
        store = MemoryStore()
        whole = RangeDescriptor(1, b"", b"", (1, 2, 3), 1)
        parent = KvStateMachine(store.engine(1), initial=whole)
        no = RequestId(0, 0)
        parent.apply(1, [encode_command(Put(no, b"d", b"1"))])  # revision 1
        [(_, done)] = parent.apply(2, [encode_command(Split(no, b"c", 2))])
        assert isinstance(done, SplitDone)  # committed; the node has not heard of it yet
        hosted = [whole]

        @contextmanager
        def read(shard: int) -> Iterator[Engine]:
            yield store.engine(shard)

        w = Watches(lambda: hosted, read)
        everything = KeySpan(b"", b"")
        watch = w.add(everything, Position.at(everything, 0), prev_kv=False)
        await asyncio.sleep(0.05)  # the read finds a layout the node does not know yet
        hosted[:] = [done.left, done.right]  # job_done ran: the node knows the split now
        await asyncio.wait_for(watch.wake.wait(), 5)
        events = [(e.change.key, e.change.revision) for d in watch.watcher.outbox for e in d.events]
        assert events == [(b"d", 1)]

    asyncio.run(main())


def test_a_watch_over_keys_the_node_stopped_serving_ends_for_its_client_to_resume() -> None:
    """A replica moved off the node (its range ended there): a watch over those keys would
    wait for changes made elsewhere. After the layout change it ends with the reason
    (``UNAVAILABLE`` to the client, which resumes from its token on another node); one over
    keys still served goes on."""

    async def main() -> None:
        hosted = list(SHARDS)
        w = watches(hosted)
        moving = w.add(KeySpan(b"h", b"j"), None, prev_kv=False)
        staying = w.add(KeySpan(b"a", b"c"), None, prev_kv=False)
        w.recheck()
        assert not moving.watcher.cancel_reason and not moving.wake.is_set()
        hosted.remove(SHARDS[1])  # shard 2 ended here: its successor is on other nodes
        w.recheck()
        assert "holds no replica" in moving.watcher.cancel_reason and moving.wake.is_set()
        assert not staying.watcher.cancel_reason

    asyncio.run(main())
