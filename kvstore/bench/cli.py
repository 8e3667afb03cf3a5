"""``kvstore bench``: the cluster under test (given or local), the standard suite.

Its arguments, each range-checked, are ``kvstore.cli_args.add_bench_arguments``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import multiprocessing
import os
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from kvstore import event_loop
from kvstore.bench import leases as lease_bench
from kvstore.bench import watch as watch_bench
from kvstore.bench.client_process import LoadSpec
from kvstore.bench.echo import serve as serve_echo
from kvstore.bench.report import markdown, table, to_json
from kvstore.bench.runner import (
    BenchResult,
    cluster_spans,
    describe,
    measure,
    node_statuses,
)
from kvstore.cli_args import UserError
from kvstore.cli_support import check_endpoint
from kvstore.client import AsyncClient, KvError
from kvstore.local_cluster import LocalCluster

STANDARD = (("put", 0.0), ("get", 0.0), ("mixed", 0.5), ("mixed", 0.95))
GEO_STALENESS_MS = 1000
READY_S_MAX = 30.0


KEPT_SECTIONS = "## Watch and leases"  # from here on, a --markdown file is kept as it is


class BenchError(Exception):
    """A one-line reason the benchmark cannot run."""


def target_endpoints(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    """The running cluster to measure: ``--endpoints``, else ``KVSTORE_ENDPOINTS`` as every
    command takes it, unless the flags ask for a local cluster (``--local``,
    ``--wan-latency-ms``). None: a local cluster. (It measured a local cluster of its own
    while the variable, which ``kvstore up`` tells people to set, named another.)"""
    if args.endpoints is not None or args.local or args.wan_latency_ms is not None:
        return args.endpoints  # type: ignore[no-any-return]
    return environ.get("KVSTORE_ENDPOINTS") or None


def run(args: argparse.Namespace) -> int:
    args.endpoints = target_endpoints(args, os.environ)
    _validate(args)
    local: LocalCluster | None = None
    scratch: tempfile.TemporaryDirectory[str] | None = None
    try:
        if args.local or not args.endpoints:
            if args.dir is None:
                scratch = tempfile.TemporaryDirectory(prefix="kvstore-bench-")
            data = args.dir or Path(scratch.name if scratch else ".")
            local = LocalCluster(data, base_port=args.base_port, wan_latency_ms=args.wan_latency_ms)
            local.start_all()
            endpoints = local.endpoints
        else:
            endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
        spans = event_loop.run_in_cli_loop(_wait_ready(endpoints))
        dcs = event_loop.run_in_cli_loop(_datacenters(endpoints))
        if args.suite == "geo" or args.dc is not None or args.wan_latency_ms:
            # Latency by client DC means something only once every leader is placed.
            event_loop.run_in_cli_loop(_wait_for_placement(endpoints, len(spans)))
        if args.dc is not None and args.dc not in dcs:
            raise BenchError(f"--dc {args.dc}: the cluster's datacenters are {', '.join(dcs)}")
        if args.suite == "geo" and args.shard is None:
            args.shard = 1
        if args.shard is not None:
            if not 1 <= args.shard <= len(spans):
                raise BenchError(f"--shard must be within 1..{len(spans)} (in key order)")
            spans = [spans[args.shard - 1]]
        if args.workload == "watch":
            return _watch(args, endpoints, spans)
        if args.workload == "lease":
            return _leases(args, endpoints)
        if args.workload in ("produce", "consume"):
            return _streams(args, endpoints)
        results = _benchmarks(args, endpoints, spans, dcs)
    finally:
        if local is not None:
            local.stop_all()
        if scratch is not None:
            scratch.cleanup()
    command = shlex.join(["kvstore", "bench", *sys.argv[2:]])
    if args.output == "json":
        print(to_json(results, {"command": command}))
    else:
        print(table(results))
    if args.markdown:
        # Sections measured by other commands (watch, leases) stay below the table.
        kept = ""
        if args.markdown.exists():
            old = args.markdown.read_text()
            at = old.find(KEPT_SECTIONS)
            kept = "\n" + old[at:] if at >= 0 else ""
        args.markdown.write_text(markdown(results, command, _notes(results)) + kept)
    return 0


def _watch(args: argparse.Namespace, endpoints: list[str], spans: list[tuple[bytes, bytes]]) -> int:
    """Watchers of one shard (``--shard``, default the first) under ``--rate`` writes/s."""
    start, _ = spans[0]
    result = watch_bench.run(
        endpoints,
        start + b"\x00watch-bench/",  # right after the shard's start: inside it
        watchers=args.watchers,
        rate=args.rate,
        duration_s=args.duration,
        processes=args.clients,
        progress=not args.quiet,
    )
    _show(args, result)
    return 0


def _leases(args: argparse.Namespace, endpoints: list[str]) -> int:
    """``--leases`` leases kept alive: what it costs the meta leader."""
    result = lease_bench.run(
        endpoints,
        leases=args.leases,
        ttl_s=args.ttl,
        duration_s=args.duration,
        processes=args.clients,
    )
    _show(args, result)
    return 0


def _streams(args: argparse.Namespace, endpoints: list[str]) -> int:
    """Event streams: produce rate, or fetch rate and a processor's catch-up."""
    from kvstore.bench import streams as streams_bench  # noqa: PLC0415 - its imports are heavy

    result: streams_bench.ProduceResult | streams_bench.ConsumeResult
    if args.workload == "produce":
        result = streams_bench.produce(
            endpoints,
            partitions=args.partitions,
            batch=args.batch,
            value_size=args.value_size,
            concurrency=args.concurrency,
            duration_s=args.duration,
            progress=not args.quiet,
        )
    else:
        result = streams_bench.consume(
            endpoints,
            partitions=args.partitions,
            records=args.records,
            value_size=args.value_size,
            concurrency=args.concurrency,
            progress=not args.quiet,
        )
    _show(args, result)
    return 0


def _show(args: argparse.Namespace, result: Any) -> None:
    """A one-run benchmark's rows: two columns for people, one JSON object with -o json."""
    if args.output == "json":
        print(json.dumps(dataclasses.asdict(result)))
    else:
        width = max(len(k) for k, _ in result.rows())
        for key, value in result.rows():
            print(f"{key:<{width}}  {value}")


def _validate(args: argparse.Namespace) -> None:
    """What the flags' own ranges cannot say (those are checked as they are parsed)."""
    if args.wan_latency_ms is not None and not args.local and args.endpoints:
        raise BenchError("--wan-latency-ms configures a --local cluster")
    if args.endpoints is not None:
        endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
        if not endpoints:
            raise BenchError("--endpoints names no endpoint")
        for endpoint in endpoints:
            try:
                check_endpoint(endpoint)
            except UserError as exc:
                raise BenchError(str(exc)) from None


async def _wait_for_placement(endpoints: list[str], shards: int) -> None:
    """Return once every shard's leader is in its preferred datacenter."""
    deadline = time.monotonic() + READY_S_MAX
    while time.monotonic() < deadline:
        statuses = await node_statuses(endpoints)
        leaders = [
            s.preferred_dc == status.dc
            for status in statuses
            for s in status.shards
            if s.role == "leader"
        ]
        if len(leaders) == shards and all(leaders):
            return
        await asyncio.sleep(0.5)
    raise BenchError("the leaders did not settle at their preferred datacenters")


async def _datacenters(endpoints: list[str]) -> list[str]:
    view = await describe(endpoints)
    return sorted({n.dc for n in view.nodes})


async def _wait_ready(endpoints: list[str]) -> list[tuple[bytes, bytes]]:
    """The shard spans, once every shard takes a write (a fresh cluster elects leaders)."""
    deadline = time.monotonic() + READY_S_MAX
    while True:
        try:
            spans = await cluster_spans(endpoints)
            break
        except RuntimeError:
            if time.monotonic() > deadline:
                raise BenchError(f"no node answered at {', '.join(endpoints)}") from None
            await asyncio.sleep(0.2)
    async with AsyncClient(endpoints, timeout_s=READY_S_MAX) as client:
        for start, _ in spans:
            try:
                await client.put(start + b"bench-ready", b"1")
            except KvError as exc:
                raise BenchError(f"the cluster does not take writes: {exc}") from None
    return spans


def _spec(
    args: argparse.Namespace, endpoints: list[str], spans: list[tuple[bytes, bytes]]
) -> LoadSpec:
    return LoadSpec(
        endpoints=endpoints,
        workload=args.workload,
        spans=spans,
        keys=args.keys,
        distribution=args.distribution,
        read_ratio=args.read_ratio,
        stale=args.stale,
        value_size=args.value_size,
        concurrency=args.concurrency,
        duration_s=args.duration,
        ops_max=args.ops,
        seed=args.seed,
        dc=args.dc,
        max_staleness_ms=args.max_staleness_ms,
    )


def _benchmarks(
    args: argparse.Namespace,
    endpoints: list[str],
    spans: list[tuple[bytes, bytes]],
    dcs: list[str],
) -> list[BenchResult]:
    base = _spec(args, endpoints, spans)
    progress = not args.quiet
    results: list[BenchResult] = []
    plan: list[tuple[str, LoadSpec]] = []
    if args.suite == "standard":
        for concurrency in (1, 64):
            for workload, ratio in STANDARD:
                name = workload if workload != "mixed" else f"mixed {ratio:g}"
                spec = replace(base, workload=workload, read_ratio=ratio, concurrency=concurrency)
                plan.append((name, spec))
    elif args.suite == "geo":
        for dc in dcs:
            one = replace(base, dc=dc, concurrency=1)
            plan.append((f"put from {dc}", replace(one, workload="put")))
            plan.append((f"get from {dc}", replace(one, workload="get", max_staleness_ms=0)))
            stale = replace(one, workload="get", max_staleness_ms=GEO_STALENESS_MS)
            plan.append((f"get <={GEO_STALENESS_MS} ms stale from {dc}", stale))
    else:
        name = args.workload if args.workload != "mixed" else f"mixed {args.read_ratio:g}"
        if args.max_staleness_ms:
            name += f" <={args.max_staleness_ms} ms stale"
        elif args.stale:
            name += " stale"
        plan.append((name + (f" from {args.dc}" if args.dc else ""), base))
    if any(spec.workload in ("get", "mixed", "cas") for _, spec in plan):
        # Reads of keys that exist: write every key once first (reported, not mixed in).
        load = replace(base, workload="load", duration_s=3600.0, ops_max=0)
        results.append(measure("preload (each key once)", load, args.clients, progress=progress))
    for name, spec in plan:
        results.append(measure(name, spec, args.clients, progress=progress))
    if args.calibrate:
        results += _calibrate(base, args, progress)
    return results


def _calibrate(base: LoadSpec, args: argparse.Namespace, progress: bool) -> list[BenchResult]:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    address = f"127.0.0.1:{args.base_port + 90}"
    server = ctx.Process(target=serve_echo, args=(address, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(10):
            raise BenchError(f"the echo server did not start on {address}")
        out = []
        for concurrency in sorted({1, args.concurrency}):
            spec = replace(base, workload="echo", echo_address=address, concurrency=concurrency)
            out.append(measure("grpc echo (ceiling)", spec, args.clients, progress=progress))
        return out
    finally:
        if server.pid is not None:
            server.kill()
        server.join(5)


def _notes(results: list[BenchResult]) -> list[str]:
    echo = {r.concurrency: r.ops_per_s for r in results if r.workload == "echo"}
    notes = []
    for r in results:
        if r.workload != "echo" and r.concurrency in echo and echo[r.concurrency] > 0:
            notes.append(
                f"- {r.name} at concurrency {r.concurrency}: "
                f"{r.ops_per_s / echo[r.concurrency]:.2f}x the gRPC echo ceiling"
            )
    return notes


def install_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so a local cluster is still stopped by PID."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
