"""Node-to-node transport: one long-lived bidirectional gRPC stream per pair of nodes.

Rules:
- The node with the lower id dials; the other side answers on the same stream. Each
  direction carries ``PeerBatch``es holding Paxos messages of every shard the pair shares.
- ``send`` never blocks: messages wait in a bounded per-peer queue and are drained into one
  batch per stream write; when the queue is full or the link is down they are dropped.
  Paxos tolerates loss; retransmission and catch-up recover.
- A link that breaks is re-dialed with capped backoff; a batch from another cluster, or from
  a node that is not who it claims, is refused and the stream closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import structlog

from kvstore.channels import CHANNEL_OPTIONS
from kvstore.net.codec import PeerProtocolError, from_wire, to_wire
from kvstore.v1 import peer_pb2, peer_pb2_grpc
from paxos import Message

Deliver = Callable[[int, Message], None]
QUEUE_MESSAGES_MAX = 50_000
BATCH_MESSAGES_MAX = 4_096
RECONNECT_S = (0.05, 1.0)


class PeerLink:
    """Outbound queue and the live stream (if any) to one peer."""

    def __init__(self, peer: int) -> None:
        self.peer = peer
        self.queue: asyncio.Queue[tuple[int, Message]] = asyncio.Queue(QUEUE_MESSAGES_MAX)
        self.dropped = 0

    def offer(self, shard_id: int, msg: Message) -> None:
        try:
            self.queue.put_nowait((shard_id, msg))
        except asyncio.QueueFull:
            self.dropped += 1

    async def batches(self, cluster: str, me: int) -> AsyncIterator[peer_pb2.PeerBatch]:
        # A hello first, so the other side knows who we are before any traffic.
        yield peer_pb2.PeerBatch(cluster=cluster, from_node=me)
        while True:
            first = await self.queue.get()
            # Let the rest of this loop turn queue its messages too: a stream write costs
            # far more than a message, so one write should carry all of them.
            await asyncio.sleep(0)
            items = [first]
            while len(items) < BATCH_MESSAGES_MAX and not self.queue.empty():
                items.append(self.queue.get_nowait())
            yield peer_pb2.PeerBatch(
                cluster=cluster,
                from_node=me,
                messages=[to_wire(shard, msg) for shard, msg in items],
            )


class PeerTransport(peer_pb2_grpc.PeerServicer):
    def __init__(
        self, cluster: str, node_id: int, addresses: dict[int, str], deliver: Deliver
    ) -> None:
        self._cluster = cluster
        self._me = node_id
        self._addresses = addresses
        self._deliver = deliver
        self._links = {p: PeerLink(p) for p in addresses if p != node_id}
        self._tasks: list[asyncio.Task[None]] = []
        self._log = structlog.get_logger("kvstore.peer").bind(node=node_id)

    def send(self, dst: int, batch: list[tuple[int, Message]]) -> None:
        link = self._links.get(dst)
        if link is None:
            return
        for shard_id, msg in batch:
            link.offer(shard_id, msg)

    def start(self) -> None:
        for peer in self._links:
            if self._me < peer:
                self._tasks.append(asyncio.create_task(self._dial_forever(peer)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ dialing side

    async def _dial_forever(self, peer: int) -> None:
        delay = RECONNECT_S[0]
        link = self._links[peer]
        while True:
            try:
                async with grpc.aio.insecure_channel(
                    self._addresses[peer], options=CHANNEL_OPTIONS
                ) as channel:
                    stub = peer_pb2_grpc.PeerStub(channel)
                    call = stub.Stream(link.batches(self._cluster, self._me))
                    delay = RECONNECT_S[0]
                    async for batch in call:
                        self._receive(peer, batch)
            except asyncio.CancelledError:
                raise
            except (grpc.aio.AioRpcError, PeerProtocolError) as exc:
                self._log.debug("peer_link_down", peer=peer, error=type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_S[1])

    # ------------------------------------------------------------------ answering side

    async def Stream(  # noqa: N802 - the gRPC method name
        self,
        request_iterator: AsyncIterator[peer_pb2.PeerBatch],
        context: grpc.aio.ServicerContext[peer_pb2.PeerBatch, peer_pb2.PeerBatch],
    ) -> AsyncIterator[peer_pb2.PeerBatch]:
        requests = aiter(request_iterator)
        try:
            hello = await anext(requests)
        except StopAsyncIteration:
            return
        peer = hello.from_node
        if hello.cluster != self._cluster or peer not in self._links or peer > self._me:
            self._log.info("peer_refused", claimed=peer, cluster=hello.cluster)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not a peer of this cluster")
        link = self._links[peer]
        reader = asyncio.create_task(self._read(peer, requests))
        try:
            async for batch in link.batches(self._cluster, self._me):
                if reader.done():
                    break
                yield batch
        finally:
            reader.cancel()

    async def _read(self, peer: int, requests: AsyncIterator[peer_pb2.PeerBatch]) -> None:
        try:
            async for batch in requests:
                self._receive(peer, batch)
        except (grpc.aio.AioRpcError, PeerProtocolError) as exc:
            self._log.debug("peer_stream_closed", peer=peer, error=type(exc).__name__)

    def _receive(self, peer: int, batch: peer_pb2.PeerBatch) -> None:
        if batch.cluster != self._cluster or batch.from_node != peer:
            raise PeerProtocolError(f"batch claims node {batch.from_node} on the link of {peer}")
        for wire in batch.messages:
            shard_id, msg = from_wire(wire)
            if msg.src != peer or msg.dst != self._me:
                raise PeerProtocolError(
                    f"message {msg.src}->{msg.dst} on the link {peer}->{self._me}"
                )
            self._deliver(shard_id, msg)
