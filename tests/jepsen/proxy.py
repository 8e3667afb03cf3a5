"""The fault proxy: every byte one node sends another passes through here.

Each node dials each other node at a proxy address (``kvstore serve --route``), one proxy
per ordered pair ``src -> dst``. A proxy is a gRPC server that forwards any method of the
real node, message by message, so it can apply the faults of the ``Network``:

- ``Peer.Stream`` (the lower id dials; one stream carries both directions): every batch in
  direction ``a -> b`` is dropped while ``a -> b`` is cut (one-way partitions are real
  one-way), lost with the link's loss probability, and otherwise delayed by the link's
  latency plus jitter, keeping the stream's order.
- ``KV.BatchStream`` (a gateway forwarding client requests to a leader): the same, per
  message: a cut or lossy request direction loses the batch, a cut reply direction loses
  the answer after the leader executed it; either way the items wait out their deadlines,
  as they would on a real network.
- unary calls: the same faults, for the one request and its reply.

Client traffic does not pass through proxies: clients sit "next to" their node, and the
harness's admin calls must see through partitions.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from kvstore.channels import CHANNEL_OPTIONS

PEER_STREAM = "/kvstore.v1.Peer/Stream"
KV_BATCH_STREAM = "/kvstore.v1.KV/BatchStream"
LOST_WAIT_S_MAX = 5.0


@dataclass
class LinkFaults:
    """Faults on one directed link."""

    cut: int = 0  # how many active faults cut it (faults overlap)
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0


@dataclass
class Network:
    """The faults of every directed link, shared by all proxies and edited by the nemesis."""

    rng: random.Random
    links: dict[tuple[int, int], LinkFaults] = field(default_factory=dict)

    def link(self, src: int, dst: int) -> LinkFaults:
        return self.links.setdefault((src, dst), LinkFaults())

    def passes(self, src: int, dst: int) -> bool:
        faults = self.link(src, dst)
        return faults.cut == 0 and (faults.loss == 0 or self.rng.random() >= faults.loss)

    def delay_s(self, src: int, dst: int) -> float:
        faults = self.link(src, dst)
        if faults.latency_ms <= 0 and faults.jitter_ms <= 0:
            return 0.0
        jitter = self.rng.uniform(-faults.jitter_ms, faults.jitter_ms)
        return max(0.0, faults.latency_ms + jitter) / 1000.0

    def heal(self) -> None:
        self.links.clear()


class _OrderedDelay:
    """Delivers items into a queue after a delay each, never overtaking an earlier item."""

    def __init__(self, queue: asyncio.Queue[Any]) -> None:
        self._queue = queue
        self._last = 0.0

    def send(self, item: Any, delay_s: float) -> None:
        if delay_s <= 0 and self._last <= 0:
            self._queue.put_nowait(item)
            return
        loop = asyncio.get_running_loop()
        when = max(loop.time() + delay_s, self._last + 1e-6)
        self._last = when
        loop.call_at(when, self._queue.put_nowait, item)


class LinkProxy(grpc.GenericRpcHandler):
    """Forwards every RPC ``src`` makes to ``dst``."""

    def __init__(self, network: Network, src: int, dst: int, target: str) -> None:
        self.network = network
        self.src = src
        self.dst = dst
        self.target = target
        self._channel: grpc.aio.Channel | None = None

    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        return self._channel

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        if method in (PEER_STREAM, KV_BATCH_STREAM):

            async def stream(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
                # An async generator function itself: that is how grpc.aio tells it from a
                # synchronous one.
                async for batch in self._stream(method, requests, context):
                    yield batch

            return grpc.stream_stream_rpc_method_handler(stream)

        async def unary(request: bytes, context: Any) -> bytes:
            return await self._unary(method, request, context)

        return grpc.unary_unary_rpc_method_handler(unary)

    async def _unary(self, method: str, request: bytes, context: Any) -> bytes:
        remaining = context.time_remaining() or LOST_WAIT_S_MAX
        metadata = [(k, v) for k, v in context.invocation_metadata() if k.startswith("kv-")]
        if not self.network.passes(self.src, self.dst):
            await self._lost(context, remaining)
        await asyncio.sleep(self.network.delay_s(self.src, self.dst))
        remaining = context.time_remaining() or remaining
        try:
            response: bytes = await self.channel().unary_unary(method)(
                request, timeout=remaining, metadata=metadata
            )
        except grpc.aio.AioRpcError as err:
            await context.abort(err.code(), err.details() or "")
        if not self.network.passes(self.dst, self.src):
            await self._lost(context, context.time_remaining() or remaining)
        await asyncio.sleep(self.network.delay_s(self.dst, self.src))
        return response

    @staticmethod
    async def _lost(context: Any, wait_s: float) -> None:
        await asyncio.sleep(min(wait_s, LOST_WAIT_S_MAX))
        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "lost in the network")

    async def _stream(
        self, method: str, requests: AsyncIterator[bytes], context: Any
    ) -> AsyncIterator[bytes]:
        upstream: asyncio.Queue[bytes | None] = asyncio.Queue()
        downstream: asyncio.Queue[bytes | None] = asyncio.Queue()
        up, down = _OrderedDelay(upstream), _OrderedDelay(downstream)

        async def outgoing() -> AsyncIterator[bytes]:
            while (item := await upstream.get()) is not None:
                yield item

        metadata = [(k, v) for k, v in context.invocation_metadata() if k.startswith("kv-")]
        call = self.channel().stream_stream(method)(outgoing(), metadata=metadata)
        # A peer stream's first batch is its hello (connection set-up), never lost; a KV
        # stream's first message is a request like any other.
        first = method == PEER_STREAM

        async def pump_up() -> None:
            nonlocal first
            try:
                async for batch in requests:
                    if first or self.network.passes(self.src, self.dst):
                        up.send(batch, 0.0 if first else self.network.delay_s(self.src, self.dst))
                    first = False
            finally:
                upstream.put_nowait(None)

        async def pump_down() -> None:
            try:
                async for batch in call:
                    if self.network.passes(self.dst, self.src):
                        down.send(batch, self.network.delay_s(self.dst, self.src))
            except grpc.aio.AioRpcError:
                pass
            finally:
                down.send(None, 0.0)

        tasks = [asyncio.create_task(pump_up()), asyncio.create_task(pump_down())]
        try:
            while (item := await downstream.get()) is not None:
                yield item
        finally:
            call.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


class ProxyServer:
    """One gRPC server per ordered node pair, all in the harness's event loop."""

    def __init__(self, network: Network) -> None:
        self.network = network
        self._servers: list[grpc.aio.Server] = []
        self._proxies: list[LinkProxy] = []

    async def add(self, src: int, dst: int, listen: str, target: str) -> None:
        proxy = LinkProxy(self.network, src, dst, target)
        server = grpc.aio.server(options=CHANNEL_OPTIONS)
        server.add_generic_rpc_handlers((proxy,))
        if server.add_insecure_port(listen) == 0:
            raise RuntimeError(f"fault proxy cannot listen on {listen}")
        await server.start()
        self._servers.append(server)
        self._proxies.append(proxy)

    async def stop(self) -> None:
        for server in self._servers:
            await server.stop(0)
        for proxy in self._proxies:
            await proxy.close()
