"""The simulated world: one heap of timed events, N nodes, their disks, clocks and links.

Every node is a real ``kvstore.model.Node`` (hosting one replica of each Paxos group) with
the real KV state machine over an in-memory store, driven exactly as its contract says: a
disk job is one atomic step on a FIFO disk (its Paxos records, installs, applies and
snapshot dumps), its follow-up messages leave only once it is durable; messages to send
leave at once; ticks come from each node's own clock, which runs fast or slow within the
drift bound. Ties in time break by scheduling order, never by object identity, so a seed
replays exactly.

Trace lines (``--trace``) have the columns ``time_us node event details``.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cluster import ClusterConfig, RangeMap
from cluster.config import History, NodeSpec, Sharding, ShardSpec
from cluster.keys import KeySpan
from cluster.ranges import (
    META_RANGE_ID,
    RangeDescriptor,
    base_slot_of,
    hosted_layout,
    initial_layout,
    meta_descriptor,
)
from kvstore.model import ApplyResult, Command, KvStateMachine, RequestId, snapshot
from kvstore.model.commands import (
    Invalid,
    MergeDone,
    OutOfRange,
    RangesRecorded,
    Reconfigured,
    RecordRanges,
    SplitDone,
)
from kvstore.model.jobs import Changed, run_job
from kvstore.model.node import (
    Answer,
    Applied,
    DiskJob,
    Dumped,
    GroupStart,
    Node,
    NotLeaderRefusal,
    Token,
    hosted_at_start,
)
from kvstore.model.ranges import decode_descriptor
from kvstore.model.watch import WatchHub
from paxos import Ballot, Config, NodeId, NullLogger, Replica, Role, Slot, Value
from tests.sim.checkers import Checker, KeyChecker
from tests.sim.disk import SimDisk
from tests.sim.network import Network
from tests.sim.rng import sub_rng

ReplicaFactory = Callable[..., Replica]  # paxos.Replica's signature
default_factory: ReplicaFactory = Replica


# What a replica may answer in a group's slots after its configuration ended: every command
# is told where its keys went (a repeated stop, its first outcome; a change of the ended
# configuration, a refusal). Anything else applied there would be lost to the successor.
_AFTER_THE_STOP = (OutOfRange, Reconfigured, Invalid)


def split_points(groups: int) -> list[bytes]:
    """Where the initial groups' spans meet: the key space of ``tests.sim.workload`` cut
    into ``groups`` pieces."""
    return [b"k%02d" % (12 * g // groups) for g in range(1, groups)]


def sim_cluster(  # noqa: PLR0917 - the world's shape, in the order it is drawn
    voters: tuple[NodeId, ...],
    dcs: int,
    groups: int,
    split_size_bytes: int = 0,
    history: History | None = None,
    spares: int = 0,
) -> ClusterConfig:
    """Nodes over ``dcs`` datacenters; ``groups`` groups, each with every voter as a
    replica, and ``spares`` more nodes that hold nothing at first (reconfigurations move
    replicas onto them); a group past ``split_size_bytes`` (0: never) splits by itself
    (``[sharding]``); ``history``: what each group keeps (``[history]``; default: the
    config's)."""
    every = tuple(NodeId(v) for v in range(1, len(voters) + spares + 1))
    names = tuple(f"d{d}" for d in range(dcs))
    bounds = [b"", *split_points(groups), b""]
    return ClusterConfig(
        name="sim",
        tick_ms=10,
        datacenters=names,
        nodes=tuple(NodeSpec(v, names[(v - 1) % dcs], f"sim:{v}") for v in every),
        shards=tuple(
            ShardSpec(g, KeySpan(bounds[g - 1], bounds[g]), tuple(voters), None)
            for g in range(1, groups + 1)
        ),
        # Automatic merges where automatic splits are on: after a second of quiet, under a
        # quarter of the split size (the policy's own bound).
        sharding=Sharding(
            split_size_mb=split_size_bytes / (1 << 20),
            merge_size_mb=split_size_bytes / (1 << 20),
            merge_after_s=1.0,
        ),
        history=history or History(),
    )


@dataclass
class SimNode:
    node_id: NodeId
    dc: int
    disk: SimDisk
    node: Node | None = None
    incarnation: int = 0
    tick_us: int = 10_000
    paused: bool = False
    missed_ticks: int = 0
    held: list[Callable[[], None]] = field(default_factory=list)
    applied: dict[int, list[Value]] = field(default_factory=dict)  # group -> values, by slot
    committed: dict[int, int] = field(default_factory=dict)  # group -> slots readable now
    # The job the disk has started (its applies computed, uncommitted), with their results.
    started: tuple[DiskJob, list[Applied], list[Dumped], dict[int, int]] | None = None
    # The watches this process serves (gone with it), fed each committed apply's changes,
    # and the changes of the job the disk has started.
    hub: WatchHub | None = None
    started_changes: list[Changed] = field(default_factory=list)

    @property
    def up(self) -> bool:
        return self.node is not None

    @property
    def running(self) -> bool:
        return self.node is not None and not self.paused

    def replica(self, group: int) -> Replica | None:
        node = self.node
        return node.replica(group) if node is not None and node.hosts(group) else None


@dataclass
class WorldParams:
    replicas: int = 3
    dcs: int = 3
    groups: int = 1
    tick_us: int = 10_000
    drift_permille: int = 100
    drift_extreme: bool = False  # every clock at +rho or -rho: the lease's worst case
    one_way_us: dict[tuple[int, int], int] = field(default_factory=dict)
    jitter_us: int = 1_000
    disk_latency_us: tuple[int, int] = (100, 2_000)
    compact_every: int = 0  # 0: never compact
    split_size_bytes: int = 0  # automatic splits past this size (0: none)
    history: History = field(default_factory=History)  # [history]: when groups compact
    config_overrides: dict[str, Any] = field(default_factory=dict)
    spares: int = 0  # nodes beyond the replicas, holding nothing at first (``tests.sim.mover``)


class World:
    def __init__(
        self,
        seed: int,
        params: WorldParams,
        *,
        factory: ReplicaFactory = default_factory,
        trace: Callable[[str], None] | None = None,
        node_class: type[Node] = Node,
        machine_class: type[KvStateMachine] = KvStateMachine,
    ) -> None:
        """``node_class`` and ``machine_class``: the simulator's planted bugs pass broken
        ones (``tests.sim.bugs``)."""
        self.seed = seed
        self._node_class = node_class
        self._machine_class = machine_class
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
        self.voters = voters  # the replicas of every group at first
        # Every node, spares included (the same as ``voters`` in a world without spares).
        self.node_ids = tuple(NodeId(i) for i in range(1, params.replicas + params.spares + 1))
        # The nodes of the cluster now: the replicas at first; a spare once it joined, until
        # it is removed (``tests.sim.members``). Faults, moves and clients pick among them.
        self.in_service: list[NodeId] = list(voters)
        self.removed: set[NodeId] = set()  # removed from the cluster: down for good
        self.leaving: set[NodeId] = set()  # being drained to be removed: no replica goes there
        self.cluster = sim_cluster(
            voters,
            params.dcs,
            params.groups,
            params.split_size_bytes,
            params.history,
            params.spares,
        )
        # The range map as it truly is: every group's newest descriptor (a split's, as soon
        # as any replica applied it). Clients route by it, as if meta were always current.
        self.truth: dict[int, RangeDescriptor] = {
            d.range_id: d for d in initial_layout(self.cluster)
        }
        self.checkers = {g: Checker(voters) for g in [META_RANGE_ID, *self.truth]}
        # Every descriptor any range ever had: all the meta range may ever be told of.
        self.ever: set[RangeDescriptor] = set(self.truth.values())
        self.meta = meta_descriptor(self.cluster)
        self._recording: dict[Token, tuple[NodeId, int, list[RangeDescriptor]]] = {}
        self.retired: set[int] = set()  # groups merged into another (tombstones)
        # Groups whose configuration ended (``Reconfigure``): the slot of the stop, and the
        # successor's state at its base as the first replica to make it left it.
        self.ended: dict[int, int] = {}
        self._successor_bases: dict[int, bytes] = {}
        self.keys = KeyChecker()  # per key, across groups: linearizable, exactly once
        self._world_checker = Checker(voters)  # world-level findings (liveness, runaways)
        self._next_range_id = 100
        dc_of = {v: (v - 1) % params.dcs for v in self.node_ids}
        self.network = Network(sub_rng(seed, "network"), dc_of, params.one_way_us)
        self.network.faults.jitter_us = params.jitter_us
        self._drift_rng = sub_rng(seed, "drift")
        self.nodes: dict[NodeId, SimNode] = {}
        for v in self.node_ids:
            disk = SimDisk(sub_rng(seed, f"disk{v}"), params.disk_latency_us)
            self.nodes[v] = SimNode(node_id=v, dc=dc_of[v], disk=disk)
        # Snapshots dumped so far, by group and content: the values they stand for.
        self._snapshots: dict[tuple[int, int, bytes], list[Value]] = {}
        self._tokens = 0
        # What each replica would promise a read (lease read point, applied, staleness
        # bound), recomputed for nodes touched since the last event (``_check_reads``).
        self._promises: dict[tuple[NodeId, int], tuple[Slot | None, Slot, int | None]] = {}
        self._touched: set[NodeId] = set()
        # Promises to check again at this event (changed, or their group's acks did); the
        # moments time alone could break one (``_check_reads``); acks seen per group.
        self._dirty: set[tuple[NodeId, int]] = set()
        self._fires: list[tuple[int, int, tuple[NodeId, int], tuple[Any, ...]]] = []
        self._acks_seen: dict[int, int] = {}
        self._fire_seq = itertools.count()
        # Per (receiver, sender): the sender's incarnation on the newest message delivered.
        self._incarnation_seen: dict[tuple[NodeId, NodeId], int] = {}
        self._holders_dirty: set[int] = set()
        # Per group: the kept promises' keys, and the nodes whose promise holds a lease.
        self._promise_keys: dict[int, set[tuple[NodeId, int]]] = {}
        self._holders: dict[int, set[NodeId]] = {}
        self.on_applied: (
            Callable[[SimNode, int, Slot, Value, list[tuple[RequestId | None, ApplyResult]]], None]
            | None
        ) = None
        self.on_answer: Callable[[Token, Answer], None] | None = None
        # Answers owed to other simulated clients than the workload, by token.
        self.answer_to: dict[Token, Callable[[Answer], None]] = {}
        # Told of every meta-range result any node applies (the lease client checks them).
        self.on_meta_applied: Callable[[NodeId, ApplyResult], None] | None = None
        # Told of ended leases a meta leader wants detached everywhere (``tests.sim.detacher``).
        self.on_leases_to_detach: Callable[[NodeId, list[int]], None] | None = None
        self.on_read: Callable[[SimNode, Token], None] | None = None
        # Reads of other simulated clients than the workload, by token: told when served.
        self.read_to: dict[Token, Callable[[SimNode], None]] = {}
        # Told of each group a node wants split (``Effects.splits_wanted``).
        self.on_split_wanted: Callable[[NodeId, int], None] | None = None
        # Told of each left range a node wants its right neighbour merged into.
        self.on_merge_wanted: Callable[[NodeId, int], None] | None = None
        self.on_merge_unfinished: Callable[[int], None] | None = None
        # Every change any node applied: (key, revision) -> value (None: a delete); and who
        # to tell of snapshot installs (watchers there catch up again) and of changes of a
        # node's hosted ranges (a watch there ends if the node no longer holds its keys).
        self.watch_truth: dict[tuple[bytes, int], bytes | None] = {}
        self.on_installed: Callable[[NodeId, list[int]], None] | None = None
        self.on_relaid: Callable[[NodeId], None] | None = None
        for v in self.in_service:
            self.start(v)

    # ================================================================== findings

    def fail(self, kind: str, detail: str) -> None:
        self._world_checker.fail(kind, detail)

    @property
    def groups(self) -> list[int]:
        """Every group that exists: meta, the configured ones and every one split off since
        (not the tombstones of merges)."""
        return [META_RANGE_ID, *sorted(self.truth)]

    def new_range_id(self) -> int:
        """A range id never used (the meta range's allocator, in the real cluster)."""
        self._next_range_id += 1
        return self._next_range_id

    def _checker(self, group: int) -> Checker:
        checker = self.checkers.get(group)
        if checker is None:
            known = self.truth.get(group)
            replicas = tuple(NodeId(r) for r in known.replicas) if known else self.voters
            checker = self.checkers[group] = Checker(replicas)
            checker.now_us = self.now_us
            if base_slot_of(self.cluster, group):
                # Slot 1 is the state the group was born with: no value, on every replica.
                checker.chosen[Slot(1)] = ()
        return checker

    @property
    def violations(self) -> list[Any]:
        found = list(self._world_checker.violations)
        found += [str(v) for v in self.keys.violations]
        for group, checker in sorted(self.checkers.items()):
            found += [
                f"[{v.kind}] in group {group} at t={v.time_us}us: {v.detail}"
                for v in checker.violations
            ]
        return found

    @property
    def chosen_slots(self) -> int:
        return sum(len(c.chosen) for c in self.checkers.values())

    # ================================================================== event loop

    def schedule(self, at_us: int, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at_us, self._seq, fn, args))

    def run_until(self, end_us: int, stop: Callable[[], bool] | None = None) -> None:
        heap = self._heap
        while heap and heap[0][0] <= end_us:
            at_us, _, fn, args = heapq.heappop(heap)
            self.now_us = at_us
            for checker in self.checkers.values():
                checker.now_us = at_us
            self._world_checker.now_us = at_us
            self.keys.now_us = at_us
            self.events += 1
            try:
                fn(*args)
            except Exception as exc:  # a replica assertion: the process would have died
                self.fail("replica-assertion", f"{type(exc).__name__}: {exc}")
                self._heap.clear()
                return
            self._check_reads()
            if self.events >= self.events_max:
                self.fail("runaway", f"{self.events} events by t={at_us}us")
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
        sim = self.nodes[v]
        sim.incarnation += 1
        # A new process knows no peer's incarnation yet (the first message from each is news).
        for pair in [p for p in self._incarnation_seen if p[0] == v]:
            del self._incarnation_seen[pair]
        rho = self.params.drift_permille
        if self.params.drift_extreme:
            drift = self._drift_rng.choice((-rho, rho))
        else:
            drift = self._drift_rng.randrange(-rho, rho + 1)
        sim.tick_us = self.params.tick_us * (1000 + drift) // 1000
        disk = sim.disk
        layout = {d.range_id: d for d in hosted_layout(self.cluster)}
        for group, raw in disk.kv.ranges().items():
            layout[group] = decode_descriptor(raw)

        def open_group(descriptor: RangeDescriptor) -> GroupStart:
            group = descriptor.range_id
            machine = KvStateMachine(disk.kv.engine(group), initial=descriptor)
            return GroupStart(
                durable=disk.storage_of(group).state(),
                applied_slot=machine.applied_slot,
                placed_leader_dc=machine.leader_dc,
                descriptor=machine.descriptor or descriptor,
                successors=machine.successors,
                frozen_slot=machine.frozen_slot,
                merged_into=machine.merged_into,
                ended_into=machine.ended_into,
                reconfigured_from=machine.reconfigured_from,
                disks=tuple(sorted(machine.disk_incarnations.items())),
                born_as=machine.born_as,
            )

        starts = hosted_at_start(v, layout, open_group, disk_incarnation=disk.incarnation)
        incarnation = sim.incarnation
        factory = self._factory

        def make_replica(config: Config, **kw: Any) -> Replica:
            return factory(config, **kw)

        sim.node = self._node_class(
            self.cluster,
            v,
            starts,
            rng_for=lambda group: sub_rng(self.seed, f"replica{v}/{group}/{incarnation}"),
            incarnation=incarnation,
            logger_for=lambda _: NullLogger(),
            paxos_overrides=self.params.config_overrides,
            compact_every_slots=self.params.compact_every or 1 << 60,
            make_replica=make_replica,
            founding=disk.founding,
            disk_incarnation=disk.incarnation,
        )
        # What a restarted node applied survives in its state machine; the applied values
        # are known by slot from the ground truth (they were checked when first applied).
        sim.applied = {
            group: self._values_through(group, start.applied_slot)
            for group, start in starts.items()
        }
        sim.committed = {group: start.applied_slot for group, start in starts.items()}
        sim.started = None
        sim.paused = False
        sim.missed_ticks = 0
        sim.held = []
        sim.hub = WatchHub()
        self.trace(v, "start", f"inc={sim.incarnation} tick_us={sim.tick_us}")
        self._drain(sim)
        self.schedule(self.now_us + sim.tick_us, self._tick, v, sim.incarnation)

    def _values_through(self, group: int, slot: int) -> list[Value]:
        chosen = self._checker(group).chosen
        return [chosen[Slot(s)] for s in range(1, slot + 1)]

    def join(self, v: NodeId) -> None:
        """A spare node joined (meta registered it): it starts, and is in service."""
        self.in_service = sorted({*self.in_service, v})
        self.start(v)

    def remove(self, v: NodeId) -> None:
        """A node left the cluster for good (meta removed it): it stops, never to return."""
        self.crash(v)
        self.removed.add(v)
        self.leaving.discard(v)
        self.in_service = [n for n in self.in_service if n != v]
        self.trace(v, "removed")

    def crash(self, v: NodeId) -> None:
        sim = self.nodes[v]
        if sim.node is None:
            return
        lost = sim.disk.crash()
        sim.node = None
        sim.hub = None
        sim.incarnation += 1
        sim.held = []
        sim.paused = False
        self._touched.add(v)
        self.trace(v, "crash", f"unsynced_jobs_lost={lost}")

    def wipe(self, v: NodeId) -> None:
        """Crash ``v`` and lose its disk: it restarts from nothing and must rejoin (not vote)
        until ``paxos.rejoin`` lets it."""
        self.crash(v)
        self.nodes[v].disk.wipe()
        self.trace(v, "wipe")

    def rejoining(self) -> list[NodeId]:
        """Nodes with a replica that lost its disk and has not rejoined yet (down or up)."""
        return [
            v
            for v, sim in sorted(self.nodes.items())
            if not all(
                sim.disk.storage_of(d.range_id).voting
                for d in [self.meta, *self.truth.values()]
                if v in d.replicas
            )
        ]

    def awaiting_base(self) -> list[NodeId]:
        """Nodes hosting a group split off another that still waits for its first state (it
        learned of the split from a snapshot of the parent): only a replica that applied the
        split can give it, and that one may be outside any quorum the liveness phase heals."""
        return [
            v
            for v, sim in sorted(self.nodes.items())
            if sim.node is not None and any(sim.node.awaiting(g) for g in sim.node.group_ids())
        ]

    def pause(self, v: NodeId) -> None:
        sim = self.nodes[v]
        if sim.running:
            sim.paused = True
            self._touched.add(v)
            self.trace(v, "pause")

    def resume(self, v: NodeId) -> None:
        sim = self.nodes[v]
        if sim.node is None or not sim.paused:
            return
        sim.paused = False
        self._touched.add(v)
        self.trace(v, "resume", f"missed_ticks={sim.missed_ticks}")
        # Contract item 7: the clock catches up before anything else is handled.
        for _ in range(sim.missed_ticks):
            sim.node.tick()
            self._drain(sim)
        sim.missed_ticks = 0
        held, sim.held = sim.held, []
        for action in held:
            if sim.running:
                action()

    # ================================================================== driving nodes

    def _tick(self, v: NodeId, incarnation: int) -> None:
        sim = self.nodes[v]
        if sim.incarnation != incarnation or sim.node is None:
            return
        self.schedule(self.now_us + sim.tick_us, self._tick, v, incarnation)
        if sim.paused:
            sim.missed_ticks += 1
            return
        sim.node.tick()
        self._drain(sim)

    def send(self, group: int, msg: Any) -> None:
        for latency in self.network.deliveries(msg.src, msg.dst):
            self.schedule(
                self.now_us + latency,
                self._deliver,
                group,
                msg,
                self.nodes[msg.dst].incarnation,
                self.nodes[msg.src].incarnation,
            )

    def _deliver(self, group: int, msg: Any, incarnation: int, sender: int = 0) -> None:
        """``sender``: the sending process's incarnation. Every message names it, as every
        ``PeerBatch`` names its process in the runtime, so a peer's restart is noticed on
        the first message from its new life (not only from a ping, which a busy peer never
        sends)."""
        sim = self.nodes[msg.dst]
        if sim.node is None or sim.incarnation != incarnation:
            return
        if sim.paused:
            sim.held.append(lambda: self._deliver(group, msg, sim.incarnation, sender))
            return
        seen = self._incarnation_seen.get((msg.dst, msg.src))
        if sender and (seen is None or sender > seen):
            self._incarnation_seen[(msg.dst, msg.src)] = (seen_new := sender)
            if seen is not None and seen_new != seen:
                sim.node.peer_restarted(msg.src)
        self.trace(msg.dst, "recv", f"{type(msg).__name__} from n{msg.src} g{group}")
        sim.node.step(group, msg)
        self._drain(sim)

    def new_token(self) -> Token:
        self._tokens += 1
        return self._tokens

    def submit(self, v: NodeId, group: int, command: Command, token: Token) -> Any:
        """A client's command to node ``v`` (running): the node's immediate answer."""
        sim = self.nodes[v]
        assert sim.node is not None
        if not sim.node.hosts(group):
            return NotLeaderRefusal(None)  # a node that has not learned of the group yet
        outcome = sim.node.submit(group, command, token)
        self._drain(sim)
        return outcome

    def read(self, v: NodeId, group: int, token: Token) -> Any:
        """A client's linearizable read at node ``v`` (running): the node's immediate answer;
        once a local read may be served, ``on_read`` is called with the token."""
        sim = self.nodes[v]
        assert sim.node is not None
        if not sim.node.hosts(group):
            return NotLeaderRefusal(None)
        outcome = sim.node.read(group, token)
        self._drain(sim)
        return outcome

    def transfer(self, v: NodeId, group: int, to: NodeId) -> bool:
        sim = self.nodes[v]
        assert sim.node is not None
        started = sim.node.transfer(group, to)
        self._drain(sim)
        return started

    def drain(self, v: NodeId) -> None:
        self._drain(self.nodes[v])

    def _drain(self, sim: SimNode) -> None:
        node = sim.node
        assert node is not None
        self._touched.add(sim.node_id)
        effects = node.take_effects()
        for job in effects.jobs:
            start_at, done_at = sim.disk.submit(job, self.now_us)
            self.schedule(start_at, self._disk_start, sim.node_id, sim.incarnation, job)
            self.schedule(done_at, self._disk_done, sim.node_id, sim.incarnation)
        for sends in effects.sends.values():
            for group, msg in sends:
                self.send(group, msg)
        for ping in effects.pings:
            self.send(0, ping)  # node-to-node liveness: no group's (``Node.step`` knows it)
        for host in effects.hosts:
            self.send(host.group_id, host)
        for token, answer in effects.answers:
            if token in self._recording:
                self._recorded(token, answer)
            elif token in self.answer_to:
                self.answer_to.pop(token)(answer)
            elif self.on_answer is not None:
                self.on_answer(token, answer)
        for token in effects.reads:
            if token in self.read_to:
                self.read_to.pop(token)(sim)
            elif self.on_read is not None:
                self.on_read(sim, token)
        for group in effects.splits_wanted:
            if self.on_split_wanted is not None:
                self.on_split_wanted(sim.node_id, group)
        for group in effects.merges_wanted:
            if self.on_merge_wanted is not None:
                self.on_merge_wanted(sim.node_id, group)
        for group in effects.merges_unfinished:
            if self.on_merge_unfinished is not None:
                self.on_merge_unfinished(group)
        if effects.leases_to_detach and self.on_leases_to_detach is not None:
            self.schedule(
                self.now_us + 1, self.on_leases_to_detach, sim.node_id, effects.leases_to_detach
            )
        if effects.ranges_to_record:
            self.schedule(
                self.now_us + 1,
                self._record_ranges,
                sim.node_id,
                sim.incarnation,
                effects.ranges_to_record,
            )

    # ================================================================== the meta range

    def _record_ranges(
        self, v: NodeId, incarnation: int, descriptors: list[RangeDescriptor]
    ) -> None:
        """What the admin service does with ``Effects.ranges_to_record``: propose them to the
        meta range's leader; once applied, tell the asking node (it asks again each second
        until told, so a record lost to a fault is only late)."""
        leader = self.leader(META_RANGE_ID)
        if leader is None:
            return
        token = self.new_token()
        self._recording[token] = (v, incarnation, descriptors)
        self.submit(leader, META_RANGE_ID, RecordRanges(RequestId(0, 0), tuple(descriptors)), token)

    def _recorded(self, token: Token, answer: Answer) -> None:
        v, incarnation, descriptors = self._recording.pop(token)
        if isinstance(answer, RangesRecorded):
            self.schedule(self.now_us + 1_000, self._tell_recorded, v, incarnation, descriptors)

    def _tell_recorded(
        self, v: NodeId, incarnation: int, descriptors: list[RangeDescriptor]
    ) -> None:
        sim = self.nodes[v]
        if sim.node is None or sim.incarnation != incarnation:
            return
        if sim.paused:
            sim.held.append(lambda: self._tell_recorded(v, incarnation, descriptors))
            return
        sim.node.ranges_recorded(descriptors)
        self._drain(sim)

    def directory(self, v: NodeId) -> RangeMap | None:
        """The meta range's directory as node ``v``'s replica applied it (None: no replica)."""
        sim = self.nodes[v]
        if sim.node is None or not sim.node.hosts(META_RANGE_ID):
            return None
        return KvStateMachine(sim.disk.kv.engine(META_RANGE_ID), initial=self.meta).directory()

    def check_directory(self) -> None:
        """The meta range is only ever told of descriptors some range really had, and its
        directory never holds two owners of a key (``RangeMap`` paints one per key)."""
        for v in self.nodes:
            directory = self.directory(v)
            if directory is None:
                continue
            for d in directory.known():
                if d not in self.ever:
                    self.fail("directory", f"n{v}'s meta directory holds {d}, which never was")

    def directory_current(self) -> bool:
        """The meta leader's directory is the range map as it truly is."""
        leader = self.leader(META_RANGE_ID)
        directory = self.directory(leader) if leader is not None else None
        truth = sorted(self.truth.values(), key=lambda d: d.start)
        return directory is not None and directory.current() == truth

    def _disk_start(self, v: NodeId, incarnation: int, job: DiskJob) -> None:
        """The disk takes ``job`` up: its applies are computed in an open transaction, and
        the node may answer proposers from them (as the runtime does, before the fsync)."""
        sim = self.nodes[v]
        if sim.incarnation != incarnation or sim.node is None:
            return
        sim.disk.kv.begin()
        sizes: dict[int, int] = {}
        sim.started_changes = []
        applied, dumped = self._execute(sim, job, sizes, sim.started_changes)
        sim.started = (job, applied, dumped, sizes)
        if sim.paused:
            sim.held.append(lambda: self._applied_early(sim, applied))
            return
        self._applied_early(sim, applied)

    def _applied_early(self, sim: SimNode, applied: list[Applied]) -> None:
        node = sim.node
        assert node is not None
        node.applied_early(applied)
        self._drain(sim)

    def _disk_done(self, v: NodeId, incarnation: int) -> None:
        sim = self.nodes[v]
        if sim.incarnation != incarnation or sim.node is None:
            return
        job = sim.disk.complete()  # durable now, whatever the process is doing
        sim.disk.kv.commit()
        started, sim.started = sim.started, None
        assert started is not None and started[0] is job, "the disk runs jobs in order"
        _, applied, dumped, sizes = started
        changes = sim.started_changes
        for group, record in job.records:
            self._checker(group).on_durable(v, record)
            if record.voting:
                self.trace(v, "rejoined", f"g{group} promised={record.promised}")
        for group, snap in job.installs:
            sim.committed[group] = snap.slot
        for group, slot, (_, results) in applied:
            sim.committed[group] = slot
            for _, result in results:
                if isinstance(result, SplitDone) and v in result.right.replicas:
                    sim.committed[result.right.range_id] = base_slot_of(
                        self.cluster, result.right.range_id
                    )
        self._touched.add(v)
        if sim.paused:
            sim.held.append(lambda: self._after_job(sim, job, applied, dumped, sizes, changes))
            return
        self._after_job(sim, job, applied, dumped, sizes, changes)

    def _execute(
        self, sim: SimNode, job: DiskJob, sizes: dict[int, int], changes: list[Changed]
    ) -> tuple[list[Applied], list[Dumped]]:
        """The job's state-machine work, in the transaction its records commit in (as one
        LMDB transaction holds both), as the runtime runs it; then the ground truth."""
        applied, dumped = run_job(
            job,
            sim.disk.kv.engine,
            machine_class=self._machine_class,
            sizes=sizes,
            changes=changes,
        )
        # The ground truth of every change made, by key and revision: chosen slots' applies,
        # the same wherever and however often they run (a rolled-back one runs again alike).
        for _, shard_changes, _, _ in changes:
            for change in shard_changes:
                value = change.record.value if change.record is not None else None
                known = self.watch_truth.setdefault((change.key, change.revision), value)
                if known != value:
                    self.fail(
                        "watch-truth",
                        f"{change.key!r} at revision {change.revision}: two different changes",
                    )
        for group, snap in job.installs:
            self._restore(sim, group, snap.slot, snap.data)
        for _ended, successor in job.bases:
            # A successor started from an ended range's state installed here: its base.
            base = base_slot_of(self.cluster, successor.range_id)
            sim.applied[successor.range_id] = self._values_through(successor.range_id, base)
        for group, slot, (value, results) in applied:
            if group in job.retired:
                # A tombstone's slot changes nothing; proposers hear OutOfRange.
                if self.on_applied is not None:
                    self.on_applied(sim, group, Slot(slot), value, results)
                continue
            self._apply(sim, group, Slot(slot), value, results)
        for group, slot, data in dumped:
            self._snapshots[(group, slot, hashlib.blake2b(data).digest())] = sim.applied[group][
                :slot
            ]
            self.trace(sim.node_id, "compact", f"g{group} through={slot}")
        return applied, dumped

    def _after_job(  # noqa: PLR0917 - the job's parts, as the runtime's _job_done has them
        self,
        sim: SimNode,
        job: DiskJob,
        applied: list[Applied],
        dumped: list[Dumped],
        sizes: dict[int, int],
        changes: list[Changed],
    ) -> None:
        node = sim.node
        assert node is not None
        layout = node.layout_version
        node.job_done(job, applied, dumped, sizes)
        self._watch_fed(sim, job, changes, relaid=node.layout_version != layout)
        self._check_ownership(sim)
        self._drain(sim)

    def _check_ownership(self, sim: SimNode) -> None:
        """No key is held by two groups a node serves: their descriptors are disjoint."""
        node = sim.node
        assert node is not None
        held = sorted(
            (d for d in node.descriptors() if not node.awaiting(d.range_id)),
            key=lambda d: d.start,
        )
        for left, right in itertools.pairwise(held):
            if left.span.overlaps(right.span):
                self.fail(
                    "ownership",
                    f"n{sim.node_id} serves g{left.range_id} {left.span} and "
                    f"g{right.range_id} {right.span}",
                )

    def _restore(self, sim: SimNode, group: int, slot: int, data: bytes) -> None:
        values = self._snapshots.get((group, slot, hashlib.blake2b(data).digest()))
        if values is None or len(values) != slot:
            self._checker(group).fail(
                "snapshot", f"n{sim.node_id} installed a snapshot of slot {slot} nobody made"
            )
            return
        for index, value in enumerate(values, start=1):
            self._checker(group).on_applied(sim.node_id, Slot(index), value)
        sim.applied[group] = list(values)
        self.trace(sim.node_id, "restore", f"g{group} slot={slot}")

    def _apply(
        self,
        sim: SimNode,
        group: int,
        slot: Slot,
        value: Value,
        results: list[tuple[RequestId | None, ApplyResult]],
    ) -> None:
        applied = sim.applied.setdefault(group, [])
        if slot != len(applied) + 1:
            self._checker(group).fail(
                "prefix", f"n{sim.node_id} applied slot {slot} after {len(applied)}"
            )
            return
        applied.append(value)
        self._checker(group).on_applied(sim.node_id, slot, value)
        self.trace(sim.node_id, "apply", f"g{group} slot={slot} commands={len(value)}")
        for command, (_, result) in zip(value, results, strict=True):
            self.keys.on_result(command, result)
            if isinstance(result, SplitDone):
                self._split_applied(sim, result)
            elif isinstance(result, MergeDone):
                self._merge_applied(sim, result)
            elif isinstance(result, Reconfigured) and result.slot == slot:
                self._reconfigured(sim, result)
            ended = self.ended.get(group)
            if ended is not None and slot > ended and not isinstance(result, _AFTER_THE_STOP):
                self._checker(group).fail(
                    "stop-sign",
                    f"n{sim.node_id} applied {type(result).__name__} at slot {slot},"
                    f" after the configuration ended at slot {ended}",
                )
            if group == META_RANGE_ID and self.on_meta_applied is not None:
                self.on_meta_applied(sim.node_id, result)
        if self.on_applied is not None:
            self.on_applied(sim, group, slot, value, results)

    def _split_applied(self, sim: SimNode, done: SplitDone) -> None:
        """A replica applied a split: the truth learns it (the first time), and the replica
        holds the new group's base from now on."""
        right = done.right
        if sim.node_id in right.replicas:
            base = base_slot_of(self.cluster, right.range_id)
            sim.applied[right.range_id] = self._values_through(right.range_id, base)
        known = self.truth.get(done.left.range_id)
        if done.left.range_id in self.retired:
            return  # a lagging replica's split of a range merged away since
        if known is None or known.generation < done.left.generation:
            self.truth[done.left.range_id] = done.left
            self.truth[right.range_id] = right
            self.ever.update((done.left, right))
            self.trace(
                sim.node_id,
                "split",
                f"g{done.left.range_id} at={right.start!r} new=g{right.range_id}",
            )
            self._check_truth()

    def _reconfigured(self, sim: SimNode, done: Reconfigured) -> None:
        """A replica applied a stop sign: the truth learns the successor (the first time);
        the old group lives on as a tombstone. Every replica must leave the successor the
        same base state: the old group's at the stop."""
        ended, successor = done.ended, done.successor
        self.ended.setdefault(ended.range_id, done.slot)
        base = snapshot.dump(sim.disk.kv.engine(successor.range_id))
        first = self._successor_bases.setdefault(successor.range_id, base)
        if first != base:
            self._checker(successor.range_id).fail(
                "successor-base", f"n{sim.node_id} made g{successor.range_id} another base"
            )
        if sim.node_id in successor.replicas:
            slot = base_slot_of(self.cluster, successor.range_id)
            sim.applied[successor.range_id] = self._values_through(successor.range_id, slot)
        known = self.truth.get(ended.range_id)
        if known is not None and known.generation == ended.generation:
            del self.truth[ended.range_id]
            self.truth[successor.range_id] = successor
            self.ever.add(successor)
            self.retired.add(ended.range_id)
            self.trace(
                sim.node_id,
                "reconfigure",
                f"g{ended.range_id} -> g{successor.range_id} {list(successor.replicas)}",
            )
            self._check_truth()

    def members(self, group: int) -> tuple[NodeId, ...]:
        """The replicas of ``group`` now (meta's, or the truth's)."""
        d = self.meta if group == META_RANGE_ID else self.truth.get(group)
        return tuple(NodeId(r) for r in d.replicas) if d is not None else self.voters

    def _merge_applied(self, sim: SimNode, done: MergeDone) -> None:
        """A replica applied a merge: the truth learns it (the first time); the right
        group lives on as a tombstone (still a Paxos group), outside the range map."""
        known = self.truth.get(done.merged.range_id)
        if done.merged.range_id in self.retired:
            return
        if known is None or known.generation < done.merged.generation:
            self.truth[done.merged.range_id] = done.merged
            self.ever.add(done.merged)
            self.truth.pop(done.right.range_id, None)
            self.retired.add(done.right.range_id)
            self.trace(sim.node_id, "merge", f"g{done.merged.range_id} took g{done.right.range_id}")
            self._check_truth()

    def _check_truth(self) -> None:
        spans = sorted(self.truth.values(), key=lambda d: d.start)
        for left, nxt in itertools.pairwise(spans):
            if left.end != nxt.start:
                self.fail("ownership", f"the range map has {left.span} then {nxt.span}")

    def _check_reads(self) -> None:
        """Lease holders, and what each replica would promise a read, after every event.

        What a replica would promise changes only when something happens to its node (its
        clock, a message, its disk), so it is recomputed for the nodes touched since the
        last event and kept for the others. A kept promise is held against the
        acknowledgements again when they change, and at the first moment time alone could
        break it (an acknowledgement ages past its staleness bound, or becomes one made
        before a lease read): the same verdicts as checking every promise after every event,
        at a fraction of the cost."""
        promises, dirty, holders = self._promises, self._dirty, self._holders
        if self._touched:
            groups = [*self.groups, *self.retired]  # a tombstone is still a Paxos group
        for v in self._touched:
            sim = self.nodes[v]
            node = sim.node
            for group in groups:
                key = (v, group)
                if node is None or sim.paused or not node.hosts(group):
                    if promises.pop(key, None) is not None:
                        self._holders_dirty.add(group)
                        self._keys_of(group).discard(key)
                        holders.get(group, set()).discard(v)
                    continue
                replica = node.replica(group)
                applied = Slot(sim.committed.get(group, 0))  # what a read sees: committed
                # A quiet group is not ticked: its views take the ticks it missed.
                point, bound = replica.read_promise(applied, node.skipped_ticks(group))
                promise = (point, applied, bound)
                if promises.get(key) != promise:
                    promises[key] = promise
                    self._keys_of(group).add(key)
                    dirty.add(key)
                    self._holders_dirty.add(group)
                    held = holders.setdefault(group, set())
                    if point is None:
                        held.discard(v)
                    else:
                        held.add(v)
        self._touched.clear()
        checkers = self.checkers
        for group, checker in checkers.items():
            if checker.ack_count != self._acks_seen.get(group, 0):
                self._acks_seen[group] = checker.ack_count
                dirty.update(self._keys_of(group))
        fires, now = self._fires, self.now_us
        while fires and fires[0][0] <= now:
            _, _, key, promise = heapq.heappop(fires)
            if promises.get(key) == promise:
                dirty.add(key)
        tick_us = self.params.tick_us
        for key in dirty:
            promise = promises.get(key)
            if promise is None:
                continue
            v, group = key
            read_point, applied, bound = promise
            checker = checkers.get(group) or self._checker(group)
            if not checker.acked:
                continue  # nothing acknowledged yet that a promise could miss
            if read_point is not None:
                checker.on_lease_read_point(v, read_point)
                fire = checker.first_ack_after(read_point)
                if fire is not None and fire + 1 > now:
                    heapq.heappush(fires, (fire + 1, next(self._fire_seq), key, promise))
            if bound is not None:
                checker.on_stale_read_bound(v, applied, bound * tick_us)
                fire = checker.first_ack_after(applied)
                if fire is not None and fire + bound * tick_us + 1 > now:
                    at = fire + bound * tick_us + 1
                    heapq.heappush(fires, (at, next(self._fire_seq), key, promise))
        dirty.clear()
        for group in self._holders_dirty:
            held_now = holders.get(group, ())
            if len(held_now) > 1:
                self._checker(group).on_lease_holders(sorted(held_now))
        self._holders_dirty.clear()

    def _keys_of(self, group: int) -> set[tuple[NodeId, int]]:
        """The promises kept for ``group`` (to mark them all when its acknowledgements move)."""
        keys = self._promise_keys.get(group)
        if keys is None:
            keys = self._promise_keys[group] = set()
        return keys

    # ================================================================== watches

    def _watch_fed(
        self, sim: SimNode, job: DiskJob, changes: list[Changed], *, relaid: bool
    ) -> None:
        """A committed job's changes reach the node's watch hub; installs make its watchers
        resync; a change of the hosted ranges (``relaid``) makes them check that the node
        still holds every key they watch."""
        hub = sim.hub
        if hub is None:
            return
        # Installs first, as the runtime tells them: they come before the job's applies, so
        # a watcher must start holding what it is fed before the applies reach it.
        if job.replaced and self.on_installed is not None:
            self.on_installed(sim.node_id, job.replaced)
        if relaid and self.on_relaid is not None:
            self.on_relaid(sim.node_id)
        for shard, shard_changes, span, revision in changes:
            hub.applied(shard, shard_changes, span, revision)

    # ================================================================== inspection

    def leader(self, group: int) -> NodeId | None:
        """A running replica of ``group`` in phase 2 with the highest ballot, if any (a
        quiet leader cut off from the rest keeps leading a lower one until it hears)."""
        best: tuple[Ballot, NodeId] | None = None
        for v, sim in sorted(self.nodes.items()):
            replica = sim.replica(group)
            if sim.running and replica is not None and replica.role is Role.LEADER:
                ballot = replica.leader_ballot
                if ballot is not None and (best is None or ballot > best[0]):
                    best = (ballot, v)
        return best[1] if best is not None else None

    def group_of(self, key: bytes) -> int:
        return next(d.range_id for d in self.truth.values() if d.contains(key))
