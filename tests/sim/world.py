"""The simulated world: one heap of timed events, N replicas, their disks, clocks and links.

Every replica is a real ``paxos.Replica`` driven exactly as the driver contract says:
writes go to a FIFO disk and their ``then_send`` leaves only once durable; ``send_now``
leaves at once; chosen values are applied in order; ticks come from each node's own clock,
which runs fast or slow within the drift bound. Ties in time break by scheduling order, never
by object identity, so a seed replays exactly.

Trace lines (``--trace``) have the columns ``time_us node event details``.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from paxos import (
    Config,
    DurableState,
    MemoryStorage,
    Message,
    NodeId,
    Ready,
    Replica,
    Rng,
    Role,
    Slot,
    Snapshot,
    Value,
)
from tests.sim.checkers import Checker
from tests.sim.disk import SimDisk
from tests.sim.network import Network
from tests.sim.rng import sub_rng

ReplicaFactory = Callable[[Config, Rng, DurableState], Replica]


def default_factory(config: Config, rng: Rng, durable: DurableState, incarnation: int) -> Replica:
    return Replica(config, rng=rng, durable=durable, incarnation=incarnation)


def encode_snapshot(values: list[Value]) -> bytes:
    out = bytearray()
    for value in values:
        out += len(value).to_bytes(4, "big")
        for cmd in value:
            out += len(cmd).to_bytes(4, "big") + cmd
    return bytes(out)


def decode_snapshot(data: bytes) -> list[Value]:
    values: list[Value] = []
    i = 0
    while i < len(data):
        count = int.from_bytes(data[i : i + 4], "big")
        i += 4
        cmds = []
        for _ in range(count):
            size = int.from_bytes(data[i : i + 4], "big")
            cmds.append(data[i + 4 : i + 4 + size])
            i += 4 + size
        values.append(tuple(cmds))
    return values


@dataclass
class SimNode:
    node_id: NodeId
    dc: int
    config: Config
    disk: SimDisk
    replica: Replica | None = None
    incarnation: int = 0
    tick_us: int = 10_000
    paused: bool = False
    missed_ticks: int = 0
    held: list[Callable[[], None]] = field(default_factory=list)
    applied: list[Value] = field(default_factory=list)
    # slot -> commands proposed through this incarnation, awaiting their slot's outcome
    awaiting: dict[Slot, list[tuple[int, bytes]]] = field(default_factory=dict)

    @property
    def up(self) -> bool:
        return self.replica is not None

    @property
    def running(self) -> bool:
        return self.replica is not None and not self.paused


@dataclass
class WorldParams:
    replicas: int = 3
    dcs: int = 3
    tick_us: int = 10_000
    drift_permille: int = 100
    drift_extreme: bool = False  # every clock at +rho or -rho: the lease's worst case
    one_way_us: dict[tuple[int, int], int] = field(default_factory=dict)
    jitter_us: int = 1_000
    disk_latency_us: tuple[int, int] = (100, 2_000)
    compact_every: int = 0  # 0: never compact
    compact_retain: int = 10
    config_overrides: dict[str, Any] = field(default_factory=dict)


class World:
    def __init__(
        self,
        seed: int,
        params: WorldParams,
        *,
        factory: ReplicaFactory = default_factory,
        trace: Callable[[str], None] | None = None,
    ) -> None:
        self.seed = seed
        self.params = params
        self.now_us = 0
        self._heap: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self._factory = factory
        self._trace_out = trace
        self._digest = hashlib.blake2b(digest_size=16)
        self.events = 0
        self.events_max = 2_000_000  # a runaway (message storm, livelock) is a finding, not a hang

        voters = tuple(NodeId(i) for i in range(1, params.replicas + 1))
        self.voters = voters
        self.checker = Checker(voters)
        dc_of = {v: (v - 1) % params.dcs for v in voters}
        self.network = Network(sub_rng(seed, "network"), dc_of, params.one_way_us)
        self.network.faults.jitter_us = params.jitter_us
        self._drift_rng = sub_rng(seed, "drift")
        self.nodes: dict[NodeId, SimNode] = {}
        for v in voters:
            cfg = Config(node_id=v, voters=voters, **params.config_overrides)
            disk = SimDisk(sub_rng(seed, f"disk{v}"), params.disk_latency_us)
            self.nodes[v] = SimNode(node_id=v, dc=dc_of[v], config=cfg, disk=disk)
        self.on_applied: Callable[[SimNode, Slot, Value], None] | None = None
        for v in voters:
            self.start(v)

    # ================================================================== event loop

    def schedule(self, at_us: int, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at_us, self._seq, fn, args))

    def run_until(self, end_us: int, stop: Callable[[], bool] | None = None) -> None:
        heap = self._heap
        while heap and heap[0][0] <= end_us:
            at_us, _, fn, args = heapq.heappop(heap)
            self.now_us = at_us
            self.checker.now_us = at_us
            self.events += 1
            try:
                fn(*args)
            except Exception as exc:  # a replica assertion: the process would have died
                self.checker.fail("replica-assertion", f"{type(exc).__name__}: {exc}")
                self._heap.clear()
                return
            self._check_reads()
            if self.events >= self.events_max:
                self.checker.fail("runaway", f"{self.events} events by t={at_us}us")
                self._heap.clear()
                return
            if stop is not None and stop():
                return
        self.now_us = max(self.now_us, end_us)

    def trace(self, node: int, event: str, detail: str = "") -> None:
        line = f"{self.now_us} n{node} {event} {detail}"
        self._digest.update(line.encode())
        if self._trace_out is not None:
            self._trace_out(line)

    def digest(self) -> str:
        return self._digest.hexdigest()

    # ================================================================== node lifecycle

    def start(self, v: NodeId) -> None:
        node = self.nodes[v]
        node.incarnation += 1
        rho = self.params.drift_permille
        if self.params.drift_extreme:
            drift = self._drift_rng.choice((-rho, rho))
        else:
            drift = self._drift_rng.randrange(-rho, rho + 1)
        node.tick_us = self.params.tick_us * (1000 + drift) // 1000
        rng = sub_rng(self.seed, f"replica{v}/{node.incarnation}")
        node.replica = self._factory(node.config, rng, node.disk.storage.state(), node.incarnation)
        node.applied = []
        node.awaiting = {}
        node.paused = False
        node.missed_ticks = 0
        node.held = []
        self.trace(v, "start", f"inc={node.incarnation} tick_us={node.tick_us}")
        self._drain(node)
        self.schedule(self.now_us + node.tick_us, self._tick, v, node.incarnation)

    def crash(self, v: NodeId) -> None:
        node = self.nodes[v]
        if node.replica is None:
            return
        lost = node.disk.crash()
        node.replica = None
        node.incarnation += 1
        node.held = []
        node.paused = False
        node.awaiting = {}
        self.trace(v, "crash", f"unsynced_writes_lost={lost}")

    def wipe(self, v: NodeId) -> None:
        """Crash ``v`` and lose its disk: it restarts from nothing and must rejoin (not vote)
        until ``paxos.rejoin`` lets it."""
        self.crash(v)
        self.nodes[v].disk.storage = MemoryStorage(voting=False)
        self.trace(v, "wipe")

    def rejoining(self) -> list[NodeId]:
        """Replicas that lost their disk and have not rejoined yet (down or up)."""
        return [v for v, n in sorted(self.nodes.items()) if not n.disk.storage.voting]

    def pause(self, v: NodeId) -> None:
        node = self.nodes[v]
        if node.running:
            node.paused = True
            self.trace(v, "pause")

    def resume(self, v: NodeId) -> None:
        node = self.nodes[v]
        if node.replica is None or not node.paused:
            return
        node.paused = False
        self.trace(v, "resume", f"missed_ticks={node.missed_ticks}")
        # Contract item 7: the clock catches up before anything else is handled.
        for _ in range(node.missed_ticks):
            node.replica.tick()
            self._drain(node)
        node.missed_ticks = 0
        held, node.held = node.held, []
        for action in held:
            if node.running:
                action()

    # ================================================================== driving replicas

    def _tick(self, v: NodeId, incarnation: int) -> None:
        node = self.nodes[v]
        if node.incarnation != incarnation or node.replica is None:
            return
        self.schedule(self.now_us + node.tick_us, self._tick, v, incarnation)
        if node.paused:
            node.missed_ticks += 1
            return
        node.replica.tick()
        self._drain(node)

    def send(self, msg: Message) -> None:
        for latency in self.network.deliveries(msg.src, msg.dst):
            self.schedule(
                self.now_us + latency, self._deliver, msg, self.nodes[msg.dst].incarnation
            )

    def _deliver(self, msg: Message, incarnation: int) -> None:
        node = self.nodes[msg.dst]
        if node.replica is None or node.incarnation != incarnation:
            return
        if node.paused:
            node.held.append(lambda: self._deliver(msg, node.incarnation))
            return
        self.trace(msg.dst, "recv", f"{type(msg).__name__} from n{msg.src}")
        node.replica.step(msg)
        self._drain(node)

    def _disk_done(self, v: NodeId, incarnation: int) -> None:
        node = self.nodes[v]
        if node.incarnation != incarnation or node.replica is None:
            return
        write = node.disk.complete()  # durable now, whatever the process is doing
        self.checker.on_durable(v, write.record)
        if write.record.voting:
            self.trace(v, "rejoined", f"promised={write.record.promised}")
        if node.paused:
            node.held.append(lambda: self._after_write(node, write.seq, write.then_send))
            return
        self._after_write(node, write.seq, write.then_send)

    def _after_write(self, node: SimNode, seq: int, then_send: tuple[Message, ...]) -> None:
        assert node.replica is not None
        for msg in then_send:  # contract item 3: only after the write is durable
            self.send(msg)
        node.replica.write_done(seq)
        self._drain(node)

    def drain(self, v: NodeId) -> None:
        self._drain(self.nodes[v])

    def _drain(self, node: SimNode) -> None:
        replica = node.replica
        assert replica is not None
        ready = replica.take_ready()
        if ready.is_empty():
            return
        self._execute(node, ready)

    def _execute(self, node: SimNode, ready: Ready) -> None:
        v = node.node_id
        for write in ready.writes:
            done_at = node.disk.submit(write, self.now_us)
            self.schedule(done_at, self._disk_done, v, node.incarnation)
        for msg in ready.send_now:
            self.send(msg)
        if ready.snapshot is not None:
            self._restore(node, ready.snapshot)
        for entry in ready.chosen:
            self._apply(node, entry.slot, entry.value)
        if ready.role_change is not None:
            change = ready.role_change
            self.trace(v, "role", f"{change.role.value} ballot={change.ballot}")
        if node.replica is not None and self.params.compact_every:
            self._maybe_compact(node)

    def _restore(self, node: SimNode, snap: Snapshot) -> None:
        values = decode_snapshot(snap.data)
        if len(values) != snap.slot:
            self.checker.fail(
                "snapshot", f"n{node.node_id} snapshot of {snap.slot} holds {len(values)}"
            )
        for slot, value in enumerate(values, start=1):
            self.checker.on_applied(node.node_id, Slot(slot), value)
        node.applied = values
        self.trace(node.node_id, "restore", f"slot={snap.slot}")

    def _apply(self, node: SimNode, slot: Slot, value: Value) -> None:
        if slot != len(node.applied) + 1:
            self.checker.fail(
                "prefix", f"n{node.node_id} applied slot {slot} after {len(node.applied)}"
            )
            return
        node.applied.append(value)
        self.checker.on_applied(node.node_id, slot, value)
        self.trace(node.node_id, "apply", f"slot={slot} commands={len(value)}")
        if self.on_applied is not None:
            self.on_applied(node, slot, value)

    def _maybe_compact(self, node: SimNode) -> None:
        replica = node.replica
        assert replica is not None
        params = self.params
        applied = len(node.applied)
        if applied - replica.snapshot_slot >= params.compact_every + params.compact_retain:
            slot = Slot(applied - params.compact_retain)
            if replica.compact(slot, encode_snapshot(node.applied[:slot])):
                self.trace(node.node_id, "compact", f"through={slot}")
                self._drain(node)

    def _check_reads(self) -> None:
        """Lease holders, and what each replica would promise a bounded-staleness read."""
        holders = []
        for v, n in self.nodes.items():
            if not n.running or n.replica is None:
                continue
            if n.replica.lease_valid():
                holders.append(v)
            applied = Slot(len(n.applied))
            bound = n.replica.stale_read_bound(applied)
            if bound is not None:
                self.checker.on_stale_read_bound(v, applied, bound * self.params.tick_us)
        if len(holders) > 1:
            self.checker.on_lease_holders(holders)

    # ================================================================== inspection

    def leader(self) -> NodeId | None:
        """A running replica in phase 2 with the highest ballot, if any."""
        best: tuple[int, NodeId] | None = None
        for v, n in sorted(self.nodes.items()):
            if n.running and n.replica is not None and n.replica.role is Role.LEADER:
                ballot = n.replica.leader_ballot
                if ballot is not None and (best is None or ballot.round > best[0]):
                    best = (ballot.round, v)
        return best[1] if best is not None else None
