"""A shard leader frozen by SIGSTOP (a GC pause, a stalled VM) costs one failover, not a timeout.

Found by the fault-test suite: a node forwarding to the leader it knew waited out the
caller's whole deadline on the frozen process, so every client stalled for the full timeout
although a new leader was elected in ~200 ms. Each forwarded attempt is now bounded.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import grpc

from kvstore.channels import CHANNEL_OPTIONS
from kvstore.local_cluster import LocalCluster
from kvstore.v1 import kv_pb2, kv_pb2_grpc
from tests.system.test_crash_recovery import Client
from tests.system.test_local_cluster import free_base_port

DEADLINE_S = 4.0


def test_writes_through_a_follower_continue_while_the_leader_is_frozen(tmp_path: Path) -> None:
    local = LocalCluster(tmp_path / "data", base_port=free_base_port())
    local.start_all()
    local.wait_serving()
    frozen: int | None = None

    async def main() -> None:
        nonlocal frozen
        client = Client(local.endpoints)
        try:
            await client.put("apple", "before")
            frozen = await client.leader_of(1)  # shard a*
            gateway = next(n for n in local.cluster.nodes if n.node_id != frozen)
            local.procs[frozen].send_signal(signal.SIGSTOP)
            async with grpc.aio.insecure_channel(gateway.address, options=CHANNEL_OPTIONS) as ch:
                request = kv_pb2.PutRequest(
                    key=b"apple",
                    value=b"during",
                    request_id=kv_pb2.RequestId(client_id=77, seq=1),
                )
                started = time.monotonic()
                await kv_pb2_grpc.KVStub(ch).Put(request, timeout=DEADLINE_S)
                assert time.monotonic() - started < DEADLINE_S
                got = await kv_pb2_grpc.KVStub(ch).Get(
                    kv_pb2.GetRequest(key=b"apple"), timeout=DEADLINE_S
                )
                assert got.kv.value == b"during"
        finally:
            await client.close()

    try:
        asyncio.run(main())
    finally:
        if frozen is not None and frozen in local.procs:
            local.procs[frozen].send_signal(signal.SIGCONT)
        local.stop_all()
