"""Real processes: a shard split by hand (``Admin.SplitRange``, as ``kvstore split``) while
a client writes. The client library never sees an error, every acknowledged write reads back
once, a scan over everything returns each key once in order, and the new layout and data
survive a restart of every node."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from kvstore import AsyncClient
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.local_cluster import LocalCluster
from kvstore.v1 import admin_pb2, admin_pb2_grpc
from tests.system.test_local_cluster import free_base_port

KEYS_BEFORE = 120
KEYS_DURING = 240


async def admin(endpoint: str) -> tuple[grpc.aio.Channel, admin_pb2_grpc.AdminStub]:
    channel = grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
    return channel, admin_pb2_grpc.AdminStub(channel)


async def layout(endpoint: str) -> list[admin_pb2.ShardInfo]:
    channel, stub = await admin(endpoint)
    async with channel:
        view = await stub.DescribeCluster(admin_pb2.DescribeClusterRequest(), timeout=5)
    return sorted(view.shards, key=lambda s: s.start)


def test_a_split_under_writes_loses_nothing_and_survives_a_restart(tmp_path: Path) -> None:
    local = LocalCluster(tmp_path / "data", base_port=free_base_port())
    local.start_all()
    # the default layout: shard 3 holds [c, end), so every key here
    keys = [f"k{i:04d}" for i in range(KEYS_BEFORE + KEYS_DURING)]

    async def main() -> None:
        async with AsyncClient(local.endpoints, timeout_s=20) as kv:
            for key in keys[:KEYS_BEFORE]:
                await kv.put(key, f"v-{key}")

            async def writer() -> None:
                for key in keys[KEYS_BEFORE:]:
                    await kv.put(key, f"v-{key}")  # an error here fails the test

            writing = asyncio.create_task(writer())
            # Ask a node that does not lead shard 3 (dc3's is preferred) nor shard 1 (which
            # hands out the id): it finds both leaders.
            channel, stub = await admin(local.endpoints[1])
            async with channel:
                halved = await stub.SplitRange(admin_pb2.SplitRangeRequest(shard_id=3), timeout=10)
                assert halved.left.shard_id == 3
                assert halved.left.end == halved.right.start
                assert halved.right.shard_id > 3  # above every configured shard
                assert halved.left.generation == halved.right.generation == 2
                at = b"k0300"
                again = await stub.SplitRange(
                    admin_pb2.SplitRangeRequest(shard_id=halved.right.shard_id, at=at), timeout=10
                )
                assert again.right.start == at
                assert again.right.shard_id not in (3, halved.right.shard_id)
                # A key outside the shard is refused, and says why.
                try:
                    await stub.SplitRange(
                        admin_pb2.SplitRangeRequest(shard_id=3, at=b"a"), timeout=10
                    )
                    raise AssertionError("a split outside the shard was accepted")
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
            await writing

            for key in keys:
                got = await kv.get(key)
                assert got is not None and got.value == f"v-{key}".encode(), key
                assert got.version == 1, key  # each write applied once
            scanned, more = await kv.scan("c", "")
            assert not more
            assert [x.key.decode() for x in scanned] == keys
            shards = await layout(local.endpoints[0])
            assert len(shards) == 5
            ours = [s for s in shards if s.start >= b"c"]
            assert sum(s.keys for s in ours) == len(keys)

        for node_id in list(local.procs):
            local.kill(node_id)
        local.start_all()
        async with AsyncClient(local.endpoints, timeout_s=20) as kv:
            scanned, _ = await kv.scan("c", "")
            assert [x.key.decode() for x in scanned] == keys
            await kv.put("k0301", "after-restart")
            assert (await kv.get("k0301")).value == b"after-restart"  # type: ignore[union-attr]
        assert [(s.shard_id, s.start) for s in await layout(local.endpoints[1])] == [
            (s.shard_id, s.start) for s in shards
        ]

    try:
        asyncio.run(main())
    finally:
        local.stop_all()


def test_shards_past_the_split_size_split_by_themselves(tmp_path: Path) -> None:
    """``[sharding] split_size_mb`` (here 40 KB): writing 200 KB into one shard splits it
    into several, with no command; every key stays readable and a scan returns each once."""
    local = LocalCluster(tmp_path / "data", base_port=free_base_port(), split_size_mb=0.04)
    local.start_all()
    keys = [f"k{i:05d}" for i in range(1000)]
    value = "v" * 194  # 200 bytes a key with the key

    async def main() -> None:
        async with AsyncClient(local.endpoints, timeout_s=20) as kv:
            for key in keys:
                await kv.put(key, value)
            deadline = asyncio.get_running_loop().time() + 60
            while len(shards := await layout(local.endpoints[0])) < 6:
                assert asyncio.get_running_loop().time() < deadline, shards
                await asyncio.sleep(0.2)
            scanned, more = await kv.scan("c", "")
            assert not more and [x.key.decode() for x in scanned] == keys
            for key in keys[::50]:
                got = await kv.get(key)
                assert got is not None and got.value == value.encode()

    try:
        asyncio.run(main())
    finally:
        local.stop_all()


def test_a_merge_under_writes_loses_nothing_and_survives_a_restart(tmp_path: Path) -> None:
    """``Admin.MergeRange`` (as ``kvstore merge``) joins a shard split off a moment before
    back into its left neighbour while a client writes to both: the client never sees an
    error, every write applies once, the scan is whole, the layout is as before the split
    (one generation on), and all of it survives a restart."""
    local = LocalCluster(tmp_path / "data", base_port=free_base_port())
    local.start_all()
    keys = [f"k{i:04d}" for i in range(KEYS_BEFORE + KEYS_DURING)]

    async def main() -> None:
        async with AsyncClient(local.endpoints, timeout_s=20) as kv:
            for key in keys[:KEYS_BEFORE]:
                await kv.put(key, f"v-{key}")
            channel, stub = await admin(local.endpoints[1])
            async with channel:
                before = await layout(local.endpoints[0])
                split = await stub.SplitRange(
                    admin_pb2.SplitRangeRequest(shard_id=3, at=b"k0100"), timeout=10
                )

                async def writer() -> None:
                    for key in keys[KEYS_BEFORE:]:
                        await kv.put(key, f"v-{key}")  # an error here fails the test

                writing = asyncio.create_task(writer())
                await asyncio.sleep(0.2)
                merged = await stub.MergeRange(admin_pb2.MergeRangeRequest(shard_id=3), timeout=20)
                assert merged.merged.shard_id == 3
                assert (merged.merged.start, merged.merged.end) == (split.left.start, b"")
                assert merged.merged.generation == 3
                await writing
                # The last shard has nothing after it; an unknown shard is not found.
                for shard_id, code in (
                    (3, grpc.StatusCode.FAILED_PRECONDITION),
                    (999, grpc.StatusCode.NOT_FOUND),
                ):
                    try:
                        await stub.MergeRange(
                            admin_pb2.MergeRangeRequest(shard_id=shard_id), timeout=10
                        )
                        raise AssertionError(f"merge of shard {shard_id} was accepted")
                    except grpc.aio.AioRpcError as err:
                        assert err.code() == code, err
            for key in keys:
                got = await kv.get(key)
                assert got is not None and got.value == f"v-{key}".encode(), key
                assert got.version == 1, key
            scanned, more = await kv.scan("c", "")
            assert not more and [x.key.decode() for x in scanned] == keys
            after = await layout(local.endpoints[2])
            assert [(s.shard_id, s.start, s.end) for s in after] == [
                (s.shard_id, s.start, s.end) for s in before
            ]
            assert sum(s.keys for s in after if s.start >= b"c") == len(keys)

        for node_id in list(local.procs):
            local.kill(node_id)
        local.start_all()
        async with AsyncClient(local.endpoints, timeout_s=20) as kv:
            scanned, _ = await kv.scan("c", "")
            assert [x.key.decode() for x in scanned] == keys
            await kv.put("k0101", "after-restart")
            assert (await kv.get("k0101")).value == b"after-restart"  # type: ignore[union-attr]
        assert len(await layout(local.endpoints[0])) == len(after)

    try:
        asyncio.run(main())
    finally:
        local.stop_all()
