"""``kvstore get`` imports what a get needs and nothing else: not the server stack, the
bench, plotting or the fast event loop (each was imported by every command before)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_FOR_A_GET = (
    "kvstore.bench",
    "kvstore.server",
    "kvstore.runtime",
    "kvstore.storage",
    "kvstore.local_cluster",
    "kvstore.logging",
    "kvstore.client",
    "kvstore.batcher",
    "matplotlib",
    "lmdb",
    "uvloop",
    "hdrh",
    "structlog",
)
PROBE = """
import json, sys
from kvstore.__main__ import main
code = main(["get", "k", "--endpoints", "127.0.0.1:1", "--timeout", "0.2"])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def test_a_get_imports_no_server_bench_or_plotting_module() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    result = json.loads(done.stdout)
    assert result["code"] == 2  # it ran, against a dead endpoint
    loaded = [
        m
        for m in result["modules"]
        if any(m == name or m.startswith(name + ".") for name in NOT_FOR_A_GET)
    ]
    assert loaded == []
    assert "grpc" in result["modules"] and "kvstore.v1.kv_pb2" in result["modules"]
