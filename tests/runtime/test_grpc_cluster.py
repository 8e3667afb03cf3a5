"""Three nodes over real gRPC (one loopback address per datacenter), driven by a plain stub:
any node accepts any request and routes it to the shard's leader; bad input gets its status."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest

from cluster import parse_cluster_config
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.local_cluster import default_config
from kvstore.server import NodeServer
from kvstore.v1 import kv_pb2, kv_pb2_grpc

PAXOS = {"heartbeat_ticks": 2, "election_ticks_min": 10, "election_ticks_max": 20, "lease_ticks": 7}


def free_port(host: str) -> int:
    """A bindable port *below* the kernel's ephemeral range: a port from that range can be
    taken by an outgoing connection (even a TCP self-connect) before the server binds it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(10_000, min(low, 30_000))
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port")


def config_text() -> str:
    hosts = {n: f"127.0.{n}.1" for n in (1, 2, 3)}
    nodes = "".join(
        f'[[nodes]]\nid = {n}\ndc = "dc{n}"\naddress = "{h}:{free_port(h)}"\n'
        for n, h in hosts.items()
    )
    return (
        '[cluster]\nname = "grpc-test"\ntick_ms = 10\n'
        + "".join(f'[[datacenters]]\nname = "dc{d}"\n' for d in (1, 2, 3))
        + nodes
        + '[[shards]]\nid = 1\nstart = ""\nend = "b"\nreplicas = [1, 2, 3]\nleader_dc = "dc1"\n'
        + '[[shards]]\nid = 2\nstart = "b"\nend = "c"\nreplicas = [1, 2, 3]\nleader_dc = "dc2"\n'
        + '[[shards]]\nid = 3\nstart = "c"\nend = ""\nreplicas = [1, 2, 3]\n'
    )


async def led_from_its_dc(servers: list[NodeServer], shard: int = 1) -> NodeServer:
    """``shard``'s leader once it sits in the shard's datacenter (``config_text``: shard 1
    in dc1, on node 1). A leader elected elsewhere first hands over to it, and during the
    handover nobody leads: a test that picks "the" leader at once can find none."""
    dc = next(s.leader_dc for s in servers[0].cluster.shards if s.shard_id == shard)
    assert dc is not None, f"shard {shard} has no preferred datacenter"
    server = next(s for s in servers if s.spec.dc == dc)
    deadline = asyncio.get_running_loop().time() + 15
    while server.runtime.role(shard).value != "leader":
        assert asyncio.get_running_loop().time() < deadline, f"shard {shard} never settled in {dc}"
        await asyncio.sleep(0.01)
    return server


Scenario = Callable[[dict[int, kv_pb2_grpc.KVStub]], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario) -> None:
    cluster = parse_cluster_config(config_text())

    async def main() -> None:
        servers = [
            NodeServer(
                cluster,
                n,
                tmp_path / f"n{n}",
                paxos_overrides=PAXOS,
                map_size=64 << 20,
                founding=True,
            )
            for n in (1, 2, 3)
        ]
        for server in servers:
            await server.start()
        channels = {
            n.node_id: grpc.aio.insecure_channel(n.address, options=CHANNEL_OPTIONS)
            for n in cluster.nodes
        }
        try:
            await scenario({n: kv_pb2_grpc.KVStub(c) for n, c in channels.items()})
        finally:
            for channel in channels.values():
                await channel.close()
            for server in servers:
                await server.stop()

    asyncio.run(main())


def test_any_node_serves_any_key(tmp_path: Path) -> None:
    async def scenario(kv: dict[int, kv_pb2_grpc.KVStub]) -> None:
        keys = [b"apple", b"avocado", b"banana", b"cherry", b"zebra"]
        for i, key in enumerate(keys):
            via = kv[i % 3 + 1]
            await via.Put(kv_pb2.PutRequest(key=key, value=b"v%d" % i), timeout=10)
        for i, key in enumerate(keys):
            got = await kv[(i + 1) % 3 + 1].Get(kv_pb2.GetRequest(key=key), timeout=10)
            assert got.found and got.kv.value == b"v%d" % i and got.kv.version == 1
        scan = await kv[2].Scan(kv_pb2.ScanRequest(start=b"a", end=b""), timeout=10)
        assert [x.key for x in scan.kvs] == keys and not scan.more
        page = await kv[3].Scan(kv_pb2.ScanRequest(start=b"a", limit=3), timeout=10)
        assert [x.key for x in page.kvs] == keys[:3] and page.more
        gone = await kv[1].Delete(kv_pb2.DeleteRequest(key=b"banana", prev_kv=True), timeout=10)
        assert gone.deleted and gone.prev_kv.value == b"v2"
        missing = await kv[2].Get(kv_pb2.GetRequest(key=b"banana"), timeout=10)
        assert not missing.found

    run(tmp_path, scenario)


def test_retries_apply_once_and_cas_is_atomic(tmp_path: Path) -> None:
    async def scenario(kv: dict[int, kv_pb2_grpc.KVStub]) -> None:
        put = kv_pb2.PutRequest(
            key=b"k", value=b"v", request_id=kv_pb2.RequestId(client_id=9, seq=1)
        )
        first = await kv[1].Put(put, timeout=10)
        again = await kv[2].Put(put, timeout=10)
        assert first.header.revision == again.header.revision
        got = await kv[3].Get(kv_pb2.GetRequest(key=b"k"), timeout=10)
        assert got.kv.version == 1

        def cas(expected: bytes, new: bytes) -> kv_pb2.TxnRequest:
            return kv_pb2.TxnRequest(
                compare=[
                    kv_pb2.Compare(
                        key=b"k",
                        target=kv_pb2.Compare.TARGET_VALUE,
                        op=kv_pb2.Compare.OP_EQUAL,
                        value=expected,
                    )
                ],
                success=[kv_pb2.RequestOp(put=kv_pb2.PutRequest(key=b"k", value=new))],
            )

        assert not (await kv[2].Txn(cas(b"nope", b"x"), timeout=10)).succeeded
        assert (await kv[3].Txn(cas(b"v", b"w"), timeout=10)).succeeded
        assert (await kv[1].Get(kv_pb2.GetRequest(key=b"k"), timeout=10)).kv.value == b"w"

    run(tmp_path, scenario)


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (
            lambda kv: kv.Put(kv_pb2.PutRequest(key=b"", value=b"v"), timeout=10),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda kv: kv.Put(kv_pb2.PutRequest(key=b"k" * 5000, value=b"v"), timeout=10),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda kv: kv.Put(kv_pb2.PutRequest(key=b"k", value=b"v" * (1 << 20 | 1)), timeout=10),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda kv: kv.Scan(kv_pb2.ScanRequest(start=b"z", end=b"a"), timeout=10),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            lambda kv: kv.Txn(
                kv_pb2.TxnRequest(
                    success=[
                        kv_pb2.RequestOp(put=kv_pb2.PutRequest(key=b"apple", value=b"1")),
                        kv_pb2.RequestOp(put=kv_pb2.PutRequest(key=b"zebra", value=b"2")),
                    ]
                ),
                timeout=10,
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
    ],
    ids=["empty-key", "key-too-long", "value-too-large", "inverted-scan", "cross-shard-txn"],
)
def test_bad_input_gets_a_clear_status(
    tmp_path: Path, call: Callable[[kv_pb2_grpc.KVStub], Awaitable[object]], code: grpc.StatusCode
) -> None:
    async def scenario(kv: dict[int, kv_pb2_grpc.KVStub]) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(kv[1])
        assert info.value.code() == code
        assert info.value.details()

    run(tmp_path, scenario)


def test_configured_limits_are_enforced(tmp_path: Path) -> None:
    cluster = parse_cluster_config(config_text() + "\n[limits]\nvalue_bytes_max = 10\n")

    async def main() -> None:
        servers = [
            NodeServer(
                cluster,
                n,
                tmp_path / f"n{n}",
                paxos_overrides=PAXOS,
                map_size=16 << 20,
                founding=True,
            )
            for n in (1, 2, 3)
        ]
        for server in servers:
            await server.start()
        try:
            async with grpc.aio.insecure_channel(
                cluster.node(1).address, options=CHANNEL_OPTIONS
            ) as ch:
                kv = kv_pb2_grpc.KVStub(ch)
                await kv.Put(kv_pb2.PutRequest(key=b"k", value=b"0123456789"), timeout=10)
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await kv.Put(kv_pb2.PutRequest(key=b"k", value=b"0123456789X"), timeout=10)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "over 10 bytes" in (info.value.details() or "")
        finally:
            for server in servers:
                await server.stop()

    asyncio.run(main())


def test_emulated_wan_delays_and_jitters_only_links_between_datacenters(tmp_path: Path) -> None:
    cluster = parse_cluster_config(
        default_config(nodes_per_dc=2, wan_latency_ms=30, wan_jitter_ms=5)
    )
    dc_of = {n.node_id: n.dc for n in cluster.nodes}

    async def main() -> None:
        server = NodeServer(cluster, 1, tmp_path / "n1", map_size=64 << 20, founding=True)
        delays = {peer: link._delay for peer, link in server._transport._links.items()}
        server._store.close()
        for peer, delay in delays.items():
            if dc_of[peer] == dc_of[1]:
                assert (delay.one_way_s, delay.jitter_s) == (0, 0), peer
            else:
                assert (delay.one_way_s, delay.jitter_s) == (0.03, 0.005), peer
        assert any(dc_of[peer] == dc_of[1] for peer in delays)

    asyncio.run(main())
