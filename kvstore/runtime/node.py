"""``NodeRuntime``: drives every shard replica hosted on this node, on one asyncio loop.

It interprets each ``Ready`` mechanically, exactly as ``paxos/__init__.py`` demands, and makes
no protocol decision of its own:

- every turn, the Readies of *all* shards become one disk job: their ``DurableRecord``s and
  the state-machine applies of their chosen slots go into **one** LMDB write transaction
  (group commit, one fsync), on the single disk thread, FIFO behind earlier jobs, and the
  jobs that queue while the disk is busy share one transaction (``_drain_disk_queue``); except
  that on an idle disk a job whose records answer peers is split, its applies held back
  until those answers are sent (``_split_for_latency``), and a job of such records alone
  is committed on the loop itself (``_commits_on_the_loop``);
- only when that transaction has committed are the writes' ``then_send`` messages sent, then
  ``write_done`` reported in order, then proposals and reads resolved;
- ``send_now`` leaves at once; ticks come from elapsed monotonic time, all due ticks first.

A disk failure is fatal: the runtime stops and re-raises; recovery from LMDB is the tested
path. Client-facing errors are ``NotLeaderError`` (ask ``leader_hint``), ``ProposalDroppedError``
(retry with the same request id), ``OverloadedError`` and ``UnknownShardError``.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future as ConcurrentFuture
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from cluster import ClusterConfig
from cluster.keys import KeySpan
from kvstore.model import (
    ApplyResult,
    Command,
    KeyValue,
    KvStateMachine,
    PlacementSet,
    SessionTable,
    encode_command,
    encoded_bytes_max,
    snapshot,
)
from kvstore.runtime.clock import Clock, TickSource
from kvstore.runtime.ports import StorePort
from paxos import (
    ChosenEntry,
    Config,
    DurableRecord,
    Message,
    NodeId,
    NotLeader,
    Overloaded,
    Proposed,
    ReadQueued,
    Replica,
    Role,
    Slot,
    Snapshot,
    TooLarge,
)

SendFn = Callable[[int, list[tuple[int, Message]]], None]
BALANCE_COOLDOWN_TICKS = 200  # a new leader holds this long before moving to its preferred DC


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


class NodeStoppedError(Exception):
    """The node hit a fatal error and is going down: callers should try another node."""


@dataclass(frozen=True)
class ShardStatus:
    shard_id: int
    role: str
    promised: str
    leader_node_id: int
    chosen_through: int
    applied_slot: int
    lease: bool
    revision: int
    preferred_dc: str
    staleness_bound_ms: float | None


@dataclass
class _Shard:
    shard_id: int
    replica: Replica
    applied_slot: int
    proposals: dict[int, list[tuple[bytes, asyncio.Future[ApplyResult]]]] = field(
        default_factory=dict
    )
    # Gateways waiting for a command they forwarded to the leader to be applied here.
    witnesses: dict[bytes, list[asyncio.Future[ApplyResult]]] = field(default_factory=dict)
    reads: dict[int, asyncio.Future[None]] = field(default_factory=dict)
    read_waits: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    preferred_dc: str = ""
    preferred_leader: int | None = None
    dumping: bool = False
    transfer_cooldown_ticks: int = 0


_JobResult = tuple[list[tuple[int, int, Any]], list[tuple[int, int, bytes]]]


@dataclass
class _Job:
    records: list[tuple[int, DurableRecord]] = field(default_factory=list)
    follow_ups: list[tuple[int, int, tuple[Message, ...]]] = field(default_factory=list)
    installs: list[tuple[int, Snapshot]] = field(default_factory=list)
    applies: list[tuple[int, ChosenEntry]] = field(default_factory=list)
    dumps: list[int] = field(default_factory=list)  # shards to snapshot after the applies
    sends_first: bool = False  # its turn also handed messages to the peer links

    def __bool__(self) -> bool:
        return bool(self.records or self.installs or self.applies or self.dumps)


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
    ) -> None:
        self.cluster = cluster
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
        self._shards: dict[int, _Shard] = {}
        self._disk = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"disk-n{node_id}")
        # Each shard's session table, owned by the disk thread between transactions.
        self._session_tables: dict[int, SessionTable] = {}
        self._turn_scheduled = False
        self._next_token = 0
        self._ticker: asyncio.Task[None] | None = None
        self._ticks: TickSource | None = None
        # Tells this process's freshness stamps from an earlier life's (tick counts restart).
        self._incarnation = random.SystemRandom().randrange(1, 1 << 62)
        self._inflight_jobs = 0
        self._held_back: _Job | None = None  # see _split_for_latency
        # Jobs for the disk thread, merged there into one transaction (_drain_disk_queue).
        self._disk_queue: deque[_Job] = deque()
        self.jobs_split = 0  # how often it split one (a statistic; tests read it)
        self.jobs_on_loop = 0  # how often a job ran on the loop (likewise)
        self.jobs_merged = 0  # jobs that shared a transaction with an earlier one (likewise)
        self.failure: BaseException | None = None
        self.failed = asyncio.Event()  # set on a fatal error: the process must exit
        self._log = structlog.get_logger("kvstore.node").bind(node=node_id)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        my_dc = self.cluster.node(self.node_id).dc
        for spec in self.cluster.shards_of(self.node_id):
            durable = self._store.load(spec.shard_id)
            with self._store.read(spec.shard_id, spec.span) as engine:
                machine = KvStateMachine(engine)
                applied = machine.applied_slot
                preferred_dc = self.cluster.leader_dc(spec.shard_id, machine.leader_dc)
            config = Config(
                node_id=NodeId(self.node_id),
                voters=tuple(NodeId(r) for r in spec.replicas),
                **self._overrides,
            )
            if preferred_dc == my_dc:
                # Leader preference, as a bias: the preferred replica campaigns as soon as
                # the guard allows, the others later at random. The guard itself
                # (election_ticks_min) stays the same everywhere, as the lease requires.
                config = replace(config, election_ticks_max=config.election_ticks_min)
            replica = Replica(
                config,
                rng=random.Random(f"{self._seed}/{spec.shard_id}"),
                logger=self._log.bind(shard=spec.shard_id),
                durable=durable,
                applied_through=Slot(applied),
                incarnation=self._incarnation,
            )
            shard = _Shard(spec.shard_id, replica, applied)
            self._prefer(shard, preferred_dc)
            self._shards[spec.shard_id] = shard
        self._ticks = TickSource(self._clock, self.cluster.tick_ms)
        self._ticker = asyncio.create_task(self._tick_loop())
        self._kick()

    def _prefer(self, shard: _Shard, dc: str) -> None:
        shard.preferred_dc = dc
        spec = self.cluster.shard(shard.shard_id)
        shard.preferred_leader = next(
            (r for r in spec.replicas if self.cluster.node(r).dc == dc), None
        )

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        while self._inflight_jobs:
            await asyncio.sleep(0.005)
        self._disk.shutdown(wait=True)
        for shard in self._shards.values():
            for waiting in shard.proposals.values():
                for _, fut in waiting:
                    fut.cancel()

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cluster.tick_ms / 2000)
            self._catch_up_ticks()

    def _catch_up_ticks(self) -> None:
        """Deliver every tick that elapsed (driver contract 7): before a message, a read, or
        trusting a lease or a staleness bound, a process that was paused catches up first."""
        due = self._ticks.due() if self._ticks is not None else 0
        for _ in range(due):
            for shard in self._shards.values():
                shard.replica.tick()
        if due:
            self._balance(due)
            self._kick()

    def _balance(self, ticks: int) -> None:
        """Hand leadership to the shard's preferred-DC replica when it is healthy.

        Only a leader outside the preferred DC acts, only toward a replica that answered
        recently and is caught up (an aborted transfer would cost this ballot its lease),
        and at most once per ``BALANCE_COOLDOWN_TICKS``, so leaders never flap.
        """
        for shard in self._shards.values():
            shard.transfer_cooldown_ticks = max(0, shard.transfer_cooldown_ticks - ticks)
            target = shard.preferred_leader
            replica = shard.replica
            if (
                target is None
                or target == self.node_id
                or replica.role is not Role.LEADER
                or shard.transfer_cooldown_ticks
                or not replica.peer_is_current(NodeId(target))
            ):
                continue
            shard.transfer_cooldown_ticks = BALANCE_COOLDOWN_TICKS
            if replica.transfer_leadership(NodeId(target)):
                self._log.info("leader_moving_to_preferred_dc", shard=shard.shard_id, to=target)

    # ------------------------------------------------------------------ inputs

    def deliver(self, shard_id: int, msg: Message) -> None:
        shard = self._shards.get(shard_id)
        if shard is None or self.failure is not None:
            return
        self._catch_up_ticks()
        shard.replica.step(msg)
        self._kick()

    async def submit(self, shard_id: int, command: Command) -> ApplyResult:
        shard = self._shard(shard_id)
        encoded = encode_command(command)
        outcome = shard.replica.propose(encoded)
        if isinstance(outcome, NotLeader):
            raise NotLeaderError(shard_id, outcome.leader_hint)
        if isinstance(outcome, TooLarge):
            raise CommandTooLargeError(f"a command of over {outcome.limit_bytes} bytes")
        if isinstance(outcome, Overloaded):
            raise OverloadedError(str(outcome))
        assert isinstance(outcome, Proposed)
        fut: asyncio.Future[ApplyResult] = asyncio.get_running_loop().create_future()
        shard.proposals.setdefault(outcome.slot, []).append((encoded, fut))
        self._kick()
        return await fut

    def witness(self, shard_id: int, command: Command) -> asyncio.Future[ApplyResult]:
        """A future for ``command``'s result when this replica applies it, wherever it was
        proposed. Only for a command with a request id (its bytes are then unique, and a
        retry's result is the first attempt's); cancel it to stop waiting."""
        assert command.request.client_id, "a command without a request id is not unique"
        shard = self._shard(shard_id)
        encoded = encode_command(command)
        fut: asyncio.Future[ApplyResult] = asyncio.get_running_loop().create_future()
        waiting = shard.witnesses.setdefault(encoded, [])
        waiting.append(fut)

        def forget(_: asyncio.Future[ApplyResult]) -> None:
            if fut in waiting:
                waiting.remove(fut)
            if not waiting and shard.witnesses.get(encoded) is waiting:
                del shard.witnesses[encoded]

        fut.add_done_callback(forget)
        return fut

    async def linearizable_point(self, shard_id: int) -> None:
        """Return once a local read reflects every write acknowledged before the call."""
        shard = self._shard(shard_id)
        self._catch_up_ticks()
        self._next_token += 1
        token = self._next_token
        outcome = shard.replica.read(token)
        if isinstance(outcome, NotLeader):
            raise NotLeaderError(shard_id, outcome.leader_hint)
        if not isinstance(outcome, ReadQueued):
            raise OverloadedError("too many reads waiting")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        shard.reads[token] = fut
        self._kick()
        await fut

    def stale_read_bound_ms(self, shard_id: int) -> float | None:
        """A read of this replica's state now misses no write acknowledged more than this
        many ms ago (0: nothing; the leader under its lease, caught up). None: no bound."""
        shard = self._shard(shard_id)
        self._catch_up_ticks()
        ticks = shard.replica.stale_read_bound(Slot(shard.applied_slot))
        return None if ticks is None else ticks * self.cluster.tick_ms

    def preferred_dc(self, shard_id: int) -> str:
        return self._shard(shard_id).preferred_dc

    def get_local(self, shard_id: int, key: bytes) -> KeyValue | None:
        with self.read_state_machine(shard_id) as sm:
            return sm.get(key)

    @contextmanager
    def read_state_machine(self, shard_id: int) -> Iterator[KvStateMachine]:
        """The shard's state as applied on this node (a consistent LMDB read snapshot)."""
        with self._store.read(shard_id, self.cluster.shard(shard_id).span) as engine:
            yield KvStateMachine(engine)

    def status(self) -> list[ShardStatus]:
        """This node's view of every shard it hosts (for operators)."""
        out = []
        for shard_id, shard in sorted(self._shards.items()):
            replica = shard.replica
            out.append(
                ShardStatus(
                    shard_id=shard_id,
                    role="rejoining" if replica.rejoining else replica.role.value,
                    promised=str(replica.promised),
                    leader_node_id=replica.leader_hint or 0,
                    chosen_through=replica.chosen_through,
                    applied_slot=shard.applied_slot,
                    lease=replica.lease_valid(),
                    revision=self.revision(shard_id),
                    preferred_dc=shard.preferred_dc,
                    staleness_bound_ms=self.stale_read_bound_ms(shard_id),
                )
            )
        return out

    def transfer_leadership(self, shard_id: int, to_node: int) -> bool:
        ok = self._shard(shard_id).replica.transfer_leadership(NodeId(to_node))
        self._kick()
        return ok

    def hosts(self, shard_id: int) -> bool:
        return shard_id in self._shards

    def revision(self, shard_id: int) -> int:
        with self.read_state_machine(shard_id) as sm:
            return sm.revision

    def role(self, shard_id: int) -> Role:
        return self._shard(shard_id).replica.role

    def leader_hint(self, shard_id: int) -> int | None:
        return self._shard(shard_id).replica.leader_hint

    def follows(self, shard_id: int) -> int | None:
        """The leader this replica follows, if it is a follower that knows one: a proposal
        or a read here would only be refused with that hint, so a gateway forwards at once."""
        replica = self._shard(shard_id).replica
        return replica.leader_hint if replica.role is Role.FOLLOWER else None

    def applied_slot(self, shard_id: int) -> int:
        return self._shard(shard_id).applied_slot

    def _span(self, shard_id: int) -> KeySpan:
        return self.cluster.shard(shard_id).span

    def _shard(self, shard_id: int) -> _Shard:
        if self.failure is not None:
            raise NodeStoppedError(f"node {self.node_id} is stopping: {self.failure}")
        shard = self._shards.get(shard_id)
        if shard is None:
            raise UnknownShardError(f"shard {shard_id} is not hosted on node {self.node_id}")
        return shard

    # ------------------------------------------------------------------ the turn

    def _kick(self) -> None:
        if not self._turn_scheduled:
            self._turn_scheduled = True
            asyncio.get_running_loop().call_soon(self._turn)

    def _turn(self) -> None:
        self._turn_scheduled = False
        if self.failure is not None:
            return
        outgoing: dict[int, list[tuple[int, Message]]] = {}
        job = _Job()
        for shard in self._shards.values():
            ready = shard.replica.take_ready()
            for msg in ready.send_now:
                outgoing.setdefault(msg.dst, []).append((shard.shard_id, msg))
            for write in ready.writes:
                job.records.append((shard.shard_id, write.record))
                job.follow_ups.append((shard.shard_id, write.seq, write.then_send))
            if ready.snapshot is not None:
                job.installs.append((shard.shard_id, ready.snapshot))
            job.applies.extend((shard.shard_id, entry) for entry in ready.chosen)
            for read in ready.reads:
                fut = shard.reads.pop(read.request_id, None)
                if fut is not None:
                    shard.read_waits.append((read.slot, fut))
            for request_id in ready.failed_reads:
                fut = shard.reads.pop(request_id, None)
                if fut is not None and not fut.done():
                    fut.set_exception(NotLeaderError(shard.shard_id, shard.replica.leader_hint))
            if ready.role_change is not None and ready.role_change.role is Role.LEADER:
                # Hysteresis: whoever just won (an election, or an operator's transfer)
                # leads for a while before the balancer considers moving it.
                shard.transfer_cooldown_ticks = BALANCE_COOLDOWN_TICKS
            # Role changes are logged by the replica itself (with shard, node and ballot).
            # Proposals of a replica that stopped leading stay registered: when their slot
            # is applied here, _resolve tells success from ProposalDroppedError; the
            # client's deadline bounds a slot that is never filled.
            self._release_reads(shard)
        for dst, batch in outgoing.items():
            self._send(dst, batch)
        job.sends_first = bool(outgoing)
        for shard in self._shards.values():
            if (
                not shard.dumping
                and shard.applied_slot - shard.replica.snapshot_slot >= self._compact_every
            ):
                shard.dumping = True
                job.dumps.append(shard.shard_id)
        if job:
            self._submit_held_back()  # an earlier turn's applies go first
            self._submit(self._split_for_latency(job))

    def _split_for_latency(self, job: _Job) -> _Job:
        """On an idle disk, a job that answers peers becomes two transactions: the records
        (and so the replies, e.g. a follower's Accepted) first, then its applies, held back
        until those replies are sent so their Python work does not delay them (the GIL).
        An Accept that tells a follower the previous slot was chosen would otherwise wait
        for that apply too. The contract lets applies trail the records; applies keep their
        order, as the held-back part goes to the disk before any later job. A busy disk
        keeps one transaction per turn: there, the commits are the cost to save."""
        if self._inflight_jobs or not job.applies or not any(m for _, _, m in job.follow_ups):
            return job
        self._held_back = _Job(applies=job.applies, dumps=job.dumps)
        self.jobs_split += 1
        return replace(job, applies=[], dumps=[])

    def _submit_held_back(self) -> None:
        held, self._held_back = self._held_back, None
        if held is not None:
            self._submit(held)

    def _submit(self, job: _Job) -> None:
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
        jobs: list[_Job] = []
        while queue and not (jobs and queue[0].installs):
            jobs.append(queue.popleft())
        if not jobs:
            return None
        merged = jobs[0] if len(jobs) == 1 else _merged(jobs)
        # A failure travels in the future, with the count, so every job is accounted for.
        return merged, len(jobs), _run_now(self._disk_job, merged, loop)

    def _drained(self, done: ConcurrentFuture[_Drained]) -> None:
        outcome = done.result()
        if outcome is None:
            return
        job, count, finished = outcome
        self._inflight_jobs -= count - 1
        self.jobs_merged += count - 1
        self._job_done(job, finished)

    def _disk_job(self, job: _Job, loop: asyncio.AbstractEventLoop) -> _JobResult:
        """One transaction, one fsync, for every shard's work: on the disk thread, or on the
        loop when nothing else is on the disk (then no other write transaction is open)."""
        results: list[tuple[int, int, Any]] = []
        dumps: list[tuple[int, int, bytes]] = []
        with self._store.write() as batch:
            for shard_id, record in job.records:
                batch.persist(shard_id, record)
            for shard_id, snap in job.installs:
                snapshot.restore(batch.engine(shard_id, self._span(shard_id)), snap.data)
                self._session_tables.pop(shard_id, None)  # the snapshot brought its own
            machines: dict[int, KvStateMachine] = {}
            for shard_id, entry in job.applies:
                sm = machines.get(shard_id)
                if sm is None:
                    sm = machines[shard_id] = KvStateMachine(
                        batch.engine(shard_id, self._span(shard_id)),
                        sessions=self._session_tables.get(shard_id),
                    )
                results.append(
                    (shard_id, entry.slot, (entry.value, sm.apply(entry.slot, entry.value)))
                )
            if results:
                # Answer the proposers now, before the commit's fsync: a chosen slot is
                # already on a majority's disk and its result is a function of the log,
                # so a crash before the commit only means the apply is redone. Reads still
                # wait for ``applied_slot``, which moves only after the commit.
                loop.call_soon_threadsafe(self._resolve_all, results)
            for shard_id, sm in machines.items():
                # Kept for the next transaction. If this one fails the node stops, so a
                # table ahead of the disk is never used.
                table = sm.session_table
                if table is not None:
                    self._session_tables[shard_id] = table
            for shard_id in job.dumps:
                engine = batch.engine(shard_id, self._span(shard_id))
                slot = KvStateMachine(engine).applied_slot
                dumps.append((shard_id, slot, snapshot.dump(engine)))
        return results, dumps

    def _job_done(self, job: _Job, done: ConcurrentFuture[_JobResult]) -> None:
        self._inflight_jobs -= 1
        error = done.exception()
        if error is not None:
            self.failure = error
            self._log.error("disk_write_failed", error=repr(error))
            self.failed.set()
            return
        # The transaction is durable: only now may what depends on it leave.
        for shard_id, seq, then_send in job.follow_ups:
            for msg in then_send:
                self._send(msg.dst, [(shard_id, msg)])
            self._shards[shard_id].replica.write_done(seq)
        self._submit_held_back()
        applied, dumps = done.result()
        for shard_id, snap in job.installs:
            self._shards[shard_id].applied_slot = snap.slot
        for shard_id, slot, (_, results) in applied:
            shard = self._shards[shard_id]
            shard.applied_slot = slot
            for _, result in results:
                if isinstance(result, PlacementSet):
                    self._prefer(shard, self.cluster.leader_dc(shard_id, result.leader_dc))
                    self._log.info("placement_set", shard=shard_id, leader_dc=shard.preferred_dc)
        for shard_id, slot, data in dumps:
            # The snapshot is of the state through `slot`: the log up to it can go.
            shard = self._shards[shard_id]
            shard.dumping = False
            shard.replica.compact(Slot(slot), data)
        for shard in self._shards.values():
            self._release_reads(shard)
        self._kick()

    def _resolve_all(self, applied: list[tuple[int, int, Any]]) -> None:
        for shard_id, slot, (value, results) in applied:
            self._resolve(self._shards[shard_id], slot, value, results)

    def _resolve(self, shard: _Shard, slot: int, value: tuple[bytes, ...], results: Any) -> None:
        if shard.witnesses:
            for index, encoded in enumerate(value):
                for fut in shard.witnesses.pop(encoded, ()):
                    if not fut.done():
                        fut.set_result(results[index][1])
        for encoded, fut in shard.proposals.pop(slot, ()):
            if fut.done():
                continue
            try:
                index = value.index(encoded)
            except ValueError:
                fut.set_exception(ProposalDroppedError(f"slot {slot} was chosen without it"))
                continue
            fut.set_result(results[index][1])

    def _release_reads(self, shard: _Shard) -> None:
        still = []
        for slot, fut in shard.read_waits:
            if shard.applied_slot >= slot:
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append((slot, fut))
        shard.read_waits = still


_Drained = tuple[_Job, int, ConcurrentFuture[_JobResult]] | None


def _merged(jobs: list[_Job]) -> _Job:
    """Consecutive jobs as one: each part in order (only the first may install snapshots)."""
    merged = _Job()
    for job in jobs:
        merged.records.extend(job.records)
        merged.follow_ups.extend(job.follow_ups)
        merged.installs.extend(job.installs)
        merged.applies.extend(job.applies)
        merged.dumps.extend(job.dumps)
    return merged


def _commits_on_the_loop(job: _Job) -> bool:
    """Whether an idle disk's job should be committed on the event loop, not the disk thread.

    Only a job of Paxos records that answer peers (a follower's Accepted, a Promise):
    handing it to the disk thread and back costs two thread wake-ups, 0.25-0.4 ms on this
    machine, on the path of every write, while its commit blocks the loop no longer than
    that (the GIL is released during the fsync). Applies, snapshots and dumps stay on the
    disk thread: they are Python work of unbounded size, and the session tables are the
    disk thread's. A turn that also sent messages (a leader's Accepts, beside its own
    acceptance) stays there too, so those leave while it commits.
    """
    return not (job.applies or job.installs or job.dumps or job.sends_first) and any(
        messages for _, _, messages in job.follow_ups
    )


def _run_now(
    work: Callable[[_Job, asyncio.AbstractEventLoop], _JobResult],
    job: _Job,
    loop: asyncio.AbstractEventLoop,
) -> ConcurrentFuture[_JobResult]:
    """``work`` run here, its outcome in the shape the disk thread reports it."""
    done: ConcurrentFuture[_JobResult] = ConcurrentFuture()
    try:
        done.set_result(work(job, loop))
    except Exception as error:  # reported through the future: fatal, as on the disk thread
        done.set_exception(error)
    return done
