"""Leases for the Python client: grant, keep alive, revoke (the Lease service).

``AsyncClient.lease(ttl_s)`` grants a lease and keeps it alive in a task until the block
ends, then revokes it (its keys go with it). The task sends a keep-alive every third of the
TTL; ``Lease.lost`` is set, and the task stops, once the lease is known gone (the server
answers NOT_FOUND) or no keep-alive got through for a whole TTL, counted from the last one
*sent* that was answered, as the server counts it from that one's arrival or later.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc

from kvstore.any_endpoint import AnyEndpoint
from kvstore.v1 import kv_pb2, kv_pb2_grpc

T = TypeVar("T")


class LeaseCalls(AnyEndpoint[kv_pb2_grpc.LeaseStub]):
    """The Lease service at any of ``endpoints`` (each forwards to the meta leader)."""

    def __init__(
        self,
        channel_for: Callable[[str], grpc.aio.Channel],
        endpoints: Sequence[str],
        timeout_s: float,
        error: Callable[[grpc.StatusCode, str], Exception],
    ) -> None:
        super().__init__(kv_pb2_grpc.LeaseStub, channel_for, endpoints, timeout_s, error)

    async def grant(self, ttl_ms: int, lease_id: int = 0) -> int:
        request = kv_pb2.LeaseGrantRequest(ttl_ms=ttl_ms, id=lease_id)
        answer: kv_pb2.LeaseGrantResponse = await self.call(
            lambda stub, t: stub.Grant(request, timeout=t)
        )
        return int(answer.id)

    async def revoke(self, lease_id: int) -> None:
        """NOT_FOUND if there is no such lease (see ``RevokeAttempts``)."""
        attempts = RevokeAttempts(kv_pb2.LeaseRevokeRequest(id=lease_id))
        await self.call(lambda stub, t: attempts.send(stub, timeout=t))

    async def keep_alive_once(self, lease_id: int) -> int:
        """The lease's TTL in ms, counted again from now (raises NOT_FOUND if it ended)."""
        request = kv_pb2.LeaseKeepAliveRequest(id=lease_id)
        answer: kv_pb2.LeaseKeepAliveResponse = await self.call(
            lambda stub, t: stub.KeepAliveOnce(request, timeout=t)
        )
        return int(answer.ttl_ms)

    async def time_to_live(self, lease_id: int) -> kv_pb2.LeaseTimeToLiveResponse:
        request = kv_pb2.LeaseTimeToLiveRequest(id=lease_id)
        answer: kv_pb2.LeaseTimeToLiveResponse = await self.call(
            lambda stub, t: stub.TimeToLive(request, timeout=t)
        )
        return answer

    async def list(self) -> list[int]:
        answer: kv_pb2.LeaseListResponse = await self.call(
            lambda stub, t: stub.List(kv_pb2.LeaseListRequest(), timeout=t)
        )
        return list(answer.ids)


# What a forwarded lease call that reached a node not leading the meta range is refused
# with: that node did nothing.
NOT_META_LEADER = "not the meta leader"

# The refusals of an attempt that is known to have done nothing: the node it reached does
# not lead, or no connection was made.
_NOTHING_DONE = (NOT_META_LEADER, "failed to connect")


class RevokeAttempts:
    """One revoke, sent as often as it takes: NOT_FOUND after an attempt whose answer was
    lost (a timeout, a connection cut) means that attempt revoked it, so the revoke is done.
    An attempt refused before it could do anything does not count: NOT_FOUND after only
    such attempts means there was no such lease. The client and a forwarding gateway both
    retry a revoke so."""

    def __init__(self, request: kv_pb2.LeaseRevokeRequest) -> None:
        self._request = request
        self._maybe_done = False

    async def send(self, stub: kv_pb2_grpc.LeaseStub, **options: Any) -> kv_pb2.LeaseRevokeResponse:
        try:
            answer: kv_pb2.LeaseRevokeResponse = await stub.Revoke(self._request, **options)
            return answer
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND and self._maybe_done:
                return kv_pb2.LeaseRevokeResponse()
            if not _did_nothing(err):
                self._maybe_done = True
            raise


def _did_nothing(err: grpc.aio.AioRpcError) -> bool:
    if err.code() == grpc.StatusCode.NOT_FOUND:
        return True
    details = err.details() or ""
    return err.code() == grpc.StatusCode.UNAVAILABLE and details.startswith(_NOTHING_DONE)


class Lease:
    """A granted lease, kept alive while its block runs (``AsyncClient.lease``)."""

    def __init__(self, calls: LeaseCalls, lease_id: int, ttl_ms: int) -> None:
        self.id = lease_id
        self.ttl_ms = ttl_ms
        self.lost = asyncio.Event()  # set once it is gone, or may be
        self._calls = calls
        self._task: asyncio.Task[None] | None = None

    def start(self, answered_at: float) -> None:
        self._task = asyncio.create_task(self._keep_alive(answered_at))

    async def _keep_alive(self, valid_from: float) -> None:
        """``valid_from``: when the grant was sent (the TTL runs from no earlier)."""
        period = self.ttl_ms / 3000
        while True:
            await asyncio.sleep(max(0.0, valid_from + period - time.monotonic()))
            sent = time.monotonic()
            try:
                await asyncio.wait_for(
                    self._calls.keep_alive_once(self.id),
                    timeout=max(0.05, valid_from + self.ttl_ms / 1000 - sent),
                )
                valid_from = sent
            except TimeoutError:
                self.lost.set()  # a whole TTL without a keep-alive answered: may be gone
                return
            except Exception as err:
                if getattr(err, "code", None) == grpc.StatusCode.NOT_FOUND:
                    self.lost.set()
                    return
                if time.monotonic() - valid_from >= self.ttl_ms / 1000:
                    self.lost.set()
                    return
                await asyncio.sleep(0.1)

    async def close(self, *, revoke: bool = True) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if revoke and not self.lost.is_set():
            try:
                await self._calls.revoke(self.id)
            except Exception as err:
                if getattr(err, "code", None) != grpc.StatusCode.NOT_FOUND:
                    raise
        self.lost.set()


class LeaseContext:
    """``async with client.lease(ttl_s) as lease``: granted on entry, revoked on exit."""

    def __init__(self, calls: LeaseCalls, ttl_ms: int) -> None:
        self._calls = calls
        self._ttl_ms = ttl_ms
        self._lease: Lease | None = None

    async def __aenter__(self) -> Lease:
        sent = time.monotonic()
        lease_id = await self._calls.grant(self._ttl_ms)
        self._lease = Lease(self._calls, lease_id, self._ttl_ms)
        self._lease.start(sent)
        return self._lease

    async def __aexit__(self, *_: Any) -> None:
        if self._lease is not None:
            await self._lease.close()
