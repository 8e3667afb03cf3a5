"""The KV and Admin services at their edges, on three in-process nodes: a scan over the
limit, the staleness a plain stale read reports, TransferLeader's refusals, and what an
UNAVAILABLE says about a read and about a write."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from cluster import parse_cluster_config
from kvstore import AsyncClient
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.server import NodeServer
from kvstore.v1 import admin_pb2, admin_pb2_grpc, kv_pb2, kv_pb2_grpc
from tests.runtime.test_grpc_cluster import PAXOS, config_text, led_from_its_dc

# A fourth node in the config that holds no replica (and never runs).
NO_REPLICAS = '\n[[nodes]]\nid = 4\ndc = "dc1"\naddress = "127.0.1.1:1"\n'


@asynccontextmanager
async def three_nodes(
    tmp_path: Path, extra: str = ""
) -> AsyncIterator[tuple[list[NodeServer], list[str]]]:
    cluster = parse_cluster_config(config_text() + extra)
    servers = [
        NodeServer(
            cluster, n, tmp_path / f"n{n}", paxos_overrides=PAXOS, map_size=64 << 20, founding=True
        )
        for n in (1, 2, 3)
    ]
    running = []
    try:
        for server in servers:
            await server.start()
            running.append(server)
        yield running, [s.spec.address for s in servers]
    finally:
        for server in running:
            await server.stop()


def test_a_scan_limit_over_the_maximum_is_refused_not_capped(tmp_path: Path) -> None:
    async def main() -> None:
        extra = "\n[limits]\nscan_keys_max = 3\n"
        async with (
            three_nodes(tmp_path, extra) as (_servers, endpoints),
            AsyncClient(endpoints, timeout_s=15) as client,
        ):
            for key in ("a1", "a2", "a3", "a4"):
                await client.put(key, "v")
            kvs, more = await client.scan("a", "b", limit=3)
            assert len(kvs) == 3 and more
            kvs, more = await client.scan("a", "b", limit=0)  # 0: up to the maximum
            assert len(kvs) == 3 and more
            for endpoint in endpoints:  # followers forward to the leader: a full page too
                async with grpc.aio.insecure_channel(endpoint) as channel:
                    stub = kv_pb2_grpc.KVStub(channel)
                    for limit in (0, 3):
                        page = await stub.Scan(
                            kv_pb2.ScanRequest(start=b"a", end=b"b", limit=limit), timeout=5
                        )
                        assert len(page.kvs) == 3 and page.more
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        await stub.Scan(
                            kv_pb2.ScanRequest(start=b"a", end=b"b", limit=4), timeout=5
                        )
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "scan limit 4 is over the maximum 3" in (info.value.details() or "")

    asyncio.run(main())


def test_a_plain_stale_read_reports_no_bound_and_a_bounded_one_its_bound(tmp_path: Path) -> None:
    """README: ``staleness_bound_ms`` is -1 for a plain stale read (no bound asked)."""

    async def main() -> None:
        async with (
            three_nodes(tmp_path) as (_servers, endpoints),
            AsyncClient(endpoints, timeout_s=15) as client,
        ):
            await client.put("apple", "red")
            for endpoint in endpoints:  # every node serves it from its own replica
                async with grpc.aio.insecure_channel(endpoint) as channel:
                    stub = kv_pb2_grpc.KVStub(channel)
                    plain = await stub.Get(
                        kv_pb2.GetRequest(key=b"apple", consistency=kv_pb2.CONSISTENCY_STALE),
                        timeout=5,
                    )
                    scan = await stub.Scan(
                        kv_pb2.ScanRequest(start=b"a", consistency=kv_pb2.CONSISTENCY_STALE),
                        timeout=5,
                    )
                    bounded = await stub.Get(
                        kv_pb2.GetRequest(
                            key=b"apple",
                            consistency=kv_pb2.CONSISTENCY_STALE,
                            max_staleness_ms=60_000,
                        ),
                        timeout=5,
                    )
                assert plain.header.staleness_bound_ms == -1, plain.header
                assert scan.header.staleness_bound_ms == -1, scan.header
                assert 0 <= bounded.header.staleness_bound_ms <= 60_000, bounded.header

    asyncio.run(main())


def test_transfer_leader_names_an_unknown_shard_or_node(tmp_path: Path) -> None:
    async def main() -> None:
        async with (
            three_nodes(tmp_path, NO_REPLICAS) as (_servers, endpoints),
            grpc.aio.insecure_channel(endpoints[0], options=CHANNEL_OPTIONS) as channel,
        ):
            admin = admin_pb2_grpc.AdminStub(channel)
            for shard, node, code, details in (
                (99, 1, grpc.StatusCode.NOT_FOUND, "shard 99 does not exist"),
                (1, 99, grpc.StatusCode.NOT_FOUND, "node 99 does not exist"),
                (1, 4, grpc.StatusCode.INVALID_ARGUMENT, "node 4 holds no replica of shard 1"),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await admin.TransferLeader(
                        admin_pb2.TransferLeaderRequest(shard_id=shard, to_node_id=node),
                        timeout=5,
                    )
                assert info.value.code() == code
                assert details in (info.value.details() or "")

    asyncio.run(main())


def test_unavailable_says_an_outcome_is_unknown_for_a_write_only(tmp_path: Path) -> None:
    """A leader alone can neither commit nor confirm its leadership: both items fail with
    UNAVAILABLE at their own deadline; only the write's message says it may have applied."""

    async def main() -> None:
        async with three_nodes(tmp_path) as (servers, endpoints):
            async with AsyncClient(endpoints, timeout_s=15) as client:
                await client.put("apple", "red")
            leader = await led_from_its_dc(servers)
            for server in list(servers):
                if server is not leader:
                    servers.remove(server)
                    await server.stop()
            await asyncio.sleep(0.5)  # past the lease: a read needs a quorum now
            request_id = kv_pb2.RequestId(client_id=7, seq=1)
            items = [
                kv_pb2.BatchItem(get=kv_pb2.GetRequest(key=b"apple"), timeout_ms=800),
                kv_pb2.BatchItem(
                    put=kv_pb2.PutRequest(key=b"apple", value=b"blue", request_id=request_id),
                    timeout_ms=800,
                ),
            ]
            started = time.monotonic()
            async with grpc.aio.insecure_channel(leader.spec.address) as channel:
                answer = await kv_pb2_grpc.KVStub(channel).Batch(
                    kv_pb2.BatchRequest(items=items), timeout=10
                )
            assert time.monotonic() - started < 5
            read, write = (r.error for r in answer.results)
            assert read.code == write.code == grpc.StatusCode.UNAVAILABLE.value[0]
            assert "outcome" not in read.message and "nothing was read" in read.message
            assert "the write's outcome is unknown" in write.message

    asyncio.run(main())


def test_a_node_going_down_after_a_fatal_error_answers_unavailable(tmp_path: Path) -> None:
    """Between a fatal error (a failed disk) and the process's exit, calls reaching the node
    are UNAVAILABLE, so clients try another node (they were UNKNOWN: "Unexpected
    RuntimeError", which the client library does not retry)."""

    async def main() -> None:
        async with three_nodes(tmp_path) as (servers, endpoints):
            async with AsyncClient(endpoints, timeout_s=15) as client:
                await client.put("apple", "red")
            servers[0].runtime.failure = OSError(5, "Input/output error")
            async with grpc.aio.insecure_channel(endpoints[0], options=CHANNEL_OPTIONS) as ch:
                kv = kv_pb2_grpc.KVStub(ch)
                for call in (
                    kv.Get(kv_pb2.GetRequest(key=b"apple"), timeout=5),
                    kv.Put(kv_pb2.PutRequest(key=b"apple", value=b"x"), timeout=5),
                ):
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        await call
                    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
                    assert "node 1 is stopping" in (info.value.details() or "")
                item = kv_pb2.BatchItem(get=kv_pb2.GetRequest(key=b"apple"))
                answer = await kv.Batch(kv_pb2.BatchRequest(items=[item]), timeout=5)
                assert answer.results[0].error.code == grpc.StatusCode.UNAVAILABLE.value[0]
            servers[0].runtime.failure = None  # let it stop as usual

    asyncio.run(main())
