"""One fault-test run, start to finish: cluster up, workloads and nemesis, heal, check, report.

The run is bounded: ``duration_s`` of workload (and at most ``ops_max`` operations), then at
most ``recovery_limit_s`` for the cluster to recover (every shard led, every key read), then
every process it started is stopped by PID, whatever happened.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc

from kvstore.v1 import kv_pb2
from tests.jepsen.cluster import SHARD_STARTS, JepsenCluster, free_base_port, probe_keys
from tests.jepsen.counters import CounterWorkload, check_counter, write_counter_history
from tests.jepsen.history import HistoryWriter
from tests.jepsen.linearizability import KeyVerdict, check_history
from tests.jepsen.locks import LockWorkload, check_locks, write_lock_history
from tests.jepsen.nemesis import Nemesis
from tests.jepsen.proxy import Network, ProxyServer
from tests.jepsen.queue import QueueWorkload, check_queue, write_queue_history
from tests.jepsen.report import plot, write_results, write_summary
from tests.jepsen.setcheck import check_set
from tests.jepsen.staleness import check_bounded_reads, write_bounded_reads
from tests.jepsen.watchers import WatchWorkload, check_watches
from tests.jepsen.workload import (
    Counters,
    Identity,
    Library,
    Node,
    RegisterWorkload,
    SetWorkload,
    Stop,
    now_ns,
)

STARTUP_S_MAX = 30.0
FINAL_READS_S_MAX = 30.0  # keep reading past the recovery limit, so the check has final reads


@dataclass
class RunOptions:
    duration_s: float = 300.0
    nemesis: list[str] = field(default_factory=list)
    workloads: list[str] = field(default_factory=lambda: ["register", "set"])
    concurrency: int = 12
    nodes_per_dc: int = 1
    seed: int = 0
    out: Path | None = None
    stale_reads: bool = False
    bounded_reads_ms: int = 0  # a third of the gets ask for this staleness bound
    planted_unbounded: bool = False  # ...but accept any age while claiming 1 ms: must fail
    op_timeout_s: float = 2.0
    ops_max: int = 1_000_000
    base_port: int = 0
    recovery_limit_s: float = 10.0
    wan_latency_ms: float = 0.0  # the nodes' own emulated WAN between datacenters (one way)
    progress: bool = True
    command: str = ""


def default_out(seed: int) -> Path:
    return Path("jepsen-runs") / f"{datetime.now():%Y%m%d-%H%M%S}-seed{seed}"


class Progress:
    def __init__(self, enabled: bool, counters: list[Counters], nemesis: Nemesis) -> None:
        self.enabled = enabled
        self.counters = counters
        self.nemesis = nemesis
        self.tty = sys.stderr.isatty()

    async def run(self, started: float, duration: float) -> None:
        last_print = 0.0
        while True:
            await asyncio.sleep(1.0)
            elapsed = time.monotonic() - started
            if not self.enabled or (not self.tty and elapsed - last_print < 5):
                continue
            last_print = elapsed
            ok = sum(c.ok for c in self.counters)
            fail = sum(c.fail for c in self.counters)
            unknown = sum(c.unknown for c in self.counters)
            total = ok + fail + unknown
            faults = ", ".join(self.nemesis.active_names()) or "-"
            line = (
                f"[{elapsed:4.0f}s/{duration:.0f}s] {total} ops ({total / max(elapsed, 1):.0f}/s)"
                f" ok {ok} fail {fail} unknown {unknown} | faults: {faults}"
            )
            print(
                ("\r" + line.ljust(110)) if self.tty else line,
                end="" if self.tty else "\n",
                file=sys.stderr,
                flush=True,
            )


async def run(options: RunOptions) -> dict[str, Any]:
    out = options.out or default_out(options.seed)
    if out.exists() and any(out.iterdir()):
        # Old data would make the new history start from values it never wrote.
        raise RuntimeError(f"{out} is not empty: every run starts from empty nodes")
    out.mkdir(parents=True, exist_ok=True)

    def say(message: str) -> None:
        if options.progress:
            print(message, file=sys.stderr, flush=True)

    say(f"jepsen: seed {options.seed}, output in {out}")
    rng = random.Random(options.seed)
    base = options.base_port or free_base_port(options.nodes_per_dc)
    cluster = JepsenCluster(
        out,
        nodes_per_dc=options.nodes_per_dc,
        base_port=base,
        wan_latency_ms=options.wan_latency_ms,
    )
    network = Network(random.Random(rng.getrandbits(64)))
    proxies = ProxyServer(network)
    history = HistoryWriter(out / "history.jsonl")
    register = RegisterWorkload(
        random.Random(rng.getrandbits(64)),
        history,
        active_keys=max(3, options.concurrency // 4),
        op_timeout_s=options.op_timeout_s,
        stale_reads=options.stale_reads,
        bounded_reads_ms=options.bounded_reads_ms,
        planted_unbounded=options.planted_unbounded,
    )
    sets = SetWorkload(op_timeout_s=options.op_timeout_s)
    watches: WatchWorkload | None = None
    watches_settled = False
    locks: LockWorkload | None = None
    takers: CounterWorkload | None = None
    queue: QueueWorkload | None = None
    queue_settled = False
    nemesis = Nemesis(
        random.Random(rng.getrandbits(64)),
        cluster,
        network,
        options.nemesis,
        out / "timeline.jsonl",
    )
    nodes = [Node(n.address) for n in cluster.nodes]
    library = Library([n.address for n in cluster.nodes], options.op_timeout_s)
    crashed: list[int] = []
    # SIGTERM cancels the run like Ctrl-C does, so the finally below stops every process.
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    try:
        await cluster.start_proxies(proxies)
        cluster.start_all()
        await _wait_for_leaders(cluster, STARTUP_S_MAX)
        say(
            f"jepsen: {len(cluster.ids)} nodes up, every shard led;"
            f" running {options.duration_s:.0f} s"
        )
        if "watch" in options.workloads:
            watches = WatchWorkload(random.Random(rng.getrandbits(64)), nodes)
            watches.start()  # from the first revision: they miss nothing written after this
        started = time.monotonic()
        start_ns = now_ns()
        stop = Stop(started + options.duration_s, options.ops_max)
        workers = _workers(
            options, register=register, sets=sets, nodes=nodes, library=library, stop=stop
        )
        if "lock" in options.workloads:
            locks = LockWorkload(
                random.Random(rng.getrandbits(64)), [n.address for n in cluster.nodes]
            )
            locks.start(started + options.duration_s)
        if "counter" in options.workloads:
            takers = CounterWorkload(
                random.Random(rng.getrandbits(64)), [n.address for n in cluster.nodes]
            )
            takers.start(started + options.duration_s)
        if "queue" in options.workloads:
            queue = QueueWorkload(
                random.Random(rng.getrandbits(64)), [n.address for n in cluster.nodes], out
            )
            await queue.start(started + options.duration_s)
        nemesis_task = asyncio.create_task(nemesis.run(started + options.duration_s - 2))
        progress = Progress(options.progress, [register.counters, sets.counters], nemesis)
        progress_task = asyncio.create_task(progress.run(started, options.duration_s))
        await asyncio.gather(*workers)
        if locks is not None:
            await locks.wait()  # each stops at the end of the run, its last attempt done
        if takers is not None:
            await takers.wait()
        if queue is not None:
            await queue.wait()
        end_ns = now_ns()
        nemesis_task.cancel()
        await asyncio.gather(nemesis_task, return_exceptions=True)
        crashed = cluster.crashed()
        await nemesis.heal_all()
        if options.progress and progress.tty:
            print(file=sys.stderr)
        say("jepsen: healed every fault; waiting for recovery")
        recovery_s = await _recover(cluster, register, sets, nodes, options)
        progress_task.cancel()
        if locks is not None:
            await locks.read_final()
        if takers is not None:
            await takers.read_final()
        if queue is not None:
            say("jepsen: waiting for the consumer group to catch up")
            queue_settled = await queue.settle()
            await queue.read_final()
            await queue.stop()
        if watches is not None:
            say("jepsen: waiting for the watchers to see every acknowledged write")
            watches_settled = await watches.settle(register.ops)
            await watches.stop()
    finally:
        if watches is not None:
            await watches.stop()
        if locks is not None:
            await locks.stop()
        if takers is not None:
            await takers.stop()
        if queue is not None:
            await queue.stop()
        history.close()
        cluster.stop_all()
        await cluster.close()
        await proxies.stop()
        for node in nodes:
            await node.close()
        await library.close()
    say("jepsen: checking")
    results = _results(
        options,
        out=out,
        register=register,
        sets=sets,
        watches=None if watches is None else (watches, watches_settled),
        locks=locks,
        takers=takers,
        queue=None if queue is None else (queue, queue_settled),
        nemesis=nemesis,
        recovery_s=recovery_s,
        start_ns=start_ns,
        end_ns=end_ns,
        crashed=crashed,
    )
    write_results(out, results)
    write_summary(out, results)
    plot(out, register.ops, nemesis.faults, start_ns, end_ns)
    _write_set_history(out, sets)
    return results


def _workers(
    options: RunOptions,
    *,
    register: RegisterWorkload,
    sets: SetWorkload,
    nodes: list[Node],
    library: Library,
    stop: Stop,
) -> list[asyncio.Task[None]]:
    """Set adders first, then register workers: two of every three through a node (the
    gateway path), every third through one shared client library (leader-direct)."""
    stride = options.concurrency + 1
    adders = 0
    if "set" in options.workloads:
        adders = (
            options.concurrency
            if "register" not in options.workloads
            else max(1, options.concurrency // 4)
        )
    tasks: list[asyncio.Task[None]] = []
    for index in range(options.concurrency):
        node = nodes[index % len(nodes)]
        me = Identity(index, stride)
        if index < adders:
            tasks.append(asyncio.create_task(sets.adder(node, me, stop)))
        else:
            via: Node | Library = library if (index - adders) % 3 == 2 else node
            tasks.append(asyncio.create_task(register.worker(via, me, stop)))
    if "set" in options.workloads:
        reader = Identity(options.concurrency, stride)
        tasks.append(asyncio.create_task(sets.reader(nodes[-1], reader, stop)))
    return tasks


async def _wait_for_leaders(cluster: JepsenCluster, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    # Every configured shard and the meta range (0), which holds the range map.
    shards = {0, *range(1, len(SHARD_STARTS) + 1)}
    while time.monotonic() < deadline:
        if shards <= set(await cluster.leaders()):
            return
        if cluster.crashed():
            break
        await asyncio.sleep(0.2)
    raise RuntimeError(
        f"the cluster did not elect a leader for every shard within {limit_s:.0f} s;"
        f" see {cluster.root / 'nodes'}"
    )


async def _recover(
    cluster: JepsenCluster,
    register: RegisterWorkload,
    sets: SetWorkload,
    nodes: list[Node],
    options: RunOptions,
) -> float | None:
    """Seconds from the heal until every shard answers and every key was read (None: never)."""
    healed = time.monotonic()
    deadline = healed + FINAL_READS_S_MAX
    finals = Identity(10 * (options.concurrency + 1) ** 2, 1)
    pending_probes = list(probe_keys())
    rotation = 0
    while pending_probes and time.monotonic() < deadline:
        key = pending_probes[0]
        rotation += 1
        node = nodes[rotation % len(nodes)]
        request = kv_pb2.GetRequest(key=key.encode())
        try:
            await node.kv.Get(request, timeout=1.0)
            pending_probes.pop(0)
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.05)
    keys = register.keys_used() if "register" in options.workloads else []
    semaphore = asyncio.Semaphore(16)

    async def final_read(index: int, key: str) -> bool:
        async with semaphore:
            while time.monotonic() < deadline:
                before = len(register.ops)
                me = Identity(finals.number + index, 0)
                await register.one(nodes[index % len(nodes)], me, key, kind="get")
                if register.ops[before:] and register.ops[-1].ret is not None:
                    return True
            return False

    reads = await asyncio.gather(*(final_read(i, k) for i, k in enumerate(keys)))
    set_read = True
    if "set" in options.workloads:
        set_read = False
        attempt = 0
        while not set_read and time.monotonic() < deadline:
            attempt += 1
            set_read = await sets.read(nodes[attempt % len(nodes)], finals, final=True)
    if pending_probes or not all(reads) or not set_read:
        return None
    return time.monotonic() - healed


def _explain(failure: KeyVerdict) -> str:
    if failure.verdict == "unknown":
        return f"search budget exhausted after {failure.steps} steps"
    stuck = failure.stuck_on
    what = "" if stuck is None else f"{stuck.to_json()}"
    return (
        f"no linearization of {failure.ops} ops; the longest linearizable prefix has "
        f"{len(failure.linearized_prefix)} ops and then cannot explain {what}"
    )


def _results(
    options: RunOptions,
    *,
    out: Path,
    register: RegisterWorkload,
    sets: SetWorkload,
    watches: tuple[WatchWorkload, bool] | None,
    locks: LockWorkload | None,
    takers: CounterWorkload | None,
    queue: tuple[QueueWorkload, bool] | None,
    nemesis: Nemesis,
    recovery_s: float | None,
    start_ns: int,
    end_ns: int,
    crashed: list[int],
) -> dict[str, Any]:
    counters = [register.counters, sets.counters]
    ok, fail, unknown = (sum(getattr(c, f) for c in counters) for f in ("ok", "fail", "unknown"))
    duration = (end_ns - start_ns) / 1e9
    verdicts: list[str] = []
    results: dict[str, Any] = {
        "seed": options.seed,
        "command": options.command,
        "output": str(out),
        "duration_s": duration,
        "nemesis": options.nemesis,
        "workloads": options.workloads,
        "concurrency": options.concurrency,
        "nodes_per_dc": options.nodes_per_dc,
        "stale_reads": options.stale_reads,
        "ops": {
            "total": ok + fail + unknown,
            "per_s": (ok + fail + unknown) / max(duration, 1e-9),
            "ok": ok,
            "fail": fail,
            "unknown": unknown,
            "errors_by_status": _merge(c.by_status for c in counters),
        },
        "faults": [
            {
                "fault": f.kind,
                "detail": f.detail,
                "start_s": (f.start - start_ns) / 1e9,
                "end_s": None if f.end is None else (f.end - start_ns) / 1e9,
            }
            for f in nemesis.faults
        ],
        "faults_by_kind": _merge([{f.kind: 1} for f in nemesis.faults]),
        "recovery_s": recovery_s,
        "recovery_limit_s": options.recovery_limit_s,
        "crashed_nodes": crashed,
    }
    if "register" in options.workloads:
        verdict = check_history(register.ops)
        verdicts.append(verdict.verdict)
        results["register"] = {
            "verdict": verdict.verdict,
            "keys": verdict.keys,
            "ops": verdict.ops,
            "failures": [
                {"key": f.key, "verdict": f.verdict, "ops": f.ops, "explanation": _explain(f)}
                for f in verdict.failures
            ],
        }
    if register.bounded:
        staleness = check_bounded_reads(register.ops, register.bounded)
        verdicts.append(staleness.verdict)
        results["bounded_reads"] = staleness.summary(options.bounded_reads_ms)
        write_bounded_reads(out / "bounded-reads.jsonl", register.bounded)
    if "set" in options.workloads:
        set_verdict = check_set(sets.adds, sets.reads)
        verdicts.append(set_verdict.verdict)
        results["set"] = {
            "verdict": set_verdict.verdict,
            "adds": set_verdict.adds,
            "acknowledged": set_verdict.acknowledged,
            "unknown": set_verdict.unknown,
            "unknown_present": set_verdict.unknown_present,
            "reads": set_verdict.reads,
            "final_read": set_verdict.final_read,
            "lost": set_verdict.lost,
            "phantom": set_verdict.phantom,
            "unstable": set_verdict.unstable,
        }
    if watches is not None:
        workload, settled = watches
        watch_verdict = check_watches(register.ops, workload.logs, settled=settled)
        verdicts.append(watch_verdict.verdict)
        results["watch"] = watch_verdict.summary()
    if locks is not None:
        lock_verdict = check_locks(locks.log)
        verdicts.append(lock_verdict.verdict)
        results["lock"] = lock_verdict.summary() | {
            "acquired": locks.log.acquired,
            "errors": locks.log.errors,
        }
        write_lock_history(out / "lock-history.jsonl", locks.log)
    if takers is not None:
        counter_verdict = check_counter(takers.log)
        verdicts.append(counter_verdict.verdict)
        results["counter"] = counter_verdict.summary() | {"errors": takers.log.errors}
        write_counter_history(out / "counter-history.jsonl", takers.log)
    if queue is not None:
        consumed, caught_up = queue
        queue_verdict = check_queue(consumed.log)
        verdicts.append(queue_verdict.verdict if caught_up else "unknown")
        results["queue"] = queue_verdict.summary() | {
            "settled": caught_up,
            "consumer_kills": consumed.log.consumer_kills,
            "errors": consumed.log.errors,
        }
        write_queue_history(out / "queue-history.jsonl", consumed.log)
    recovered = recovery_s is not None and recovery_s <= options.recovery_limit_s
    if "invalid" in verdicts:
        overall = "invalid"
    elif "unknown" in verdicts or not recovered or crashed:
        overall = "unknown" if "unknown" in verdicts else "failed"
    else:
        overall = "valid"
    results["verdict"] = overall
    results["recovered"] = recovered
    return results


def _merge(dicts: Any) -> dict[str, int]:
    merged: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            merged[k] = merged.get(k, 0) + v
    return merged


def _write_set_history(out: Path, sets: SetWorkload) -> None:
    import json

    with (out / "set-history.jsonl").open("w") as f:
        for add in sets.adds:
            f.write(
                json.dumps(
                    {
                        "client": add.client,
                        "call": add.call,
                        "return": add.ret,
                        "op": "add",
                        "value": add.element,
                        "ok": add.ok,
                    }
                )
                + "\n"
            )
        for read in sets.reads:
            f.write(
                json.dumps(
                    {
                        "client": read.client,
                        "call": read.call,
                        "return": read.ret,
                        "op": "read",
                        "value": sorted(read.elements),
                        "ok": True,
                        "final": read.final,
                    }
                )
                + "\n"
            )
