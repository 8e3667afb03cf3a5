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


def test_the_shortener_s_compose_cluster_config_is_valid_and_matches_its_services() -> None:
    deploy = ROOT / "examples" / "shortener" / "deploy"
    result = subprocess.run(
        [sys.executable, "-m", "kvstore", "config", "check", str(deploy / "cluster.toml"),
         "-o", "json"],
        capture_output=True, text=True, timeout=30, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["shards"]) == 3
    compose = (deploy / "docker-compose.yml").read_text()
    for node in (1, 2, 3):  # each node service runs the node of its name, on its address
        assert f"--node {node} --data /data" in compose
        assert f'address = "node{node}:7000"' in (deploy / "cluster.toml").read_text()
    haproxy = (deploy / "haproxy.cfg").read_text()
    assert all(f'"${{SHORTENER{n}}}"' in haproxy for n in (1, 2, 3))
    assert "option httpchk GET /healthz" in haproxy
