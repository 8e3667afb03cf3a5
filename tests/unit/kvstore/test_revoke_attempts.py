"""A revoke sent again: NOT_FOUND means "done" only after an attempt that may have done it."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from kvstore.leasing import NOT_META_LEADER, RevokeAttempts
from kvstore.v1 import kv_pb2


def _refusal(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class _Stub:
    """Answers each Revoke with the next of ``refusals`` (all of them errors)."""

    def __init__(self, *refusals: grpc.aio.AioRpcError) -> None:
        self._refusals = list(refusals)

    async def Revoke(self, request: Any, **options: Any) -> Any:  # noqa: N802
        raise self._refusals.pop(0)


def _outcomes(stub: _Stub, attempts: int) -> list[str]:
    revoke = RevokeAttempts(kv_pb2.LeaseRevokeRequest(id=12345))

    async def main() -> list[str]:
        seen = []
        for _ in range(attempts):
            try:
                await revoke.send(stub)  # type: ignore[arg-type]
                seen.append("done")
            except grpc.aio.AioRpcError as err:
                seen.append(err.code().name)
        return seen

    return asyncio.run(main())


@pytest.mark.parametrize(
    "first",
    [
        _refusal(grpc.StatusCode.UNAVAILABLE, NOT_META_LEADER),
        _refusal(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; refused"),
        _refusal(grpc.StatusCode.NOT_FOUND, "no lease 12345"),
    ],
)
def test_not_found_after_attempts_that_did_nothing_is_not_found(
    first: grpc.aio.AioRpcError,
) -> None:
    stub = _Stub(first, _refusal(grpc.StatusCode.NOT_FOUND, "no lease 12345"))
    assert _outcomes(stub, 2)[1] == "NOT_FOUND"


@pytest.mark.parametrize(
    "first",
    [
        _refusal(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"),
        _refusal(grpc.StatusCode.UNAVAILABLE, "Socket closed"),
        _refusal(grpc.StatusCode.UNAVAILABLE, "no meta leader answered in time"),
    ],
)
def test_not_found_after_an_attempt_whose_answer_was_lost_is_done(
    first: grpc.aio.AioRpcError,
) -> None:
    stub = _Stub(
        _refusal(grpc.StatusCode.UNAVAILABLE, NOT_META_LEADER),
        first,
        _refusal(grpc.StatusCode.NOT_FOUND, "no lease 12345"),
    )
    assert _outcomes(stub, 3) == ["UNAVAILABLE", first.code().name, "done"]
