"""Real processes: counter ranges. Takes through any node (forwarded to the leader of the
counter's shard) hand out consecutive ranges; a retried take (same request id, another node)
answers its range again; the limits refuse with clear statuses through gRPC and the CLI;
KV writes cannot move a counter; and ``kvstore counter take`` run by several processes at
once while the counter's leader is SIGKILLed prints ranges of which no two overlap."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from cluster.counter_keys import TAKE_COUNT_MAX, counter_key
from kvstore import AsyncClient
from kvstore.api.kv_service import FORWARDED
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.local_cluster import LocalCluster
from kvstore.v1 import counters_pb2 as pb
from kvstore.v1 import counters_pb2_grpc, kv_pb2, kv_pb2_grpc
from tests.cli.harness import run
from tests.system.test_local_cluster import free_base_port

TAKERS = 6
TAKES_EACH = 8


async def refused(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value.code(), err.value.details() or ""


async def through_every_node(endpoints: list[str]) -> int:
    """Takes and refusals through each node; the leader of the counter's shard."""
    async with AsyncClient(endpoints, timeout_s=20) as kv:
        assert await kv.counter("ids") == 0
        assert await kv.take_range("ids", 100_000) == (0, 100_000)
        assert await kv.take_range("ids", 1) == (100_000, 100_001)
        assert await kv.counter("ids") == 100_001
        raw = await kv.get(counter_key(b"ids"))
        assert raw is not None and raw.value == b"100001"  # readable through KV
    leader = 0
    starts = []
    for n, endpoint in enumerate(endpoints):
        async with grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS) as channel:
            counters = counters_pb2_grpc.CountersStub(channel)
            request_id = kv_pb2.RequestId(client_id=4242 + n, seq=1)
            take = pb.CounterTakeRequest(name="ids", count=10, request_id=request_id)
            taken = await counters.Take(take, timeout=20)
            assert taken.end - taken.start == 10
            starts.append(taken.start)
            leader = taken.header.leader_node_id or leader
            # The same request again, through the next node: the same range.
            after = endpoints[(n + 1) % len(endpoints)]
            async with grpc.aio.insecure_channel(after, options=CHANNEL_OPTIONS) as other:
                again = await counters_pb2_grpc.CountersStub(other).Take(take, timeout=20)
            assert (again.start, again.end) == (taken.start, taken.end)

            def take_of(name: str, count: int, stub: object = counters) -> object:
                request = pb.CounterTakeRequest(name=name, count=count)
                return stub.Take(request, timeout=20)  # type: ignore[attr-defined]

            at_most = await counters.Take(
                pb.CounterTakeRequest(name="big", count=TAKE_COUNT_MAX), timeout=20
            )
            assert at_most.end - at_most.start == TAKE_COUNT_MAX
            long_name = "n" * 249
            assert (await counters.Take(pb.CounterTakeRequest(name=long_name, count=1))).end
            for name, count in (
                ("ids", 0),
                ("ids", TAKE_COUNT_MAX + 1),
                ("n" * 250, 1),
                ("", 1),
                ("a b", 1),
            ):
                code, _ = await refused(take_of(name, count))
                assert code == grpc.StatusCode.INVALID_ARGUMENT, (name[:9], count)
            code, _ = await refused(counters.Get(pb.CounterGetRequest(name="\xff")))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            forged = pb.CounterApplyRequest(key=counter_key(b"ids"), command=b"\x00")
            code, _ = await refused(counters.Apply(forged, timeout=10))
            assert code == grpc.StatusCode.PERMISSION_DENIED
            code, _ = await refused(counters.Apply(forged, timeout=10, metadata=(FORWARDED,)))
            assert code == grpc.StatusCode.INVALID_ARGUMENT  # not a take: never applied
            kv = kv_pb2_grpc.KVStub(channel)
            key = counter_key(b"ids")
            for write in (
                kv.Put(kv_pb2.PutRequest(key=key, value=b"0"), timeout=10),
                kv.Delete(kv_pb2.DeleteRequest(key=key), timeout=10),
                kv.Txn(
                    kv_pb2.TxnRequest(
                        success=[kv_pb2.RequestOp(put=kv_pb2.PutRequest(key=key, value=b"0"))]
                    ),
                    timeout=10,
                ),
            ):
                code, details = await refused(write)
                assert code == grpc.StatusCode.INVALID_ARGUMENT and "counter" in details
    assert starts == sorted(starts) and len(set(starts)) == 3
    async with AsyncClient(endpoints, timeout_s=20) as kv:
        assert await kv.counter("ids") == 100_031  # the refusals moved nothing
    return leader


def test_counters_through_every_node_the_cli_and_a_killed_leader(tmp_path: Path) -> None:
    local = LocalCluster(tmp_path / "data", base_port=free_base_port())
    local.start_all()
    local.wait_serving()
    try:
        leader = asyncio.run(through_every_node(local.endpoints))
        assert leader
        endpoints = ",".join(local.endpoints)

        # The command line: START END for people, JSON for programs, mistakes in one line.
        ran = run("counter", "take", "cli", "--count", "5", "--endpoints", endpoints)
        assert (ran.code, ran.out) == (0, "0 5\n"), ran.err
        ran = run("counter", "take", "cli", "-o", "json", "--endpoints", endpoints)
        assert json.loads(ran.out) == {"name": "cli", "start": 5, "end": 6}
        assert run("counter", "get", "cli", "--endpoints", endpoints).out == "6\n"
        got = run("counter", "get", "cli", "-o", "json", "--endpoints", endpoints)
        assert json.loads(got.out) == {"name": "cli", "value": 6}
        for count in ("0", str(TAKE_COUNT_MAX + 1), "x"):
            ran = run("counter", "take", "cli", "--count", count, "--endpoints", endpoints)
            assert ran.code == 2 and "--count" in ran.err and "Traceback" not in ran.err
        ran = run("counter", "take", "n" * 250, "--endpoints", endpoints)
        assert ran.code == 2 and "1..249 bytes" in ran.err
        assert run("counter", "get", "cli", "--endpoints", endpoints).out == "6\n"

        # Several processes take at once while the counter's leader is SIGKILLed: every
        # printed range is whole, and no two overlap.
        script = (
            "import subprocess, sys\n"
            f"for _ in range({TAKES_EACH}):\n"
            "    subprocess.run([sys.executable, '-m', 'kvstore', 'counter', 'take', 'load',"
            f" '--count', '1000', '--timeout', '30', '--endpoints', {endpoints!r}])\n"
        )
        takers = [
            subprocess.Popen(
                [sys.executable, "-c", script],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(TAKERS)
        ]
        asyncio.run(_first_take_of(local.endpoints, "load"))
        local.kill(leader)
        ranges = []
        for taker in takers:
            out, err = taker.communicate(timeout=300)
            assert "Traceback" not in err, err
            ranges += [tuple(map(int, line.split())) for line in out.splitlines()]
        assert len(ranges) >= TAKERS * TAKES_EACH - TAKERS  # at most a take each unknown
        ranges.sort()
        assert all(end - start == 1000 for start, end in ranges)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(ranges)), ranges
    finally:
        local.stop_all()


async def _first_take_of(endpoints: list[str], name: str) -> None:
    """Waits until some taker has taken from ``name`` (so the kill lands mid-way)."""
    async with AsyncClient(endpoints, timeout_s=60) as kv:
        while await kv.counter(name) == 0:
            await asyncio.sleep(0.05)
