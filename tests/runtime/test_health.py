"""The standard services on every node: a stock health client sees SERVING (and
NOT_SERVING once a node starts to stop), and reflection lists kvstore's services."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tests.runtime.test_client import running_servers

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _check(address: str, service: str) -> int:
    """A stock, blocking health check, as grpc_health_probe does it."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status)


def _services(address: str) -> list[str]:
    with grpc.insecure_channel(address) as channel:
        return sorted(ProtoReflectionDescriptorDatabase(channel).get_services())


def test_every_node_is_serving_to_a_stock_health_client_and_reflects(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_servers(tmp_path) as (_servers, endpoints):
            for address in endpoints:
                for service in ("", "kvstore.v1.KV"):
                    assert await asyncio.to_thread(_check, address, service) == SERVING
                services = await asyncio.to_thread(_services, address)
                assert {"kvstore.v1.KV", "kvstore.v1.Admin", "grpc.health.v1.Health"} <= set(
                    services
                )

    asyncio.run(main())


def test_a_stopping_node_turns_not_serving_before_it_goes(tmp_path: Path) -> None:
    async def main() -> None:
        async with (
            running_servers(tmp_path) as (servers, endpoints),
            grpc.aio.insecure_channel(endpoints[0]) as channel,
        ):
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service="kvstore.v1.KV")
            )
            assert (await watch.read()).status == SERVING
            stopping = asyncio.create_task(servers[0].stop(grace_s=2.0))
            assert (await watch.read()).status == NOT_SERVING
            watch.cancel()
            await stopping

    asyncio.run(main())
