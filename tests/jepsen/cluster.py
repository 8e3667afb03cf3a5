"""The cluster under test: real ``kvstore serve`` processes, each behind fault proxies.

Layout: datacenter d's nodes listen on 127.0.d.i (i = 1..nodes per DC) at ``base + id``;
node ``src`` reaches node ``dst`` only through the proxy ``127.0.<src's>:base+100+10*src+dst``
(``kvstore serve --route``). Keys are split into eight shards, one replica per DC, leaders
preferred round-robin across DCs: register keys ``k…`` over five shards, set elements
``s…`` over three. Every process is started, paused, resumed, killed and stopped by PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc

from kvstore.channels import CHANNEL_OPTIONS
from kvstore.local_cluster import stop_processes, tick_ms_for_wan
from kvstore.v1 import admin_pb2, admin_pb2_grpc
from tests import ports
from tests.jepsen.proxy import ProxyServer

DATACENTERS = ("dc1", "dc2", "dc3")
SHARD_STARTS = ("", "k2", "k4", "k6", "k8", "s", "s4", "s7")
PROXY_OFFSET = 100


@dataclass(frozen=True)
class Node:
    node_id: int
    dc: str
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def layout(nodes_per_dc: int, base_port: int) -> list[Node]:
    nodes: list[Node] = []
    for d, dc in enumerate(DATACENTERS, start=1):
        for i in range(1, nodes_per_dc + 1):
            node_id = len(nodes) + 1
            nodes.append(Node(node_id, dc, f"127.0.{d}.{i}", base_port + node_id))
    return nodes


def proxy_address(nodes: list[Node], src: int, dst: int, base_port: int) -> str:
    return f"{nodes[src - 1].host}:{base_port + PROXY_OFFSET + 10 * src + dst}"


def config_text(nodes: list[Node], tick_ms: int, wan_latency_ms: float = 0.0) -> str:
    per_dc = {dc: [n.node_id for n in nodes if n.dc == dc] for dc in DATACENTERS}
    tick_ms = tick_ms_for_wan(tick_ms, wan_latency_ms, 0.0)
    lines = ['[cluster]\nname = "jepsen"\n', f"tick_ms = {tick_ms}\n"]
    if wan_latency_ms:
        lines.append(f"\n[wan]\nlatency_ms = {wan_latency_ms}\n")
    lines += [f'\n[[datacenters]]\nname = "{dc}"\n' for dc in DATACENTERS]
    for n in nodes:
        lines.append(f'\n[[nodes]]\nid = {n.node_id}\ndc = "{n.dc}"\naddress = "{n.address}"\n')
    for index, start in enumerate(SHARD_STARTS):
        end = SHARD_STARTS[index + 1] if index + 1 < len(SHARD_STARTS) else ""
        replicas = [per_dc[dc][index % len(per_dc[dc])] for dc in DATACENTERS]
        lines.append(
            f'\n[[shards]]\nid = {index + 1}\nstart = "{start}"\nend = "{end}"\n'
            f'replicas = {replicas}\nleader_dc = "{DATACENTERS[index % 3]}"\n'
        )
    return "".join(lines)


def probe_keys() -> list[str]:
    """One key inside every shard, for recovery probes (outside the workloads' keys)."""
    return [f"{start}_probe" for start in SHARD_STARTS]


def free_base_port(nodes_per_dc: int) -> int:
    """A base port whose node and proxy ports are all free."""
    nodes_total = 3 * nodes_per_dc

    def addresses(base: int) -> list[str]:
        nodes = layout(nodes_per_dc, base)
        return [n.address for n in nodes] + [
            proxy_address(nodes, s, d, base)
            for s in range(1, nodes_total + 1)
            for d in range(1, nodes_total + 1)
            if s != d
        ]

    return ports.free_base_port(addresses)


class JepsenCluster:
    def __init__(
        self,
        root: Path,
        *,
        nodes_per_dc: int,
        base_port: int,
        tick_ms: int = 10,
        wan_latency_ms: float = 0.0,
    ):
        self.root = root
        self.base_port = base_port
        self.nodes = layout(nodes_per_dc, base_port)
        self.ids = [n.node_id for n in self.nodes]
        self.config_path = root / "cluster.toml"
        self.config_path.write_text(config_text(self.nodes, tick_ms, wan_latency_ms))
        (root / "nodes").mkdir(exist_ok=True)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.paused: set[int] = set()
        # Nodes not started yet: their first start founds the cluster. A node started again
        # without its data directory (wiped) is not a founder: it must rejoin.
        self._founders = set(self.ids)
        self._channels: dict[int, grpc.aio.Channel] = {}

    def node(self, node_id: int) -> Node:
        return self.nodes[node_id - 1]

    def log_path(self, node_id: int) -> Path:
        return self.root / "nodes" / f"n{node_id}.log"

    def clock_path(self, node_id: int) -> Path:
        return self.root / "nodes" / f"n{node_id}.clock.json"

    async def start_proxies(self, proxies: ProxyServer) -> None:
        for src in self.ids:
            for dst in self.ids:
                if src != dst:
                    listen = proxy_address(self.nodes, src, dst, self.base_port)
                    await proxies.add(src, dst, listen, self.node(dst).address)

    # ------------------------------------------------------------------ processes

    def data_path(self, node_id: int) -> Path:
        return self.root / "nodes" / f"n{node_id}"

    def start(self, node_id: int) -> None:
        founding = node_id in self._founders
        self._founders.discard(node_id)
        routes = [
            f"--route={dst}={proxy_address(self.nodes, node_id, dst, self.base_port)}"
            for dst in self.ids
            if dst != node_id
        ]
        env = os.environ.copy()
        env["KVSTORE_CLOCK_FILE"] = str(self.clock_path(node_id))
        with self.log_path(node_id).open("ab") as log:
            self.procs[node_id] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kvstore",
                    "serve",
                    f"--config={self.config_path}",
                    f"--node={node_id}",
                    f"--data={self.data_path(node_id)}",
                    f"--initial-cluster-state={'new' if founding else 'existing'}",
                    *routes,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def start_all(self) -> None:
        for node_id in self.ids:
            self.start(node_id)

    def running(self, node_id: int) -> bool:
        proc = self.procs.get(node_id)
        return proc is not None and proc.poll() is None

    def kill(self, node_id: int) -> None:
        proc = self.procs.pop(node_id, None)
        if proc is None:
            return
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.paused.discard(node_id)

    def wipe(self, node_id: int) -> None:
        """SIGKILL the node and delete its data directory (a lost disk)."""
        self.kill(node_id)
        shutil.rmtree(self.data_path(node_id), ignore_errors=True)

    def pause(self, node_id: int) -> None:
        if self.running(node_id):
            self.procs[node_id].send_signal(signal.SIGSTOP)
            self.paused.add(node_id)

    def resume(self, node_id: int) -> None:
        if node_id in self.paused and self.running(node_id):
            self.procs[node_id].send_signal(signal.SIGCONT)
        self.paused.discard(node_id)

    def set_clock(self, node_id: int, *, rate: float = 1.0, offset_ms: float = 0.0) -> None:
        path = self.clock_path(node_id)
        staging = path.with_suffix(".tmp")
        staging.write_text(json.dumps({"rate": rate, "offset_ms": offset_ms}))
        staging.replace(path)  # atomic: the node never reads half a file

    def crashed(self) -> list[int]:
        """Nodes that exited without being told to (a crash the run must report)."""
        return [n for n, p in self.procs.items() if p.poll() is not None]

    def stop_all(self, timeout_s: float = 10.0) -> None:
        for node_id in list(self.paused):
            self.resume(node_id)  # a stopped process would not see SIGTERM
        stop_processes(list(self.procs.values()), timeout_s)
        self.procs.clear()

    # ------------------------------------------------------------------ admin (no proxy)

    def admin(self, node_id: int) -> admin_pb2_grpc.AdminStub:
        channel = self._channels.get(node_id)
        if channel is None:
            channel = grpc.aio.insecure_channel(self.node(node_id).address, options=CHANNEL_OPTIONS)
            self._channels[node_id] = channel
        return admin_pb2_grpc.AdminStub(channel)

    async def leaders(self, timeout_s: float = 0.5) -> dict[int, int]:
        """shard -> the node that says it leads it (the highest ballot wins a tie)."""
        best: dict[int, tuple[str, int]] = {}
        for node_id in self.ids:
            if not self.running(node_id) or node_id in self.paused:
                continue
            try:
                status = await self.admin(node_id).NodeStatus(
                    admin_pb2.NodeStatusRequest(), timeout=timeout_s
                )
            except grpc.aio.AioRpcError:
                continue
            for shard in status.shards:
                if shard.role == "leader":
                    ballot = _ballot_key(shard.promised_ballot)
                    if shard.shard_id not in best or ballot > _ballot_key(best[shard.shard_id][0]):
                        best[shard.shard_id] = (shard.promised_ballot, node_id)
        return {shard: node for shard, (_, node) in best.items()}

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


def _ballot_key(ballot: str) -> tuple[int, int]:
    round_, _, node = ballot.partition(".n")
    try:
        return int(round_), int(node)
    except ValueError:
        return (0, 0)
