"""Node-to-node transport: one long-lived bidirectional gRPC stream per pair of nodes.

Rules:
- The node with the lower id dials; the other side answers on the same stream. Each
  direction carries ``PeerBatch``es holding Paxos messages of every shard the pair shares.
- ``send`` never blocks: messages wait in a bounded per-peer queue and are drained into one
  batch per stream write; when the queue is full or the link is down they are dropped.
  Paxos tolerates loss; retransmission and catch-up recover.
- A link that breaks is re-dialed with capped backoff; a batch from another cluster, or from
  a node that is not who it claims, is refused and the stream closed.
- ``send_host`` carries a ``HostNote`` (``kvstore.model.node.Host``: a question about a
  shard the asker does not host, or its descriptor), told to ``host_heard`` on arrival.
- ``send`` of an empty batch is a liveness ping (``kvstore.model.node.Ping``): a batch with
  nothing in it; every batch that arrives is reported to ``heard`` (the node's liveness).
- Every ``PROBE_INTERVAL_S`` each side sends a probe (``ping``) that the other answers at
  once (``pong``): the round trip, WAN delay included, is what ``kvstore status`` shows.
- With an emulated WAN (``[wan]`` in the config) each message leaves only after its link's
  one-way delay (+- jitter), never overtaking an earlier one: the local cluster then
  behaves like datacenters far apart. Both directions are delayed by their sender.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
import structlog

from kvstore import precise_timer
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.net.codec import PeerProtocolError, from_wire, payload_bytes, to_wire
from kvstore.v1 import peer_pb2, peer_pb2_grpc
from paxos import Message

Deliver = Callable[[int, Message], None]
Heard = Callable[[int], None]
# peer, shard, descriptor (b"": a question), the peer's disk as the shard's configuration
# listed it, the shard's descriptor now (b"": as it began)
HostHeard = Callable[[int, int, bytes, int, bytes], None]
QUEUE_MESSAGES_MAX = 50_000
BATCH_MESSAGES_MAX = 4_096
BATCH_BYTES_MAX = 4 << 20  # of client data per batch (one larger message still goes alone)
RECONNECT_S = (0.05, 1.0)
PROBE_INTERVAL_S = 0.5
RTT_SMOOTHING = 0.2  # weight of the newest probe in the moving average


@dataclass(frozen=True, slots=True)
class LinkDelay:
    """The emulated one-way delay of a link, in seconds."""

    one_way_s: float = 0.0
    jitter_s: float = 0.0


@dataclass(frozen=True, slots=True)
class LinkStats:
    peer: int
    connected: bool
    rtt_ms: float  # 0: no probe answered yet
    rtt_avg_ms: float


# due, shard, message (or a host note), ping, pong
_Entry = tuple[float, int, Message | peer_pb2.HostNote | None, int, int]


class PeerLink:
    """Outbound queue, emulated delay and round-trip probes of the link to one peer."""

    def __init__(self, peer: int, delay: LinkDelay, rng: random.Random) -> None:
        self.peer = peer
        self.dropped = 0
        self.connected = False
        self.rtt_ms = 0.0
        self.rtt_avg_ms = 0.0
        self._delay = delay
        self._rng = rng
        self._pending: deque[_Entry] = deque()
        self._wake = asyncio.Event()
        self._last_due = 0.0
        self._probes: dict[int, float] = {}  # ping id -> when sent
        self._probe_ids = itertools.count(1)
        self._session = 0  # the newest stream's; an older stream's generator must stop

    def offer(self, shard_id: int, msg: Message) -> None:
        self._push(shard_id, msg, 0, 0)

    def offer_host(self, note: peer_pb2.HostNote) -> None:
        self._push(note.shard_id, note, 0, 0)

    def nudge(self) -> None:
        """An empty batch: the peer hears from us (node liveness), nothing more."""
        self._push(0, None, 0, 0)

    def probe(self) -> None:
        ping = next(self._probe_ids)
        self._probes = {ping: time.monotonic()}  # older ones count as lost
        self._push(0, None, ping, 0)

    def answer(self, ping: int) -> None:
        self._push(0, None, 0, ping)

    def answered(self, pong: int) -> None:
        sent = self._probes.pop(pong, None)
        if sent is None:
            return
        rtt = (time.monotonic() - sent) * 1000
        self.rtt_ms = rtt
        self.rtt_avg_ms = (
            rtt
            if not self.rtt_avg_ms
            else (1 - RTT_SMOOTHING) * self.rtt_avg_ms + RTT_SMOOTHING * rtt
        )

    def stats(self) -> LinkStats:
        return LinkStats(self.peer, self.connected, self.rtt_ms, self.rtt_avg_ms)

    def _push(
        self, shard_id: int, msg: Message | peer_pb2.HostNote | None, ping: int, pong: int
    ) -> None:
        if len(self._pending) >= QUEUE_MESSAGES_MAX:
            self.dropped += 1
            return
        due = 0.0
        if self._delay.one_way_s or self._delay.jitter_s:
            jitter = self._rng.uniform(-self._delay.jitter_s, self._delay.jitter_s)
            now = time.monotonic()
            # Never before an earlier message: a stream does not reorder.
            due = max(now + max(0.0, self._delay.one_way_s + jitter), self._last_due)
            self._last_due = due
        self._pending.append((due, shard_id, msg, ping, pong))
        self._wake.set()

    async def batches(
        self, cluster: str, me: int, incarnation: int = 0, process: int = 0
    ) -> AsyncIterator[peer_pb2.PeerBatch]:
        """The outgoing side of one stream. Starting a new stream ends the older one's:
        grpc keeps pulling from the request iterator of a call that ended with status OK
        (a proxy closing it), and such a stale reader must not take the new stream's
        messages (found by the fault suite: a restarted peer heard nothing, forever)."""
        self._session += 1
        session = self._session
        # A hello first, so the other side knows who we are before any traffic.
        yield peer_pb2.PeerBatch(
            cluster=cluster, from_node=me, incarnation=incarnation, process=process
        )
        pending = self._pending
        while True:
            while not pending and session == self._session:
                self._wake.clear()
                await self._wake.wait()
            # Let the rest of this loop turn queue its messages too: a stream write costs
            # far more than a message, so one write should carry all of them.
            await asyncio.sleep(0)
            if pending and pending[0][0] > time.monotonic():
                await precise_timer.for_loop().sleep_until(pending[0][0])
            if session != self._session:
                self._wake.set()  # the current stream's generator may be waiting too
                return
            now = time.monotonic()
            batch = peer_pb2.PeerBatch(cluster=cluster, from_node=me)
            messages: list[peer_pb2.PaxosMessage] = []
            size = 0
            while (
                pending
                and len(messages) < BATCH_MESSAGES_MAX
                and size < BATCH_BYTES_MAX
                and pending[0][0] <= now
            ):
                _, shard, msg, ping, pong = pending.popleft()
                if isinstance(msg, peer_pb2.HostNote):
                    batch.hosts.append(msg)
                elif msg is not None:
                    messages.append(to_wire(shard, msg))
                    size += payload_bytes(msg)
                batch.ping = ping or batch.ping
                batch.pong = pong or batch.pong
            batch.messages.extend(messages)
            yield batch


class PeerTransport(peer_pb2_grpc.PeerServicer):
    def __init__(
        self,
        cluster: str,
        node_id: int,
        addresses: dict[int, str],
        deliver: Deliver,
        delays: dict[int, LinkDelay] | None = None,
        *,
        incarnation: int = 0,
        heard: Heard | None = None,
        restarted: Heard | None = None,
        host_heard: HostHeard | None = None,
    ) -> None:
        """``cluster``: what tells this cluster from others (``ClusterConfig.identity``);
        ``incarnation``: this node's data directory's, so peers notice a replaced one;
        ``heard``: told of every batch a peer sends (its liveness); ``restarted``: of a peer
        whose incarnation changed (a new process, however quick)."""
        self._heard = heard
        self._restarted = restarted
        self._host_heard = host_heard
        self._cluster = cluster
        self._incarnation = incarnation
        self._incarnations: dict[int, int] = {}  # the last one each peer said in its hello
        self._process = random.SystemRandom().randrange(1, 1 << 63)  # this process start's
        self._processes: dict[int, int] = {}  # each peer's, from its last hello
        self._me = node_id
        self._addresses = addresses
        self._deliver = deliver
        rng = random.Random(node_id)  # jitter only: no protocol decision depends on it
        self._links = {
            p: PeerLink(p, (delays or {}).get(p, LinkDelay()), rng)
            for p in addresses
            if p != node_id
        }
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._log = structlog.get_logger("kvstore.peer").bind(node=node_id)

    def send(self, dst: int, batch: list[tuple[int, Message]]) -> None:
        link = self._links.get(dst)
        if link is None:
            return
        if not batch:
            if link.connected:
                link.nudge()
            return
        for shard_id, msg in batch:
            link.offer(shard_id, msg)

    def incarnation_of(self, peer: int) -> int:
        """The incarnation of ``peer``'s data directory, as its last hello said (0: none
        heard yet)."""
        return self._incarnations.get(peer, 0)

    def send_host(
        self,
        dst: int,
        shard_id: int,
        descriptor: bytes,
        incarnation: int = 0,
        current: bytes = b"",
    ) -> None:
        link = self._links.get(dst)
        if link is not None:
            link.offer_host(
                peer_pb2.HostNote(
                    shard_id=shard_id,
                    descriptor=descriptor,
                    incarnation=incarnation,
                    current=current,
                )
            )

    def add_peer(self, peer: int, delay: LinkDelay) -> None:
        """A node that joined (its address in the shared ``addresses`` already): link to it,
        dialing it if this node dials (the lower id dials)."""
        if peer == self._me or peer in self._links:
            return
        self._links[peer] = PeerLink(peer, delay, random.Random(self._me * 1_000_003 + peer))
        if self._started and self._me < peer:
            self._tasks.append(asyncio.create_task(self._dial_forever(peer)))

    def link_stats(self) -> list[LinkStats]:
        return [link.stats() for _, link in sorted(self._links.items())]

    def start(self) -> None:
        self._started = True
        for peer in self._links:
            if self._me < peer:
                self._tasks.append(asyncio.create_task(self._dial_forever(peer)))
        self._tasks.append(asyncio.create_task(self._probe_forever()))

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            for link in self._links.values():
                if link.connected:
                    link.probe()

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
                    call = stub.Stream(
                        link.batches(self._cluster, self._me, self._incarnation, self._process)
                    )
                    delay = RECONNECT_S[0]
                    link.connected = True
                    try:
                        async for batch in call:
                            self._receive(peer, batch)
                    finally:
                        call.cancel()
            except asyncio.CancelledError:
                raise
            except (grpc.aio.AioRpcError, PeerProtocolError) as exc:
                self._log.debug("peer_link_down", peer=peer, error=type(exc).__name__)
            finally:
                link.connected = False
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
        self._note_incarnation(peer, hello.incarnation)
        self._note_process(peer, hello.process)
        link = self._links[peer]
        reader = asyncio.create_task(self._read(peer, requests))
        link.connected = True
        try:
            async for batch in link.batches(
                self._cluster, self._me, self._incarnation, self._process
            ):
                if reader.done():
                    break
                yield batch
        finally:
            link.connected = False
            reader.cancel()

    async def _read(self, peer: int, requests: AsyncIterator[peer_pb2.PeerBatch]) -> None:
        try:
            async for batch in requests:
                self._receive(peer, batch)
        except (grpc.aio.AioRpcError, PeerProtocolError) as exc:
            self._log.debug("peer_stream_closed", peer=peer, error=type(exc).__name__)

    def _note_incarnation(self, peer: int, incarnation: int) -> None:
        """A peer whose data directory changed since we last heard it (a replaced disk) is
        worth a line in the log: its replicas rejoin before they vote (``paxos.rejoin``)."""
        if not incarnation:
            return
        known = self._incarnations.get(peer)
        if known is not None and known != incarnation:
            self._log.info("peer_incarnation_changed", peer=peer, was=known, now=incarnation)
        self._incarnations[peer] = incarnation

    def _note_process(self, peer: int, process: int) -> None:
        """A peer's hello names its process: a new one restarted (``restarted``)."""
        if not process:
            return
        known = self._processes.get(peer)
        self._processes[peer] = process
        if known is not None and known != process and self._restarted is not None:
            self._restarted(peer)

    def _receive(self, peer: int, batch: peer_pb2.PeerBatch) -> None:
        if batch.cluster != self._cluster or batch.from_node != peer:
            raise PeerProtocolError(f"batch claims node {batch.from_node} on the link of {peer}")
        self._note_incarnation(peer, batch.incarnation)
        self._note_process(peer, batch.process)
        link = self._links[peer]
        if self._heard is not None:
            self._heard(peer)
        if batch.ping:
            link.answer(batch.ping)
        if batch.pong:
            link.answered(batch.pong)
        for wire in batch.messages:
            shard_id, msg = from_wire(wire)
            if msg.src != peer or msg.dst != self._me:
                raise PeerProtocolError(
                    f"message {msg.src}->{msg.dst} on the link {peer}->{self._me}"
                )
            self._deliver(shard_id, msg)
        if self._host_heard is not None:
            for note in batch.hosts:
                self._host_heard(
                    peer, note.shard_id, note.descriptor, note.incarnation, note.current
                )
