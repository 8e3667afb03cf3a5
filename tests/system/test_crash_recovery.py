"""Real processes (started by the same code as ``kvstore up``), real SIGKILLs.

A shard leader killed with SIGKILL is replaced and writes continue within seconds; then
every node is killed at once and restarted from its LMDB directory alone. No acknowledged
write is lost, and retried writes (same request id) applied exactly once.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import grpc

from kvstore import AsyncClient
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.local_cluster import LocalCluster, default_config
from kvstore.v1 import admin_pb2, admin_pb2_grpc, kv_pb2, kv_pb2_grpc
from tests.system.test_local_cluster import free_base_port

CLIENT_ID = 4242
KEYS = [f"{prefix}{i:03d}" for i in range(12) for prefix in ("apple", "banana", "zebra")]


class Client:
    """A plain gRPC client that retries a write, with the same request id, across nodes."""

    def __init__(self, endpoints: list[str]) -> None:
        self.channels = {
            e: grpc.aio.insecure_channel(e, options=CHANNEL_OPTIONS) for e in endpoints
        }
        self.seq = 0

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()

    async def put(self, key: str, value: str, deadline_s: float = 20.0) -> None:
        self.seq += 1
        request = kv_pb2.PutRequest(
            key=key.encode(),
            value=value.encode(),
            request_id=kv_pb2.RequestId(client_id=CLIENT_ID, seq=self.seq),
        )
        await self._retry(lambda stub: stub.Put(request, timeout=3), deadline_s)

    async def get(self, key: str, deadline_s: float = 20.0) -> kv_pb2.GetResponse:
        request = kv_pb2.GetRequest(key=key.encode())
        return await self._retry(lambda stub: stub.Get(request, timeout=3), deadline_s)

    async def _retry(self, call, deadline_s: float):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + deadline_s
        while True:
            for channel in self.channels.values():
                try:
                    return await call(kv_pb2_grpc.KVStub(channel))
                except grpc.aio.AioRpcError as err:
                    if err.code() not in (
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        grpc.StatusCode.CANCELLED,  # the node stopped (its store filled)
                    ):
                        raise
                if time.monotonic() > deadline:
                    raise AssertionError("no node answered before the deadline")
            await asyncio.sleep(0.1)

    async def leader_of(self, shard_id: int) -> int:
        for _ in range(100):
            for channel in self.channels.values():
                try:
                    view = await admin_pb2_grpc.AdminStub(channel).NodeStatus(
                        admin_pb2.NodeStatusRequest(), timeout=2
                    )
                except grpc.aio.AioRpcError:
                    continue
                for shard in view.shards:
                    if shard.shard_id == shard_id and shard.role == "leader":
                        return int(view.node_id)
            await asyncio.sleep(0.1)
        raise AssertionError(f"shard {shard_id} has no leader")


def test_sigkilled_leader_and_whole_cluster_lose_no_acknowledged_write(tmp_path: Path) -> None:
    local = LocalCluster(tmp_path / "data", base_port=free_base_port())
    local.start_all()
    local.wait_serving()

    async def main() -> None:
        client = Client(local.endpoints)
        acked: dict[str, str] = {}
        try:
            for key in KEYS[:18]:
                await client.put(key, f"{key}-v1")
                acked[key] = f"{key}-v1"
            leader = await client.leader_of(1)
            local.kill(leader)
            started = time.monotonic()
            await client.put("apple-after-kill", "x")
            acked["apple-after-kill"] = "x"
            failover_s = time.monotonic() - started
            assert failover_s < 10, f"writes resumed only after {failover_s:.1f}s"
            for key in KEYS[18:]:
                await client.put(key, f"{key}-v1")
                acked[key] = f"{key}-v1"
            local.start(leader)
            await client.put("apple000", "apple000-v2")  # version 2 of an early key
            acked["apple000"] = "apple000-v2"
            for node_id in list(local.procs):
                local.kill(node_id)
            local.start_all()
            for key, value in sorted(acked.items()):
                got = await client.get(key)
                assert got.found and got.kv.value == value.encode(), key
            assert (await client.get("apple000")).kv.version == 2
            assert (await client.get("banana005")).kv.version == 1  # retries applied once
        finally:
            await client.close()

    try:
        asyncio.run(main())
    finally:
        local.stop_all()


def test_a_node_whose_disk_was_wiped_rejoins_without_disturbing_the_cluster(
    tmp_path: Path,
) -> None:
    """Kill a node, delete its data directory, start it again (``kvstore up``'s own code, as
    an operator would after a disk loss). It must not vote until the rejoin rule lets it: the
    cluster keeps serving, leaders do not churn (one re-prepare per shard, not an election
    storm: ballots stay within a few rounds), and once it votes again it holds every write."""
    local = LocalCluster(tmp_path / "data", base_port=free_base_port())
    local.start_all()
    local.wait_serving()

    async def ballots(client: Client) -> dict[int, int]:
        rounds: dict[int, int] = {}
        for channel in client.channels.values():
            try:
                view = await admin_pb2_grpc.AdminStub(channel).NodeStatus(
                    admin_pb2.NodeStatusRequest(), timeout=2
                )
            except grpc.aio.AioRpcError:
                continue
            for shard in view.shards:
                round_ = int(shard.promised_ballot.partition(".")[0] or 0)
                rounds[shard.shard_id] = max(rounds.get(shard.shard_id, 0), round_)
        return rounds

    async def roles(client: Client, node: int) -> set[str]:
        channel = client.channels[local.endpoints[node - 1]]
        try:
            view = await admin_pb2_grpc.AdminStub(channel).NodeStatus(
                admin_pb2.NodeStatusRequest(), timeout=2
            )
        except grpc.aio.AioRpcError:
            return {"down"}
        return {s.role for s in view.shards}

    async def main() -> None:
        client = Client(local.endpoints)
        try:
            for key in KEYS[:9]:
                await client.put(key, "before")
            before = await ballots(client)
            local.kill(1)
            shutil.rmtree(local.data_dir / "n1")
            local.start(1)
            for key in KEYS[9:18]:
                await client.put(key, "during")
            deadline = time.monotonic() + 30
            while "rejoining" in (seen := await roles(client, 1)) or "down" in seen:
                assert time.monotonic() < deadline, f"node 1 did not rejoin: {seen}"
                await asyncio.sleep(0.2)
            after = await ballots(client)
            for shard, round_ in after.items():
                assert round_ <= before.get(shard, 0) + 6, (shard, before, after)
            # It votes with everything: with the other two down, it still has every write
            # (read from its own replica, stale, then with one peer back, linearizably).
            local.kill(2)
            for key in KEYS[:18]:
                got = await client.get(key)
                assert got.found, key
        finally:
            await client.close()

    try:
        asyncio.run(main())
    finally:
        local.stop_all()


def test_a_full_store_stops_its_node_with_one_line_and_it_restarts_once_raised(
    tmp_path: Path,
) -> None:
    """A disk error is fatal to the node, never to the data: with a tiny LMDB map the nodes
    stop with one clear line (exit code 1, which ``kvstore up`` restarts), and once the map
    is raised they start again with every acknowledged write."""
    data = tmp_path / "data"
    data.mkdir()
    config = data / "cluster.toml"
    config.write_text(default_config(base_port=free_base_port()) + "[storage]\nmap_size_mb = 3\n")
    local = LocalCluster(data)
    local.start_all()
    local.wait_serving()

    async def fill() -> dict[str, str]:
        client = Client(local.endpoints)
        acked: dict[str, str] = {}
        try:
            for i in range(200):
                value = f"{i:04d}" * 25_000  # 100 KB
                try:
                    await client.put(f"apple{i:03d}", value, deadline_s=5)
                except AssertionError:
                    break  # no node answered: the store is full
                acked[f"apple{i:03d}"] = value
        finally:
            await client.close()
        return acked

    try:
        acked = asyncio.run(fill())
        assert acked, "nothing was written before the store filled"
        deadline = time.monotonic() + 20
        while len(local.exited()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        exited = local.exited()
        assert len(exited) >= 2, exited  # a majority hit the full map
        for node_id, code in exited.items():
            assert code == 1, (node_id, code)
            last = local.last_log_line(node_id)
            assert last.startswith(f"kvstore: node {node_id} failed: the store is full"), last
            assert "map_size_mb" in last and "Traceback" not in last
        local.stop_all()
        config.write_text(config.read_text().replace("map_size_mb = 3", "map_size_mb = 64"))
        local.start_all()
        local.wait_serving()

        async def read_back() -> None:
            client = Client(local.endpoints)
            try:
                for key, value in acked.items():
                    got = await client.get(key)
                    assert got.found and got.kv.value == value.encode(), key
            finally:
                await client.close()
            async with AsyncClient(local.endpoints, timeout_s=20) as kv:  # and it takes writes
                await kv.put("after", "raised")
                assert (await kv.get("after")).value == b"raised"  # type: ignore[union-attr]

        asyncio.run(read_back())
    finally:
        local.stop_all()
