"""The Counters gRPC service: ranges of ids taken from named counters, on the KV gateway.

Rules:
- A counter is one key (``cluster.counter_keys``); ``Take`` proposes one ``Take`` command
  through the KV gateway's routing (forwarded to the shard's leader as ``Apply``), so a
  take is one log entry: atomic, ordered with every other take of the counter, and under
  the session table, so a retry with the caller's request id answers the range it took.
- ``Get`` is the gateway's linearizable Get of the counter's key.
"""

from __future__ import annotations

from typing import Any

import grpc

from cluster.counter_keys import (
    NAME_BYTES_MAX,
    TAKE_COUNT_MAX,
    counter_key,
    decode_value,
    valid_name,
)
from kvstore.api.kv_service import (
    FORWARDED,
    KvService,
    forwarded_command,
    never_forwarded,
    request_id_of,
)
from kvstore.model import encode_command
from kvstore.model.commands import Take, Taken, decode_forwarded_result, encode_forwarded_result
from kvstore.v1 import counters_pb2, counters_pb2_grpc, kv_pb2

_NAME_RULE = f"a counter's name is 1..{NAME_BYTES_MAX} bytes of [A-Za-z0-9._/-]"


class CountersService(counters_pb2_grpc.CountersServicer):
    def __init__(self, kv: KvService) -> None:
        self._kv = kv

    async def Take(  # noqa: N802
        self,
        request: counters_pb2.CounterTakeRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> counters_pb2.CounterTakeResponse:
        key = await self._key(request.name, context)
        if not 1 <= request.count <= TAKE_COUNT_MAX:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a take is of 1..{TAKE_COUNT_MAX} ids, not {request.count}",
            )
        command = Take(request_id_of(request.request_id), key, request.count)
        forwarded = counters_pb2.CounterApplyRequest(key=key, command=encode_command(command))
        if request.HasField("routed_by"):
            forwarded.routed_by.CopyFrom(request.routed_by)

        async def forward(node: int, timeout: float) -> Any:
            stub = counters_pb2_grpc.CountersStub(self._kv.channel(node))
            answer = await stub.Apply(forwarded, timeout=timeout, metadata=(FORWARDED,))
            return decode_forwarded_result(answer.result)

        shard, outcome = await self._kv.write_keys(forwarded, [key], command, context, forward)
        taken = await self._kv.expect(outcome, Taken, context)
        return counters_pb2.CounterTakeResponse(
            start=taken.start, end=taken.end, header=self._kv.header(shard, taken.revision)
        )

    async def Get(  # noqa: N802
        self,
        request: counters_pb2.CounterGetRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> counters_pb2.CounterGetResponse:
        key = await self._key(request.name, context)
        got = await self._kv.Get(kv_pb2.GetRequest(key=key), context)
        value = decode_value(got.kv.value if got.found else None)
        if value is None:
            await context.abort(grpc.StatusCode.DATA_LOSS, f"{request.name} holds no counter")
        return counters_pb2.CounterGetResponse(value=value, header=got.header)

    async def Apply(  # noqa: N802
        self,
        request: counters_pb2.CounterApplyRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> counters_pb2.CounterApplyResponse:
        """Node to node: a take another node routed to this one, believed to lead."""
        command = await forwarded_command(request, context)
        if not isinstance(command, Take) or command.key != request.key:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not a take of this key")
        _, outcome = await self._kv.write_keys(
            request, [request.key], command, context, never_forwarded
        )
        taken = await self._kv.expect(outcome, Taken, context)
        return counters_pb2.CounterApplyResponse(result=encode_forwarded_result(taken))

    async def _key(self, name: str, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        raw = name.encode()
        if not valid_name(raw):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{_NAME_RULE}, not {name!r}")
        return counter_key(raw)
