"""The client library against three gRPC nodes: shard map, leader cache, deadlines."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from cluster import parse_cluster_config
from kvstore import AsyncClient, Client, KvError, TxnDelete, TxnGet, TxnPut, TxnResult
from kvstore.batcher import Batcher
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.server import NodeServer
from kvstore.v1 import kv_pb2, kv_pb2_grpc
from tests.ports import free_base_port
from tests.runtime.test_grpc_cluster import PAXOS, config_text, led_from_its_dc

T = TypeVar("T")


async def start_servers(tmp_path: Path) -> tuple[list[NodeServer], list[str]]:
    cluster = parse_cluster_config(config_text())
    servers = [
        NodeServer(
            cluster, n, tmp_path / f"n{n}", paxos_overrides=PAXOS, map_size=64 << 20, founding=True
        )
        for n in (1, 2, 3)
    ]
    for server in servers:
        await server.start()
    return servers, [n.address for n in cluster.nodes]


@asynccontextmanager
async def running_servers(tmp_path: Path) -> AsyncIterator[tuple[list[NodeServer], list[str]]]:
    """Three nodes for the block, every one stopped after it."""
    servers, endpoints = await start_servers(tmp_path)
    try:
        yield servers, endpoints
    finally:
        for server in servers:
            await server.stop()


async def apple_is_red_and_a_batcher_to_its_leader(
    servers: list[NodeServer], endpoints: list[str]
) -> tuple[NodeServer, grpc.aio.Channel, Batcher]:
    """Write apple=red, then open a Batcher to shard 1's leader once it settled."""
    async with AsyncClient(endpoints, timeout_s=15) as client:
        await client.put("apple", "red")
    leader = await led_from_its_dc(servers)
    channel = grpc.aio.insecure_channel(leader.spec.address, options=CHANNEL_OPTIONS)
    return leader, channel, Batcher(kv_pb2_grpc.KVStub(channel))


def test_the_async_client_learns_leaders_and_serves_every_call(tmp_path: Path) -> None:
    async def main() -> None:
        async with (
            running_servers(tmp_path) as (servers, endpoints),
            AsyncClient(endpoints[2:], timeout_s=15) as client,
        ):
            await client.put("apple", "red")
            await client.put(b"zebra", b"stripes")
            kv = await client.get("apple")
            assert kv is not None and kv.value == b"red"
            assert await client.get("nothing") is None
            actual = (await led_from_its_dc(servers)).node_id
            await client.get("apple")
            assert client.leader_of(1) == actual  # learned from the shard map and headers
            kvs, more = await client.scan("a", "")
            assert [x.key for x in kvs] == [b"apple", b"zebra"] and not more
            assert await client.delete("apple")
            cas = kv_pb2.TxnRequest(
                compare=[
                    kv_pb2.Compare(key=b"zebra", target=kv_pb2.Compare.TARGET_VERSION, number=1)
                ],
                success=[kv_pb2.RequestOp(put=kv_pb2.PutRequest(key=b"zebra", value=b"spots"))],
            )
            assert (await client.txn(cas)).succeeded
            with pytest.raises(KvError) as info:
                await client.put("", "empty key")
            assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT

    asyncio.run(main())


def test_concurrent_writes_from_one_client_all_apply(tmp_path: Path) -> None:
    # One session per client id: concurrent writes sharing one would overtake each other and
    # the older seq would be refused as stale (FAILED_PRECONDITION). Each call takes a lane.
    async def main() -> None:
        async with (
            running_servers(tmp_path) as (_servers, endpoints),
            AsyncClient(endpoints, timeout_s=15) as client,
        ):
            await asyncio.gather(*(client.put(f"apple{i}", f"v{i}") for i in range(64)))
            await asyncio.gather(*(client.delete(f"apple{i}") for i in range(0, 64, 2)))
            kvs, _ = await client.scan("apple", "apple~")
            assert sorted(kv.key for kv in kvs) == sorted(
                f"apple{i}".encode() for i in range(1, 64, 2)
            )

    asyncio.run(main())


def test_a_batch_call_answers_every_item_on_its_own(tmp_path: Path) -> None:
    async def main() -> None:
        async with (
            running_servers(tmp_path) as (_servers, endpoints),
            grpc.aio.insecure_channel(endpoints[0]) as channel,
        ):
            stub = kv_pb2_grpc.KVStub(channel)
            put = kv_pb2.PutRequest(key=b"apple", value=b"red")
            items = [
                kv_pb2.BatchItem(put=put),
                kv_pb2.BatchItem(put=kv_pb2.PutRequest(key=b"", value=b"x")),
                kv_pb2.BatchItem(),
                kv_pb2.BatchItem(get=kv_pb2.GetRequest(key=b"zebra")),
            ]
            deadline = time.monotonic() + 15
            while True:  # the first calls may meet a cluster still electing
                response = await stub.Batch(kv_pb2.BatchRequest(items=items), timeout=15)
                first = response.results[0]
                if first.WhichOneof("response") == "put" or time.monotonic() > deadline:
                    break
            ok, bad_key, empty, absent = response.results
            assert ok.put.header.revision >= 1
            assert bad_key.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert empty.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert absent.WhichOneof("response") == "get" and not absent.get.found

    asyncio.run(main())


def test_the_blocking_client(tmp_path: Path) -> None:
    servers: list[NodeServer] = []
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        servers, endpoints = asyncio.run_coroutine_threadsafe(
            start_servers(tmp_path), loop
        ).result()
        with Client(endpoints, timeout_s=15) as client:
            client.put("banana", "yellow")
            kv = client.get("banana")
            assert kv is not None and kv.value == b"yellow" and kv.version == 1
    finally:
        for server in servers:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)


def test_the_deadline_covers_every_retry() -> None:
    async def main() -> float:
        async with AsyncClient(["127.0.0.1:9"], timeout_s=0.5) as client:
            started = time.monotonic()
            with pytest.raises(KvError) as info:
                await client.get("k")
            assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
            return time.monotonic() - started

    assert asyncio.run(main()) < 3.0


def test_a_batch_stream_answers_each_request_by_its_id(tmp_path: Path) -> None:
    async def main() -> None:
        async with (
            running_servers(tmp_path) as (_servers, endpoints),
            grpc.aio.insecure_channel(endpoints[0]) as channel,
        ):
            stub = kv_pb2_grpc.KVStub(channel)
            deadline = time.monotonic() + 15
            while True:  # the first writes may meet a cluster still electing
                call = stub.BatchStream()
                put = kv_pb2.PutRequest(key=b"apple", value=b"red")
                await call.write(
                    kv_pb2.BatchRequest(
                        id=7,
                        items=[
                            kv_pb2.BatchItem(put=put, timeout_ms=5000),
                            kv_pb2.BatchItem(put=kv_pb2.PutRequest(key=b"", value=b"x")),
                        ],
                    )
                )
                get = kv_pb2.GetRequest(key=b"zebra")
                await call.write(kv_pb2.BatchRequest(id=9, items=[kv_pb2.BatchItem(get=get)]))
                two = [kv_pb2.BatchItem(get=get), kv_pb2.BatchItem(put=kv_pb2.PutRequest())]
                await call.write(kv_pb2.BatchRequest(id=11, items=two, partial_answers=True))
                await call.write(kv_pb2.BatchRequest(id=13, partial_answers=True))  # empty
                await call.done_writing()
                parts = [a async for a in call]  # the call ends after every answer
                answers = {a.id: a for a in parts}
                ok = answers[7].results[0].WhichOneof("response") == "put"
                if ok or time.monotonic() > deadline:
                    break
            assert set(answers) == {7, 9, 11, 13}
            # Partial answers name their items; together they answer each item once.
            pairs = [
                (i, r)
                for a in parts
                if a.id == 11
                for i, r in zip(a.item_indexes, a.results, strict=True)
            ]
            assert sorted(i for i, _ in pairs) == [0, 1]
            by_index = dict(pairs)
            assert by_index[0].WhichOneof("response") == "get"
            assert by_index[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert not answers[13].results  # an empty batch is answered, empty
            written, bad_key = answers[7].results
            assert written.put.header.revision >= 1
            assert bad_key.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            (absent,) = answers[9].results
            assert absent.WhichOneof("response") == "get" and not absent.get.found

            raw = channel.stream_stream(
                "/kvstore.v1.KV/BatchStream",
                request_serializer=lambda b: b,
                response_deserializer=kv_pb2.BatchResponse.FromString,
            )
            garbage = raw()
            await garbage.write(b"\xff\xff\xff")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await garbage.read()
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    asyncio.run(main())


def test_a_broken_stream_fails_its_calls_and_the_next_call_opens_another(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_servers(tmp_path) as (servers, endpoints):
            leader, channel, batcher = await apple_is_red_and_a_batcher_to_its_leader(
                servers, endpoints
            )
            get = kv_pb2.GetRequest(key=b"apple")
            assert (await batcher.submit("get", get, 5)).kv.value == b"red"
            pending = batcher.submit("get", get, 5)
            batcher.close()  # the stream ends under an unanswered batch
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await pending
            assert info.value.code() == grpc.StatusCode.CANCELLED
            assert (await batcher.submit("get", get, 5)).kv.value == b"red"  # a new stream
            await leader.stop()
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await batcher.submit("get", get, 5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - started < 2  # at once, not at the item's deadline
            await channel.close()

    asyncio.run(main())


class _ResetOnce(kv_pb2_grpc.KVServicer):
    """A node whose first BatchStream is reset by the transport (INTERNAL), under a batch."""

    def __init__(self) -> None:
        self.streams = 0

    async def BatchStream(  # noqa: N802
        self, requests: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        self.streams += 1
        async for request in requests:
            if self.streams == 1:
                await context.abort(grpc.StatusCode.INTERNAL, "Received RST_STREAM")
            kv = kv_pb2.KeyValue(key=b"apple", value=b"red")
            results = [kv_pb2.BatchResult(get=kv_pb2.GetResponse(kv=kv)) for _ in request.items]
            yield kv_pb2.BatchResponse(id=request.id, results=results)


def test_a_reset_stream_fails_its_batches_as_unavailable_so_the_client_retries() -> None:
    async def main() -> None:
        port = free_base_port(lambda base: [f"127.0.0.1:{base}"])
        server = grpc.aio.server()
        node = _ResetOnce()
        kv_pb2_grpc.add_KVServicer_to_server(node, server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        try:
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS)
            batcher = Batcher(kv_pb2_grpc.KVStub(channel))
            get = kv_pb2.GetRequest(key=b"apple")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await batcher.submit("get", get, 5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # retryable
            assert "RST_STREAM" in (info.value.details() or "")
            assert (await batcher.submit("get", get, 5)).kv.value == b"red"  # a new stream
            assert node.streams == 2
            batcher.close()
            await channel.close()
        finally:
            await server.stop(None)

    asyncio.run(main())


def test_a_read_is_not_held_back_by_a_write_in_its_batch(tmp_path: Path) -> None:
    """Items are answered as they finish (``partial_answers``): a stale read batched with a
    write that cannot commit (its shard lost its followers) comes back at once."""

    async def main() -> None:
        servers, endpoints = await start_servers(tmp_path)
        running = list(servers)
        opened: list[tuple[grpc.aio.Channel, Batcher]] = []
        try:  # every server stops, whatever fails (a live one would outlast the loop)
            async with asyncio.timeout(60):
                leader, channel, batcher = await apple_is_red_and_a_batcher_to_its_leader(
                    servers, endpoints
                )
                opened.append((channel, batcher))
                for server in servers:
                    if server is not leader:
                        running.remove(server)
                        await server.stop()
                put = batcher.submit("put", kv_pb2.PutRequest(key=b"apple", value=b"blue"), 3)
                stale = kv_pb2.GetRequest(key=b"apple", consistency=kv_pb2.CONSISTENCY_STALE)
                get = batcher.submit("get", stale, 3)  # same loop turn: the same batch
                assert (await get).kv.value == b"red"
                assert not put.done()  # the read came back while the write waits for a majority
                with pytest.raises(grpc.aio.AioRpcError):
                    await put
        finally:
            for channel, batcher in opened:
                batcher.close()
                await channel.close()
            for server in running:
                await server.stop()

    asyncio.run(main())


def test_the_typed_transaction_against_a_cluster(tmp_path: Path) -> None:
    """``txn()...commit()``: compare-and-swap through both clients; a failed compare runs
    the else branch and returns what it read."""
    servers: list[NodeServer] = []
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def claim(client: AsyncClient) -> tuple[TxnResult, TxnResult]:
        first = await client.txn().if_version("lock", "=", 0).then_put("lock", "a").commit()
        second = await client.txn().if_version("lock", "=", 0).then_put("lock", "b").commit()
        return first, second

    try:
        servers, endpoints = asyncio.run_coroutine_threadsafe(
            start_servers(tmp_path), loop
        ).result()
        won, lost = asyncio.run(_with_async_client(endpoints, claim))
        assert won.succeeded and won.results == (TxnPut(won.revision),)
        assert not lost.succeeded and lost.results == () and lost.revision == won.revision
        with Client(endpoints, timeout_s=15) as kv:
            swap = (
                kv.txn()
                .if_value("lock", "=", b"a")
                .if_mod_revision("lock", "=", won.revision)
                .then_put("lock", b"\xff binary")
                .then_get("lock")
                .else_get("lock")
                .commit()
            )
            assert swap.succeeded
            put, got = swap.results
            assert put == TxnPut(swap.revision)
            assert isinstance(got, TxnGet) and got.kv is not None
            assert got.kv.value == b"\xff binary" and got.kv.version == 2
            stale = kv.txn().if_value("lock", "=", "a").then_delete("lock").else_get("lock")
            refused = stale.commit()
            assert not refused.succeeded
            (current,) = refused.results
            assert isinstance(current, TxnGet) and current.kv is not None
            assert current.kv.value == b"\xff binary"
            gone = kv.txn().then_delete("lock").then_get("lock").commit()
            assert gone.results == (TxnDelete(True, gone.revision), TxnGet(None))
            assert kv.txn(stale.request()).succeeded is False  # the request form still works
    finally:
        for server in servers:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)


async def _with_async_client(endpoints: list[str], use: Callable[[AsyncClient], Awaitable[T]]) -> T:
    async with AsyncClient(endpoints, timeout_s=15) as client:
        return await use(client)
