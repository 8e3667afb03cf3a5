"""Real processes: leases end to end. A key put with a 3 s lease outlives its TTL while kept
alive, and once the keep-alives stop it is gone within 5 s and not before 3 s, also when
the meta range's leader is killed as they stop; a revoke deletes the lease's keys in every
shard before it answers; bad lease requests get clear statuses."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from cluster import META_RANGE_ID
from kvstore import AsyncClient
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.client import KvError
from kvstore.local_cluster import LocalCluster
from kvstore.v1 import admin_pb2, admin_pb2_grpc, kv_pb2, kv_pb2_grpc
from tests.system.test_local_cluster import free_base_port

TTL_MS = 3000


async def meta_leader(endpoints: list[str]) -> int:
    """The node leading the meta range with its read lease (waits for one)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for endpoint in endpoints:
            try:
                async with grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS) as ch:
                    status = await admin_pb2_grpc.AdminStub(ch).NodeStatus(
                        admin_pb2.NodeStatusRequest(), timeout=2
                    )
            except grpc.aio.AioRpcError:
                continue
            for shard in status.shards:
                if shard.shard_id == META_RANGE_ID and shard.role == "leader" and shard.lease:
                    return int(status.node_id)
        await asyncio.sleep(0.1)
    raise AssertionError("no meta leader")


async def gone_after(kv: AsyncClient, key: str, since: float, limit_s: float) -> float:
    """Seconds from ``since`` until ``key`` reads as absent (polled every 50 ms)."""
    while time.monotonic() - since < limit_s:
        if await kv.get(key) is None:
            return time.monotonic() - since
        await asyncio.sleep(0.05)
    raise AssertionError(f"{key} still there {limit_s} s after its keep-alives stopped")


def test_a_leased_key_lives_while_kept_alive_and_goes_within_its_bounds(tmp_path: Path) -> None:
    local = LocalCluster(tmp_path / "data", base_port=free_base_port())
    local.start_all()
    local.wait_serving()

    async def main() -> None:
        async with AsyncClient(local.endpoints, timeout_s=20) as kv:
            for round_ in ("quiet", "leader-killed"):
                lease = await kv.leases.grant(TTL_MS)
                await kv.put(f"a-{round_}", "1", lease=lease)
                await kv.put(f"z-{round_}", "1", lease=lease)  # another shard
                await kv.put(f"kept-{round_}", "1")  # no lease: stays
                sent = time.monotonic()
                for _ in range(4):  # 4 s in all: longer than the TTL
                    await asyncio.sleep(1.0)
                    sent = time.monotonic()
                    assert await kv.leases.keep_alive_once(lease) == TTL_MS
                assert await kv.get(f"a-{round_}") is not None
                if round_ == "leader-killed":
                    local.kill(await meta_leader(local.endpoints))
                # Each key within the same bounds: the ranges detach an ended lease's keys
                # each on its own, so the two need not go at the same instant (once, in CI,
                # z was read a moment before its range got to it).
                for key in (f"a-{round_}", f"z-{round_}"):
                    took = await gone_after(kv, key, sent, limit_s=5.0)
                    assert took >= TTL_MS / 1000, f"{key} gone {took:.2f} s after its keep-alive"
                assert await kv.get(f"kept-{round_}") is not None
                with pytest.raises(KvError) as refused:
                    await kv.leases.keep_alive_once(lease)
                assert refused.value.code == grpc.StatusCode.NOT_FOUND

    try:
        asyncio.run(main())
    finally:
        local.stop_all()


def test_revoke_deletes_every_key_of_the_lease_before_it_answers(tmp_path: Path) -> None:
    local = LocalCluster(tmp_path / "data", base_port=free_base_port())
    local.start_all()
    local.wait_serving()

    async def main() -> None:
        async with AsyncClient(local.endpoints, timeout_s=20) as kv:
            async with kv.lease(60) as lease:
                keys = [f"{c}-leased" for c in "abz"]
                for key in keys:
                    await kv.put(key, "v", lease=lease.id)
                txn = kv.txn().if_create_revision("m-leased", "=", 0)
                assert (await txn.then_put("m-leased", "v", lease=lease.id).commit()).succeeded
                keys.append("m-leased")
                assert lease.id in await kv.leases.list()
                ttl = await kv.leases.time_to_live(lease.id)
                assert ttl.ttl_ms == 60_000 and 0 < ttl.remaining_ms <= 67_000
            assert [await kv.get(key) for key in keys] == [None] * 4
            assert lease.id not in await kv.leases.list()
            # The lease ended: a put naming it is refused, everywhere.
            with pytest.raises(KvError) as refused:
                await kv.put("a-late", "v", lease=lease.id)
            assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
            with pytest.raises(KvError) as refused:
                await kv.txn().then_put("m-late", "v", lease=lease.id).commit()
            assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
            with pytest.raises(KvError) as refused:
                await kv.txn().then_put("m-late", "v", lease=424242).commit()
            assert refused.value.code == grpc.StatusCode.NOT_FOUND
            assert await kv.get("m-late") is None
            with pytest.raises(KvError) as refused:
                await kv.leases.revoke(lease.id)
            assert refused.value.code == grpc.StatusCode.NOT_FOUND

    try:
        asyncio.run(main())
    finally:
        local.stop_all()


def test_bad_lease_requests_get_clear_statuses(tmp_path: Path) -> None:
    local = LocalCluster(tmp_path / "data", base_port=free_base_port())
    local.start_all()
    local.wait_serving()

    async def main() -> None:
        async with AsyncClient(local.endpoints, timeout_s=20) as client:
            await client.put("ready", "1")  # the cluster serves
        async with grpc.aio.insecure_channel(local.endpoints[1], options=CHANNEL_OPTIONS) as ch:
            leases = kv_pb2_grpc.LeaseStub(ch)
            kv = kv_pb2_grpc.KVStub(ch)
            cases = [
                (
                    lambda: leases.Grant(kv_pb2.LeaseGrantRequest(ttl_ms=0), timeout=10),
                    "INVALID_ARGUMENT",
                ),
                (
                    lambda: leases.Grant(
                        kv_pb2.LeaseGrantRequest(ttl_ms=(1 << 40) + 1), timeout=10
                    ),
                    "INVALID_ARGUMENT",
                ),
                (
                    lambda: leases.Grant(kv_pb2.LeaseGrantRequest(ttl_ms=5, id=-3), timeout=10),
                    "INVALID_ARGUMENT",
                ),
                (
                    lambda: leases.Revoke(kv_pb2.LeaseRevokeRequest(id=0), timeout=10),
                    "INVALID_ARGUMENT",
                ),
                (
                    lambda: leases.Revoke(kv_pb2.LeaseRevokeRequest(id=12345), timeout=10),
                    "NOT_FOUND",
                ),
                (
                    lambda: leases.TimeToLive(kv_pb2.LeaseTimeToLiveRequest(id=12345), timeout=10),
                    "NOT_FOUND",
                ),
                (
                    lambda: leases.KeepAliveOnce(
                        kv_pb2.LeaseKeepAliveRequest(id=12345), timeout=10
                    ),
                    "NOT_FOUND",
                ),
                (
                    lambda: kv.Put(
                        kv_pb2.PutRequest(key=b"k", value=b"v", lease=12345), timeout=10
                    ),
                    "NOT_FOUND",
                ),
                (
                    lambda: kv.Put(kv_pb2.PutRequest(key=b"k", value=b"v", lease=-1), timeout=10),
                    "INVALID_ARGUMENT",
                ),
            ]
            for call, code in cases:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await call()
                assert refused.value.code().name == code, refused.value
            granted = await leases.Grant(kv_pb2.LeaseGrantRequest(ttl_ms=5000, id=77), timeout=10)
            assert granted.id == 77 and granted.ttl_ms == 5000
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await leases.Grant(kv_pb2.LeaseGrantRequest(ttl_ms=5000, id=77), timeout=10)
            assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
            # The stream: one answer per request, 0 for a lease that is not there.
            stream = leases.KeepAlive(
                iter([kv_pb2.LeaseKeepAliveRequest(id=77), kv_pb2.LeaseKeepAliveRequest(id=9)])
            )
            answers = [(a.id, a.ttl_ms) async for a in stream]
            assert answers == [(77, 5000), (9, 0)]

    try:
        asyncio.run(main())
    finally:
        local.stop_all()
