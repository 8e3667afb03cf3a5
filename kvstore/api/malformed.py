"""Requests whose bytes are not a valid protobuf message get INVALID_ARGUMENT, and calls to a
node that is going down get UNAVAILABLE.

gRPC answers a request its deserializer cannot parse with INTERNAL, which reads as our bug.
This interceptor wraps the deserializer of every unary and bidirectional-stream handler so
the caller is told plainly (a stream ends at its first malformed message). Between a fatal
error (a failed disk) and the process's exit, a call reaching the runtime would otherwise end
UNKNOWN ("Unexpected RuntimeError"): it is UNAVAILABLE, so the caller tries another node.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from kvstore.api.statuses import shown_status
from kvstore.runtime.node import NodeStoppedError

_MALFORMED = object()
_DETAILS = "the request is not a valid protobuf message"
# Node-to-node streams are left alone: their hot path should not pay a generator layer per
# message, and a peer that sends garbage is cut off by the transport anyway.
_UNGUARDED_STREAMS = "/kvstore.v1.Peer/"


class RejectMalformedRequests(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        deserialize = handler.request_deserializer

        def tolerant(data: bytes) -> Any:
            try:
                return deserialize(data)
            except DecodeError:
                return _MALFORMED

        if handler.unary_unary is not None:
            unary: Any = handler.unary_unary  # an aio coroutine; the stubs type it as sync

            async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                if request is _MALFORMED:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _DETAILS)
                try:
                    return await unary(request, context)
                except NodeStoppedError as stopped:
                    await context.abort(shown_status(stopped), str(stopped))

            return grpc.unary_unary_rpc_method_handler(
                guarded,
                request_deserializer=tolerant,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None and not handler_call_details.method.startswith(
            _UNGUARDED_STREAMS
        ):
            streaming: Any = handler.stream_stream  # an aio async generator function

            async def guarded_stream(
                requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                async def checked() -> AsyncIterator[Any]:
                    async for request in requests:
                        if request is _MALFORMED:
                            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _DETAILS)
                        yield request

                async for response in streaming(checked(), context):
                    yield response

            return grpc.stream_stream_rpc_method_handler(
                guarded_stream,
                request_deserializer=tolerant,
                response_serializer=handler.response_serializer,
            )
        return handler
