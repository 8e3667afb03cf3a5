"""The trivial gRPC server of ``--calibrate``: echoes bytes, so its throughput is the ceiling
of one unary Python gRPC call per operation on this machine."""

from __future__ import annotations

from typing import Any

import grpc

from kvstore import event_loop

METHOD = "/kvstore.bench.Echo/Echo"


class _Echo(grpc.GenericRpcHandler):
    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        if handler_call_details.method != METHOD:
            return None

        async def echo(request: bytes, _context: Any) -> bytes:
            return request

        return grpc.unary_unary_rpc_method_handler(echo)


def serve(address: str, ready: Any) -> None:
    """Run until killed (the benchmark's parent stops it by PID); ``ready`` is set on listen."""

    async def main() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((_Echo(),))
        server.add_insecure_port(address)
        await server.start()
        ready.set()
        await server.wait_for_termination()

    event_loop.run(main())
