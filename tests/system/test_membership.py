"""Real processes, two nodes per datacenter: replicas move while a client writes
(``kvstore replica move``, ``node drain``), a stopped node's replicas are rebuilt on another
(``node replace``), and the new layout, the node states and every key survive a restart of
every node; a rebalance leaves draining nodes alone, and the automatic rebalancer moves
replicas onto a node once it is undrained.

The client never sees an error; every acknowledged write reads back; a drained node holds
no replica of any shard (the meta range's excepted: its replicas are fixed by the config,
and the meta range is on the replicas of the first configured shard, nodes 1, 3 and 5)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from kvstore import AsyncClient
from kvstore.api.kv_service import FORWARDED
from kvstore.local_cluster import LocalCluster
from kvstore.v1 import admin_pb2, admin_pb2_grpc, kv_pb2, kv_pb2_grpc
from tests import ports
from tests.system.test_local_cluster import free_base_port_for

KEYS_BEFORE = 60
KEYS_DURING = 200
CLI_TIMEOUT_S = 120
LISTEN_WAIT_S = 60
REBALANCE_WAIT_S = 120  # rounds every 2 s, after 10 s of quiet


def cli(local: LocalCluster, *argv: str) -> Any:
    """``kvstore ARGV -o json`` against the cluster: its parsed output (a failure fails)."""
    done = run(local, *argv)
    assert done.returncode == 0, (argv, done.stdout, done.stderr)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1])


def listening(local: LocalCluster) -> None:
    """Until some node answers (just restarted, they may not listen yet)."""
    deadline = time.monotonic() + LISTEN_WAIT_S
    while run(local, "shards").returncode != 0:
        assert time.monotonic() < deadline, "no node answers"
        time.sleep(0.2)


def run(local: LocalCluster, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kvstore", *argv, "-o", "json"],
        env={**os.environ, "KVSTORE_ENDPOINTS": ",".join(local.endpoints)},
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def replicas_of(local: LocalCluster) -> dict[int, list[int]]:
    shards = cli(local, "shards")["shards"]
    return {s["shard"]: sorted(r["node"] for r in s["replicas"]) for s in shards}


def test_replicas_move_drain_and_replace_under_writes(tmp_path: Path) -> None:
    local = LocalCluster(tmp_path / "data", nodes_per_dc=2, base_port=free_base_port_for(6))
    local.start_all()
    local.wait_serving()
    keys = [f"k{i:04d}" for i in range(KEYS_BEFORE + KEYS_DURING)]
    try:
        listening(local)
        # The operator's commands alone until the end, where the rebalancer's turn comes.
        assert cli(local, "node", "rebalance", "--auto", "off") == {"rebalance": False}

        async def main() -> None:
            async with AsyncClient(local.endpoints, timeout_s=30) as kv:
                for key in keys[:KEYS_BEFORE]:
                    await kv.put(key, f"v-{key}")

                async def writer() -> None:
                    for key in keys[KEYS_BEFORE:]:
                        await kv.put(key, f"v-{key}")  # an error here fails the test

                writing = asyncio.create_task(writer())
                # Shard 3 ([c, end): every key here) is on nodes 1, 3, 5: its dc1 replica
                # moves to node 2, the other node of dc1.
                moved = await asyncio.to_thread(
                    cli, local, "replica", "move", "3", "--from", "1", "--to", "2"
                )
                assert moved["replicas_before"] == [1, 3, 5] and moved["replicas"] == [2, 3, 5]
                assert moved["successor"] > 3 and moved["generation"] == 2
                # Node 4 (dc2; no meta replica) gives up everything it holds.
                drained = await asyncio.to_thread(cli, local, "node", "drain", "4")
                assert drained["kept"] == [] and drained["moved"]
                await writing
                for key in keys:
                    assert (await kv.get(key)).value == f"v-{key}".encode(), key
                await kv.put("k_after", "late")
            # Read through the drained node itself: its ended replicas hold the state they
            # ended with, and must send the read on to the successors, never answer it.
            async with grpc.aio.insecure_channel(local.endpoints[3]) as channel:
                node4 = kv_pb2_grpc.KVStub(channel)
                got = await node4.Get(kv_pb2.GetRequest(key=b"k_after"), timeout=30)
                assert got.found and got.kv.value == b"late"
                scanned = await node4.Scan(kv_pb2.ScanRequest(start=b"k_", end=b"k`"), timeout=30)
                assert [kv.key for kv in scanned.kvs] == [b"k_after"]

        asyncio.run(main())
        layout = replicas_of(local)
        assert all(4 not in replicas for replicas in layout.values()), layout
        nodes = {n["id"]: n for n in cli(local, "node", "list")["nodes"]}
        assert nodes[4]["replicas"] == 0 and nodes[4]["leaders"] == 0
        # Node 6 stops for good; its replicas are rebuilt on node 5 (dc3).
        local.kill(6)
        cli(local, "node", "replace", "6", "5")
        assert all(6 not in replicas for replicas in replicas_of(local).values())
        # Every node restarts: the layout and every key survive (node 2 learned of its new
        # shard from a peer, and stored it).
        local.stop_all()
        local.start_all()
        local.wait_serving()
        listening(local)
        after = replicas_of(local)
        assert all(4 not in r and 6 not in r for r in after.values()), after

        async def read_all() -> None:
            async with AsyncClient(local.endpoints[:5], timeout_s=30) as kv:
                for key in keys:
                    assert (await kv.get(key)).value == f"v-{key}".encode(), key

        asyncio.run(read_all())
        # Node 4 is still draining after the restart (the state is kept in the store), and
        # node 6, replaced, holds nothing: a rebalance spreads replicas onto node 6 only,
        # then has nothing left to do.
        listed = cli(local, "node", "list")
        nodes = {n["id"]: n for n in listed["nodes"]}
        assert nodes[4]["state"] == "draining" and nodes[4]["draining"], nodes[4]
        assert nodes[6]["state"] == "draining", nodes[6]  # replaced: marked as a drain is
        assert listed["rebalance"] is False
        on_three = next(shard for shard, nodes in replicas_of(local).items() if 3 in nodes)
        refused = run(local, "replica", "move", str(on_three), "--from", "3", "--to", "4")
        assert refused.returncode == 2 and "node 4 is draining" in refused.stderr, refused
        cli(local, "node", "undrain", "6")
        balanced = cli(local, "node", "rebalance", "--pause", "0.2")
        assert balanced["moved"] and all(m["reason"] == "balance" for m in balanced["moved"])
        held = {n["id"]: n["replicas"] for n in cli(local, "node", "list")["nodes"]}
        assert held[4] == 0 and held[6] >= 1, held
        assert cli(local, "node", "rebalance") == {"moved": []}
        # Node 4 takes replicas again and the rebalancer is switched on: the meta range's
        # leader moves replicas onto it by itself.
        assert cli(local, "node", "undrain", "4") == {"node": 4, "draining": False}
        cli(local, "node", "rebalance", "--auto", "on")
        deadline = time.monotonic() + REBALANCE_WAIT_S
        while {n["id"]: n["replicas"] for n in cli(local, "node", "list")["nodes"]}[4] == 0:
            assert time.monotonic() < deadline, "the rebalancer moved nothing onto node 4"
            time.sleep(0.5)
        asyncio.run(read_all())
    finally:
        local.stop_all()


def test_a_dead_node_is_replaced_by_a_node_that_joins(tmp_path: Path) -> None:
    """Node 6 is SIGKILLed for good; a new node joins (``serve --join``: it gets id 7 from
    the meta range and hosts nothing yet); ``node replace 6 7`` rebuilds 6's replicas on it.
    No replica is left on 6, every key reads back, and the joined node restarts with the
    same command, as it joined."""

    def addresses(base: int) -> list[str]:  # the six nodes', then the one that joins
        nodes = [f"127.0.{(n - 1) // 2 + 1}.{(n - 1) % 2 + 1}:{base + n}" for n in range(1, 7)]
        return [*nodes, f"127.0.3.3:{base + 7}"]

    base = ports.free_base_port(addresses)
    address = f"127.0.3.3:{base + 7}"
    local = LocalCluster(tmp_path / "data", nodes_per_dc=2, base_port=base)
    local.start_all()
    local.wait_serving()
    keys = [f"k{i:03d}" for i in range(100)]
    join = [
        sys.executable, "-m", "kvstore", "serve", "--join", ",".join(local.endpoints[:5]),
        "--dc", "dc3", "--address", address, "--data", str(tmp_path / "n7"),
    ]  # fmt: skip
    joiner: subprocess.Popen[bytes] | None = None
    try:

        async def write() -> None:
            async with AsyncClient(local.endpoints, timeout_s=30) as kv:
                for key in keys:
                    await kv.put(key, f"v-{key}")

        asyncio.run(write())
        asyncio.run(refused_as_asked(local.endpoints[0]))
        local.kill(6)
        log = (tmp_path / "n7.log").open("ab")
        joiner = subprocess.Popen(join, stdout=log, stderr=subprocess.STDOUT)
        until_up(local, 7)
        listed = {n["id"]: n for n in cli(local, "node", "list")["nodes"]}
        assert listed[7]["dc"] == "dc3" and listed[7]["replicas"] == 0
        replaced = cli(local, "node", "replace", "6", "7")
        assert replaced["moved"]
        layout = replicas_of(local)
        assert all(6 not in replicas for replicas in layout.values()), layout
        assert any(7 in replicas for replicas in layout.values()), layout
        read_through([*local.endpoints[:5], address], keys)
        # Node 6 leaves the cluster for good (it holds nothing now); node 1 may not (it
        # holds a replica of the meta range, whose replicas the config fixes).
        assert cli(local, "node", "remove", "6") == {"node": 6, "removed": True, "moved": []}
        assert 6 not in {n["id"] for n in cli(local, "node", "list")["nodes"]}
        refused = run(local, "node", "remove", "1", "--force")
        assert refused.returncode == 2 and "meta range" in refused.stderr
        refused = run(local, "node", "undrain", "99")
        assert refused.returncode == 2 and "NOT_FOUND: no node 99" in refused.stderr
        # The joined node restarts as it joined (its directory keeps id, config and nodes).
        joiner.terminate()
        assert joiner.wait(timeout=30) == 0
        joiner = subprocess.Popen(join, stdout=log, stderr=subprocess.STDOUT)
        until_up(local, 7)
        read_through([address], keys)
    finally:
        if joiner is not None and joiner.poll() is None:
            joiner.terminate()
            joiner.wait(timeout=30)
        local.stop_all()


async def refused_as_asked(endpoint: str) -> None:
    """Joins and removals a client may not make, straight over gRPC: each one status, and
    the node keeps serving."""
    async with grpc.aio.insecure_channel(endpoint) as channel:
        admin = admin_pb2_grpc.AdminStub(channel)
        long_host = "h" * (1024 - len(":7000") + 1)  # one byte over the 1,024-byte limit
        for dc, address in (
            ("dc9", "127.0.3.9:7000"),
            ("dc3", f"{long_host}:7000"),
            ("dc3", "127.0.3.9:0"),
            ("dc3", "127.0.3.9:65536"),
            ("dc3", "127.0.3.9"),
            ("dc3", "ÿÿÿ:7000"),
            ("x" * 200_000, "127.0.3.9:7000"),  # refused as such, not sent back whole
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await admin.JoinCluster(admin_pb2.JoinClusterRequest(dc=dc, address=address))
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (dc, address)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await admin.AdmitNodes(admin_pb2.AdmitNodesRequest(removed=[1]))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await admin.RemoveNode(admin_pb2.RemoveNodeRequest(node_id=99))
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await admin.RemoveNode(admin_pb2.RemoveNodeRequest(node_id=4))  # holds replicas
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        view = await admin.DescribeCluster(admin_pb2.DescribeClusterRequest(), timeout=10)
        assert len(view.nodes) == 6 and not view.removed_nodes
        # Operator state: a node that is not in the cluster, its keys written by a client,
        # a node-to-node write sent by a client.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await admin.SetNodeState(admin_pb2.SetNodeStateRequest(node_id=99, draining=True))
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        kv = kv_pb2_grpc.KVStub(channel)
        for key in (b"\xff\xfeo/draining/4", b"\xff\xfeo/rebalance"):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await kv.Put(kv_pb2.PutRequest(key=key, value=b"draining"), timeout=10)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, key
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await admin.ApplyOperatorState(
                admin_pb2.ApplyOperatorStateRequest(key=b"\xff\xfeo/rebalance"), timeout=10
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        state = await admin.GetOperatorState(admin_pb2.GetOperatorStateRequest(), timeout=10)
        assert list(state.draining) == [] and state.rebalance


def until_up(local: LocalCluster, node: int) -> None:
    deadline = time.monotonic() + LISTEN_WAIT_S
    while True:
        done = run(local, "node", "list")
        if done.returncode == 0:
            nodes = {n["id"]: n for n in json.loads(done.stdout)["nodes"]}
            if node in nodes and nodes[node]["state"] == "up":
                return
        assert time.monotonic() < deadline, f"node {node} never came up"
        time.sleep(0.2)


def read_through(endpoints: list[str], keys: list[str]) -> None:
    async def read() -> None:
        async with AsyncClient(endpoints, timeout_s=30) as kv:
            for key in keys:
                assert (await kv.get(key)).value == f"v-{key}".encode(), key
        async with grpc.aio.insecure_channel(endpoints[-1]) as channel:
            got = await kv_pb2_grpc.KVStub(channel).Get(kv_pb2.GetRequest(key=b"k042"), timeout=30)
            assert got.found and got.kv.value == b"v-k042"

    asyncio.run(read())


MERGE_FINISH_WAIT_S = 60  # the frozen range's leader asks after 5 s, then every 10 s


def test_a_frozen_range_whose_left_neighbour_moved_is_merged_by_itself(tmp_path: Path) -> None:
    """A range froze for a merge, then its left neighbour moved (a move proposed before the
    freeze may be chosen after it; sim seed 10291). A frozen range changes no replica, and
    a merge needs both on the same ones: the frozen range's leader moves the left one back
    onto its replicas and merges, by itself. Every key is kept, and the keys of the frozen
    range take writes again."""
    local = LocalCluster(tmp_path / "data", nodes_per_dc=2, base_port=free_base_port_for(6))
    local.start_all()
    local.wait_serving()
    keys = [f"k{i:04d}" for i in range(0, 200, 5)]
    try:
        listening(local)
        assert cli(local, "node", "rebalance", "--auto", "off") == {"rebalance": False}

        async def main() -> None:
            async with AsyncClient(local.endpoints, timeout_s=30) as kv:
                for key in keys:
                    await kv.put(key, f"v-{key}")
                # Node 1 hosts shard 3 ([c, end), on nodes 1, 3, 5) and what splits off it.
                async with grpc.aio.insecure_channel(local.endpoints[0]) as channel:
                    stub = admin_pb2_grpc.AdminStub(channel)
                    split = await stub.SplitRange(
                        admin_pb2.SplitRangeRequest(shard_id=3, at=b"k0100"), timeout=20
                    )
                    right = split.right.shard_id
                    # The first half of a merge alone (as a caller that stopped half-way).
                    freeze = admin_pb2.MergeRangeRequest(freeze_shard_id=right)
                    deadline = time.monotonic() + LISTEN_WAIT_S
                    while True:  # until the new range has a leader
                        try:
                            await stub.MergeRange(freeze, timeout=20, metadata=(FORWARDED,))
                            break
                        except grpc.aio.AioRpcError as err:
                            assert err.code() == grpc.StatusCode.UNAVAILABLE, err
                            assert time.monotonic() < deadline, err
                            await asyncio.sleep(0.2)
                    # Asked of node 2, which hosts neither range yet: the frozen range's
                    # leader hears of the move from no call of its own.
                    move = admin_pb2.ChangeReplicasRequest(shard_id=3, add=[2], remove=[1])
                    async with grpc.aio.insecure_channel(local.endpoints[1]) as other:
                        moving = admin_pb2_grpc.AdminStub(other)
                        moved = await moving.ChangeReplicas(move, timeout=30)
                    assert sorted(moved.successor.replicas) == [2, 3, 5]
                    deadline = time.monotonic() + MERGE_FINISH_WAIT_S
                    while any(s.shard_id == right for s in await shards_seen(stub)):
                        assert time.monotonic() < deadline, "the frozen range was not merged"
                        await asyncio.sleep(0.5)
                    merged = next(s for s in await shards_seen(stub) if s.start == split.left.start)
                    assert merged.end == b"" and sorted(merged.replicas) == [1, 3, 5]
                for key in keys:
                    assert (await kv.get(key)).value == f"v-{key}".encode(), key
                await kv.put("k0150", "after the merge")
                assert (await kv.get("k0150")).value == b"after the merge"

        asyncio.run(main())
    finally:
        local.stop_all()


async def shards_seen(stub: admin_pb2_grpc.AdminStub) -> list[admin_pb2.ShardInfo]:
    view = await stub.DescribeCluster(admin_pb2.DescribeClusterRequest(), timeout=10)
    return list(view.shards)
