"""Every documented limit, at, just under and just over it, through every path a write takes,
on real node processes; then the cluster restarts with its data. And a data directory whose
log holds a 4 KiB key (written by the code before the long-key layout, which died applying
it) starts and serves."""

from __future__ import annotations

import asyncio
import re
import tarfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

from kvstore import AsyncClient, Client, KvError
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.local_cluster import LocalCluster
from kvstore.v1 import admin_pb2, admin_pb2_grpc, kv_pb2, kv_pb2_grpc
from tests.system.test_local_cluster import free_base_port

KEY_MAX = 4096
VALUE_MAX = 1 << 20
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "long-key-in-log.tar.gz"
OK, BAD = grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT

# (name, key, value, expected status)
CASES = [
    ("key-under", b"k" * (KEY_MAX - 1), b"v", OK),
    ("key-at", b"k" * KEY_MAX, b"v", OK),
    ("key-over", b"k" * (KEY_MAX + 1), b"v", BAD),
    ("key-empty", b"", b"v", BAD),
    ("value-under", b"value-under", b"u" * (VALUE_MAX - 1), OK),
    ("value-at", b"value-at", b"a" * VALUE_MAX, OK),
    ("value-at-long-key", b"l" * KEY_MAX, b"b" * VALUE_MAX, OK),
    ("value-over", b"value-over", b"o" * (VALUE_MAX + 1), BAD),
    # The band that the gRPC message limit refused before (1,048,543 to 1,048,576 bytes).
    ("value-band", b"value-band", b"w" * 1_048_543, OK),
]

Write = Callable[[str, bytes, bytes], Awaitable[grpc.StatusCode]]


def _key(path: str, key: bytes) -> bytes:
    """Each path writes its own copy of a case's key (same length), so all survive to be read.
    Keys start with 'b': shard 2, led from dc2 (node 2), so nodes 1 and 3 are gateways."""
    if not key:
        return key
    return (b"b" + path.encode() + b"/" + key)[: len(key)] if len(key) > 20 else b"b/" + key


async def _status(call: Awaitable[object]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as err:
        return err.code()
    return OK


def _item_status(result: kv_pb2.BatchResult) -> grpc.StatusCode:
    if result.WhichOneof("response") != "error":
        return OK
    return next(c for c in grpc.StatusCode if c.value[0] == result.error.code)


def _paths(stubs: dict[int, kv_pb2_grpc.KVStub], leader: int, gateway: int) -> dict[str, Write]:
    async def unary(stub: kv_pb2_grpc.KVStub, key: bytes, value: bytes) -> grpc.StatusCode:
        request_id = kv_pb2.RequestId(client_id=7, seq=time.monotonic_ns())
        put = kv_pb2.PutRequest(key=key, value=value, request_id=request_id)
        return await _status(stub.Put(put, timeout=30))

    async def batch(key: bytes, value: bytes) -> grpc.StatusCode:
        put = kv_pb2.PutRequest(key=key, value=value)
        request = kv_pb2.BatchRequest(items=[kv_pb2.BatchItem(put=put)])
        response = await stubs[leader].Batch(request, timeout=30)
        return _item_status(response.results[0])

    async def stream(key: bytes, value: bytes) -> grpc.StatusCode:
        put = kv_pb2.PutRequest(key=key, value=value)
        request = kv_pb2.BatchRequest(id=1, items=[kv_pb2.BatchItem(put=put)])
        call = stubs[gateway].BatchStream(iter([request]), timeout=30)
        answers = [answer async for answer in call]
        return _item_status(answers[0].results[0])

    return {
        "unary": lambda _, k, v: unary(stubs[leader], k, v),
        "gateway": lambda _, k, v: unary(stubs[gateway], k, v),  # a follower forwards it
        "batch": lambda _, k, v: batch(k, v),
        "stream": lambda _, k, v: stream(k, v),
    }


def test_every_limit_through_every_path_then_a_restart(tmp_path: Path) -> None:
    local = LocalCluster(tmp_path / "data", base_port=free_base_port())
    local.start_all()
    local.wait_serving()
    endpoints = local.endpoints
    written: dict[bytes, bytes] = {}
    try:

        async def scenario() -> None:
            async with AsyncClient(endpoints, timeout_s=30) as kv:
                await kv.put("b-warm-up", "1")  # wait for a leader of shard 2
                leader = await _leader_of(endpoints, shard=2)
                gateway = next(n for n in (1, 2, 3) if n != leader)
                channels = {
                    n: grpc.aio.insecure_channel(e, options=CHANNEL_OPTIONS)
                    for n, e in enumerate(endpoints, start=1)
                }
                stubs = {n: kv_pb2_grpc.KVStub(c) for n, c in channels.items()}
                paths = _paths(stubs, leader, gateway)

                async def client(_: str, key: bytes, value: bytes) -> grpc.StatusCode:
                    try:
                        await kv.put(key, value)
                    except KvError as err:
                        return err.code
                    return OK

                paths["client"] = client
                try:
                    for path, write in paths.items():
                        for name, key, value, expected in CASES:
                            mine = _key(path, key)
                            got = await write(path, mine, value)
                            assert got == expected, (path, name, got)
                            if expected == OK:
                                written[mine] = value
                    await _txn_limits(stubs[gateway], written)
                    # Many values at the limit at once: slots, Accepts and peer batches then
                    # carry several MiB (over gRPC's default 4 MiB message). 40 MiB through
                    # three nodes on a 2-core machine busy with other tests: what is asserted
                    # is that every write lands, not how fast (``make bench`` measures that).
                    burst = {b"b-burst-%02d" % i: bytes([i]) * VALUE_MAX for i in range(40)}
                    async with AsyncClient(endpoints, timeout_s=120) as patient:
                        await asyncio.gather(*(patient.put(k, v) for k, v in burst.items()))
                    written.update(burst)
                finally:
                    for channel in channels.values():
                        await channel.close()

        asyncio.run(scenario())
        local.stop_all()
        local.start_all()
        local.wait_serving()
        with Client(endpoints, timeout_s=30) as kv:
            for key, value in written.items():
                got = kv.get(key)
                assert got is not None and got.value == value, (key[:30], len(key))
            # 40 MiB of values under one prefix: each scan answers at most 16 MiB (at least
            # one key) and says more remain; paging from the last key gets every one once.
            seen: list[bytes] = []
            start = b"b-burst-"
            while True:
                page, more = kv.scan(start, b"b-burst.", limit=0)
                assert sum(len(p.key) + len(p.value) for p in page) <= 16 << 20
                seen += [p.key for p in page]
                if not more:
                    break
                start = page[-1].key + b"\x00"
            assert seen == sorted(k for k in written if k.startswith(b"b-burst-"))
    finally:
        local.stop_all()


async def _txn_limits(stub: kv_pb2_grpc.KVStub, written: dict[bytes, bytes]) -> None:
    """A Txn's ops (128 per branch), compares (128) and values together (1 MiB)."""

    def put(key: bytes, value: bytes = b"t") -> kv_pb2.RequestOp:
        return kv_pb2.RequestOp(put=kv_pb2.PutRequest(key=key, value=value))

    def compare(key: bytes) -> kv_pb2.Compare:
        return kv_pb2.Compare(key=key, target=kv_pb2.Compare.TARGET_VERSION, number=0)

    cases = [
        ([], [put(b"bt-ops-%03d" % i) for i in range(128)], OK),
        ([], [put(b"bt-ops-%03d" % i) for i in range(129)], BAD),
        ([compare(b"bt-c%03d" % i) for i in range(128)], [put(b"bt-cmp")], OK),
        ([compare(b"bt-c%03d" % i) for i in range(129)], [put(b"bt-cmp")], BAD),
        ([], [put(b"bt-v1", b"1" * (VALUE_MAX // 2)), put(b"bt-v2", b"2" * (VALUE_MAX // 2))], OK),
        (
            [],
            [put(b"bt-w1", b"1" * (VALUE_MAX // 2)), put(b"bt-w2", b"2" * (VALUE_MAX // 2 + 1))],
            BAD,
        ),
    ]
    for compares, ops, expected in cases:
        request = kv_pb2.TxnRequest(compare=compares, success=ops)
        assert await _status(stub.Txn(request, timeout=30)) == expected, (len(compares), len(ops))
        if expected == OK:
            written.update((op.put.key, op.put.value) for op in ops)


async def _leader_of(endpoints: list[str], *, shard: int) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for endpoint in endpoints:
            async with grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS) as channel:
                try:
                    view = await admin_pb2_grpc.AdminStub(channel).NodeStatus(
                        admin_pb2.NodeStatusRequest(), timeout=3
                    )
                except grpc.aio.AioRpcError:
                    continue
                for s in view.shards:
                    if s.shard_id == shard and s.role == "leader":
                        return view.node_id
        await asyncio.sleep(0.1)
    raise AssertionError(f"shard {shard} has no leader")


def test_a_data_directory_holding_a_4kib_key_in_its_log_starts_and_serves(tmp_path: Path) -> None:
    """The fixture was written by the code before the long-key layout: its log holds a chosen
    Put of a 4 KiB key whose apply raised on every replica, so every node exited and would
    exit again at each start. With the layout, the slot is applied and the key is served."""
    data = tmp_path / "data"
    data.mkdir()
    with tarfile.open(FIXTURE) as archive:
        archive.extractall(data, filter="data")
    config = data / "cluster.toml"
    base = free_base_port()  # the fixture's nodes listened on 7601-7603
    config.write_text(
        re.sub(r":760(\d)\"", lambda m: f':{base + int(m.group(1))}"', config.read_text())
    )
    local = LocalCluster(data)
    local.start_all()
    local.wait_serving()
    try:
        with Client(local.endpoints, timeout_s=30) as kv:
            long_key = b"k" * 4096
            deadline = time.monotonic() + 30
            while (got := kv.get(long_key)) is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert got is not None and got.value == b"x"
            for key in ("apple", "banana", "cherry"):
                assert kv.get(key).value == f"red-{key}".encode()  # type: ignore[union-attr]
            kv.put(b"j" * 4096, b"y")
            assert kv.get(b"j" * 4096).value == b"y"  # type: ignore[union-attr]
        assert local.exited() == {}
    finally:
        local.stop_all()
