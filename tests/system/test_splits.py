"""Real processes: a shard split by hand (``Admin.SplitRange``, as ``kvstore split``) while
a client writes. The client library never sees an error, every acknowledged write reads back
once, a scan over everything returns each key once in order, and the new layout and data
survive a restart of every node."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from cluster import META_RANGE_ID
from kvstore import AsyncClient, range_changed
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.local_cluster import LocalCluster
from kvstore.model import KvStateMachine
from kvstore.storage.lmdb_store import NodeStore
from kvstore.v1 import admin_pb2, admin_pb2_grpc, kv_pb2, kv_pb2_grpc
from tests.system.test_local_cluster import free_base_port

KEYS_BEFORE = 120
KEYS_DURING = 240


async def admin(endpoint: str) -> tuple[grpc.aio.Channel, admin_pb2_grpc.AdminStub]:
    channel = grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
    return channel, admin_pb2_grpc.AdminStub(channel)


async def layout(endpoint: str) -> list[admin_pb2.ShardInfo]:
    """The shard map as ``endpoint`` knows it, waiting for it to listen (a node just
    restarted: its clients may have been answered by the others already)."""
    channel, stub = await admin(endpoint)
    async with channel:
        request = admin_pb2.DescribeClusterRequest()
        view = await stub.DescribeCluster(request, timeout=20, wait_for_ready=True)
    return sorted(view.shards, key=lambda s: s.start)


def test_a_split_under_writes_loses_nothing_and_survives_a_restart(tmp_path: Path) -> None:
    local = LocalCluster(tmp_path / "data", base_port=free_base_port())
    local.start_all()
    local.wait_serving()
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
    local.wait_serving()
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
    local.wait_serving()
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


def test_the_meta_range_holds_the_layout_and_a_stale_route_is_refused_with_the_new_range(
    tmp_path: Path,
) -> None:
    """A split is recorded in the meta range (on a majority of its replicas' disks); a
    request that names the range generation it routed by, older than the node's, is refused
    with ABORTED and the range now (unary and batched alike), nothing applied; the client
    library, whose map is stale, never sees it."""
    local = LocalCluster(tmp_path / "data", base_port=free_base_port())
    local.start_all()
    local.wait_serving()

    async def main() -> list[admin_pb2.ShardInfo]:
        async with AsyncClient(local.endpoints, timeout_s=20) as kv:
            await kv.put("k0100", "before")  # the client's map now has shard 3 at generation 1
            channel, stub = await admin(local.endpoints[0])
            async with channel:
                done = await stub.SplitRange(
                    admin_pb2.SplitRangeRequest(shard_id=3, at=b"k0200"), timeout=10
                )
            left, right = done.left, done.right
            deadline = asyncio.get_running_loop().time() + 20
            while len(await layout(local.endpoints[1])) < 4:  # node 2 learns it (meta, its log)
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
            kv_channel = grpc.aio.insecure_channel(local.endpoints[1], options=CHANNEL_OPTIONS)
            async with kv_channel:
                raw = kv_pb2_grpc.KVStub(kv_channel)
                stale = kv_pb2.RangeVersion(shard_id=3, generation=1)
                for key, now in ((b"k0300", right), (b"k0150", left)):
                    put = kv_pb2.PutRequest(key=key, value=b"x", routed_by=stale)
                    try:
                        await raw.Put(put, timeout=10)
                        raise AssertionError("a stale route was served")
                    except grpc.aio.AioRpcError as err:
                        assert err.code() == grpc.StatusCode.ABORTED, err
                        info = range_changed.range_of(err)
                    assert info is not None
                    assert (info.shard_id, info.start, info.end, info.generation) == (
                        now.shard_id, now.start, now.end, now.generation,
                    )  # fmt: skip
                    item = kv_pb2.BatchItem(put=put)
                    (result,) = (await raw.Batch(kv_pb2.BatchRequest(items=[item]))).results
                    assert result.error.code == grpc.StatusCode.ABORTED.value[0]
                    assert result.error.range.shard_id == now.shard_id
                    current = kv_pb2.RangeVersion(shard_id=now.shard_id, generation=now.generation)
                    served = await raw.Put(
                        kv_pb2.PutRequest(key=key, value=b"routed", routed_by=current), timeout=10
                    )
                    assert served.header.shard_id == now.shard_id
                    assert served.header.generation == now.generation
                    got = await kv.get(key)  # the client library routes by its stale map
                    assert got is not None and got.value == b"routed" and got.version == 1
            await kv.put("k0300", "after")  # refused once for its stale map, then served
            assert (await kv.get("k0300")).version == 2  # type: ignore[union-attr]
            # Every range's leader records its range (within a second of leading it).
            shards = await layout(local.endpoints[2])
            expected = [(s.shard_id, s.start, s.end, s.generation) for s in shards]
            for endpoint in local.endpoints:
                channel, stub = await admin(endpoint)
                async with channel:
                    while True:
                        view = await stub.DescribeCluster(admin_pb2.DescribeClusterRequest())
                        recorded = [
                            (s.shard_id, s.start, s.end, s.generation) for s in view.meta_directory
                        ]
                        if recorded == expected:
                            break
                        assert asyncio.get_running_loop().time() < deadline + 20, recorded
                        await asyncio.sleep(0.05)
            return shards

    try:
        shards = asyncio.run(main())
    finally:
        local.stop_all()
    expected = [(s.shard_id, s.start, s.end, s.generation) for s in shards]
    assert len(expected) == 4
    recorded = 0
    for node_id in (1, 2, 3):
        store = NodeStore(tmp_path / "data" / f"n{node_id}")
        try:
            with store.read(META_RANGE_ID) as engine:
                machine = KvStateMachine(engine)
                directory = machine.directory().current()
        finally:
            store.close()
        got = [(d.range_id, d.start, d.end, d.generation) for d in directory]
        recorded += got == expected
    assert recorded == 3, "every replica of the meta range holds the layout on its disk"
