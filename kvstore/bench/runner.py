"""Runs one benchmark: client processes, a progress line, server CPU, merged histograms.

Client processes are spawned (never forked: grpc does not survive a fork), each with its
share of the concurrency; the parent only coordinates, so its CPU is nobody's cost.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
from hdrh.histogram import HdrHistogram

from kvstore import event_loop
from kvstore.bench.client_process import LoadResult, LoadSpec, new_histogram, run_in_process
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.v1 import admin_pb2, admin_pb2_grpc

PERCENTILES = (50.0, 95.0, 99.0, 99.9)


@dataclass
class NodeCost:
    cpu_seconds: float
    rss_bytes: int
    disk_bytes: int


@dataclass
class BenchResult:
    name: str
    workload: str
    concurrency: int
    ops: int
    elapsed_s: float
    latency_ms: dict[str, dict[str, float]]  # kind -> {"ops": n, "p50": ms, ...}
    errors: dict[str, int]
    server_cpu_us_per_op: float | None = None
    nodes: dict[int, dict[str, float]] = field(default_factory=dict)

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "workload": self.workload,
            "concurrency": self.concurrency,
            "ops": self.ops,
            "elapsed_s": round(self.elapsed_s, 3),
            "ops_per_s": round(self.ops_per_s, 1),
            "latency_ms": self.latency_ms,
            "errors": self.errors,
            "server_cpu_us_per_op": self.server_cpu_us_per_op,
            "nodes": self.nodes,
        }


async def describe(endpoints: list[str]) -> admin_pb2.DescribeClusterResponse:
    """The cluster's shard map and nodes, from the first endpoint that answers."""
    for endpoint in endpoints:
        async with grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS) as channel:
            try:
                view: admin_pb2.DescribeClusterResponse = await admin_pb2_grpc.AdminStub(
                    channel
                ).DescribeCluster(admin_pb2.DescribeClusterRequest(), timeout=5)
            except grpc.aio.AioRpcError:
                continue
            return view
    raise RuntimeError(f"no node answered at {', '.join(endpoints)}")


async def cluster_spans(endpoints: list[str]) -> list[tuple[bytes, bytes]]:
    view = await describe(endpoints)
    return [(s.start, s.end) for s in sorted(view.shards, key=lambda s: s.start)]


async def node_statuses(endpoints: list[str]) -> list[admin_pb2.NodeStatusResponse]:
    """``Admin.NodeStatus`` of every node that answers."""
    try:
        addresses = [n.address for n in (await describe(endpoints)).nodes]
    except RuntimeError:
        addresses = list(endpoints)
    statuses = []
    for address in addresses:
        async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            try:
                statuses.append(
                    await admin_pb2_grpc.AdminStub(channel).NodeStatus(
                        admin_pb2.NodeStatusRequest(), timeout=5
                    )
                )
            except grpc.aio.AioRpcError:
                continue
    return statuses


async def node_costs(endpoints: list[str]) -> dict[int, NodeCost]:
    """Every node's CPU time, memory and disk (absent: no answer)."""
    return {
        s.node_id: NodeCost(s.cpu_seconds, s.rss_bytes, s.disk_bytes)
        for s in await node_statuses(endpoints)
    }


def run_load(name: str, spec: LoadSpec, processes: int, *, progress: bool) -> BenchResult:
    ctx = multiprocessing.get_context("spawn")
    counter = ctx.Value("q", 0)
    results: Any = ctx.Queue()
    shares = [
        spec.concurrency // processes + (i < spec.concurrency % processes) for i in range(processes)
    ]
    procs = []
    for index, share in enumerate(shares):
        if share == 0:
            continue
        mine = replace(
            spec,
            concurrency=share,
            process_index=index,
            processes=processes,
            ops_max=spec.ops_max // processes if spec.ops_max else 0,
        )
        proc = ctx.Process(target=run_in_process, args=(mine, counter, results), daemon=True)
        proc.start()
        procs.append(proc)
    started = time.monotonic()
    collected: list[LoadResult] = []
    try:
        while len(collected) < len(procs):
            try:
                collected.append(results.get(timeout=1.0))
            except Exception:  # queue.Empty: print progress and keep waiting
                if any(p.exitcode not in (None, 0) for p in procs):
                    raise RuntimeError("a benchmark client process failed") from None
            if progress:
                elapsed = time.monotonic() - started
                line = (
                    f"\r{name}: {elapsed:5.1f}s  {counter.value} ops"
                    f"  {counter.value / max(elapsed, 1e-9):,.0f}/s   "
                )
                print(line, end="", file=sys.stderr, flush=True)
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
        if progress:
            print(file=sys.stderr)
    return merge(name, spec, collected)


def merge(name: str, spec: LoadSpec, parts: list[LoadResult]) -> BenchResult:
    merged: dict[str, HdrHistogram] = {}
    errors: dict[str, int] = {}
    for part in parts:
        for kind, encoded in part.histograms.items():
            merged.setdefault(kind, new_histogram()).add(HdrHistogram.decode(encoded))
        for code, count in part.errors.items():
            errors[code] = errors.get(code, 0) + count
    latency = {
        kind: {
            "ops": h.get_total_count(),
            **{f"p{p:g}": round(h.get_value_at_percentile(p) / 1000.0, 3) for p in PERCENTILES},
        }
        for kind, h in sorted(merged.items())
    }
    return BenchResult(
        name=name,
        workload=spec.workload,
        concurrency=spec.concurrency,
        ops=sum(p.ops for p in parts),
        elapsed_s=max((p.elapsed_s for p in parts), default=0.0),
        latency_ms=latency,
        errors=errors,
    )


def measure(name: str, spec: LoadSpec, processes: int, *, progress: bool) -> BenchResult:
    """One load run with the servers' CPU, memory and disk read before and after."""
    before = (
        event_loop.run_in_cli_loop(node_costs(spec.endpoints)) if spec.workload != "echo" else {}
    )
    result = run_load(name, spec, processes, progress=progress)
    if before:
        after = event_loop.run_in_cli_loop(node_costs(spec.endpoints))
        # A node that did not answer one of the two asks (busy, restarting) is left out.
        both = sorted(n for n in after if n in before)
        cpu = sum(after[n].cpu_seconds - before[n].cpu_seconds for n in both)
        if result.ops:
            result.server_cpu_us_per_op = round(cpu / result.ops * 1e6, 1)
        result.nodes = {
            n: {
                "cpu_s": round(after[n].cpu_seconds - before[n].cpu_seconds, 3),
                "rss_mib": round(after[n].rss_bytes / 2**20, 1),
                "disk_mib": round(after[n].disk_bytes / 2**20, 1),
            }
            for n in both
        }
    return result
