"""The Lease service: grant, keep alive, revoke and inspect leases (etcd's Lease API).

Every call is answered by the meta range's leader (``kvstore.model.lease_keeper``): a node
that is not it forwards the call there (FORWARDED metadata; a forwarded call is never
forwarded again: the asking node tries the next replica). A revoke answers once the lease's
keys are gone from every range; an expiry deletes them the same way, driven by the leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

import grpc
import structlog

from cluster import META_RANGE_ID, ClusterConfig
from cluster.ranges import meta_descriptor
from kvstore.api.forwarding import NoneAnsweredError, ask_in_turn
from kvstore.api.kv_service import FORWARDED, is_forwarded
from kvstore.leasing import NOT_META_LEADER, RevokeAttempts
from kvstore.model import Invalid, RequestId
from kvstore.model.commands import LeaseGrant, LeaseGranted, LeaseRevoke, LeaseRevoked
from kvstore.model.lease_keeper import LeaseState
from kvstore.model.leases import LEASE_ID_MAX, TTL_MS_MAX
from kvstore.model.node import NotLeaseholder
from kvstore.runtime.node import (
    NodeRuntime,
    NotLeaderError,
    OverloadedError,
    ProposalDroppedError,
)
from kvstore.v1 import kv_pb2, kv_pb2_grpc

T = TypeVar("T")
LEADER_DEADLINE_S = 5.0  # how long a call looks for a meta leader that can answer it
FORWARD_TIMEOUT_S = 2.0
KEEP_ALIVE_BATCH_MAX = 10_000  # ids in one keep-alive message


class _ElsewhereError(Exception):
    """Not answerable here: the meta leader is ``hint`` (None: unknown, or not ready)."""

    def __init__(self, hint: int | None) -> None:
        super().__init__(hint)
        self.hint = hint


class LeaseService(kv_pb2_grpc.LeaseServicer):
    def __init__(
        self,
        cluster: ClusterConfig,
        runtime: NodeRuntime,
        addresses: dict[int, str],
        detach: Callable[[list[int]], Awaitable[bool]],
    ) -> None:
        """``detach``: deletes ended leases' keys in every range (the admin service's)."""
        self._runtime = runtime
        self._addresses = addresses
        self._detach = detach
        self._meta_replicas = list(meta_descriptor(cluster).replicas)
        self._granted: set[int] = set()  # leases known to have been granted (never unlearned)
        self._log = structlog.get_logger("kvstore.lease").bind(node=runtime.node_id)

    # ------------------------------------------------------------------ the RPCs

    async def Grant(  # noqa: N802
        self, request: kv_pb2.LeaseGrantRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> kv_pb2.LeaseGrantResponse:
        if not 0 < request.ttl_ms <= TTL_MS_MAX:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"ttl_ms must be within 1..{TTL_MS_MAX}"
            )
        if not 0 <= request.id <= LEASE_ID_MAX:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"a lease id is within 1..{LEASE_ID_MAX}"
            )
        # A lease the server picks the id of is picked where it is granted, anew on each
        # attempt: an attempt whose answer was lost leaves a lease nobody keeps alive,
        # which expires with no keys, where reusing the id would make the retry ALREADY_EXISTS.

        async def local() -> kv_pb2.LeaseGrantResponse:
            lease_id = request.id or random.SystemRandom().randrange(1, LEASE_ID_MAX + 1)
            result = await self._propose(LeaseGrant(RequestId(0, 0), lease_id, request.ttl_ms))
            if isinstance(result, Invalid):
                code = (
                    grpc.StatusCode.ALREADY_EXISTS
                    if "exists" in result.reason or "used before" in result.reason
                    else grpc.StatusCode.INVALID_ARGUMENT
                )
                await context.abort(code, result.reason)
            assert isinstance(result, LeaseGranted), result
            return kv_pb2.LeaseGrantResponse(id=result.lease_id, ttl_ms=result.ttl_ms)

        answer: kv_pb2.LeaseGrantResponse = await self._at_leader(
            local, lambda stub: stub.Grant(request, **_forwarding()), context
        )
        self._granted.add(answer.id)
        self._log.info("lease_granted", lease=answer.id, ttl_ms=answer.ttl_ms)
        return answer

    async def Revoke(  # noqa: N802
        self, request: kv_pb2.LeaseRevokeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> kv_pb2.LeaseRevokeResponse:
        await _check_id(request.id, context)

        async def local() -> kv_pb2.LeaseRevokeResponse:
            result = await self._propose(LeaseRevoke(RequestId(0, 0), request.id))
            assert isinstance(result, LeaseRevoked), result
            if not result.existed:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"no lease {request.id}")
            # Answered once its keys are gone (if this pass fails, the leader's does it).
            await self._detach([request.id])
            return kv_pb2.LeaseRevokeResponse()

        attempts = RevokeAttempts(request)
        return await self._at_leader(
            local, lambda stub: attempts.send(stub, **_forwarding(10.0)), context
        )

    async def KeepAliveOnce(  # noqa: N802
        self, request: kv_pb2.LeaseKeepAliveRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> kv_pb2.LeaseKeepAliveResponse:
        """NOT_FOUND if ``id`` is no live lease (the ``ids`` answer 0 each instead)."""
        answer = await self._keep_alive(request, context)
        if request.id and not answer.ttl_ms:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no lease {request.id}")
        return answer

    async def KeepAlive(  # noqa: N802
        self,
        requests: AsyncIterator[kv_pb2.LeaseKeepAliveRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[kv_pb2.LeaseKeepAliveResponse]:
        async for request in requests:
            yield await self._keep_alive(request, context)

    async def _keep_alive(
        self, request: kv_pb2.LeaseKeepAliveRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> kv_pb2.LeaseKeepAliveResponse:
        if request.id or not request.ids:
            await _check_id(request.id, context)
        if len(request.ids) > KEEP_ALIVE_BATCH_MAX:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"at most {KEEP_ALIVE_BATCH_MAX} ids in one keep-alive",
            )
        for lease_id in request.ids:
            await _check_id(lease_id, context)
        # Asked as one batch, here or forwarded (a lease gone answers 0, never NOT_FOUND).
        every = [request.id, *request.ids] if request.id else list(request.ids)

        def answer(ttls: list[int]) -> kv_pb2.LeaseKeepAliveResponse:
            if request.id:
                return kv_pb2.LeaseKeepAliveResponse(
                    id=request.id, ttl_ms=ttls[0], ttls_ms=ttls[1:]
                )
            return kv_pb2.LeaseKeepAliveResponse(ttls_ms=ttls)

        async def local() -> kv_pb2.LeaseKeepAliveResponse:
            return answer(_here(self._runtime.lease_keep_alives(every)))

        forwarded = kv_pb2.LeaseKeepAliveRequest(ids=every)

        async def forward(stub: kv_pb2_grpc.LeaseStub) -> kv_pb2.LeaseKeepAliveResponse:
            got: kv_pb2.LeaseKeepAliveResponse = await stub.KeepAliveOnce(
                forwarded, **_forwarding()
            )
            return answer(list(got.ttls_ms))

        return await self._at_leader(local, forward, context)

    async def TimeToLive(  # noqa: N802
        self, request: kv_pb2.LeaseTimeToLiveRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> kv_pb2.LeaseTimeToLiveResponse:
        await _check_id(request.id, context)

        async def local() -> kv_pb2.LeaseTimeToLiveResponse:
            state = _here(self._runtime.lease_state(request.id))
            if state is None and request.ended_too and self._runtime.lease_ended(request.id):
                return kv_pb2.LeaseTimeToLiveResponse(id=request.id, remaining_ms=-1)
            if state is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"no lease {request.id}")
            assert isinstance(state, LeaseState)
            return kv_pb2.LeaseTimeToLiveResponse(
                id=state.lease_id, ttl_ms=state.ttl_ms, remaining_ms=state.remaining_ms
            )

        return await self._at_leader(
            local, lambda stub: stub.TimeToLive(request, **_forwarding()), context
        )

    async def List(  # noqa: N802
        self, request: kv_pb2.LeaseListRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> kv_pb2.LeaseListResponse:
        async def local() -> kv_pb2.LeaseListResponse:
            return kv_pb2.LeaseListResponse(ids=_here(self._runtime.lease_ids()))

        return await self._at_leader(
            local, lambda stub: stub.List(request, **_forwarding()), context
        )

    # ------------------------------------------------------------------ for puts

    async def known(self, lease_id: int, context: grpc.aio.ServicerContext[Any, Any]) -> bool:
        """Whether ``lease_id`` was ever granted. A put may attach a key only to such a lease:
        once it ends, every range detaches it and refuses it from then on, so a key is never
        left behind; a lease never granted would never end."""
        if lease_id in self._granted:
            return True
        try:
            await self.TimeToLive(
                kv_pb2.LeaseTimeToLiveRequest(id=lease_id, ended_too=True),
                cast(Any, _Asking(context)),
            )
        except _NotFoundError:
            return False
        self._granted.add(lease_id)
        return True

    # ------------------------------------------------------------------ the leader

    async def _propose(self, command: Any) -> Any:
        try:
            return await self._runtime.submit(META_RANGE_ID, command)
        except NotLeaderError as refused:
            raise _ElsewhereError(refused.leader_hint) from None
        except (ProposalDroppedError, OverloadedError):
            raise _ElsewhereError(None) from None

    async def _at_leader(
        self,
        local: Callable[[], Awaitable[T]],
        forward: Callable[[kv_pb2_grpc.LeaseStub], Awaitable[T]],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> T:
        """``local()`` if this node is the meta leader and can answer, else ``forward`` to
        the leader as known, then to each meta replica in turn, until the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LEADER_DEADLINE_S
        while loop.time() < deadline:
            hint: int | None = None
            if self._runtime.hosts(META_RANGE_ID):
                try:
                    return await local()
                except _ElsewhereError as elsewhere:
                    hint = elsewhere.hint
            if is_forwarded(context):
                if self._runtime.hosts(META_RANGE_ID) and hint is None:
                    await asyncio.sleep(0.05)  # leading, not ready yet (or no leader known)
                    continue
                await context.abort(grpc.StatusCode.UNAVAILABLE, NOT_META_LEADER)
            me = self._runtime.node_id
            candidates = [n for n in ([hint] if hint else []) + self._meta_replicas if n != me]
            with contextlib.suppress(NoneAnsweredError):
                return await ask_in_turn(
                    candidates, self._addresses, kv_pb2_grpc.LeaseStub, forward, context
                )
            await asyncio.sleep(0.1)
        return await context.abort(grpc.StatusCode.UNAVAILABLE, "no meta leader answered in time")


def _here(answer: T | NotLeaseholder) -> T:
    if isinstance(answer, NotLeaseholder):
        raise _ElsewhereError(answer.leader_hint)
    return answer


def _forwarding(timeout_s: float = FORWARD_TIMEOUT_S) -> dict[str, Any]:
    return {"timeout": timeout_s, "metadata": (FORWARDED,)}


async def _check_id(lease_id: int, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    if not 0 < lease_id <= LEASE_ID_MAX:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"a lease id is within 1..{LEASE_ID_MAX}"
        )


class _NotFoundError(Exception):
    pass


class _Asking:
    """The context of a lease question a gateway asks for a put: NOT_FOUND is an answer,
    any other refusal is the put's."""

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self._context = context

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    async def abort(self, code: grpc.StatusCode, details: str = "") -> Any:
        if code == grpc.StatusCode.NOT_FOUND:
            raise _NotFoundError(details)
        await self._context.abort(code, details)
