"""Watch against real processes: a watcher stopped half-way through 1,000 writes and resumed
from its last token sees each change exactly once, in order, across a leader kill and a
split; a start below the compacted revision is refused naming it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from kvstore import AsyncClient
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.client import KvError, WatchEvent
from kvstore.compacted import compacted_of
from kvstore.local_cluster import LocalCluster
from kvstore.v1 import admin_pb2, kv_pb2, kv_pb2_grpc
from tests.system.test_local_cluster import free_base_port
from tests.system.test_splits import admin

WRITES = 1000


async def take(events: object, count: int, timeout_s: float = 60.0) -> list[WatchEvent]:
    """The next ``count`` events of an open watch (an async iterator)."""
    got: list[WatchEvent] = []
    async with asyncio.timeout(timeout_s):
        async for event in events:  # type: ignore[attr-defined]
            got.append(event)
            if len(got) == count:
                break
    return got


def test_a_watcher_resumed_from_its_token_sees_each_write_once_across_a_leader_kill_and_split(
    tmp_path: Path,
) -> None:
    local = LocalCluster(tmp_path / "data", base_port=free_base_port())
    local.start_all()
    local.wait_serving()

    async def main() -> None:
        async with AsyncClient(local.endpoints, timeout_s=30) as kv:
            warmup = await kv.put("k-warmup", "x")
            # From the revision after the warm-up: whenever the watch is created, the
            # first event is the first write.
            first = kv.watch("k", start=warmup.header.revision + 1)
            # And one that stays open throughout: its node may be the one killed, and the
            # client library resumes it elsewhere from its last token by itself.
            throughout = asyncio.create_task(
                take(kv.watch("k", start=warmup.header.revision + 1), WRITES, timeout_s=120)
            )
            writer = asyncio.create_task(write(kv, 0, WRITES // 2))
            seen = await take(first, WRITES // 2)
            await writer
            await first.aclose()  # type: ignore[attr-defined]
            token = next(e.token for e in reversed(seen) if e.token)
            # Meanwhile: more writes, the leader of the keys' shard killed, then a split.
            await write(kv, WRITES // 2, 3 * WRITES // 4)
            leader = kv.leader_of(3) or 1
            local.kill(leader)
            await write(kv, 3 * WRITES // 4, 7 * WRITES // 8)
            channel, stub = await admin(local.endpoints[leader % 3])
            async with channel:
                await stub.SplitRange(
                    admin_pb2.SplitRangeRequest(shard_id=3, at=b"k0700"), timeout=20
                )
            await write(kv, 7 * WRITES // 8, WRITES)
            local.start(leader)
            rest = await take(kv.watch("k", start=token), WRITES - len(seen))
            everything = [(e.key, e.value) for e in seen + rest]
            assert everything == [(b"k%04d" % i, b"v%d" % i) for i in range(WRITES)]
            assert len({e.revision for e in rest if e.key >= b"k0700"}) == len(
                [e for e in rest if e.key >= b"k0700"]
            )
            assert {e.shard for e in rest} >= {3}
            live = await throughout
            assert [(e.key, e.value) for e in live] == everything

    try:
        asyncio.run(main())
    finally:
        local.stop_all()


async def write(kv: AsyncClient, first: int, end: int) -> None:
    for i in range(first, end):
        await kv.put(b"k%04d" % i, b"v%d" % i)


def test_bad_watches_are_refused_on_the_stream_and_the_others_go_on(tmp_path: Path) -> None:
    """A create the node cannot serve is answered ``created`` + ``canceled`` with the reason
    (as etcd does), the stream and its good watches going on: a key over the limit (at the
    limit is fine), an inverted range, a token that is not one, a duplicate id. The client
    library raises them as statuses. (A start below the compacted revision: the watch hub's
    unit tests.)"""
    local = LocalCluster(tmp_path / "data", base_port=free_base_port())
    local.start_all()
    local.wait_serving()

    async def main() -> None:
        channel = grpc.aio.insecure_channel(local.endpoints[0], options=CHANNEL_OPTIONS)
        async with channel, AsyncClient(local.endpoints, timeout_s=20) as kv:
            first = await kv.put("a1", "x")
            after = first.header.revision + 1  # "now" on a lagging replica may precede a1
            limit = 4096
            creates = [
                kv_pb2.WatchCreateRequest(
                    key=b"a", range_end=b"b", watch_id=1, start_revision=after
                ),
                kv_pb2.WatchCreateRequest(key=b"k" * limit, watch_id=2),  # at the limit
                kv_pb2.WatchCreateRequest(key=b"k" * (limit + 1), watch_id=3),
                kv_pb2.WatchCreateRequest(key=b"b", range_end=b"a", watch_id=4),
                kv_pb2.WatchCreateRequest(key=b"a", start_token="nope", watch_id=5),
                kv_pb2.WatchCreateRequest(key=b"a", range_end=b"b", watch_id=1),  # in use
            ]
            call = kv_pb2_grpc.KVStub(channel).Watch(
                iter([kv_pb2.WatchRequest(create=c) for c in creates])
            )
            answers: dict[int, kv_pb2.WatchResponse] = {}
            async with asyncio.timeout(20):
                async for response in call:
                    if response.created or response.canceled:
                        answers.setdefault(response.watch_id, response)
                        if response.watch_id == 1 and response.canceled:
                            answers[-1] = response  # the duplicate's refusal
                    if len(answers) == 6:
                        break
                await kv.put("a2", "y")
                async for response in call:
                    if response.watch_id == 1 and response.events:
                        assert response.events[0].kv.key == b"a2"
                        break
            call.cancel()
            assert not answers[1].canceled and not answers[2].canceled
            for watch_id, reason in ((3, "key limit"), (4, "range_end"), (5, "not a position")):
                assert answers[watch_id].canceled, watch_id
                assert answers[watch_id].cancel_reason.startswith("INVALID_ARGUMENT"), watch_id
                assert reason in answers[watch_id].cancel_reason, watch_id
            assert "in use" in answers[-1].cancel_reason
            try:
                async for _ in kv.watch("a", start="nope"):
                    raise AssertionError("a bad token was served")
            except KvError as exc:
                assert exc.code is grpc.StatusCode.INVALID_ARGUMENT

    try:
        asyncio.run(main())
    finally:
        local.stop_all()


def test_reads_at_a_revision_through_every_node_and_path(tmp_path: Path) -> None:
    """``Get`` and ``Scan`` at a revision answer the state then through any node (the
    client's batched path and a unary call to each node, its replica's history or the
    leader's); a revision ahead of the shard is OUT_OF_RANGE everywhere, with no
    compacted-revision trailer (nothing was compacted)."""
    local = LocalCluster(tmp_path / "data", base_port=free_base_port())
    local.start_all()
    local.wait_serving()

    async def main() -> None:
        async with AsyncClient(local.endpoints, timeout_s=20) as kv:
            revisions = [(await kv.put("h1", f"v{i}")).header.revision for i in range(3)]
            await kv.put("h2", "only-later")
            for i, revision in enumerate(revisions):
                got = await kv.get("h1", revision=revision)
                assert got is not None and got.value == f"v{i}".encode()
                kvs, more = await kv.scan("h", "i", revision=revision)
                assert [(x.key, x.value) for x in kvs] == [(b"h1", f"v{i}".encode())]
                assert not more
            ahead = revisions[-1] + 1000
            try:
                await kv.get("h1", revision=ahead)
                raise AssertionError("a future revision was served")
            except KvError as exc:
                assert exc.code is grpc.StatusCode.OUT_OF_RANGE
            for endpoint in local.endpoints:
                channel = grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
                async with channel:
                    stub = kv_pb2_grpc.KVStub(channel)
                    request = kv_pb2.GetRequest(key=b"h1", revision=revisions[1])
                    response = await stub.Get(request, timeout=10)
                    assert response.kv.value == b"v1", endpoint
                    scan = kv_pb2.ScanRequest(start=b"h", end=b"i", revision=revisions[0])
                    assert [x.value for x in (await stub.Scan(scan, timeout=10)).kvs] == [b"v0"]
                    try:
                        await stub.Get(kv_pb2.GetRequest(key=b"h1", revision=ahead), timeout=10)
                        raise AssertionError("a future revision was served")
                    except grpc.aio.AioRpcError as err:
                        assert err.code() is grpc.StatusCode.OUT_OF_RANGE, endpoint
                        assert compacted_of(err) is None

    try:
        asyncio.run(main())
    finally:
        local.stop_all()
