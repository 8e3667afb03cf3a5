"""The shipped example cluster config is valid: one replica per DC, leaders spread."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "cluster.example.toml"


def test_config_check_accepts_the_example_and_prints_its_shards() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kvstore", "config", "check", str(EXAMPLE), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    table = json.loads(result.stdout)
    shards = table["shards"]
    assert len(shards) == 6
    for shard in shards:
        dcs = [r.split("(")[1].rstrip(")") for r in shard["replicas"]]
        assert sorted(dcs) == ["eu-west", "us-east", "us-west"]
    assert set(Counter(s["leader_dc"] for s in shards).values()) == {2}
    people = subprocess.run(
        [sys.executable, "-m", "kvstore", "config", "check", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=False,
    )
    assert "shard" in people.stdout.splitlines()[0] and "replicas" in people.stdout
