"""``kvstore serve`` as a real process: it says where it listens, binds its port alone (a
second node on the same address stops at once, with one line), and answers a stock health
check; ``serve`` and ``up`` refuse bad arguments in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kvstore.local_cluster import default_config
from tests.system.test_local_cluster import ROOT, free_base_port

SERVE = (sys.executable, "-m", "kvstore", "serve", "--config")


def serve(config: Path, data: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*SERVE, str(config), "--node", "1", "--data", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service="")
        return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=2).status)


def wait_serving(address: str, deadline_s: float = 20.0) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            if health(address) == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def test_a_second_node_on_a_port_in_use_stops_at_once_with_one_line(tmp_path: Path) -> None:
    """gRPC's SO_REUSEPORT let a second ``serve`` on the same address start and share the
    port; now it cannot bind, says so in one line (no 'Event loop is closed' noise after
    it), and exits 2. The first one logs ``listening`` and answers a stock health check."""
    config = tmp_path / "cluster.toml"
    config.write_text(default_config(base_port=free_base_port()))
    address = next(line for line in config.read_text().splitlines() if "address" in line)
    address = address.split('"')[1]
    first = serve(config, tmp_path / "n1")
    try:
        wait_serving(address)  # node 1 of 3 serves alone: its peers are down, it still routes
        started = time.monotonic()
        second = subprocess.run(
            [*SERVE, str(config), "--node", "1", "--data", str(tmp_path / "other")],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            check=False,
        )
        assert time.monotonic() - started < 15
        assert second.returncode == 2
        assert second.stderr == f"kvstore: cannot listen on {address} (address in use?)\n"
        assert health(address) == health_pb2.HealthCheckResponse.SERVING  # the first is intact
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=30)
    assert first.returncode == 0, err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    listening = [e for e in events if e.get("event") == "listening"]
    assert listening and listening[0]["address"] == address
    assert listening[0]["node"] == 1 and listening[0]["dc"] == "dc1"
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (("serve",), {}, "serve needs --config FILE, or --join ENDPOINTS"),
        (("serve", "--config", "{config}", "--node", "abc"), {}, "argument --node"),
        (("serve", "--config", "{config}", "--node", "0"), {}, "argument --node"),
        (("serve", "--config", "{config}", "--node", "9"), {}, "node 9 is not in"),
        (("serve", "--config", "{config}"), {"KVSTORE_NODE_ID": "x1"}, "KVSTORE_NODE_ID='x1'"),
        (("serve", "--config", "{tmp}/none.toml", "--node", "1"), {}, "cannot read"),
        (("serve", "--config", "{config}", "--node", "1", "--route", "7=h:1"), {}, "--route"),
        (
            ("serve", "--config", "{config}", "--node", "1", "--data", "/proc/kvstore"),
            {},
            "cannot use /proc/kvstore",
        ),
        (("up", "--base-port", "-5"), {}, "argument --base-port"),
        (("up", "--base-port", "65533"), {}, "node ports would pass 65535"),
        (("up", "--nodes-per-dc", "4"), {}, "argument --nodes-per-dc"),
        (("up", "--wan-latency-ms", "-1"), {}, "argument --wan-latency-ms"),
        (("up", "--wan-jitter-ms", "inf"), {}, "argument --wan-jitter-ms"),
        (("up", "--dir", "{config}"), {}, "cannot use"),
        (("bench", "--clients", "0"), {}, "argument --clients"),
        (("bench", "--concurrency", "-1"), {}, "argument --concurrency"),
        (("bench", "--duration", "0"), {}, "argument --duration"),
        (("bench", "--read-ratio", "2"), {}, "argument --read-ratio"),
        (("bench", "--endpoints", "nonsense"), {}, "endpoint 'nonsense' is not host:port"),
        (("bench", "--endpoints", "a:1", "--wan-latency-ms", "5"), {}, "configures a --local"),
    ],
)
def test_serve_up_and_bench_refuse_bad_arguments_in_one_line(
    tmp_path: Path, argv: tuple[str, ...], env: dict[str, str], needle: str
) -> None:
    config = tmp_path / "cluster.toml"
    config.write_text(default_config(base_port=free_base_port()))
    args = [a.format(config=config, tmp=tmp_path) for a in argv]
    done = subprocess.run(
        [sys.executable, "-m", "kvstore", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("KVSTORE_")}, **env},
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("kvstore: "), done.stderr
    assert needle in done.stderr
