"""Command line: ``run`` a fault test, or ``check`` a recorded history."""

from __future__ import annotations

import argparse
import asyncio
import random
import shlex
import sys
import time
from pathlib import Path

from tests.jepsen.history import read_history
from tests.jepsen.linearizability import STEPS_PER_KEY_MAX, check_history
from tests.jepsen.nemesis import parse_kinds
from tests.jepsen.runner import RunOptions, run
from tests.jepsen.synthetic import generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.jepsen", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="start a cluster, inject faults, record and check a history")
    r.add_argument("--duration", type=float, default=300.0, help="seconds of workload (300)")
    r.add_argument("--nemesis", default="all", help="comma-separated fault kinds, or all/none")
    r.add_argument(
        "--workload",
        default="register,set",
        help="register, set, watch (watchers of the register keys), lock, queue, counter;"
        " comma-separated",
    )
    r.add_argument("--concurrency", type=int, default=12, help="client workers (>= 1)")
    r.add_argument(
        "--nodes-per-dc",
        type=int,
        choices=(1, 2, 3),
        help="default 1, or 2 with the membership nemesis (its moves need a second node)",
    )
    r.add_argument("--seed", type=int, help="default: random, printed")
    r.add_argument("--out", type=Path, help="output directory (default jepsen-runs/<time>-seed<N>)")
    r.add_argument("--ops-max", type=int, default=1_000_000, help="stop after this many ops")
    r.add_argument("--op-timeout", type=float, default=2.0, help="seconds per operation")
    r.add_argument("--base-port", type=int, default=0, help="default: a free range")
    r.add_argument(
        "--stale-reads",
        action="store_true",
        help="gets read any replica (CONSISTENCY_STALE): the checker must then find violations",
    )
    r.add_argument(
        "--wan-latency-ms",
        type=float,
        default=0.0,
        help="the nodes' own emulated WAN: one-way delay between datacenters (kvstore [wan])",
    )
    r.add_argument(
        "--bounded-reads-ms",
        type=int,
        default=0,
        help="a third of the gets ask for this staleness bound; checked against the history",
    )
    r.add_argument(
        "--planted-unbounded-reads",
        action="store_true",
        help="those gets accept any age while the harness claims a 1 ms bound: must be invalid",
    )
    r.add_argument("--quiet", action="store_true", help="no progress line")
    c = sub.add_parser("check", help="check a history.jsonl for per-key linearizability")
    c.add_argument("history", type=Path, nargs="?")
    c.add_argument("--synthetic", type=int, metavar="OPS", help="check a generated history")
    c.add_argument("--keys", type=int, default=100)
    c.add_argument(
        "--steps-per-key",
        type=int,
        default=STEPS_PER_KEY_MAX,
        help=f"the search's budget per key (default {STEPS_PER_KEY_MAX:,}); past it: unknown",
    )
    args = parser.parse_args(argv)
    if args.command == "check":
        return _check(args)
    try:
        kinds = parse_kinds(args.nemesis)
    except ValueError as exc:
        parser.error(str(exc))
    workloads = [w.strip() for w in args.workload.split(",") if w.strip()]
    if not workloads or any(
        w not in ("register", "set", "watch", "lock", "queue", "counter") for w in workloads
    ):
        parser.error(
            "--workload takes register, set, watch, lock, queue and counter (comma-separated)"
        )
    if "watch" in workloads and "register" not in workloads:
        parser.error("the watch workload watches the register workload's keys: add register")
    if args.concurrency < 1 or args.duration <= 0:
        parser.error("--concurrency must be >= 1 and --duration > 0")
    if args.bounded_reads_ms < 0 or (args.planted_unbounded_reads and not args.bounded_reads_ms):
        parser.error("--bounded-reads-ms takes ms >= 0; the planted lie needs it too")
    if not 0 <= args.wan_latency_ms <= 10_000:
        parser.error("--wan-latency-ms must be within 0..10000")
    nodes_per_dc = args.nodes_per_dc or (2 if "membership" in kinds else 1)
    if "membership" in kinds and nodes_per_dc < 2:
        parser.error("the membership nemesis moves replicas within a datacenter: --nodes-per-dc 2")
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    options = RunOptions(
        duration_s=args.duration,
        nemesis=kinds,
        workloads=workloads,
        concurrency=args.concurrency,
        nodes_per_dc=nodes_per_dc,
        seed=seed,
        out=args.out,
        stale_reads=args.stale_reads,
        op_timeout_s=args.op_timeout,
        ops_max=args.ops_max,
        base_port=args.base_port,
        wan_latency_ms=args.wan_latency_ms,
        bounded_reads_ms=args.bounded_reads_ms,
        planted_unbounded=args.planted_unbounded_reads,
        progress=not args.quiet,
        command=shlex.join(["python", "-m", "tests.jepsen", *(argv or sys.argv[1:])]),
    )
    try:
        results = asyncio.run(run(options))
    except RuntimeError as exc:
        print(f"jepsen: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("jepsen: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    ops = results["ops"]
    recovery = results["recovery_s"]
    print(
        f"{ops['total']} ops ({ops['per_s']:.0f}/s): ok {ops['ok']}, fail {ops['fail']},"
        f" unknown {ops['unknown']}; {len(results['faults'])} faults;"
        f" recovery {'never' if recovery is None else f'{recovery:.2f} s'}"
    )
    for name in ("register", "bounded_reads", "set", "watch", "lock", "queue"):
        if name in results:
            print(f"{name}: {results[name]['verdict']}")
    print(f"verdict: {results['verdict']}; output in {results['output']}")
    return 0 if results["verdict"] == "valid" else 1


def _check(args: argparse.Namespace) -> int:
    if args.synthetic:
        ops = generate(random.Random(1), ops=args.synthetic, keys=args.keys, clients=10)
        source = f"{args.synthetic} generated ops over {args.keys} keys"
    elif args.history:
        try:
            ops = read_history(args.history)
        except (OSError, ValueError) as exc:
            print(f"jepsen: {args.history}: {exc}", file=sys.stderr)
            return 2
        source = str(args.history)
    else:
        print("jepsen: check needs a history file or --synthetic N", file=sys.stderr)
        return 2
    started = time.perf_counter()
    verdict = check_history(ops, steps_per_key_max=args.steps_per_key)
    elapsed = time.perf_counter() - started
    for failure in verdict.failures:
        print(f"key {failure.key}: {failure.verdict} ({failure.ops} ops, {failure.steps} steps)")
    print(f"{source}: {verdict.verdict} ({verdict.ops} ops, {verdict.keys} keys, {elapsed:.2f} s)")
    return 0 if verdict.valid else 1


if __name__ == "__main__":
    sys.exit(main())
