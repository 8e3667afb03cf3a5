"""A watch client in the simulated world, and the checks on what it is told.

One watcher of every key, as ``kvstore.watching`` runs one: connected to one running node's
hub, on a node that holds a replica of every range (``kvstore.model.watch.covering``, as the
runtime refuses a watch otherwise); its history there is read when it connects and handed
over a little later (changes fed meanwhile are held); it takes deliveries every few
milliseconds and resumes from its last position on another node when its node crashes, when
its node stops holding every range (the runtime ends the watch then), and now and then for
no reason.

Checks, as each delivery is taken: a change the watcher was told of before is a
``watch-duplicate``; a key's revisions going backwards a ``watch-order``; a change no node
ever made (or another value) a ``watch-truth``. At the end, connected to a node of the
healed core and caught up: every change any node made between the watcher's start and its
position, key by key, was delivered (else ``watch-gap``). A watch ended by compaction
starts a new span of checks from the node's present.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

from cluster.keys import KeySpan
from cluster.position import Position
from kvstore.model import KvStateMachine
from kvstore.model.node import Node
from kvstore.model.watch import (
    ShardHistory,
    Watcher,
    WatchNotHostedError,
    covering,
    shard_history,
)
from paxos import NodeId
from tests.sim.world import World

EVERY_KEY = KeySpan(b"", b"")
POLL_US = 5_000
RECONNECT_US = (1_000_000, 4_000_000)  # a client moves to another node now and then
HAND_OVER_US = (0, 30_000)  # from reading the history to handing it over


@dataclass
class _Span:
    """One uninterrupted stretch of the watcher's life: from ``start`` to where it got."""

    start: Position
    reached: Position
    delivered: dict[tuple[bytes, int], bytes | None] = field(default_factory=dict)


class SimWatcher:
    def __init__(self, world: World, rng: random.Random, *, skips_after_reconnect: bool) -> None:
        """``skips_after_reconnect``: a planted bug, a client that loses the first change
        after it moves to another node (as one resuming from "now" instead of its token)."""
        self._world = world
        self._rng = rng
        self._bug = skips_after_reconnect
        self._ids = itertools.count(1)
        self._node: NodeId | None = None
        self._incarnation = 0
        self._watcher: Watcher | None = None
        self.position = Position.at(EVERY_KEY, 0)
        self._spans: list[_Span] = [_Span(self.position, self.position)]
        self._last_revision: dict[bytes, int] = {}
        self._skip_next = False
        self.reconnects = 0
        world.on_installed = self._installed
        world.on_relaid = self._relaid

    @property
    def spans(self) -> int:
        return len(self._spans)

    @property
    def delivered(self) -> int:
        return sum(len(span.delivered) for span in self._spans)

    def start(self) -> None:
        self._world.schedule(self._world.now_us + POLL_US, self._poll)
        self._world.schedule(self._world.now_us + self._rng.randrange(*RECONNECT_US), self._move)

    # ------------------------------------------------------------------ connection

    def _connected(self) -> bool:
        v = self._node
        if v is None:
            return False
        sim = self._world.nodes[v]
        return sim.hub is not None and sim.incarnation == self._incarnation and sim.running

    def _connect(self, v: NodeId) -> None:
        sim = self._world.nodes[v]
        assert sim.hub is not None and sim.node is not None
        self._node, self._incarnation = v, sim.incarnation
        watch_id = next(self._ids)
        self._watcher = sim.hub.add(watch_id, EVERY_KEY, self.position, prev_kv=False, now=False)
        self.reconnects += 1
        if self._bug and self.reconnects > 1:
            self._skip_next = True
        self._read_then_hand_over(v, self._watcher, 0)

    def _read_then_hand_over(self, v: NodeId, watcher: Watcher, sync: int) -> None:
        """Read the watcher's history on ``v`` now; hand it over a little later (as the
        runtime reads it off the loop), or read again later while a shard here waits for
        its first state."""
        sim = self._world.nodes[v]
        if not _covers(sim.node):
            self._leave()  # as the runtime's catch-up ends the watch: resume elsewhere
            return
        parts = self._histories(v, watcher.position)
        delay = self._rng.randrange(*HAND_OVER_US) if parts is not None else 10_000
        self._world.schedule(
            self._world.now_us + delay, self._hand_over, v, sim.incarnation, watcher, sync, parts
        )

    def _hand_over(
        self,
        v: NodeId,
        incarnation: int,
        watcher: Watcher,
        sync: int,
        parts: list[ShardHistory] | None,
    ) -> None:
        sim = self._world.nodes[v]
        if sim.hub is None or sim.incarnation != incarnation or sim.node is None:
            return
        if watcher is not self._watcher:
            return  # the client left this watch (it reads no more for it)
        if parts is None:
            self._read_then_hand_over(v, watcher, sync)
            return
        sim.hub.caught_up(watcher.watch_id, parts, sync)

    def _histories(self, v: NodeId, position: Position) -> list[ShardHistory] | None:
        """Each hosted shard's history after ``position``, read as the runtime reads it
        (None: a shard here waits for its first state, or split or merged since the node
        heard of it, so the read would be incomplete)."""
        sim = self._world.nodes[v]
        node = sim.node
        assert node is not None
        if any(node.awaiting(d.range_id) for d in node.descriptors()):
            return None
        parts = [
            shard_history(sim.disk.kv.engine(d.range_id), d, position) for d in node.descriptors()
        ]
        if any(part is None for part in parts):
            return None  # a shard split or merged since the node heard: read again later
        return [part for part in parts if part is not None]

    def _installed(self, v: NodeId, _groups: list[int]) -> None:
        if v != self._node or not self._connected() or self._watcher is None:
            return
        hub = self._world.nodes[v].hub
        assert hub is not None
        sync = hub.resync(self._watcher.watch_id)
        if sync is not None:
            self._read_then_hand_over(v, self._watcher, sync)

    def _relaid(self, v: NodeId) -> None:
        """The runtime's ``recheck``: a watch on a node that no longer holds every key it
        watches ends (what it was fed and not yet told is dropped); the client resumes."""
        if v == self._node and self._connected() and not _covers(self._world.nodes[v].node):
            self._leave()

    def _move(self) -> None:
        self._leave()
        self._world.schedule(self._world.now_us + self._rng.randrange(*RECONNECT_US), self._move)

    def _leave(self) -> None:
        if self._connected() and self._watcher is not None:
            hub = self._world.nodes[self._node].hub  # type: ignore[index]
            assert hub is not None
            hub.remove(self._watcher.watch_id)
        self._node = None
        self._watcher = None

    def _poll(self) -> None:
        self._world.schedule(self._world.now_us + POLL_US, self._poll)
        if not self._connected():
            self._leave()
            running = [
                v
                for v, sim in sorted(self._world.nodes.items())
                if sim.running and sim.hub is not None and _covers(sim.node)
            ]
            if running:
                self._connect(self._rng.choice(running))
            return
        self.take()

    # ------------------------------------------------------------------ checks

    def take(self) -> None:
        watcher = self._watcher
        if watcher is None:
            return
        if watcher.canceled is not None:
            self._restart_from_now()
            return
        deliveries, watcher.outbox = watcher.outbox, []
        span = self._spans[-1]
        truth = self._world.watch_truth
        for delivery in deliveries:
            for event in delivery.events:
                change = event.change
                if self._skip_next:
                    self._skip_next = False
                    continue
                key = (change.key, change.revision)
                value = change.record.value if change.record is not None else None
                if key in span.delivered:
                    self._world.fail(
                        "watch-duplicate", f"{change.key!r} at revision {change.revision} twice"
                    )
                if change.revision <= self._last_revision.get(change.key, 0):
                    self._world.fail(
                        "watch-order",
                        f"{change.key!r}: revision {change.revision} after"
                        f" {self._last_revision[change.key]}",
                    )
                if truth.get(key, b"\xffnever") != value:
                    self._world.fail(
                        "watch-truth", f"{change.key!r} at {change.revision}: not made"
                    )
                span.delivered[key] = value
                self._last_revision[change.key] = change.revision
            self.position = delivery.position
        if watcher._held is None:  # caught up: its position is all it was told
            self.position = watcher.position
        span.reached = self.position

    def _restart_from_now(self) -> None:
        """Compacted past the position: a new span of checks from the node's present."""
        v = self._node
        self._leave()
        if v is None:
            return
        sim = self._world.nodes[v]
        node = sim.node
        if node is None:
            return
        now = Position.at(EVERY_KEY, 0)
        for d in node.descriptors():
            machine = KvStateMachine(sim.disk.kv.engine(d.range_id), initial=d)
            now = now.advanced(d.span, machine.revision)
        self.position = now
        self._spans.append(_Span(now, now))
        self._last_revision = {}

    def finish(self, core: list[NodeId]) -> None:
        """Caught up at a core node that holds every range, if one does; then every change
        made between each span's start and where it got must have been delivered."""
        self._leave()
        serving = [
            v for v in core if self._world.nodes[v].running and _covers(self._world.nodes[v].node)
        ]
        if serving:
            self._catch_up_at(serving[0])
        truth = self._world.watch_truth
        for span in self._spans:
            for key, revision in truth:
                if (
                    span.start.is_new(key, revision)
                    and not span.reached.is_new(key, revision)
                    and (key, revision) not in span.delivered
                ):
                    self._world.fail("watch-gap", f"{key!r} at revision {revision} never delivered")

    def _catch_up_at(self, v: NodeId) -> None:
        sim = self._world.nodes[v]
        assert sim.hub is not None
        self._connect(v)
        parts = self._histories(v, self.position)
        if parts is not None and self._watcher is not None:
            sim.hub.caught_up(self._watcher.watch_id, parts)
            self.take()


def _covers(node: Node | None) -> bool:
    """Whether ``node`` holds a replica of every range (it may serve a watch of every key)."""
    if node is None:
        return False
    try:
        covering(node.descriptors(), EVERY_KEY)
    except WatchNotHostedError:
        return False
    return True
