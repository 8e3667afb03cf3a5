"""The client library refuses what cannot work before sending anything, and says "outcome
unknown" only for writes. No server: the endpoint is a port nothing listens on."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Awaitable, Callable

import grpc
import pytest

from kvstore import AsyncClient, Client, KvError, Txn
from kvstore.v1 import kv_pb2

NOBODY = ["127.0.0.1:9"]


@pytest.mark.parametrize("timeout_s", [0, -1, -0.5, math.nan, math.inf])
def test_a_timeout_that_is_not_positive_and_finite_is_refused(timeout_s: float) -> None:
    threads = threading.active_count()
    with pytest.raises(ValueError, match="timeout_s must be a positive, finite number"):
        AsyncClient(NOBODY, timeout_s=timeout_s)
    with pytest.raises(ValueError, match="timeout_s must be a positive, finite number"):
        Client(NOBODY, timeout_s=timeout_s)
    assert threading.active_count() == threads  # no event-loop thread left behind


def test_only_a_write_that_timed_out_says_its_outcome_is_unknown() -> None:
    async def errors() -> list[KvError]:
        out = []
        async with AsyncClient(NOBODY, timeout_s=0.3) as client:
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: client.get("k"),
                lambda: client.scan("a", "b"),
                lambda: client.put("k", "v"),
                lambda: client.delete("k"),
                lambda: client.txn(kv_pb2.TxnRequest()),
                lambda: client.txn().then_put("k", "v").commit(),
            ]
            for call in calls:
                with pytest.raises(KvError) as info:
                    await call()
                assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
                out.append(info.value)
        return out

    get, scan, *writes = asyncio.run(errors())
    assert "outcome" not in get.details and "outcome" not in scan.details
    for write in writes:
        assert "the write's outcome is unknown" in write.details


def test_the_typed_transaction_builds_the_request_it_names() -> None:
    built = (
        Txn(lambda request: request)
        .if_value("k", "=", b"old")
        .if_version(b"k", "!=", 0)
        .if_mod_revision("k", "<", 9)
        .if_create_revision("k", ">", 1)
        .then_put("k", "new")
        .then_delete("gone")
        .else_get("k")
        .else_put("k", b"\xff")
        .else_delete("k")
        .commit()
    )
    compare = kv_pb2.Compare
    assert list(built.compare) == [
        compare(key=b"k", target=compare.TARGET_VALUE, op=compare.OP_EQUAL, value=b"old"),
        compare(key=b"k", target=compare.TARGET_VERSION, op=compare.OP_NOT_EQUAL, number=0),
        compare(key=b"k", target=compare.TARGET_MOD_REVISION, op=compare.OP_LESS, number=9),
        compare(key=b"k", target=compare.TARGET_CREATE_REVISION, op=compare.OP_GREATER, number=1),
    ]
    assert [op.WhichOneof("request") for op in built.success] == ["put", "delete"]
    assert built.success[0].put.value == b"new" and built.success[1].delete.key == b"gone"
    assert [op.WhichOneof("request") for op in built.failure] == ["get", "put", "delete"]
    assert built.failure[1].put.value == b"\xff"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda t: t.if_value("k", "==", "v"), "compare with one of"),
        (lambda t: t.if_version("k", "=", -1), "within 0..2\\*\\*64-1"),
        (lambda t: t.if_mod_revision("k", "=", 1 << 64), "within 0..2\\*\\*64-1"),
        (lambda t: t.if_version("k", "=", True), "an integer"),
    ],
)
def test_the_typed_transaction_refuses_a_bad_compare(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(Txn(lambda request: request))  # type: ignore[operator]
