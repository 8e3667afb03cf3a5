"""Calls any node can answer (it forwards to whichever node must): tried at each endpoint
in turn, starting with the last that answered, until one answers or the deadline passes.

Retried: UNAVAILABLE, DEADLINE_EXCEEDED and CANCELLED (a node stopping cancels its calls);
any other status is the answer, raised as the caller's error type.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import grpc

S = TypeVar("S")
T = TypeVar("T")
RETRIED = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
)
ATTEMPT_S = 3.0  # one call's deadline (plus 5 s): a server looks for a leader for up to 5 s


class AnyEndpoint(Generic[S]):
    def __init__(
        self,
        stub: Callable[[grpc.aio.Channel], S],
        channel_for: Callable[[str], grpc.aio.Channel],
        endpoints: Sequence[str],
        timeout_s: float,
        error: Callable[[grpc.StatusCode, str], Exception],
    ) -> None:
        self._stub = stub
        self._channel_for = channel_for
        self._endpoints = list(endpoints)
        self._timeout_s = timeout_s
        self._error = error
        self._next = 0  # the endpoint tried first: the last that answered

    @property
    def endpoints(self) -> list[str]:
        return self._endpoints

    def stub_at(self, endpoint: str) -> S:
        return self._stub(self._channel_for(endpoint))

    def error(self, code: grpc.StatusCode, details: str) -> Exception:
        return self._error(code, details)

    async def call(self, rpc: Callable[[S, float], Awaitable[T]]) -> T:
        deadline = time.monotonic() + self._timeout_s
        last: grpc.aio.AioRpcError | None = None
        while True:
            for i in range(len(self._endpoints)):
                index = (self._next + i) % len(self._endpoints)
                stub = self._stub(self._channel_for(self._endpoints[index]))
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    answer = await rpc(stub, min(ATTEMPT_S + 5.0, left))
                except grpc.aio.AioRpcError as err:
                    if err.code() not in RETRIED:
                        raise self._error(err.code(), err.details() or "") from None
                    stop_if_cancelled()
                    last = err
                    continue
                self._next = index
                return answer
            if time.monotonic() >= deadline:
                code = last.code() if last is not None else grpc.StatusCode.DEADLINE_EXCEEDED
                detail = last.details() if last is not None else "no endpoint answered"
                raise self._error(code, detail or "")
            await asyncio.sleep(0.1)


def stop_if_cancelled() -> None:
    """Raise ``CancelledError`` if this task is being cancelled: a call cut short by our
    own cancellation may end as a CANCELLED status, which must not be retried (the retry
    would swallow the cancellation, and whoever awaits this task would wait for good)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
