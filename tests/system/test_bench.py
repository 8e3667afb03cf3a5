"""``kvstore bench`` end to end, briefly: a local cluster, a mixed workload, the echo ceiling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.system.test_local_cluster import free_base_port


def test_bench_reports_throughput_latency_and_server_cpu(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable, "-m", "kvstore", "bench", "--local", "--dir", str(tmp_path / "data"),
            "--base-port", str(free_base_port()), "--workload", "mixed", "--read-ratio", "0.5",
            "--keys", "50", "--concurrency", "8", "--duration", "1.5", "--calibrate",
            "--quiet", "-o", "json",
        ],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    names = [r["name"] for r in report["results"]]
    assert names == ["preload (each key once)", "mixed 0.5", "grpc echo (ceiling)",
                     "grpc echo (ceiling)"]  # fmt: skip
    preload, mixed, echo_1, _ = report["results"]
    assert preload["ops"] == 50 and not preload["errors"]
    assert mixed["ops"] > 0 and not mixed["errors"]
    assert set(mixed["latency_ms"]) == {"get", "put"}
    assert mixed["latency_ms"]["get"]["p50"] <= mixed["latency_ms"]["get"]["p99.9"]
    assert mixed["server_cpu_us_per_op"] > 0 and len(mixed["nodes"]) == 3
    assert echo_1["concurrency"] == 1 and echo_1["ops"] > 0


def test_bench_refuses_bad_arguments_in_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kvstore", "bench", "--read-ratio", "2"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("kvstore: bench: argument --read-ratio: must be within 0..1")
