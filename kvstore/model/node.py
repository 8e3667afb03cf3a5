"""``Node``: every replica one node hosts, and every decision that spans them. Pure.

Like ``paxos.Replica`` for one group, the node takes inputs and hands out effects, and does
no I/O, reads no clock and starts no thread; the asyncio runtime (``kvstore.runtime.node``)
and the simulator drive the same object.

Randomness (each group's election timeouts) and logging are injected (``rng_for``,
``logger_for``), as ``paxos`` takes them.

Inputs: ``tick`` (one tick of the local clock, for every group), ``step`` (a peer's message
for one group), ``submit`` / ``witness`` / ``read`` (a caller, named by a ``Token`` the driver
chose, asks to propose a command, to hear of a command's result wherever it was proposed, or
for a linearizable read point), ``transfer``, and the completions of what it asked for:
``job_done`` (a disk job is committed and its applies were computed) and ``applied_early``
(the applies of a job were computed, not yet committed).

Effects (``take_effects``): ``DiskJob``s (Paxos records, snapshots to install, chosen slots to
apply and shards to snapshot, for every group at once: one transaction, one fsync), messages
to send now, and answers for tokens: a command's result, a refusal, a read that may be
served.

The driver contract, in the node's terms:
1. Run each job's records, installs, applies and dumps in one transaction, jobs in the order
   they were handed out (several may share a transaction; a job may be split as long as its
   records stay ahead of its applies and nothing overtakes anything earlier).
2. Call ``job_done`` with a job once its transaction committed (fsync'd), with what the state
   machine returned for its applies and the snapshots it dumped; only then are the job's
   follow-up messages released (they ride ``Effects.sends`` of the next ``take_effects``).
3. Optionally call ``applied_early`` when a job's applies are computed but not yet committed:
   a chosen slot is on a majority's disks and its result is a function of the log, so its
   proposers may be answered then (a crash before the commit only means the apply is redone).
4. Serve a read token (``Effects.reads``) from the state machine as committed now.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TypeAlias

from cluster import ClusterConfig
from cluster.keys import KeySpan
from kvstore.model.commands import (
    ApplyResult,
    Command,
    PlacementSet,
    RequestId,
    encode_command,
)
from paxos import (
    ChosenEntry,
    Config,
    DurableRecord,
    DurableState,
    Logger,
    Message,
    NodeId,
    NotLeader,
    Overloaded,
    Proposed,
    ReadQueued,
    Replica,
    Rng,
    Role,
    Slot,
    Snapshot,
    TooLarge,
)

Token: TypeAlias = int  # the driver's name for one waiting caller
BALANCE_COOLDOWN_TICKS = 200  # a new leader holds this long before moving to its preferred DC


# ---------------------------------------------------------------------- answers


@dataclass(frozen=True, slots=True)
class NotLeaderRefusal:
    """Ask ``leader_hint`` (None: no leader known)."""

    leader_hint: int | None


@dataclass(frozen=True, slots=True)
class Dropped:
    """The slot the command was proposed in was chosen without it: retry it, with the same
    request id (the session table keeps a retry exactly-once)."""

    slot: int


@dataclass(frozen=True, slots=True)
class Busy:
    """Too much is waiting already; retry later (the caller decides how long)."""

    reason: str


@dataclass(frozen=True, slots=True)
class TooLargeRefusal:
    """The command does not fit in one slot (never for one the edge admits)."""

    limit_bytes: int


Refusal: TypeAlias = NotLeaderRefusal | Busy | TooLargeRefusal
Answer: TypeAlias = ApplyResult | Refusal | Dropped


@dataclass(frozen=True, slots=True)
class Accepted:
    """The request is registered; its answer comes in ``Effects.answers`` (or reads)."""


# ---------------------------------------------------------------------- effects


@dataclass
class DiskJob:
    """One transaction's worth of work for every group (see the driver contract)."""

    records: list[tuple[int, DurableRecord]] = field(default_factory=list)
    follow_ups: list[tuple[int, int, tuple[Message, ...]]] = field(default_factory=list)
    installs: list[tuple[int, Snapshot]] = field(default_factory=list)
    applies: list[tuple[int, ChosenEntry]] = field(default_factory=list)
    dumps: list[int] = field(default_factory=list)  # groups to snapshot after the applies
    # Each group's span as of this job (its engine's keys), for its applies, installs, dumps.
    spans: dict[int, KeySpan] = field(default_factory=dict)
    sends_first: bool = False  # the turn that made it also sent messages

    def __bool__(self) -> bool:
        return bool(self.records or self.installs or self.applies or self.dumps)

    @property
    def answers_peers(self) -> bool:
        """Its records carry replies to peers (a follower's Accepted, a Promise)."""
        return any(messages for _, _, messages in self.follow_ups)

    def split_applies(self) -> tuple[DiskJob, DiskJob]:
        """The records (and their replies) first, the applies and dumps after."""
        return replace(self, applies=[], dumps=[]), DiskJob(
            applies=self.applies, dumps=self.dumps, spans=self.spans
        )

    @staticmethod
    def merged(jobs: list[DiskJob]) -> DiskJob:
        """Consecutive jobs as one: each part in order (only the first may install)."""
        out = DiskJob()
        for job in jobs:
            out.records.extend(job.records)
            out.follow_ups.extend(job.follow_ups)
            out.installs.extend(job.installs)
            out.applies.extend(job.applies)
            out.dumps.extend(job.dumps)
            out.spans.update(job.spans)
        return out


# (group, slot, (value, [(request, result) per command])) as the state machine answered.
Applied: TypeAlias = tuple[
    int, int, tuple[tuple[bytes, ...], list[tuple[RequestId | None, ApplyResult]]]
]
Dumped: TypeAlias = tuple[int, int, bytes]  # group, slot, the snapshot's bytes


@dataclass
class Effects:
    jobs: list[DiskJob] = field(default_factory=list)
    sends: dict[int, list[tuple[int, Message]]] = field(default_factory=dict)
    answers: list[tuple[Token, Answer]] = field(default_factory=list)
    reads: list[Token] = field(default_factory=list)  # serve these now


@dataclass(frozen=True, slots=True)
class GroupStatus:
    group_id: int
    role: str
    promised: str
    leader_node_id: int
    chosen_through: int
    applied_slot: int
    lease: bool
    preferred_dc: str
    staleness_bound_ticks: int | None


# ---------------------------------------------------------------------- one group


@dataclass
class _Group:
    group_id: int
    replica: Replica
    span: KeySpan
    replicas: tuple[int, ...]
    applied_slot: int
    proposals: dict[int, list[tuple[bytes, Token]]] = field(default_factory=dict)
    # Gateways waiting for a command they forwarded to be applied here, by its bytes.
    witnesses: dict[bytes, list[Token]] = field(default_factory=dict)
    reads: dict[int, Token] = field(default_factory=dict)  # paxos read id -> token
    read_waits: list[tuple[int, Token]] = field(default_factory=list)  # (slot, token)
    preferred_dc: str = ""
    preferred_leader: int | None = None
    dumping: bool = False
    transfer_cooldown_ticks: int = 0


@dataclass(frozen=True, slots=True)
class GroupStart:
    """What a node knows of a group it hosts when it starts (from its disk)."""

    durable: DurableState
    applied_slot: int
    placed_leader_dc: str | None  # set through the log (``SetPlacement``), if ever


# ---------------------------------------------------------------------- the node


class Node:
    def __init__(
        self,
        cluster: ClusterConfig,
        node_id: int,
        groups: Mapping[int, GroupStart],
        *,
        rng_for: Callable[[int], Rng],
        incarnation: int,
        logger_for: Callable[[int], Logger],
        paxos_overrides: Mapping[str, int] | None = None,
        compact_every_slots: int = 10_000,
        make_replica: Callable[..., Replica] = Replica,
    ) -> None:
        """``make_replica`` builds each group's replica (``paxos.Replica``'s signature): the
        simulator's planted bugs pass broken ones."""
        self.cluster = cluster
        self._make_replica = make_replica
        self.node_id = node_id
        self.dc = cluster.node(node_id).dc
        self._rng_for = rng_for
        self._incarnation = incarnation
        self._logger_for = logger_for
        self._log = logger_for(0)
        self._overrides = dict(paxos_overrides or {})
        self._compact_every = compact_every_slots
        self._groups: dict[int, _Group] = {}
        # Groups an input reached since the last turn: only these can owe anything (an idle
        # group costs a turn nothing, which matters with many shards on a node).
        self._touched: dict[int, None] = {}
        self._next_read_id = 0
        self._effects = Effects()
        for group_id, start in sorted(groups.items()):
            self._open(group_id, start)

    # ------------------------------------------------------------------ groups

    def _open(self, group_id: int, start: GroupStart) -> None:
        spec = self.cluster.shard(group_id)
        config = Config(
            node_id=NodeId(self.node_id),
            voters=tuple(NodeId(r) for r in spec.replicas),
            **self._overrides,
        )
        preferred_dc = self.cluster.leader_dc(group_id, start.placed_leader_dc)
        if preferred_dc == self.dc:
            # Leader preference, as a bias: the preferred replica campaigns as soon as the
            # guard allows, the others later at random. The guard itself (election_ticks_min)
            # stays the same everywhere, as the lease requires.
            config = replace(config, election_ticks_max=config.election_ticks_min)
        replica = self._make_replica(
            config,
            rng=self._rng_for(group_id),
            logger=self._logger_for(group_id),
            durable=start.durable,
            applied_through=Slot(start.applied_slot),
            incarnation=self._incarnation,
        )
        group = _Group(group_id, replica, spec.span, spec.replicas, start.applied_slot)
        self._prefer(group, preferred_dc)
        self._groups[group_id] = group
        self._touched[group_id] = None

    def _prefer(self, group: _Group, dc: str) -> None:
        group.preferred_dc = dc
        group.preferred_leader = next(
            (r for r in group.replicas if self.cluster.node(r).dc == dc), None
        )

    def hosts(self, group_id: int) -> bool:
        return group_id in self._groups

    def span(self, group_id: int) -> KeySpan:
        return self._groups[group_id].span

    def group_ids(self) -> list[int]:
        return sorted(self._groups)

    # ------------------------------------------------------------------ time

    def tick(self) -> None:
        """One tick of this node's clock passed, for every group."""
        for group in self._groups.values():
            group.replica.tick()
        self._touched.update(dict.fromkeys(self._groups))
        self._balance(1)

    def _balance(self, ticks: int) -> None:
        """Hand leadership to the group's preferred-DC replica when it is healthy.

        Only a leader outside the preferred DC acts, only toward a replica that answered
        recently and is caught up (an aborted transfer would cost this ballot its lease),
        and at most once per ``BALANCE_COOLDOWN_TICKS``, so leaders never flap.
        """
        for group in self._groups.values():
            group.transfer_cooldown_ticks = max(0, group.transfer_cooldown_ticks - ticks)
            target = group.preferred_leader
            replica = group.replica
            if (
                target is None
                or target == self.node_id
                or replica.role is not Role.LEADER
                or group.transfer_cooldown_ticks
                or not replica.peer_is_current(NodeId(target))
            ):
                continue
            group.transfer_cooldown_ticks = BALANCE_COOLDOWN_TICKS
            if replica.transfer_leadership(NodeId(target)):
                self._touched[group.group_id] = None
                self._log.info("leader_moving_to_preferred_dc", shard=group.group_id, to=target)

    # ------------------------------------------------------------------ inputs

    def step(self, group_id: int, msg: Message) -> None:
        """A peer's message for one group (a group this node does not host: dropped)."""
        group = self._groups.get(group_id)
        if group is not None:
            group.replica.step(msg)
            self._touched[group_id] = None

    def submit(self, group_id: int, command: Command, token: Token) -> Accepted | Refusal:
        """Propose ``command``; its result (or ``Dropped``) comes for ``token`` once applied."""
        group = self._groups[group_id]
        encoded = encode_command(command)
        outcome = group.replica.propose(encoded)
        self._touched[group_id] = None
        if isinstance(outcome, NotLeader):
            return NotLeaderRefusal(outcome.leader_hint)
        if isinstance(outcome, TooLarge):
            return TooLargeRefusal(outcome.limit_bytes)
        if isinstance(outcome, Overloaded):
            return Busy("too many commands are waiting for a slot")
        assert isinstance(outcome, Proposed)
        group.proposals.setdefault(outcome.slot, []).append((encoded, token))
        return Accepted()

    def witness(self, group_id: int, command: Command, token: Token) -> None:
        """Answer ``token`` with ``command``'s result when this replica applies it, wherever it
        was proposed. Only for a command with a request id: its bytes are then unique, and a
        retry's result is the first attempt's."""
        assert command.request.client_id, "a command without a request id is not unique"
        group = self._groups[group_id]
        group.witnesses.setdefault(encode_command(command), []).append(token)

    def unwitness(self, group_id: int, command: Command, token: Token) -> None:
        """The gateway behind ``token`` stopped waiting (the leader answered first)."""
        group = self._groups.get(group_id)
        if group is None:
            return
        encoded = encode_command(command)
        tokens = group.witnesses.get(encoded)
        if tokens is not None and token in tokens:
            tokens.remove(token)
            if not tokens:
                del group.witnesses[encoded]

    def read(self, group_id: int, token: Token) -> Accepted | Refusal:
        """A linearizable read point: ``token`` comes back in ``Effects.reads`` once a local
        read reflects every write acknowledged before this call."""
        group = self._groups[group_id]
        self._next_read_id += 1
        outcome = group.replica.read(self._next_read_id)
        self._touched[group_id] = None
        if isinstance(outcome, NotLeader):
            return NotLeaderRefusal(outcome.leader_hint)
        if not isinstance(outcome, ReadQueued):
            return Busy("too many reads waiting")
        group.reads[self._next_read_id] = token
        return Accepted()

    def transfer(self, group_id: int, to_node: int) -> bool:
        self._touched[group_id] = None
        return self._groups[group_id].replica.transfer_leadership(NodeId(to_node))

    # ------------------------------------------------------------------ effects

    def take_effects(self) -> Effects:
        """Everything the driver owes the node now (see the module's contract)."""
        effects = self._effects
        job = DiskJob()
        touched = [self._groups[g] for g in self._touched if g in self._groups]
        self._touched = {}
        for group in touched:
            ready = group.replica.take_ready()
            for msg in ready.send_now:
                effects.sends.setdefault(msg.dst, []).append((group.group_id, msg))
            for write in ready.writes:
                job.records.append((group.group_id, write.record))
                job.follow_ups.append((group.group_id, write.seq, write.then_send))
            if ready.snapshot is not None:
                job.installs.append((group.group_id, ready.snapshot))
            job.applies.extend((group.group_id, entry) for entry in ready.chosen)
            for read in ready.reads:
                token = group.reads.pop(read.request_id, None)
                if token is not None:
                    group.read_waits.append((read.slot, token))
            for request_id in ready.failed_reads:
                token = group.reads.pop(request_id, None)
                if token is not None:
                    effects.answers.append((token, NotLeaderRefusal(group.replica.leader_hint)))
            if ready.role_change is not None and ready.role_change.role is Role.LEADER:
                # Hysteresis: whoever just won (an election, or an operator's transfer)
                # leads for a while before the balancer considers moving it.
                group.transfer_cooldown_ticks = BALANCE_COOLDOWN_TICKS
            # Role changes are logged by the replica itself (with shard, node and ballot).
            # Proposals of a replica that stopped leading stay registered: when their slot
            # is applied here, the answer tells success from Dropped; the caller's deadline
            # bounds a slot that is never filled.
            self._release_reads(group)
        job.sends_first = bool(effects.sends)
        for group in touched:
            if (
                not group.dumping
                and group.applied_slot - group.replica.snapshot_slot >= self._compact_every
            ):
                group.dumping = True
                job.dumps.append(group.group_id)
        if job:
            working = {g for g, _ in job.applies} | {g for g, _ in job.installs} | set(job.dumps)
            job.spans = {g: self._groups[g].span for g in working}
            effects.jobs.append(job)
        self._effects = Effects()
        return effects

    def take_sends(self) -> dict[int, list[tuple[int, Message]]]:
        """Only the messages owed now (what ``job_done`` released): cheaper than a turn."""
        sends, self._effects.sends = self._effects.sends, {}
        return sends

    def take_answers(self) -> tuple[list[tuple[Token, Answer]], list[Token]]:
        """Only the answers and reads owed now (what ``applied_early`` produced)."""
        effects = self._effects
        answers, reads = effects.answers, effects.reads
        effects.answers, effects.reads = [], []
        return answers, reads

    def job_done(self, job: DiskJob, applied: list[Applied], dumped: list[Dumped]) -> None:
        """``job`` is committed (fsync'd): what depends on it may go."""
        effects = self._effects
        self._touched.update(dict.fromkeys(g for g, _, _ in job.follow_ups))
        self._touched.update(dict.fromkeys(g for g, _ in job.installs))
        self._touched.update(dict.fromkeys(g for g, _, _ in applied))
        self._touched.update(dict.fromkeys(g for g, _, _ in dumped))
        for group_id, seq, then_send in job.follow_ups:
            for msg in then_send:
                effects.sends.setdefault(msg.dst, []).append((group_id, msg))
            self._groups[group_id].replica.write_done(seq)
        for group_id, snap in job.installs:
            self._groups[group_id].applied_slot = snap.slot
        for group_id, slot, (_, results) in applied:
            group = self._groups[group_id]
            group.applied_slot = slot
            for _, result in results:
                if isinstance(result, PlacementSet):
                    self._prefer(group, self.cluster.leader_dc(group_id, result.leader_dc))
                    self._log.info("placement_set", shard=group_id, leader_dc=group.preferred_dc)
        for group_id, slot, data in dumped:
            # The snapshot is of the state through `slot`: the log up to it can go.
            group = self._groups[group_id]
            group.dumping = False
            group.replica.compact(Slot(slot), data)
        self.applied_early(applied)  # answers not given early (applies done on the loop)
        for group_id in self._touched:
            self._release_reads(self._groups[group_id])

    def applied_early(self, applied: list[Applied]) -> None:
        """A job's applies were computed (maybe not yet committed): answer their proposers
        and witnesses. Each is answered once; a second call for the same slots is a no-op."""
        for group_id, slot, (value, results) in applied:
            group = self._groups.get(group_id)
            if group is None:
                continue
            if group.witnesses:
                for index, encoded in enumerate(value):
                    for token in group.witnesses.pop(encoded, ()):
                        self._effects.answers.append((token, results[index][1]))
            for encoded, token in group.proposals.pop(slot, ()):
                try:
                    index = value.index(encoded)
                except ValueError:
                    self._effects.answers.append((token, Dropped(slot)))
                    continue
                self._effects.answers.append((token, results[index][1]))

    def _release_reads(self, group: _Group) -> None:
        still = []
        for slot, token in group.read_waits:
            if group.applied_slot >= slot:
                self._effects.reads.append(token)
            else:
                still.append((slot, token))
        group.read_waits = still

    # ------------------------------------------------------------------ views

    def role(self, group_id: int) -> Role:
        return self._groups[group_id].replica.role

    def leader_hint(self, group_id: int) -> int | None:
        return self._groups[group_id].replica.leader_hint

    def follows(self, group_id: int) -> int | None:
        """The leader this replica follows, if it is a follower that knows one: a proposal
        or a read here would only be refused with that hint, so a gateway forwards at once."""
        replica = self._groups[group_id].replica
        return replica.leader_hint if replica.role is Role.FOLLOWER else None

    def applied_slot(self, group_id: int) -> int:
        return self._groups[group_id].applied_slot

    def preferred_dc(self, group_id: int) -> str:
        return self._groups[group_id].preferred_dc

    def stale_read_bound_ticks(self, group_id: int) -> int | None:
        """A read of this replica's applied state misses no write acknowledged more than
        this many nominal ticks ago (0: nothing; a caught-up leaseholder). None: no bound."""
        group = self._groups[group_id]
        return group.replica.stale_read_bound(Slot(group.applied_slot))

    def replica(self, group_id: int) -> Replica:
        """The group's replica, read-only (tests and the simulator inspect it)."""
        return self._groups[group_id].replica

    def status(self) -> list[GroupStatus]:
        out = []
        for group_id, group in sorted(self._groups.items()):
            replica = group.replica
            out.append(
                GroupStatus(
                    group_id=group_id,
                    role="rejoining" if replica.rejoining else replica.role.value,
                    promised=str(replica.promised),
                    leader_node_id=replica.leader_hint or 0,
                    chosen_through=replica.chosen_through,
                    applied_slot=group.applied_slot,
                    lease=replica.lease_valid(),
                    preferred_dc=group.preferred_dc,
                    staleness_bound_ticks=self.stale_read_bound_ticks(group_id),
                )
            )
        return out
