"""The whole fault-test path, short: real processes, proxies, nemesis, history, checkers, report.

Two ~22 s runs with partitions and kills must come out valid and recovered; the same run with
stale reads enabled must be reported invalid (the checker catching the real thing).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.jepsen.history import read_history

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 240


def jepsen(out: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.jepsen", "run", "--out", str(out), "--quiet", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    results = json.loads((out / "results.json").read_text())
    return proc.returncode, results, proc.stdout + proc.stderr


@pytest.mark.parametrize("seed", [1, 2])
def test_partitions_kills_wiped_disks_and_splits_stay_linearizable_and_recover(
    tmp_path: Path, seed: int
) -> None:
    out = tmp_path / "run"
    # Seed 2 also mixes in bounded-staleness reads, checked against the same history.
    bounded = ["--bounded-reads-ms", "300"] if seed == 2 else []
    code, results, output = jepsen(
        out, "--duration", "22", "--nemesis", "partition,kill,wipe,split,merge",
        "--seed", str(seed), *bounded,
    )  # fmt: skip
    assert results["verdict"] == "valid", output + (out / "summary.md").read_text()
    if bounded:
        assert results["bounded_reads"]["verdict"] == "valid"
        assert results["bounded_reads"]["reads"] >= 100
    assert code == 0
    assert output.strip().splitlines()[-1] == f"verdict: valid; output in {out}"
    assert results["register"]["verdict"] == "valid"
    assert results["set"]["verdict"] == "valid" and results["set"]["final_read"]
    assert results["recovered"] and results["recovery_s"] <= 10
    assert len(results["faults"]) >= 2
    assert results["ops"]["per_s"] >= 20  # a guard against a workload that does nothing
    for name in ("history.jsonl", "set-history.jsonl", "timeline.jsonl", "summary.md"):
        assert (out / name).stat().st_size > 0, name
    for name in ("latency.png", "throughput.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert len(list((out / "nodes").glob("n*.log"))) == 3
    history = read_history(out / "history.jsonl")
    assert len(history) == results["register"]["ops"]
    line = json.loads((out / "history.jsonl").read_text().splitlines()[0])
    assert list(line)[:9] == [
        "client", "call", "return", "op", "key", "value", "expected", "output", "ok"
    ]  # fmt: skip


def test_stale_reads_under_partitions_are_reported_invalid(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, results, output = jepsen(
        out,
        "--duration", "25",
        "--nemesis", "isolate-node,isolate-dc,isolate-leader",
        "--workload", "register",
        "--stale-reads",
        "--bounded-reads-ms", "300",
        "--planted-unbounded-reads",
        "--seed", "3",
    )  # fmt: skip
    assert results["register"]["verdict"] == "invalid", output
    # The planted lie (any age, recorded as <= 1 ms) is caught by the staleness checker.
    assert results["bounded_reads"]["verdict"] == "invalid", output
    assert code == 1
    assert results["register"]["failures"][0]["explanation"].startswith("no linearization")
