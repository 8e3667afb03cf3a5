"""``kvstore up``: a local three-datacenter cluster, one OS process per node.

Each datacenter gets its own loopback network (dc1 on 127.0.1.x, dc2 on 127.0.2.x, dc3 on
127.0.3.x); node i of a datacenter listens on 127.0.D.i at ``base_port + node id``. Shards
follow the picture: ``a*`` (leader preferred in dc1), ``b*`` (dc2) and the rest of the key
space (dc3), each with one replica per datacenter.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cluster import parse_cluster_config

DATACENTERS = ("dc1", "dc2", "dc3")
SHARDS = (("", "b", "dc1"), ("b", "c", "dc2"), ("c", "", "dc3"))


def default_config(nodes_per_dc: int = 1, base_port: int = 7000, tick_ms: int = 10) -> str:
    lines = ['[cluster]\nname = "local"\n', f"tick_ms = {tick_ms}\n"]
    lines += [f'\n[[datacenters]]\nname = "{dc}"\n' for dc in DATACENTERS]
    by_dc: dict[str, list[int]] = {dc: [] for dc in DATACENTERS}
    node_id = 0
    for d, dc in enumerate(DATACENTERS, start=1):
        for i in range(1, nodes_per_dc + 1):
            node_id += 1
            by_dc[dc].append(node_id)
            address = f"127.0.{d}.{i}:{base_port + node_id}"
            lines.append(f'\n[[nodes]]\nid = {node_id}\ndc = "{dc}"\naddress = "{address}"\n')
    for shard_id, (start, end, leader_dc) in enumerate(SHARDS, start=1):
        copy = (shard_id - 1) % nodes_per_dc  # with more nodes per DC, spread the shards
        replicas = [by_dc[dc][copy] for dc in DATACENTERS]
        lines.append(
            f'\n[[shards]]\nid = {shard_id}\nstart = "{start}"\nend = "{end}"\n'
            f'replicas = {replicas}\nleader_dc = "{leader_dc}"\n'
        )
    return "".join(lines)


def up(data_dir: Path, *, nodes_per_dc: int, base_port: int) -> int:
    """Start every node, print the endpoints, wait for Ctrl-C, stop every node by PID."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config_path = data_dir / "cluster.toml"
    if not config_path.exists():
        config_path.write_text(default_config(nodes_per_dc, base_port))
    cluster = parse_cluster_config(config_path.read_text())
    endpoints = [n.address for n in cluster.nodes]
    (data_dir / "endpoints").write_text("".join(f"{e}\n" for e in endpoints))
    procs: list[subprocess.Popen[bytes]] = []
    for node in cluster.nodes:
        log = (data_dir / f"n{node.node_id}.log").open("ab")
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kvstore",
                    "serve",
                    "--config",
                    str(config_path),
                    "--node",
                    str(node.node_id),
                    "--data",
                    str(data_dir / f"n{node.node_id}"),
                ],
                stdout=log,
                stderr=log,
                env=os.environ.copy(),
            )
        )
    joined = ",".join(endpoints)
    print(f"kvstore: {len(procs)} nodes in {len(DATACENTERS)} datacenters, data in {data_dir}")
    for node in cluster.nodes:
        print(f"  node {node.node_id}  {node.dc}  {node.address}")
    print(f"endpoints written to {data_dir / 'endpoints'}; try:")
    print(f"  KVSTORE_ENDPOINTS={joined} kvstore put apple red")
    print(f"  KVSTORE_ENDPOINTS={joined} kvstore get apple")
    print("Ctrl-C stops every node.", flush=True)
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            for proc, node in zip(procs, cluster.nodes, strict=True):
                if proc.poll() is not None:
                    print(
                        f"node {node.node_id} exited ({proc.returncode}); see n{node.node_id}.log"
                    )
                    stopping = True
            time.sleep(0.2)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        print("kvstore: every node stopped")
    return 0
