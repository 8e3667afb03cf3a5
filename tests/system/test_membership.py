"""Real processes, two nodes per datacenter: replicas move while a client writes
(``kvstore replica move``, ``node drain``), a stopped node's replicas are rebuilt on another
(``node replace``), and the new layout and every key survive a restart of every node.

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

from kvstore import AsyncClient
from kvstore.local_cluster import LocalCluster
from tests.system.test_local_cluster import free_base_port_for

KEYS_BEFORE = 60
KEYS_DURING = 200
CLI_TIMEOUT_S = 120
LISTEN_WAIT_S = 60


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
    keys = [f"k{i:04d}" for i in range(KEYS_BEFORE + KEYS_DURING)]
    try:

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
        listening(local)
        after = replicas_of(local)
        assert all(4 not in r and 6 not in r for r in after.values()), after

        async def read_all() -> None:
            async with AsyncClient(local.endpoints[:5], timeout_s=30) as kv:
                for key in keys:
                    assert (await kv.get(key)).value == f"v-{key}".encode(), key

        asyncio.run(read_all())
    finally:
        local.stop_all()
