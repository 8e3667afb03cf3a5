"""The workloads' clients: a per-key register and a grow-only set, recorded as histories.

Each worker is one logical client bound to one node (workers spread over every DC): it
issues one operation at a time with a deadline. An outcome it cannot know (deadline,
UNAVAILABLE, a dropped connection, a killed node) is recorded with ``return: null``, and the
worker then continues as a new client (a new number in the history and a new session), as
Jepsen does: the old operation may still be pending forever.

Register: get / put / cas / delete over a rotating pool of keys, at most
``OPS_PER_KEY_MAX`` operations per key, values unique per run. Set: adds of unique elements
(one key each, over three shards) and linearizable reads of the whole set.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import grpc

from kvstore.channels import CHANNEL_OPTIONS
from kvstore.client import AsyncClient, KvError, new_client_id
from kvstore.v1 import kv_pb2, kv_pb2_grpc
from tests.jepsen.history import CAS_MISMATCH, HistoryWriter, Op
from tests.jepsen.staleness import BoundedRead

OPS_PER_KEY_MAX = 200
# Statuses under which the server guarantees nothing was applied (refused at the edge).
DEFINITE_FAILURES = frozenset(
    {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}
)
SET_PREFIX = "s"
FAILURE_BACKOFF_S = 0.1  # a client that just failed waits a little, as real clients do
SCAN_PAGE = 1000


def now_ns() -> int:
    return time.monotonic_ns()


@dataclass
class Counters:
    ok: int = 0
    fail: int = 0
    unknown: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.ok + self.fail + self.unknown


@dataclass
class Stop:
    """When workers stop issuing operations: at a deadline or after a number of operations."""

    deadline: float
    ops_max: int
    issued: int = 0

    def more(self) -> bool:
        if time.monotonic() >= self.deadline or self.issued >= self.ops_max:
            return False
        self.issued += 1
        return True


class Node:
    """A worker's connection to its node (the gateway path: that node routes every request)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.kv: Any = kv_pb2_grpc.KVStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()


class LibraryStub:
    """The KV stub's calls, made through the client library instead (leader-direct, retries
    with the same request id until its deadline, a request-id lane per concurrent write)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def Get(self, request: Any, timeout: float) -> kv_pb2.GetResponse:  # noqa: N802
        # The whole response: a bounded read's header carries the bound the server proved.
        return await self._client.get_response(
            request.key,
            stale=request.consistency == kv_pb2.CONSISTENCY_STALE,
            max_staleness_ms=request.max_staleness_ms,
        )

    async def Put(self, request: Any, timeout: float) -> kv_pb2.PutResponse:  # noqa: N802
        return await self._client.put(request.key, request.value)

    async def Delete(self, request: Any, timeout: float) -> kv_pb2.DeleteResponse:  # noqa: N802
        return kv_pb2.DeleteResponse(deleted=await self._client.delete(request.key))

    async def Txn(self, request: Any, timeout: float) -> kv_pb2.TxnResponse:  # noqa: N802
        request.ClearField("request_id")  # the library assigns its own
        return await self._client.txn(request)

    async def Scan(self, request: Any, timeout: float) -> kv_pb2.ScanResponse:  # noqa: N802
        kvs, more = await self._client.scan(request.start, request.end, request.limit)
        return kv_pb2.ScanResponse(kvs=kvs, more=more)


class Library:
    """Workers sharing one client library instance over every node."""

    def __init__(self, endpoints: list[str], timeout_s: float) -> None:
        self.address = "library"
        self.client = AsyncClient(endpoints, timeout_s=timeout_s)
        self.kv: Any = LibraryStub(self.client)

    async def close(self) -> None:
        await self.client.close()


class Outcome:
    """What one call returned, or why it did not."""

    def __init__(
        self, response: Any = None, code: grpc.StatusCode | None = None, never_sent: bool = False
    ) -> None:
        self.response = response
        self.code = code
        self.never_sent = never_sent

    @property
    def definite_failure(self) -> bool:
        return self.code in DEFINITE_FAILURES or self.never_sent

    @property
    def unknown(self) -> bool:
        return self.code is not None and not self.definite_failure

    @property
    def error_name(self) -> str:
        name = self.code.name if self.code is not None else "OK"
        return f"{name} (not connected)" if self.never_sent else name


async def invoke(call: Awaitable[Any], counters: Counters) -> Outcome:
    try:
        response = await call
    except KvError as err:  # the library's error: its deadline covered every retry
        outcome = Outcome(code=err.code)
    except grpc.aio.AioRpcError as err:
        # gRPC fails an RPC with this text only when no connection to the node existed, so
        # the request never left this process (a killed node refuses the connection).
        never_sent = err.code() == grpc.StatusCode.UNAVAILABLE and "failed to connect" in (
            err.details() or ""
        )
        outcome = Outcome(code=err.code(), never_sent=never_sent)
    except (TimeoutError, OSError):
        return Outcome(code=grpc.StatusCode.UNKNOWN)
    else:
        return Outcome(response)
    name = outcome.error_name
    counters.by_status[name] = counters.by_status.get(name, 0) + 1
    return outcome


class Identity:
    """The worker's client number in the history and its write session."""

    def __init__(self, number: int, stride: int) -> None:
        self.number = number
        self._stride = stride
        self.session = new_client_id()
        self.seq = 0

    def request_id(self) -> kv_pb2.RequestId:
        self.seq += 1
        return kv_pb2.RequestId(client_id=self.session, seq=self.seq)

    def crashed(self) -> None:
        self.number += self._stride
        self.session = new_client_id()
        self.seq = 0


class RegisterWorkload:
    def __init__(
        self,
        rng: random.Random,
        history: HistoryWriter,
        *,
        active_keys: int,
        op_timeout_s: float,
        stale_reads: bool = False,
        bounded_reads_ms: int = 0,
        planted_unbounded: bool = False,
    ) -> None:
        """``bounded_reads_ms``: a third of the gets ask for that staleness bound instead
        and go to ``bounded`` (checked by ``tests.jepsen.staleness``), not the history.
        ``planted_unbounded``: those gets accept any age while the harness records a 1 ms
        bound anyway, a planted lie the staleness checker must catch."""
        self.rng = rng
        self.history = history
        self.timeout = op_timeout_s
        self.stale_reads = stale_reads
        self.bounded_reads_ms = bounded_reads_ms
        self.planted_unbounded = planted_unbounded
        self.bounded: list[BoundedRead] = []
        self.counters = Counters()
        self.ops: list[Op] = []
        self._next_key = 0
        self._uses: dict[str, int] = {}
        self._active = [self._fresh_key() for _ in range(active_keys)]
        self._written: dict[str, list[str]] = {}
        self._next_value = 0

    def keys_used(self) -> list[str]:
        return sorted(self._uses, key=lambda k: int(k[1:]))

    def _fresh_key(self) -> str:
        key = f"k{self._next_key}"
        self._next_key += 1
        self._uses[key] = 0
        return key

    def _pick_key(self) -> str:
        slot = self.rng.randrange(len(self._active))
        key = self._active[slot]
        self._uses[key] += 1
        if self._uses[key] >= OPS_PER_KEY_MAX:
            self._active[slot] = self._fresh_key()  # retire it; Jepsen's "independent" keys
        return key

    def _value(self) -> str:
        self._next_value += 1
        return f"v{self._next_value}"

    def record(self, op: Op) -> None:
        self.ops.append(op)
        self.history.write(op)

    async def worker(self, node: Node | Library, me: Identity, stop: Stop) -> None:
        while stop.more():
            await self.one(node, me, self._pick_key())

    async def one(
        self, node: Node | Library, me: Identity, key: str, kind: str | None = None
    ) -> None:
        kind = kind or self.rng.choices(("get", "put", "cas", "delete"), (45, 30, 20, 5))[0]
        if kind == "get" and self.bounded_reads_ms and self.rng.random() < 1 / 3:
            await self._bounded_get(node, me, key)
            return
        value = expected = None
        call = now_ns()
        if kind == "get":
            consistency = (
                kv_pb2.CONSISTENCY_STALE if self.stale_reads else kv_pb2.CONSISTENCY_LINEARIZABLE
            )
            request: Any = kv_pb2.GetRequest(key=key.encode(), consistency=consistency)
            outcome = await invoke(node.kv.Get(request, timeout=self.timeout), self.counters)
        elif kind == "put":
            value = self._value()
            request = kv_pb2.PutRequest(
                key=key.encode(), value=value.encode(), request_id=me.request_id()
            )
            outcome = await invoke(node.kv.Put(request, timeout=self.timeout), self.counters)
        elif kind == "delete":
            request = kv_pb2.DeleteRequest(key=key.encode(), request_id=me.request_id())
            outcome = await invoke(node.kv.Delete(request, timeout=self.timeout), self.counters)
        else:
            value = self._value()
            seen = self._written.get(key) or ["v0"]
            expected = self.rng.choice(seen[-3:])
            request = _cas_request(key, expected, value, me.request_id())
            outcome = await invoke(node.kv.Txn(request, timeout=self.timeout), self.counters)
        ret = now_ns()
        if value is not None:
            self._written.setdefault(key, []).append(value)
        if outcome.unknown:
            self.counters.unknown += 1
            self.record(Op(me.number, call, None, kind, key, value, expected, None, None))
            me.crashed()
            await asyncio.sleep(FAILURE_BACKOFF_S)
            return
        if outcome.definite_failure:
            self.counters.fail += 1
            why = outcome.error_name
            self.record(Op(me.number, call, ret, kind, key, value, expected, None, False, why))
            await asyncio.sleep(FAILURE_BACKOFF_S)
            return
        response = outcome.response
        output = None
        ok = True
        if kind == "get" and response.found:
            output = response.kv.value.decode()
        if kind == "cas":
            ok = response.succeeded
        if ok:
            self.counters.ok += 1
        else:
            self.counters.fail += 1
        error = None if ok else CAS_MISMATCH
        self.record(Op(me.number, call, ret, kind, key, value, expected, output, ok, error))

    async def _bounded_get(self, node: Node | Library, me: Identity, key: str) -> None:
        asked = 0 if self.planted_unbounded else self.bounded_reads_ms
        request = kv_pb2.GetRequest(
            key=key.encode(), consistency=kv_pb2.CONSISTENCY_STALE, max_staleness_ms=asked
        )
        call = now_ns()
        outcome = await invoke(node.kv.Get(request, timeout=self.timeout), self.counters)
        ret = now_ns()
        if outcome.unknown or outcome.definite_failure:
            self.counters.fail += 1
            await asyncio.sleep(FAILURE_BACKOFF_S)
            return
        self.counters.ok += 1
        response = outcome.response
        header = response.header
        bound = 1 if self.planted_unbounded else header.staleness_bound_ms
        if bound < 0:
            return  # served without a provable bound: nothing promised
        output = response.kv.value.decode() if response.found else None
        self.bounded.append(
            BoundedRead(me.number, call, ret, key, output, bound, header.served_by_dc)
        )


def _cas_request(key: str, expected: str, value: str, rid: kv_pb2.RequestId) -> kv_pb2.TxnRequest:
    return kv_pb2.TxnRequest(
        compare=[
            kv_pb2.Compare(
                key=key.encode(),
                target=kv_pb2.Compare.TARGET_VALUE,
                op=kv_pb2.Compare.OP_EQUAL,
                value=expected.encode(),
            )
        ],
        success=[kv_pb2.RequestOp(put=kv_pb2.PutRequest(key=key.encode(), value=value.encode()))],
        request_id=rid,
    )


@dataclass
class SetRead:
    client: int
    call: int
    ret: int
    elements: set[int]
    final: bool = False


@dataclass
class SetAdd:
    client: int
    element: int
    call: int
    ret: int | None
    ok: bool | None  # None: the outcome is unknown (as in the history)


class SetWorkload:
    def __init__(self, *, op_timeout_s: float, read_every_s: float = 1.0) -> None:
        self.timeout = op_timeout_s
        self.read_every_s = read_every_s
        self.adds: list[SetAdd] = []
        self.reads: list[SetRead] = []
        self.counters = Counters()
        self._next = 0

    async def adder(self, node: Node, me: Identity, stop: Stop) -> None:
        while stop.more():
            self._next += 1
            element = self._next
            key = f"{SET_PREFIX}{element}".encode()
            request = kv_pb2.PutRequest(key=key, value=b"1", request_id=me.request_id())
            call = now_ns()
            outcome = await invoke(node.kv.Put(request, timeout=self.timeout), self.counters)
            ret = now_ns()
            if outcome.code is not None:
                await asyncio.sleep(FAILURE_BACKOFF_S)
            if outcome.unknown:
                self.counters.unknown += 1
                self.adds.append(SetAdd(me.number, element, call, None, None))
                me.crashed()
            else:
                ok = not outcome.definite_failure
                self.counters.ok += ok
                self.counters.fail += not ok
                self.adds.append(SetAdd(me.number, element, call, ret, ok))

    async def reader(self, node: Node, me: Identity, stop: Stop) -> None:
        while stop.more():
            await self.read(node, me)
            await asyncio.sleep(self.read_every_s)

    async def read(self, node: Node, me: Identity, *, final: bool = False) -> bool:
        call = now_ns()
        elements: set[int] = set()
        start = SET_PREFIX.encode()
        end = chr(ord(SET_PREFIX) + 1).encode()
        while True:
            request = kv_pb2.ScanRequest(start=start, end=end, limit=SCAN_PAGE)
            outcome = await invoke(node.kv.Scan(request, timeout=self.timeout), self.counters)
            if outcome.code is not None:
                self.counters.unknown += 1
                return False  # a read that failed tells nothing; nothing to record
            page = outcome.response
            elements.update(int(kv.key[len(SET_PREFIX) :]) for kv in page.kvs)
            if not page.more or not page.kvs:
                break
            start = page.kvs[-1].key + b"\x00"
        self.counters.ok += 1
        self.reads.append(SetRead(me.number, call, now_ns(), elements, final))
        return True
