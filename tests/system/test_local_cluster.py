"""``kvstore up`` with real processes, driven through the ``kvstore`` CLI as the README shows:
put and get through any node, Ctrl-C stops every node, a second ``up`` keeps the data."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from kvstore import Client, KvError
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.v1 import admin_pb2, admin_pb2_grpc, kv_pb2
from tests import ports

ROOT = Path(__file__).resolve().parents[2]


def free_base_port() -> int:
    """A base port for the three nodes of ``kvstore up`` (see ``free_base_port_for``)."""
    return free_base_port_for(3)


def cli(*args: str, endpoints: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kvstore", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={**os.environ, "KVSTORE_ENDPOINTS": endpoints},
        check=False,
    )


def start_up(data: Path, base: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kvstore", "up", "--dir", str(data), "--base-port", str(base)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 20
    while not (data / "endpoints").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


def stop_up(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    return out


def put_with_retry(endpoints: str, key: str, value: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        result = cli("put", key, value, endpoints=endpoints)
        if result.returncode == 0 or time.monotonic() > deadline:
            assert result.returncode == 0, result.stderr
            return
        time.sleep(0.2)  # leaders are still being elected


def assert_bad_input_statuses(endpoints: list[str]) -> None:
    """Each bad input gets its status from a real node, and changes nothing."""
    cross_shard = kv_pb2.TxnRequest(
        success=[
            kv_pb2.RequestOp(put=kv_pb2.PutRequest(key=b"apple", value=b"1")),
            kv_pb2.RequestOp(put=kv_pb2.PutRequest(key=b"zebra", value=b"2")),
        ]
    )
    cases = [
        (lambda c: c.put("", "v"), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda c: c.put("k" * 5000, "v"), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda c: c.put("big", b"v" * ((1 << 20) + 1)), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda c: c.scan("z", "a"), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda c: c.txn(cross_shard), grpc.StatusCode.FAILED_PRECONDITION),
    ]
    with Client(endpoints, timeout_s=10) as client:
        for call, code in cases:
            with pytest.raises(KvError) as info:
                call(client)
            assert info.value.code == code, info.value
        assert client.get("big") is None and client.get("zebra") is None

    async def raw_calls() -> None:
        async with grpc.aio.insecure_channel(endpoints[0], options=CHANNEL_OPTIONS) as channel:
            garbage = channel.unary_unary("/kvstore.v1.KV/Put")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await garbage(b"\xff\xff\xff\xff not protobuf", timeout=5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            admin = admin_pb2_grpc.AdminStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await admin.TransferLeader(
                    admin_pb2.TransferLeaderRequest(shard_id=99, to_node_id=1), timeout=5
                )
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await admin.TransferLeader(
                    admin_pb2.TransferLeaderRequest(shard_id=1, to_node_id=99), timeout=5
                )
            assert info.value.code() == grpc.StatusCode.NOT_FOUND

    asyncio.run(raw_calls())


def _settled(node: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in node.items() if k != "quiet_shards"}


def test_up_serves_survives_ctrl_c_and_restarts_with_its_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    base = free_base_port()
    proc = start_up(data, base)
    try:
        endpoints = ",".join((data / "endpoints").read_text().split())
        assert len(endpoints.split(",")) == 3
        for key, value in (("apple", "red"), ("banana", "yellow"), ("zucchini", "green")):
            put_with_retry(endpoints, key, value)
        one_node = endpoints.split(",")[2]
        got = cli("get", "apple", "-o", "json", endpoints=one_node)
        assert got.returncode == 0, got.stderr
        assert '"value": "red"' in got.stdout
        missing = cli("get", "nothing", endpoints=endpoints)
        assert missing.returncode == 1, missing.stderr
        # Leaders settle in their preferred datacenters: a* in dc1, b* in dc2, the rest in dc3.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            placed = json.loads(cli("shards", "-o", "json", endpoints=endpoints).stdout)
            if [s["leader"] for s in placed["shards"]] == [1, 2, 3]:
                break
            time.sleep(0.3)
        assert [s["leader"] for s in placed["shards"]] == [1, 2, 3]
        shard_map = json.loads(cli("shards", "-o", "json", endpoints=endpoints).stdout)
        assert [s["range"] for s in shard_map["shards"]] == ["['', 'b')", "['b', 'c')", "['c', ∞)"]
        assert all(len({r["dc"] for r in s["replicas"]}) == 3 for s in shard_map["shards"])
        claim = ("txn", "--if", "version(lock) = 0", "--then", "put lock me", "--else", "get lock")
        assert cli(*claim, endpoints=endpoints).returncode == 0
        lost = cli(*claim, "-o", "json", endpoints=endpoints)
        assert lost.returncode == 1 and '"value": "me"' in lost.stdout
        spans = cli("txn", "--then", "put apple 1", "--then", "put zebra 2", endpoints=endpoints)
        assert spans.returncode == 2 and "FAILED_PRECONDITION" in spans.stderr
        assert_bad_input_statuses(endpoints.split(","))
        status = json.loads(cli("status", "-o", "json", endpoints=endpoints).stdout)
        assert [n["up"] for n in status["nodes"]] == [True, True, True]
        # With --dc the endpoint list is looked up first (it once ran a loop inside a loop).
        local = cli("status", "--dc", "dc2", "-o", "json", endpoints=endpoints)
        assert local.returncode == 0, local.stderr
        local_nodes = sorted(json.loads(local.stdout)["nodes"], key=lambda n: n["node"])
        # Its own DC's node is asked first, with the same answers; quiet_shards is left out
        # because a shard turns quiet with time between the two calls.
        assert [_settled(n) for n in local_nodes] == [_settled(n) for n in status["nodes"]]
        shard1 = next(s for s in status["shards"] if s["shard"] == 1)  # (0 is meta)
        assert shard1["leader"] in (1, 2, 3) and len(shard1["replicas"]) == 3
        target = next(n for n in (1, 2, 3) if n != shard1["leader"])
        moved = cli("transfer-leader", "1", str(target), endpoints=endpoints)
        assert moved.returncode == 0, moved.stderr
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status = json.loads(cli("status", "-o", "json", endpoints=endpoints).stdout)
            shard1 = next(s for s in status["shards"] if s["shard"] == 1)
            if shard1["leader"] == target:
                break
            time.sleep(0.2)
        assert shard1["leader"] == target
    finally:
        out = stop_up(proc)
    assert "every node stopped" in out
    proc = start_up(data, base)
    try:
        deadline = time.monotonic() + 20
        while True:
            scan = cli("scan", "-o", "json", endpoints=endpoints)
            if scan.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert scan.returncode == 0, scan.stderr
        for key in ("apple", "banana", "zucchini"):
            assert f'"key": "{key}"' in scan.stdout
    finally:
        stop_up(proc)


def test_bad_config_and_foreign_data_stop_serve_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[cluster]\nname = "x"\n')
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kvstore",
            "serve",
            "--config",
            str(bad),
            "--node",
            "1",
            "--data",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "no [[datacenters]] given" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_needs_to_know_which_node_it_is(tmp_path: Path) -> None:
    """Without --node or KVSTORE_NODE_ID, a host name that matches no node is one clear line."""
    config = tmp_path / "cluster.toml"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from kvstore.local_cluster import default_config; print(default_config())",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=True,
    )
    config.write_text(result.stdout)
    env = {k: v for k, v in os.environ.items() if k != "KVSTORE_NODE_ID"}
    served = subprocess.run(
        [sys.executable, "-m", "kvstore", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert served.returncode == 2
    assert "pass --node ID" in served.stderr and "Traceback" not in served.stderr


def test_nodes_that_do_not_host_a_shard_still_route_to_its_leader(tmp_path: Path) -> None:
    """Two nodes per DC: shards are spread, so most nodes lack most shards; asked through a
    node that hosts none of them, every shard's keys are still written and read."""
    from kvstore.local_cluster import LocalCluster

    local = LocalCluster(tmp_path / "data", nodes_per_dc=2, base_port=free_base_port_for(6))
    local.start_all()
    local.wait_serving()
    try:
        hosts_only_shard_2 = local.cluster.node(4).address
        assert [s.shard_id for s in local.cluster.shards_of(4)] == [2]
        with Client([hosts_only_shard_2], timeout_s=20) as client:
            client._async._refresh = _no_refresh  # type: ignore[method-assign]
            for key in ("apple", "beta", "zeta"):
                client.put(key, "v")
            kvs, _ = client.scan()
            assert [kv.key for kv in kvs] == [b"apple", b"beta", b"zeta"]
    finally:
        local.stop_all()


async def _no_refresh(_deadline: float) -> None:
    """Keep the client on the one endpoint it was given (no shard map, no leader cache)."""


def free_base_port_for(nodes: int) -> int:
    """A base port whose node ports are free on their DC addresses (the layout of ``kvstore
    up``: node i of a DC on 127.0.D.i at base + node id)."""
    per_dc = nodes // 3

    def addresses(base: int) -> list[str]:
        return [
            f"127.0.{(node - 1) // per_dc + 1}.{(node - 1) % per_dc + 1}:{base + node}"
            for node in range(1, nodes + 1)
        ]

    return ports.free_base_port(addresses)


UP = [sys.executable, "-m", "kvstore", "up"]


def node_pids(up_pid: int) -> dict[int, int]:
    """node id -> PID of the node processes ``kvstore up`` (``up_pid``) runs now."""
    children = Path(f"/proc/{up_pid}/task/{up_pid}/children").read_text().split()
    pids: dict[int, int] = {}
    for pid in map(int, children):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--node" in argv:
            pids[int(argv[argv.index(b"--node") + 1])] = pid
    return pids


def test_up_restarts_a_killed_node_while_the_others_keep_serving(tmp_path: Path) -> None:
    """The README's fault-tolerance demo: kill -9 one node under ``kvstore up``; the others
    keep serving (at least 19 of 20 writes in the next 10 s succeed), ``up`` says what
    happened and restarts it, and it is back in ``kvstore status`` within 30 s."""
    data = tmp_path / "data"
    proc = start_up(data, free_base_port())
    try:
        endpoints = ",".join((data / "endpoints").read_text().split())
        put_with_retry(endpoints, "apple", "0")
        deadline = time.monotonic() + 10
        while len(pids := node_pids(proc.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(pids[1], signal.SIGKILL)
        killed_at = time.monotonic()
        ok = 0
        with Client(endpoints.split(","), timeout_s=2) as client:
            for i in range(20):
                try:
                    client.put(f"{'abz'[i % 3]}-after-kill-{i}", str(i))
                    ok += 1
                except KvError:
                    pass
                time.sleep(max(0.0, killed_at + (i + 1) * 0.5 - time.monotonic()))
        assert ok >= 19, f"only {ok} of 20 writes succeeded with one node down"
        assert time.monotonic() - killed_at < 12
        deadline = killed_at + 30
        while time.monotonic() < deadline:
            status = cli("status", "-o", "json", endpoints=endpoints)
            if status.returncode == 0 and all(n["up"] for n in json.loads(status.stdout)["nodes"]):
                break
            time.sleep(0.5)
        assert all(n["up"] for n in json.loads(status.stdout)["nodes"]), status.stdout
    finally:
        out = stop_up(proc)
    assert "node 1 exited (SIGKILL); restarting in 2 s" in out, out
    assert "node 1 restarted" in out and "every node stopped" in out


def test_up_with_no_restart_leaves_a_killed_node_down(tmp_path: Path) -> None:
    data = tmp_path / "data"
    output = tmp_path / "up.out"
    base = free_base_port()
    with output.open("w") as out:
        proc = subprocess.Popen(
            [*UP, "--dir", str(data), "--base-port", str(base), "--no-restart"],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
    try:
        deadline = time.monotonic() + 20
        while not (data / "endpoints").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        endpoints = ",".join((data / "endpoints").read_text().split())
        put_with_retry(endpoints, "apple", "0")
        os.kill(node_pids(proc.pid)[2], signal.SIGKILL)
        said = "node 2 exited (SIGKILL); not restarting"
        deadline = time.monotonic() + 10
        while said not in output.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert said in output.read_text()
        put_with_retry(endpoints, "banana", "1")  # the other two keep serving
        assert 2 not in node_pids(proc.pid) and proc.poll() is None
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert "every node stopped" in output.read_text()


def test_a_second_up_on_the_same_ports_exits_2_and_leaves_the_first_alone(tmp_path: Path) -> None:
    """Ports are bound exclusively: a second ``kvstore up`` on the ports of a running one (in
    another directory, or the same) exits 2 within 10 s with one line, and the first
    cluster's leaders keep their ballots (no node of the second ever ran)."""
    base = free_base_port()
    first = start_up(tmp_path / "first", base)
    try:
        endpoints = ",".join((tmp_path / "first" / "endpoints").read_text().split())
        put_with_retry(endpoints, "apple", "0")

        def ballots() -> dict[int, str]:
            status = json.loads(cli("status", "-o", "json", endpoints=endpoints).stdout)
            return {s["shard"]: s["ballot"] for s in status["shards"]}

        deadline = time.monotonic() + 15  # leaders settle in their preferred DCs first
        while time.monotonic() < deadline:
            placed = json.loads(cli("shards", "-o", "json", endpoints=endpoints).stdout)
            if [s["leader"] for s in placed["shards"]] == [1, 2, 3]:
                break
            time.sleep(0.3)
        before = ballots()
        for where in (tmp_path / "second", tmp_path / "first"):
            started = time.monotonic()
            second = subprocess.run(
                [*UP, "--dir", str(where), "--base-port", str(base)],
                capture_output=True,
                text=True,
                timeout=30,
                cwd=ROOT,
                check=False,
            )
            assert second.returncode == 2, second.stdout + second.stderr
            assert time.monotonic() - started < 10
            [line] = second.stderr.splitlines()
            assert "cannot start" in line and "address in use" in line, line
        assert ballots() == before
        assert first.poll() is None
    finally:
        stop_up(first)
