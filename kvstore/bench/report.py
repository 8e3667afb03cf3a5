"""Benchmark results for people (a table, a markdown file) and for programs (JSON)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path

from kvstore.bench.runner import BenchResult

COLUMNS = (
    "benchmark",
    "conc",
    "ops/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "p99.9 ms",
    "cpu µs/op",
    "errors",
)


def rows(results: Sequence[BenchResult]) -> list[list[str]]:
    out = []
    for r in results:
        kinds = r.latency_ms or {"-": {}}
        for kind, lat in kinds.items():
            label = r.name if len(kinds) == 1 else f"{r.name} ({kind})"
            ops_per_s = r.ops_per_s if len(kinds) == 1 else lat["ops"] / max(r.elapsed_s, 1e-9)
            out.append(
                [
                    label,
                    str(r.concurrency),
                    f"{ops_per_s:,.0f}",
                    *(f"{lat.get(p, 0):.2f}" for p in ("p50", "p95", "p99", "p99.9")),
                    "-" if r.server_cpu_us_per_op is None else f"{r.server_cpu_us_per_op:,.0f}",
                    ", ".join(f"{k} {v}" for k, v in sorted(r.errors.items())) or "0",
                ]
            )
    return out


def table(results: Sequence[BenchResult]) -> str:
    body = rows(results)
    widths = [max(len(c), *(len(row[i]) for row in body)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in body]
    return "\n".join(lines)


def to_json(results: Sequence[BenchResult], extra: dict[str, object] | None = None) -> str:
    return json.dumps({**(extra or {}), "results": [r.to_json() for r in results]}, indent=2)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    python = platform.python_version()
    return f"{os.cpu_count()} cores ({model}), Linux {platform.release()}, Python {python}"


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def markdown(results: Sequence[BenchResult], command: str, notes: Sequence[str]) -> str:
    body = rows(results)
    lines = [
        "# Benchmarks",
        "",
        f"- machine: {machine()}",
        f"- commit: `{commit()}`",
        f"- command: `{command}`",
        "- cluster: 3 DCs x 1 node on loopback (`kvstore up` code), 100-byte values, fsync on",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    lines += ["", *notes]
    return "\n".join(lines) + "\n"
