"""What a run leaves behind: results.json, summary.md and two plots drawn as Jepsen draws them.

- latency.png: every operation's latency over time, by kind and outcome (unknown outcomes
  drawn at the top), fault windows shaded;
- throughput.png: completed operations per second (ok / fail / unknown), same shading.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.jepsen.history import Op
from tests.jepsen.nemesis import Fault

COLORS = {"get": "tab:blue", "put": "tab:orange", "cas": "tab:green", "delete": "tab:red"}


def write_results(out: Path, results: dict[str, Any]) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def write_summary(out: Path, results: dict[str, Any]) -> None:
    reg, sets = results.get("register"), results.get("set")
    lines = [
        f"# Fault-test run, seed {results['seed']}: **{results['verdict']}**",
        "",
        f"- command: `{results['command']}`",
        f"- {results['duration_s']:.0f} s, nemesis `{','.join(results['nemesis']) or 'none'}`, "
        f"{results['concurrency']} clients, {results['nodes_per_dc']} node(s) per DC",
        f"- operations: {results['ops']['total']} ({results['ops']['per_s']:.0f}/s); "
        f"ok {results['ops']['ok']}, fail {results['ops']['fail']}, "
        f"unknown {results['ops']['unknown']}",
        f"- faults: {len(results['faults'])} ({_counts(results['faults_by_kind'])})",
        f"- recovery after the final heal: {_seconds(results['recovery_s'])}"
        f" (limit {results['recovery_limit_s']} s)",
    ]
    if results.get("crashed_nodes"):
        lines.append(f"- nodes that exited on their own: {results['crashed_nodes']}")
    if reg is not None:
        lines += [
            "",
            f"## Register (linearizability): {reg['verdict']}",
            f"{reg['keys']} keys, {reg['ops']} operations.",
        ]
        lines += [f"- key {f['key']}: {f['verdict']} — {f['explanation']}" for f in reg["failures"]]
    bounded = results.get("bounded_reads")
    if bounded is not None:
        lines += [
            "",
            f"## Bounded-staleness reads: {bounded['verdict']}",
            f"{bounded['reads']} reads asking for <= {bounded['max_staleness_ms']} ms"
            " (bounded-reads.jsonl), checked against the register history.",
        ]
        lines += [f"- {v}" for v in bounded["violations"]]
    if sets is not None:
        lines += [
            "",
            f"## Set (no lost or phantom elements): {sets['verdict']}",
            f"{sets['adds']} adds ({sets['acknowledged']} acknowledged, {sets['unknown']} unknown, "
            f"{sets['unknown_present']} of those present), {sets['reads']} reads.",
        ]
        for name in ("lost", "phantom", "unstable"):
            if sets[name]:
                lines.append(f"- {name}: {sets[name][:20]}")
    watch = results.get("watch")
    if watch is not None:
        lines += [
            "",
            f"## Watch (every acknowledged write seen once, in order): {watch['verdict']}",
            f"{watch['watchers']} watchers, {watch['events']} events, {watch['restarts']}"
            f" restarts by the harness, {watch['broken_streams']} streams broken by faults,"
            f" {watch['canceled']} ended by a node; all caught up: {watch['settled']}.",
        ]
        for name in ("lost", "duplicates", "order", "phantoms"):
            if watch[name]:
                lines.append(f"- {name}: {watch[name]}")
    lock = results.get("lock")
    if lock is not None:
        lines += [
            "",
            f"## Lock (a fenced counter: no lost or interleaved increments): {lock['verdict']}",
            f"{lock['acquired']} acquisitions; increments {lock['increments_ok']} ok,"
            f" {lock['increments_fenced']} fenced, {lock['increments_unknown']} unknown;"
            f" the counter ends at {lock['final']}; errors {lock['errors']}.",
        ]
        lines += [f"- {p}" for p in lock["problems"]]
    counter = results.get("counter")
    if counter is not None:
        lines += [
            "",
            f"## Counter (no id handed out twice, no gap unknown takes cannot explain):"
            f" {counter['verdict']}",
            f"takes {counter['takes_ok']} ok ({counter['ids_taken']} ids),"
            f" {counter['takes_failed']} failed, {counter['takes_unknown']} unknown; the"
            f" counter ends at {counter['final']}; errors {counter['errors']}.",
        ]
        lines += [f"- {p}" for p in counter["problems"]]
    queue = results.get("queue")
    if queue is not None:
        lines += [
            "",
            f"## Queue (no record lost, duplicated, misplaced or undelivered): {queue['verdict']}",
            f"{queue['produced_ok']} produce calls acknowledged, {queue['produced_unknown']}"
            f" unknown; {queue['records']} records in the log, {queue['delivered']} handed to"
            f" the group; {queue['consumer_kills']} consumer processes SIGKILLed; caught up:"
            f" {queue['settled']}; errors {queue['errors']}.",
        ]
        for name in ("lost", "duplicated", "offsets", "undelivered", "checkpoint-back", "skipped"):
            if queue[name]:
                lines.append(f"- {name}: {queue[name]}")
    lines += [
        "",
        "Files: history.jsonl, set-history.jsonl, lock-history.jsonl, counter-history.jsonl,"
        " queue-history.jsonl, consumers/, timeline.jsonl, nodes/, *.png",
    ]
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def plot(out: Path, ops: list[Op], faults: list[Fault], start_ns: int, end_ns: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    horizon = (end_ns - start_ns) / 1e9

    def shade(ax: Any) -> None:
        kinds = sorted({f.kind for f in faults})
        palette = plt.get_cmap("tab20")
        for fault in faults:
            left = (fault.start - start_ns) / 1e9
            right = ((fault.end or end_ns) - start_ns) / 1e9
            color = palette(kinds.index(fault.kind) % 20)
            ax.axvspan(left, right, color=color, alpha=0.18, lw=0)
        for index, kind in enumerate(kinds):
            ax.axvspan(0, 0, color=palette(index % 20), alpha=0.3, label=kind)
        ax.set_xlim(0, horizon)

    def finish(fig: Any, ax: Any, ylabel: str, title: str, columns: int) -> None:
        ax.set_xlabel("time (s)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(loc="upper left", fontsize=7, ncol=columns)
        fig.tight_layout()

    fig, ax = plt.subplots(figsize=(12, 5))
    shade(ax)
    known = [o for o in ops if o.ret is not None]
    top = max(((o.ret or 0) - o.call for o in known), default=1_000_000) / 1e6 * 1.5
    for kind, color in COLORS.items():
        for ok, marker in ((True, "."), (False, "2")):
            mine = [o for o in known if o.op == kind and o.ok is ok]
            ax.scatter(
                [(o.call - start_ns) / 1e9 for o in mine],
                [max((o.ret or 0) - o.call, 1) / 1e6 for o in mine],
                s=6,
                marker=marker,
                color=color,
                label=f"{kind} {'ok' if ok else 'fail'}" if mine else None,
            )
        unknown = [o for o in ops if o.ret is None and o.op == kind]
        if unknown:
            ax.scatter(
                [(o.call - start_ns) / 1e9 for o in unknown],
                [top] * len(unknown),
                s=14,
                marker="x",
                color=color,
                label=f"{kind} unknown",
            )
    ax.set_yscale("log")
    finish(fig, ax, "latency (ms)", "Latency of every operation (unknown outcomes at the top)", 4)
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(12, 4))
    shade(ax)
    bins = int(horizon) + 1
    for label, select, color in (
        ("ok", lambda o: o.ret is not None and o.ok, "tab:green"),
        ("fail", lambda o: o.ret is not None and not o.ok, "tab:orange"),
        ("unknown", lambda o: o.ret is None, "tab:red"),
    ):
        counts = [0] * bins
        for op in ops:
            if select(op):
                at = ((op.ret if op.ret is not None else op.call) - start_ns) // 1_000_000_000
                counts[min(max(int(at), 0), bins - 1)] += 1
        ax.plot(range(bins), counts, label=label, color=color, lw=1.2)
    finish(fig, ax, "operations / s", "Throughput", 6)
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)
