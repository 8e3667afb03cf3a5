"""Operator state (``kvstore.operator_state``) read and written through the KV gateway.

Rules:
- A write is one ``Put`` or ``Delete`` of a reserved key, proposed at the key's shard as any
  write is (routed by the gateway; a node that does not lead it sends it to the one believed
  to, as ``Admin.ApplyOperatorState``). Clients cannot write these keys through ``KV``.
- A read is the gateway's linearizable scan of the reserved prefix.
"""

from __future__ import annotations

from typing import Any

import grpc

from kvstore.api.kv_service import (
    FORWARDED,
    KvService,
    forwarded_command,
    never_forwarded,
)
from kvstore.model import Delete, Put, RequestId, encode_command
from kvstore.model.commands import (
    Command,
    DeleteResult,
    PutResult,
    decode_forwarded_result,
    encode_forwarded_result,
)
from kvstore.operator_state import OPERATOR, OperatorState, after, known_key, known_value, parse
from kvstore.v1 import admin_pb2, admin_pb2_grpc, kv_pb2

Context = grpc.aio.ServicerContext[Any, Any]


def command_written(command: Command) -> bytes | None:
    """The reserved key ``command`` writes, if it is one this service sends: a ``Put`` of a
    known state (no lease: it must never expire) or a ``Delete``, of a known key."""
    if not isinstance(command, Put | Delete) or not known_key(command.key):
        return None
    if isinstance(command, Put) and (command.lease or not known_value(command.key, command.value)):
        return None
    return command.key


class OperatorStates:
    def __init__(self, kv: KvService) -> None:
        self._kv = kv

    async def read(self, context: Context) -> OperatorState:
        scanned = await self._kv.Scan(
            kv_pb2.ScanRequest(start=OPERATOR, end=after(OPERATOR)), context
        )
        return parse((kv.key, kv.value) for kv in scanned.kvs)

    async def write(self, key: bytes, value: bytes | None, context: Context) -> None:
        """Put ``value`` at the reserved ``key`` (None: delete it)."""
        assert key.startswith(OPERATOR), key
        command = (
            Put(RequestId(0, 0), key, value) if value is not None else Delete(RequestId(0, 0), key)
        )
        request = admin_pb2.ApplyOperatorStateRequest(key=key, command=encode_command(command))

        async def forward(node: int, timeout: float) -> Any:
            stub = admin_pb2_grpc.AdminStub(self._kv.channel(node))
            answer = await stub.ApplyOperatorState(request, timeout=timeout, metadata=(FORWARDED,))
            return decode_forwarded_result(answer.result)

        _, outcome = await self._kv.write_keys(request, [key], command, context, forward)
        await self._kv.expect(outcome, PutResult if value is not None else DeleteResult, context)

    async def apply(
        self, request: admin_pb2.ApplyOperatorStateRequest, context: Context
    ) -> admin_pb2.ApplyOperatorStateResponse:
        """Node to node: an operator-state write another node routed here, believed to lead."""
        command = await forwarded_command(request, context)
        if command_written(command) != request.key:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not an operator-state write")
        _, outcome = await self._kv.write_keys(
            request, [request.key], command, context, never_forwarded
        )
        result: PutResult | DeleteResult
        if isinstance(command, Put):
            result = await self._kv.expect(outcome, PutResult, context)
        else:
            result = await self._kv.expect(outcome, DeleteResult, context)
        return admin_pb2.ApplyOperatorStateResponse(result=encode_forwarded_result(result))
