"""Requests whose bytes are not a valid protobuf message get INVALID_ARGUMENT.

gRPC answers a request its deserializer cannot parse with INTERNAL, which reads as our bug.
This interceptor wraps every unary handler's deserializer so the caller is told plainly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

_MALFORMED = object()


class RejectMalformedRequests(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or handler.request_deserializer is None:
            return handler
        deserialize = handler.request_deserializer
        behavior: Any = handler.unary_unary  # an aio coroutine; the stubs type it as sync

        def tolerant(data: bytes) -> Any:
            try:
                return deserialize(data)
            except DecodeError:
                return _MALFORMED

        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if request is _MALFORMED:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid protobuf message"
                )
            return await behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=tolerant,
            response_serializer=handler.response_serializer,
        )
