"""``python -m kvstore.bench.idle`` (``make idle``): what a local cluster of many idle shards
costs each node in CPU.

It starts ``kvstore up --shards N`` in a fresh directory, waits until every shard has a
leader (progress on one line), lets the cluster settle, then reads each node process's CPU
time from ``/proc`` over a window with no client traffic, and prints one row per node and a
last line ``idle: N shards, max P% of a core per node``. Every process it starts it stops by
PID, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from kvstore import event_loop
from kvstore.cli_args import UserError, float_within, port, shard_count
from kvstore.cli_support import describe_cluster
from kvstore.local_cluster import LocalCluster

READY_TIMEOUT_S = 600.0
WINDOW_S = float_within(0.0, 3600.0, low_open=True)
SETTLE_S = float_within(0.0, 3600.0)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (every thread), from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_leaders(local: LocalCluster, shards: int) -> float:
    """Seconds until every shard reports a leader (a line of progress meanwhile)."""
    start = time.monotonic()
    led = 0
    while True:
        try:
            view = event_loop.run_in_cli_loop(describe_cluster(local.endpoints, 10.0))
            led = sum(1 for s in view.shards if s.leader_node_id)
        except UserError:  # still starting: no node answers yet
            led = 0
        elapsed = time.monotonic() - start
        print(f"\r  shards with a leader: {led}/{shards} after {elapsed:.0f} s", end="", flush=True)
        if led >= shards:
            print()
            return elapsed
        if elapsed > READY_TIMEOUT_S:
            print()
            raise SystemExit(f"idle: only {led} of {shards} shards have a leader")
        exited = local.exited()
        if exited:
            print()
            raise SystemExit(f"idle: node(s) exited: {exited}")
        time.sleep(1.0)


def measure(local: LocalCluster, seconds: float) -> dict[int, float]:
    """Each node's CPU use over ``seconds``, as a percentage of one core."""
    pids = {node: proc.pid for node, proc in local.procs.items()}
    before = {node: process_cpu_s(pid) for node, pid in pids.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    return {node: 100 * (process_cpu_s(pid) - before[node]) / wall for node, pid in pids.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kvstore.bench.idle", description=__doc__)
    parser.add_argument("--shards", type=shard_count, default=1000)
    parser.add_argument(
        "--seconds", type=WINDOW_S, default=30.0, help="the measured window (up to an hour)"
    )
    parser.add_argument("--settle", type=SETTLE_S, default=10.0, help="wait after all are led")
    parser.add_argument("--base-port", type=port, default=7400)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kvstore-idle-") as tmp:
        local = LocalCluster(Path(tmp), shards=args.shards, base_port=args.base_port)
        print(f"idle: starting 3 nodes with {args.shards} shards in {tmp}")
        local.start_all()
        try:
            took = wait_for_leaders(local, args.shards)
            print(f"  every shard led after {took:.1f} s; settling {args.settle:g} s")
            time.sleep(args.settle)
            print(f"  measuring {args.seconds:g} s with no traffic")
            usage = measure(local, args.seconds)
        finally:
            local.stop_all()
    print(f"{'node':>6}  {'cpu % of a core':>15}")
    for node, percent in sorted(usage.items()):
        print(f"{node:>6}  {percent:>15.1f}")
    print(f"idle: {args.shards} shards, max {max(usage.values()):.1f}% of a core per node")
    return 0


if __name__ == "__main__":
    sys.exit(main())
