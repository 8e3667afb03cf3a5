"""``NodeRuntime``: drives this node's ``kvstore.model.Node`` on one asyncio loop.

It makes no protocol decision: the node decides, and the runtime interprets its effects
(``kvstore/model/node.py`` states the contract):

- every turn (scheduled with ``call_soon`` whenever an input arrived) it takes the node's
  effects: messages go to the peer links at once; the disk job goes into **one** LMDB write
  transaction (group commit, one fsync), on the single disk thread, FIFO behind earlier jobs;
  jobs that queue while the disk is busy share one transaction (``_drain_disk_queue``); on an
  idle disk a job whose records answer peers is split, its applies held back until those
  answers are sent (``_split_for_latency``), and a job of such records alone is committed on
  the loop itself (``_commits_on_the_loop``). These are I/O choices: each keeps the contract;
- a caller waits on a future named by a token; the node's answers resolve them;
- ticks come from elapsed monotonic time, all due ticks first (driver contract 7).

A disk failure is fatal: the runtime stops; recovery from LMDB is the tested path. Client-facing
errors are ``NotLeaderError`` (ask ``leader_hint``), ``ProposalDroppedError`` (retry with the
same request id), ``OverloadedError``, ``CommandTooLargeError``, ``UnknownShardError`` and
``NodeStoppedError``.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future as ConcurrentFuture
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from cluster import ClusterConfig
from cluster.ranges import META_RANGE_ID, RangeDescriptor, hosted_layout
from kvstore.model import (
    ApplyResult,
    Command,
    KeyValue,
    KvStateMachine,
    SessionTable,
    encoded_bytes_max,
    leases,
)
from kvstore.model.jobs import Changed, run_job
from kvstore.model.lease_keeper import LeaseState
from kvstore.model.node import (
    NODE_LOG,
    Accepted,
    Answer,
    Applied,
    Busy,
    DiskJob,
    Dropped,
    Dumped,
    GroupStart,
    Host,
    Node,
    NotLeaderRefusal,
    NotLeaseholder,
    Token,
    TooLargeRefusal,
    hosted_at_start,
)
from kvstore.model.ranges import decode_descriptor, encode_descriptor
from kvstore.runtime.clock import Clock, TickSource
from kvstore.runtime.ports import StorePort
from kvstore.runtime.watches import Watches
from paxos import Message, Role

SendFn = Callable[[int, list[tuple[int, Message]]], None]

# How long stop() waits for the disk to finish the jobs it holds (each is one transaction
# of milliseconds): past it, a lost count or a wedged disk is logged rather than hung on.
STOP_WAIT_S = 10.0
# The most value bytes a job committed on the event loop may write (``_commits_on_the_loop``).
LOOP_COMMIT_BYTES_MAX = 64 << 10
R = TypeVar("R")


class NotLeaderError(Exception):
    def __init__(self, shard_id: int, leader_hint: int | None) -> None:
        super().__init__(f"shard {shard_id}: not the leader (hint: {leader_hint})")
        self.shard_id = shard_id
        self.leader_hint = leader_hint


class ProposalDroppedError(Exception):
    """The slot our command was proposed in was chosen with other commands: retry it."""


class OverloadedError(Exception):
    pass


class CommandTooLargeError(Exception):
    """The command does not fit a slot (``batch_bytes_max``): never for one the edge admits
    (slots are sized for the largest), so a caller's mistake, not a reason to retry."""


class UnknownShardError(Exception):
    pass


class RangeMovedError(Exception):
    """This replica's range no longer holds the key (a split moved it): route again."""

    def __init__(self, shard_id: int, descriptor: RangeDescriptor) -> None:
        super().__init__(f"shard {shard_id} no longer holds the key")
        self.descriptor = descriptor


class NodeStoppedError(Exception):
    """The node hit a fatal error and is going down: callers should try another node."""


@dataclass(frozen=True)
class ShardStatus:
    shard_id: int
    descriptor: RangeDescriptor
    keys: int
    size_bytes: int
    role: str
    promised: str
    leader_node_id: int
    chosen_through: int
    applied_slot: int
    lease: bool
    revision: int
    preferred_dc: str
    staleness_bound_ms: float | None
    ops_per_s: float
    quiet: bool = False


# sizes and changes: run_job's
_JobResult = tuple[list[Applied], list[Dumped], dict[int, int], list[Changed]]
_Drained = tuple[DiskJob, int, ConcurrentFuture[_JobResult]] | None


class NodeRuntime:
    def __init__(
        self,
        cluster: ClusterConfig,
        node_id: int,
        store: StorePort,
        send: SendFn,
        *,
        clock: Clock | None = None,
        seed: int | None = None,
        paxos_overrides: dict[str, int] | None = None,
        compact_every_slots: int = 10_000,
        send_host: Callable[[int, int, bytes, int, bytes], None] | None = None,
        disk_incarnation: int = 0,
    ) -> None:
        """``send_host(dst, shard, descriptor, incarnation, current)``: carries a ``Host``
        note to a peer (the descriptors encoded; b"": a question, or none).
        ``disk_incarnation``: this node's data directory's (``kvstore.model.node.Host``)."""
        self._disk_incarnation = disk_incarnation
        self.cluster = cluster
        self._send_host = send_host
        self._compact_every = compact_every_slots
        self.node_id = node_id
        self._store = store
        self._send = send
        self._clock = clock or Clock()
        self._seed = seed if seed is not None else random.SystemRandom().randrange(1 << 62)
        limits = cluster.limits
        self._overrides: dict[str, int] = {
            # A slot must hold the largest command the edge admits (a 1 MiB value, or a Txn).
            "batch_bytes_max": max(
                1 << 20,  # paxos.Config's default: room for many small commands
                encoded_bytes_max(limits.key_bytes_max, limits.value_bytes_max),
            ),
            **(paxos_overrides or {}),
        }
        self._node: Node | None = None
        self._disk = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"disk-n{node_id}")
        # Each shard's session table, owned by the disk thread between transactions.
        self._session_tables: dict[int, SessionTable] = {}
        self._turn_scheduled = False
        self._tokens = itertools.count(1)
        self._waiting: dict[Token, asyncio.Future[Any]] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._ticks: TickSource | None = None
        # Tells this process's freshness stamps from an earlier life's (tick counts restart).
        self._incarnation = random.SystemRandom().randrange(1, 1 << 62)
        self._inflight_jobs = 0
        self._held_back: DiskJob | None = None  # see _split_for_latency
        # Jobs for the disk thread, merged there into one transaction (_drain_disk_queue).
        self._disk_queue: deque[DiskJob] = deque()
        self.jobs_split = 0  # how often it split one (a statistic; tests read it)
        self.jobs_on_loop = 0  # how often a job ran on the loop (likewise)
        self.jobs_merged = 0  # jobs that shared a transaction with an earlier one (likewise)
        # Told of each group the node wants split (``Effects.splits_wanted``): the server
        # splits it as ``Admin.SplitRange`` would. None: nobody splits automatically.
        self.on_split_wanted: Callable[[int], None] | None = None
        # Told of each left range a small, cold right one should merge into
        # (``Effects.merges_wanted``), and of each frozen range led here whose merge did not
        # follow (``Effects.merges_unfinished``).
        self.on_merge_wanted: Callable[[int], None] | None = None
        self.on_merge_unfinished: Callable[[int], None] | None = None
        # Told of descriptors to record in the meta range (``Effects.ranges_to_record``).
        self.on_ranges_to_record: Callable[[list[RangeDescriptor]], None] | None = None
        # Told of ended leases to detach everywhere (``Effects.leases_to_detach``).
        self.on_leases_to_detach: Callable[[list[int]], None] | None = None
        self.failure: BaseException | None = None
        self._stopping = False  # stop() began: no more inputs or turns
        self.failed = asyncio.Event()  # set on a fatal error: the process must exit
        # The watches served here, fed each committed apply's changes (``_job_done``).
        self.watches = Watches(self.descriptors, self._store.read)
        self._log = structlog.get_logger("kvstore.node").bind(node=node_id)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        layout = {d.range_id: d for d in hosted_layout(self.cluster)}
        for range_id, raw in self._store.ranges().items():
            layout[range_id] = decode_descriptor(raw)

        def open_group(descriptor: RangeDescriptor) -> GroupStart:
            durable = self._store.load(descriptor.range_id)
            with self._store.read(descriptor.range_id) as engine:
                machine = KvStateMachine(engine, initial=descriptor)
                return GroupStart(
                    durable=durable,
                    applied_slot=machine.applied_slot,
                    placed_leader_dc=machine.leader_dc,
                    descriptor=machine.descriptor or descriptor,
                    successors=machine.successors,
                    size_bytes=machine.size_bytes,
                    frozen_slot=machine.frozen_slot,
                    merged_into=machine.merged_into,
                    ended_into=machine.ended_into,
                    reconfigured_from=machine.reconfigured_from,
                    disks=tuple(sorted(machine.disk_incarnations.items())),
                    born_as=machine.born_as,
                )

        groups = hosted_at_start(
            self.node_id, layout, open_group, disk_incarnation=self._disk_incarnation
        )
        self._node = Node(
            self.cluster,
            self.node_id,
            groups,
            rng_for=lambda group: random.Random(f"{self._seed}/{group}"),
            incarnation=self._incarnation,
            logger_for=lambda group: (
                self._log if group == NODE_LOG else self._log.bind(shard=group)
            ),
            paxos_overrides=self._overrides,
            compact_every_slots=self._compact_every,
            founding=self._store.founding,
            disk_incarnation=self._disk_incarnation,
        )
        self._ticks = TickSource(self._clock, self.cluster.tick_ms)
        self._ticker = asyncio.create_task(self._tick_loop())
        self._kick()

    async def stop(self) -> None:
        """Take no more inputs, let the disk finish what it holds, then let go. What is
        not yet on disk is dropped, as a crash would drop it (nothing was answered for it);
        a node that kept taking turns could keep its disk busy forever."""
        self._stopping = True
        if self._ticker is not None:
            self._ticker.cancel()
        deadline = asyncio.get_running_loop().time() + STOP_WAIT_S
        while self._inflight_jobs and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)
        if self._inflight_jobs:
            self._log.error("stop_disk_jobs_unfinished", jobs=self._inflight_jobs)
        self._disk.shutdown(wait=True)
        for fut in self._waiting.values():
            fut.cancel()
        self._waiting.clear()

    async def _tick_loop(self) -> None:
        floors_at = 0.0
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.cluster.tick_ms / 2000)
            if self._node is not None and loop.time() - floors_at >= 1.0:
                floors_at = loop.time()  # once a second, as the node decides compactions
                self._node.watch_floors = self.watches.floors() if len(self.watches) else {}
            self._catch_up_ticks()

    def _catch_up_ticks(self) -> None:
        """Deliver every tick that elapsed (driver contract 7): before a message, a read, or
        trusting a lease or a staleness bound, a process that was paused catches up first."""
        due = self._ticks.due() if self._ticks is not None else 0
        node = self._node
        if node is None or not due or self.failure is not None:
            return
        try:
            node.tick(due)
        except Exception as error:  # any: see ``_broken``
            self._broken(error)
            return
        self._kick()

    # ------------------------------------------------------------------ inputs

    def _feed(self, give: Callable[[Node], None]) -> None:
        """One input for the node, after every tick that elapsed (driver contract 7)."""
        node = self._node
        if node is None or self.failure is not None or self._stopping:
            return
        self._catch_up_ticks()
        try:
            give(node)
        except Exception as error:  # any: see ``_broken``
            self._broken(error)
            return
        self._kick()

    def _broken(self, error: BaseException) -> None:
        """The node layer broke one of its own invariants (an assertion): its state in memory
        can no longer be trusted, so the node stops, as on a disk failure, and a restart
        recovers from disk (what it wrote is consistent: each job is one transaction). Left
        running, it wedged: the fault suite saw a node log the same assertion for every job
        and apply nothing more."""
        self.failure = error
        self._log.error("node_layer_broken", error=repr(error), exc_info=error)
        self.failed.set()

    def heard(self, peer: int) -> None:
        """Something came from node ``peer`` (its liveness keeps quiet groups quiet). Per
        batch received, so kept light: no turn, and the node's tick count as it stands (a
        liveness mark a tick early is no harm)."""
        node = self._node
        if node is not None and self.failure is None:
            node.heard(peer)

    def add_peer(self, peer: int) -> None:
        """A node joined the cluster (before ``start``, the node finds it in the config)."""
        self._feed(lambda node: node.add_peer(peer))

    def peer_restarted(self, peer: int) -> None:
        """Node ``peer`` runs a new process: quiet groups that depend on it wake."""
        self._feed(lambda node: node.peer_restarted(peer))

    def deliver(self, shard_id: int, msg: Message) -> None:
        self._feed(lambda node: node.step(shard_id, msg))

    def deliver_host(
        self, peer: int, shard_id: int, raw: bytes, incarnation: int = 0, current: bytes = b""
    ) -> None:
        """A ``Host`` note from ``peer`` (``raw``: the encoded descriptor, b"": a question;
        ``current``: the shard's descriptor now, b"": as ``raw``)."""
        try:
            descriptor = decode_descriptor(raw) if raw else None
        except ValueError:  # CodecError, or a descriptor that breaks its own rules
            self._log.warning("host_note_malformed", peer=peer, shard=shard_id)
            return
        try:
            now = decode_descriptor(current) if current and descriptor is not None else None
        except ValueError:
            self._log.warning("host_note_malformed", peer=peer, shard=shard_id, part="current")
            now = None  # the answer as it began still serves
        note = Host(peer, self.node_id, shard_id, descriptor, incarnation, now)
        self._feed(lambda node: node.step(shard_id, note))

    async def submit(self, shard_id: int, command: Command) -> ApplyResult:
        token = next(self._tokens)
        self._refused(
            shard_id, self._node_call(shard_id, lambda node: node.submit(shard_id, command, token))
        )
        return await self._wait(token)  # type: ignore[no-any-return]

    def witness(self, shard_id: int, command: Command) -> asyncio.Future[ApplyResult]:
        """A future for ``command``'s result when this replica applies it, wherever it was
        proposed. Only for a command with a request id (its bytes are then unique, and a
        retry's result is the first attempt's); cancel it to stop waiting."""
        token = next(self._tokens)
        self._node_call(shard_id, lambda node: node.witness(shard_id, command, token))
        fut: asyncio.Future[ApplyResult] = asyncio.get_running_loop().create_future()
        self._waiting[token] = fut

        def forget(_: asyncio.Future[ApplyResult]) -> None:
            if self._waiting.pop(token, None) is not None and self._node is not None:
                self._node.unwitness(shard_id, command, token)

        fut.add_done_callback(forget)
        return fut

    async def linearizable_point(self, shard_id: int) -> None:
        """Return once a local read reflects every write acknowledged before the call."""
        self._hosting(shard_id)
        self._catch_up_ticks()
        token = next(self._tokens)
        # (Checked again: the ticks just delivered may have broken the node layer.)
        self._refused(shard_id, self._node_call(shard_id, lambda node: node.read(shard_id, token)))
        await self._wait(token)

    def _refused(self, shard_id: int, outcome: Accepted | Answer) -> None:
        if isinstance(outcome, Accepted):
            self._kick()
            return
        raise _error(shard_id, outcome)

    async def _wait(self, token: Token) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[token] = fut
        try:
            return await fut
        finally:
            self._waiting.pop(token, None)

    def stale_read_bound_ms(self, shard_id: int) -> float | None:
        """A read of this replica's state now misses no write acknowledged more than this
        many ms ago (0: nothing; the leader under its lease, caught up). None: no bound."""
        node = self._hosting(shard_id)
        self._catch_up_ticks()
        ticks = node.stale_read_bound_ticks(shard_id)
        return None if ticks is None else ticks * self.cluster.tick_ms

    def preferred_dc(self, shard_id: int) -> str:
        return self._hosting(shard_id).preferred_dc(shard_id)

    def get_local(
        self, shard_id: int, key: bytes, at_revision: int = 0
    ) -> tuple[KeyValue | None, int]:
        """``key`` as this replica applied it (or as it was at ``at_revision``: raises
        ``kvstore.model.history.HistoryError`` where the shard cannot answer), and the
        shard's revision (one read transaction); ``RangeMovedError`` if the range gave the
        key away (decided in the same transaction as the value, so never a half-moved
        answer)."""
        with self.read_state_machine(shard_id) as sm:
            if not sm.owns(key):
                raise RangeMovedError(shard_id, sm.descriptor or self.descriptor(shard_id))
            kv = sm.get_at(key, at_revision) if at_revision else sm.get(key)
            return kv, sm.revision

    @property
    def started(self) -> bool:
        return self._node is not None and self.failure is None

    @property
    def layout_version(self) -> int:
        """Grows whenever a hosted range changes (0 before start)."""
        return self._node.layout_version if self._node is not None else 0

    def descriptors(self) -> list[RangeDescriptor]:
        """The hosted ranges' descriptors as this node knows them, in key order."""
        return self._node.descriptors() if self._node is not None else []

    def descriptor(self, shard_id: int) -> RangeDescriptor:
        return self._hosting(shard_id).descriptor(shard_id)

    def ranges_recorded(self, descriptors: list[RangeDescriptor]) -> None:
        """The meta range applied a record of ``descriptors``."""
        if self._node is not None:
            self._node.ranges_recorded(descriptors)

    def directory(self) -> list[RangeDescriptor] | None:
        """The range map as this node's replica of the meta range has applied it (it may
        lag the leader's); None if this node hosts no replica of meta."""
        if not self.hosts(META_RANGE_ID):
            return None
        with self.read_state_machine(META_RANGE_ID) as sm:
            return sm.directory().known()

    @contextmanager
    def read_state_machine(self, shard_id: int) -> Iterator[KvStateMachine]:
        """The shard's state as applied on this node (a consistent LMDB read snapshot)."""
        node = self._hosting(shard_id)
        if node.merged_away(shard_id):
            # A tombstone: its keys are the merged range's (or its successor's), and its
            # state here is not.
            raise RangeMovedError(shard_id, node.taken_over_by(shard_id))
        with self._store.read(shard_id) as engine:
            machine = KvStateMachine(engine, initial=node.descriptor(shard_id))
            successor = machine.successor
            if successor is not None:
                # Ended by a reconfiguration: its state is final, the successor's goes on.
                # (Its leader could still grant a read point: a read here would be stale,
                # as the fault suite's membership nemesis found.)
                raise RangeMovedError(shard_id, successor)
            yield machine

    def group_ids(self) -> list[int]:
        """Every group hosted here, merged-away ones (tombstones) included."""
        return self._node.group_ids() if self._node is not None else []

    def status(self) -> list[ShardStatus]:
        """This node's view of every shard it hosts (for operators)."""
        node = self._hosting(None)
        self._catch_up_ticks()
        out = []
        for s in node.status():
            with self.read_state_machine(s.group_id) as sm:
                revision, keys, size = sm.revision, sm.keys, sm.size_bytes
            out.append(self._shard_status(s, revision, keys, size))
        return out

    def _shard_status(self, s: Any, revision: int, keys: int, size: int) -> ShardStatus:
        return ShardStatus(
            shard_id=s.group_id,
            descriptor=s.descriptor,
            keys=keys,
            size_bytes=size,
            role=s.role,
            promised=s.promised,
            leader_node_id=s.leader_node_id,
            chosen_through=s.chosen_through,
            applied_slot=s.applied_slot,
            lease=s.lease,
            revision=revision,
            preferred_dc=s.preferred_dc,
            staleness_bound_ms=None
            if s.staleness_bound_ticks is None
            else s.staleness_bound_ticks * self.cluster.tick_ms,
            ops_per_s=s.ops_per_s,
            quiet=s.quiet,
        )

    def transfer_leadership(self, shard_id: int, to_node: int) -> bool:
        ok = self._hosting(shard_id).transfer(shard_id, to_node)
        self._kick()
        return ok

    def hosts(self, shard_id: int) -> bool:
        return self._node is not None and self._node.hosts(shard_id)

    def frozen_slot(self, shard_id: int) -> int:
        """The slot of the ``Freeze`` the hosted range applied (0: not frozen)."""
        return self._hosting(shard_id).frozen_slot(shard_id)

    # Leases: answered by the meta leader (``Node.lease_*``; NotLeaseholder elsewhere).

    def lease_keep_alives(self, lease_ids: Sequence[int]) -> list[int] | NotLeaseholder:
        answer = self._hosting(None).lease_keep_alives(lease_ids)
        if isinstance(answer, NotLeaseholder):
            self._kick()  # it may have woken the meta group (a turn costs: only then)
        return answer

    def lease_state(self, lease_id: int) -> LeaseState | NotLeaseholder | None:
        answer = self._hosting(None).lease_state(lease_id)
        self._kick()
        return answer

    def lease_ended(self, lease_id: int) -> bool:
        """Whether this node's replica of the meta range has the lease ended (ask the meta
        leader: it has applied every revoke it answered)."""
        with self._store.read(META_RANGE_ID) as engine:
            return leases.ended(engine, lease_id)

    def lease_ids(self) -> list[int] | NotLeaseholder:
        answer = self._hosting(None).lease_ids()
        self._kick()
        return answer

    def revision(self, shard_id: int) -> int:
        with self.read_state_machine(shard_id) as sm:
            return sm.revision

    def role(self, shard_id: int) -> Role:
        return self._hosting(shard_id).role(shard_id)

    def leader_hint(self, shard_id: int) -> int | None:
        return self._hosting(shard_id).leader_hint(shard_id)

    def follows(self, shard_id: int) -> int | None:
        """The leader this replica follows, if it is a follower that knows one: a proposal
        or a read here would only be refused with that hint, so a gateway forwards at once."""
        return self._hosting(shard_id).follows(shard_id)

    def applied_slot(self, shard_id: int) -> int:
        return self._hosting(shard_id).applied_slot(shard_id)

    @property
    def node(self) -> Node:
        """The pure node this runtime drives (tests inspect its replicas)."""
        return self._hosting(None)

    def _node_call(self, shard_id: int, call: Callable[[Node], R]) -> R:
        """``call`` on the node layer, which hosts ``shard_id``, for a caller waiting on it:
        an exception of the node layer's own is fatal (``_broken``), and the caller is told
        the node stopped."""
        node = self._hosting(shard_id)
        try:
            return call(node)
        except Exception as error:  # any: see ``_broken``
            self._broken(error)
            raise NodeStoppedError(f"node {self.node_id} stopped: {error!r}") from error

    def _hosting(self, shard_id: int | None) -> Node:
        if self.failure is not None:
            raise NodeStoppedError(f"node {self.node_id} is stopping: {self.failure}")
        node = self._node
        if node is None:
            raise NodeStoppedError(f"node {self.node_id} is not started")
        if shard_id is not None and not node.hosts(shard_id):
            raise UnknownShardError(f"shard {shard_id} is not hosted on node {self.node_id}")
        return node

    # ------------------------------------------------------------------ the turn

    def _kick(self) -> None:
        if not self._turn_scheduled:
            self._turn_scheduled = True
            asyncio.get_running_loop().call_soon(self._turn)

    def _turn(self) -> None:
        self._turn_scheduled = False
        node = self._node
        if self.failure is not None or node is None or self._stopping:
            return
        try:
            effects = node.take_effects()
        except Exception as error:  # any: see ``_broken``
            self._broken(error)
            return
        for dst, batch in effects.sends.items():
            self._send(dst, batch)
        for ping in effects.pings:
            self._send(ping.dst, [])  # an empty batch: liveness only
        if self._send_host is not None:
            for host in effects.hosts:
                raw = encode_descriptor(host.descriptor) if host.descriptor is not None else b""
                now = encode_descriptor(host.current) if host.current is not None else b""
                self._send_host(host.dst, host.group_id, raw, host.incarnation, now)
        self._answer(effects.answers, effects.reads)
        if self.on_split_wanted is not None:
            for group_id in effects.splits_wanted:
                self.on_split_wanted(group_id)
        if self.on_merge_wanted is not None:
            for group_id in effects.merges_wanted:
                self.on_merge_wanted(group_id)
        if self.on_merge_unfinished is not None:
            for group_id in effects.merges_unfinished:
                self.on_merge_unfinished(group_id)
        if self.on_ranges_to_record is not None and effects.ranges_to_record:
            self.on_ranges_to_record(effects.ranges_to_record)
        if self.on_leases_to_detach is not None and effects.leases_to_detach:
            self.on_leases_to_detach(effects.leases_to_detach)
        for job in effects.jobs:
            self._submit_held_back()  # an earlier turn's applies go first
            self._submit(self._split_for_latency(job))

    def _answer(self, answers: list[tuple[Token, Answer]], reads: list[Token]) -> None:
        for token, answer in answers:
            fut = self._waiting.get(token)
            if fut is None or fut.done():
                continue
            if isinstance(answer, Dropped):
                fut.set_exception(ProposalDroppedError(f"slot {answer.slot} was chosen without it"))
            elif isinstance(answer, NotLeaderRefusal | Busy | TooLargeRefusal):
                fut.set_exception(_error(0, answer))
            else:
                fut.set_result(answer)
        for token in reads:
            fut = self._waiting.get(token)
            if fut is not None and not fut.done():
                fut.set_result(None)

    def _split_for_latency(self, job: DiskJob) -> DiskJob:
        """On an idle disk, a job that answers peers becomes two transactions: the records
        (and so the replies, e.g. a follower's Accepted) first, then its applies, held back
        until those replies are sent so their Python work does not delay them (the GIL).
        An Accept that tells a follower the previous slot was chosen would otherwise wait
        for that apply too. The contract lets applies trail the records; applies keep their
        order, as the held-back part goes to the disk before any later job. A busy disk
        keeps one transaction per turn: there, the commits are the cost to save."""
        if self._inflight_jobs or not job.applies or not job.answers_peers:
            return job
        records, self._held_back = job.split_applies()
        self.jobs_split += 1
        return records

    def _submit_held_back(self) -> None:
        held, self._held_back = self._held_back, None
        if held is not None:
            self._submit(held)

    def _submit(self, job: DiskJob) -> None:
        self._inflight_jobs += 1
        loop = asyncio.get_running_loop()
        if self._inflight_jobs == 1 and _commits_on_the_loop(job):
            self.jobs_on_loop += 1
            self._job_done(job, _run_now(self._disk_job, job, loop))
            return
        self._disk_queue.append(job)
        done: ConcurrentFuture[_Drained] = self._disk.submit(self._drain_disk_queue, loop)
        done.add_done_callback(lambda f: loop.call_soon_threadsafe(self._drained, f))

    def _drain_disk_queue(self, loop: asyncio.AbstractEventLoop) -> _Drained:
        """On the disk thread: every job queued by now, as one transaction (group commit).

        Each submission queues one job and one call of this; a call that finds the queue
        emptied by an earlier one does nothing. Jobs keep their order; a job that installs
        a snapshot starts a new transaction (its install must follow the earlier applies).
        """
        queue = self._disk_queue
        jobs: list[DiskJob] = []
        while queue and not (jobs and queue[0].installs):
            jobs.append(queue.popleft())
        if not jobs:
            return None
        # A failure travels in the future, with the count, so every job is accounted for
        # (a job left uncounted would hold stop() until its deadline).
        try:
            merged = jobs[0] if len(jobs) == 1 else DiskJob.merged(jobs)
        except Exception as error:
            failed: ConcurrentFuture[_JobResult] = ConcurrentFuture()
            failed.set_exception(error)
            return jobs[0], len(jobs), failed
        return merged, len(jobs), _run_now(self._disk_job, merged, loop)

    def _drained(self, done: ConcurrentFuture[_Drained]) -> None:
        outcome = done.result()
        if outcome is None:
            return
        job, count, finished = outcome
        self._inflight_jobs -= count - 1
        self.jobs_merged += count - 1
        self._job_done(job, finished)

    def _disk_job(self, job: DiskJob, loop: asyncio.AbstractEventLoop) -> _JobResult:
        """One transaction, one fsync, for every shard's work: on the disk thread, or on the
        loop when nothing else is on the disk (then no other write transaction is open)."""

        def early(applied: list[Applied]) -> None:
            # Answer the proposers now, before the commit's fsync (contract item 3).
            loop.call_soon_threadsafe(self._applied_early, applied)

        with self._store.write() as batch:
            for shard_id, record in job.records:
                batch.persist(shard_id, record)
            sizes: dict[int, int] = {}
            changes: list[Changed] = []
            applied, dumped = run_job(
                job,
                batch.engine,
                sessions=self._session_tables,
                applied_early=early,
                sizes=sizes,
                # Always: a watch added while this job runs starts before its changes.
                changes=changes,
            )
            return applied, dumped, sizes, changes

    def _applied_early(self, applied: list[Applied]) -> None:
        node = self._node
        if node is None or self.failure is not None:
            return
        try:
            node.applied_early(applied)
            answers = node.take_answers()
        except Exception as error:  # any: see ``_broken``
            self._broken(error)
            return
        self._answer(*answers)

    def _job_done(self, job: DiskJob, done: ConcurrentFuture[_JobResult]) -> None:
        self._inflight_jobs -= 1
        if self.failure is not None:
            return  # broken meanwhile: what the job wrote is on disk for the restart
        error = done.exception()
        if error is not None:
            self.failure = error
            self._log.error("disk_write_failed", error=repr(error))
            self.failed.set()
            return
        # The transaction is durable: only now may what depends on it leave.
        node = self._node
        assert node is not None
        applied, dumps, sizes, changes = done.result()
        layout = node.layout_version
        try:
            node.job_done(job, applied, dumps, sizes)
            sends = node.take_sends()  # the job's then_send, at once
            answers = node.take_answers()
        except Exception as broken:  # any: see ``_broken``
            self._broken(broken)
            return
        if job.replaced:
            self.watches.installed(job.replaced)
        if node.layout_version != layout:
            self.watches.recheck()
        if changes:
            self.watches.applied(changes)
        for dst, batch in sends.items():
            self._send(dst, batch)
        self._answer(*answers)
        self._submit_held_back()
        self._kick()


def _error(shard_id: int, refusal: Answer) -> Exception:
    if isinstance(refusal, NotLeaderRefusal):
        return NotLeaderError(shard_id, refusal.leader_hint)
    if isinstance(refusal, TooLargeRefusal):
        return CommandTooLargeError(f"a command of over {refusal.limit_bytes} bytes")
    if isinstance(refusal, Busy):
        return OverloadedError(refusal.reason)
    return RuntimeError(f"unexpected answer {refusal!r}")


def _commits_on_the_loop(job: DiskJob) -> bool:
    """Whether an idle disk's job should be committed on the event loop, not the disk thread.

    Only a job of Paxos records that answer peers (a follower's Accepted, a Promise):
    handing it to the disk thread and back costs two thread wake-ups, 0.25-0.4 ms on this
    machine, on the path of every write, while its commit blocks the loop no longer than
    that (the GIL is released during the fsync). Applies, snapshots and dumps stay on the
    disk thread: they are Python work of unbounded size, and the session tables are the
    disk thread's. A turn that also sent messages (a leader's Accepts, beside its own
    acceptance) stays there too, so those leave while it commits. So do records of more than
    ``LOOP_COMMIT_BYTES_MAX`` of values: writing and syncing MiBs took 0.3-0.7 s, a loop
    that long stalled hears no heartbeat, and its groups' leaders changed over and over
    during a burst of 1 MiB writes (the write timed out at the client).
    """
    if job.applies or job.installs or job.dumps or job.sends_first or not job.answers_peers:
        return False
    values = 0
    for _, record in job.records:
        if record.snapshot is not None:
            return False
        values += sum(len(entry.value) for entry in record.entries)
    return values <= LOOP_COMMIT_BYTES_MAX


def _run_now(
    work: Callable[[DiskJob, asyncio.AbstractEventLoop], _JobResult],
    job: DiskJob,
    loop: asyncio.AbstractEventLoop,
) -> ConcurrentFuture[_JobResult]:
    """``work`` run here, its outcome in the shape the disk thread reports it."""
    done: ConcurrentFuture[_JobResult] = ConcurrentFuture()
    try:
        done.set_result(work(job, loop))
    except Exception as error:  # reported through the future: fatal, as on the disk thread
        done.set_exception(error)
    return done
