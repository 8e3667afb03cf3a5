"""``kvstore up``: a local three-datacenter cluster, one OS process per node.

Each datacenter gets its own loopback network (dc1 on 127.0.1.x, dc2 on 127.0.2.x, dc3 on
127.0.3.x); node i of a datacenter listens on 127.0.D.i at ``base_port + node id``. Shards
follow the picture: ``a*`` (leader preferred in dc1), ``b*`` (dc2) and the rest of the key
space (dc3), each with one replica per datacenter. ``--shards N`` cuts the key space into N
ranges instead (``initial_layout``), their preferred leaders in dc1, dc2, dc3 in turn.
"""

from __future__ import annotations

import math
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cluster import parse_cluster_config
from kvstore.supervise import Supervisor

DATACENTERS = ("dc1", "dc2", "dc3")
SHARDS = (("", "b", "dc1"), ("b", "c", "dc2"), ("c", "", "dc3"))
SHARDS_MAX = 10_000
# Boundaries of a layout of many shards: fixed-width strings over these (in byte order), so
# keys made of letters and digits spread over all the shards.
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def initial_layout(shards: int) -> tuple[tuple[str, str, str], ...]:
    """``shards`` ranges (start, end, preferred leader DC) covering every key: the three of
    the picture, or as many cut at evenly spaced letter-and-digit boundaries."""
    if shards == len(SHARDS):
        return SHARDS
    base, width = len(_ALPHABET), 1
    while base**width < shards:
        width += 1
    cuts = []
    for i in range(1, shards):
        n, digits = i * base**width // shards, []
        for _ in range(width):
            n, d = divmod(n, base)
            digits.append(_ALPHABET[d])
        cuts.append("".join(reversed(digits)).rstrip("0") or "0")
    bounds = ["", *cuts, ""]
    return tuple(
        (bounds[i], bounds[i + 1], DATACENTERS[i % len(DATACENTERS)]) for i in range(shards)
    )


def tick_ms_for_wan(tick_ms: int, wan_latency_ms: float, wan_jitter_ms: float) -> int:
    """The tick for datacenters ``wan_latency_ms`` apart (one way): the leader lease (7 ticks)
    must outlast a heartbeat's round trip plus the heartbeat interval (2 ticks), or
    leaseholder reads stop working. Election timeouts scale with it."""
    return max(tick_ms, math.ceil(2 * (wan_latency_ms + wan_jitter_ms) / 3))


def default_config(
    nodes_per_dc: int = 1,
    base_port: int = 7000,
    tick_ms: int = 10,
    wan_latency_ms: float = 0.0,
    wan_jitter_ms: float = 0.0,
    *,
    cluster_id: str | None = None,
    split_size_mb: float | None = None,
    shards: int = len(SHARDS),
) -> str:
    tick_ms = tick_ms_for_wan(tick_ms, wan_latency_ms, wan_jitter_ms)
    lines = ['[cluster]\nname = "local"\n', f"tick_ms = {tick_ms}\n"]
    if cluster_id is not None:
        lines.append(f'id = "{cluster_id}"\n')
    if wan_latency_ms or wan_jitter_ms:
        lines.append(f"\n[wan]\nlatency_ms = {wan_latency_ms}\njitter_ms = {wan_jitter_ms}\n")
    if split_size_mb is not None:
        lines.append(f"\n[sharding]\nsplit_size_mb = {split_size_mb:g}\n")
    lines += [f'\n[[datacenters]]\nname = "{dc}"\n' for dc in DATACENTERS]
    by_dc: dict[str, list[int]] = {dc: [] for dc in DATACENTERS}
    node_id = 0
    for d, dc in enumerate(DATACENTERS, start=1):
        for i in range(1, nodes_per_dc + 1):
            node_id += 1
            by_dc[dc].append(node_id)
            address = f"127.0.{d}.{i}:{base_port + node_id}"
            lines.append(f'\n[[nodes]]\nid = {node_id}\ndc = "{dc}"\naddress = "{address}"\n')
    for shard_id, (start, end, leader_dc) in enumerate(initial_layout(shards), start=1):
        copy = (shard_id - 1) % nodes_per_dc  # with more nodes per DC, spread the shards
        replicas = [by_dc[dc][copy] for dc in DATACENTERS]
        lines.append(
            f'\n[[shards]]\nid = {shard_id}\nstart = "{start}"\nend = "{end}"\n'
            f'replicas = {replicas}\nleader_dc = "{leader_dc}"\n'
        )
    return "".join(lines)


class LocalCluster:
    """The node processes of a local cluster: start, stop (SIGTERM) and kill (SIGKILL) by PID.

    ``kvstore up`` and the real-process tests both use it, so tests run what users run.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        nodes_per_dc: int | None = None,
        base_port: int | None = None,
        wan_latency_ms: float | None = None,
        wan_jitter_ms: float = 0.0,
        split_size_mb: float | None = None,
        shards: int | None = None,
    ) -> None:
        """``nodes_per_dc`` (default 1), ``base_port`` (default 7000), ``wan_latency_ms``
        (emulated one-way delay between datacenters; default none), ``split_size_mb``
        (when a shard splits by itself; default 64) and ``shards`` (the initial layout's
        count; default 3) shape a new cluster; a
        directory that holds one already keeps its own, and asking for others is an error
        (they would be silently ignored)."""
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = data_dir / "cluster.toml"
        if not self.config_path.exists():
            self.config_path.write_text(
                default_config(
                    nodes_per_dc or 1,
                    base_port if base_port is not None else 7000,
                    wan_latency_ms=wan_latency_ms or 0.0,
                    wan_jitter_ms=wan_jitter_ms,
                    split_size_mb=split_size_mb,
                    shards=shards or len(SHARDS),
                    # Another `kvstore up` elsewhere is another cluster: its nodes, or a data
                    # directory of it, are refused.
                    cluster_id=secrets.token_hex(8),
                )
            )
        self.cluster = parse_cluster_config(self.config_path.read_text())
        # A cluster none of whose nodes has a data directory yet is new: its nodes found it
        # on their first start. Once any has data, a node without any lost it (deleted, a
        # replaced disk) and must rejoin instead of voting at once (``paxos.rejoin``).
        ids = [n.node_id for n in self.cluster.nodes]
        new = not any((data_dir / f"n{i}").exists() for i in ids)
        self._founders = set(ids) if new else set()
        if wan_latency_ms is not None and self.cluster.wan.latency_ms != wan_latency_ms:
            raise ValueError(
                f"{self.config_path} has wan latency {self.cluster.wan.latency_ms} ms, not"
                f" {wan_latency_ms}: use another --dir (or edit [wan] there)"
            )
        if split_size_mb is not None and self.cluster.sharding.split_size_mb != split_size_mb:
            raise ValueError(
                f"{self.config_path} splits shards at {self.cluster.sharding.split_size_mb:g} MB,"
                f" not {split_size_mb:g}: use another --dir (or edit [sharding] there)"
            )
        configured = len(self.cluster.shards)
        if shards is not None and shards != configured:
            raise ValueError(
                f"{self.config_path} started with {configured} shards, not {shards}: use another"
                " --dir (the layout changes by splits and merges after the start)"
            )
        have_base = int(self.cluster.nodes[0].address.rpartition(":")[2]) - 1
        if base_port is not None and base_port != have_base:
            raise ValueError(
                f"{self.config_path} has its nodes on ports {have_base + 1}-"
                f"{have_base + len(self.cluster.nodes)}, not from --base-port {base_port}:"
                " use another --dir for other ports"
            )
        have_per_dc = len(self.cluster.nodes) // len(DATACENTERS)
        if nodes_per_dc is not None and nodes_per_dc != have_per_dc:
            raise ValueError(
                f"{self.config_path} has {have_per_dc} node(s) per datacenter, not"
                f" {nodes_per_dc}: use another --dir for another shape"
            )
        self.endpoints = [n.address for n in self.cluster.nodes]
        (data_dir / "endpoints").write_text("".join(f"{e}\n" for e in self.endpoints))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, node_id: int) -> None:
        founding = node_id in self._founders
        self._founders.discard(node_id)
        log = (self.data_dir / f"n{node_id}.log").open("ab")
        self.procs[node_id] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kvstore",
                "serve",
                "--config",
                str(self.config_path),
                "--node",
                str(node_id),
                "--data",
                str(self.data_dir / f"n{node_id}"),
                "--initial-cluster-state",
                "new" if founding else "existing",
            ],
            stdout=log,
            stderr=log,
            env=os.environ.copy(),
            # Its own session: a Ctrl-C at the terminal reaches ``up``, which stops every
            # node by PID, instead of racing it to every node at once.
            start_new_session=True,
        )

    def start_all(self) -> None:
        for node in self.cluster.nodes:
            self.start(node.node_id)

    def wait_serving(self, timeout_s: float = 60.0) -> None:
        """Until every running node answers its health check as serving (``start_all``
        only launches the processes; on a busy machine one may still be importing Python
        when another already answers). ``TimeoutError`` naming the nodes that did not,
        after stopping every node."""
        deadline = time.monotonic() + timeout_s
        waiting = sorted(self.procs)
        while waiting:
            node = waiting[0]
            address = self.cluster.node(node).address
            with grpc.insecure_channel(address) as channel:
                stub: Any = health_pb2_grpc.HealthStub(channel)  # untyped
                try:
                    answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    serving = answer.status == health_pb2.HealthCheckResponse.SERVING
                except grpc.RpcError:
                    serving = False
            if serving:
                waiting.pop(0)
                continue
            if time.monotonic() > deadline:
                self.stop_all()  # none left running by a caller that never gets to stop them
                raise TimeoutError(f"nodes {waiting} not serving after {timeout_s:g} s")
            time.sleep(0.1)

    def kill(self, node_id: int) -> None:
        proc = self.procs.pop(node_id)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop_all(self, timeout_s: float = 10.0) -> None:
        stop_processes(list(self.procs.values()), timeout_s)
        self.procs.clear()

    def exited(self) -> dict[int, int]:
        """Nodes whose process ended, with its return code (negative: killed by a signal)."""
        return {n: code for n, p in self.procs.items() if (code := p.poll()) is not None}

    def forget(self, node_id: int) -> None:
        self.procs.pop(node_id, None)

    def last_log_line(self, node_id: int) -> str:
        """The node's last line of output: a node that cannot start says why there."""
        try:
            lines = (self.data_dir / f"n{node_id}.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return next((line for line in reversed(lines) if line.strip()), "")


def stop_processes(procs: list[subprocess.Popen[bytes]], timeout_s: float = 10.0) -> None:
    """SIGTERM each process, wait for all within ``timeout_s``, SIGKILL the stragglers."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def up(
    data_dir: Path,
    *,
    nodes_per_dc: int | None,
    base_port: int | None,
    wan_latency_ms: float | None = None,
    wan_jitter_ms: float = 0.0,
    restart: bool = True,
    split_size_mb: float | None = None,
    shards: int | None = None,
) -> int:
    """Start every node, print the endpoints, restart nodes that die (``kvstore.supervise``),
    and on Ctrl-C stop every node by PID. 2 if a node cannot start at all."""
    local = LocalCluster(
        data_dir,
        nodes_per_dc=nodes_per_dc,
        base_port=base_port,
        wan_latency_ms=wan_latency_ms,
        wan_jitter_ms=wan_jitter_ms,
        split_size_mb=split_size_mb,
        shards=shards,
    )
    supervisor = Supervisor(local, restart=restart, say=lambda line: print(line, flush=True))
    local.start_all()
    for node in local.cluster.nodes:
        supervisor.started(node.node_id)
    cluster = local.cluster
    joined = ",".join(local.endpoints)
    print(
        f"kvstore: {len(local.procs)} nodes in {len(DATACENTERS)} datacenters, data in {data_dir}"
    )
    for node in cluster.nodes:
        print(f"  node {node.node_id}  {node.dc}  {node.address}")
    if cluster.wan.enabled:
        print(
            f"emulated WAN: {cluster.wan.latency_ms:g} ms one way between datacenters"
            f" (+- {cluster.wan.jitter_ms:g} ms)"
        )
    print(f"endpoints written to {data_dir / 'endpoints'}; try:")
    print(f"  KVSTORE_ENDPOINTS={joined} kvstore put apple red")
    print(f"  KVSTORE_ENDPOINTS={joined} kvstore get apple")
    print(
        "A node that dies is restarted"
        + (" (not with --no-restart)" if not restart else "")
        + "; Ctrl-C stops every node.",
        flush=True,
    )
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping and supervisor.cannot_start is None:
            supervisor.check()
            time.sleep(0.2)
    finally:
        local.stop_all()
    if (node_id := supervisor.cannot_start) is not None:
        reason = local.last_log_line(node_id).removeprefix("kvstore: ")
        print(
            f"kvstore: node {node_id} cannot start: {reason}; every node stopped", file=sys.stderr
        )
        return 2
    print("kvstore: every node stopped")
    return 0
