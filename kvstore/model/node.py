"""``Node``: every replica one node hosts, and every decision that spans them. Pure.

Like ``paxos.Replica`` for one group, the node takes inputs and hands out effects, and does
no I/O, reads no clock and starts no thread; the asyncio runtime (``kvstore.runtime.node``)
and the simulator drive the same object.

Randomness (each group's election timeouts) and logging are injected (``rng_for``,
``logger_for``), as ``paxos`` takes them.

Inputs: ``tick`` (ticks of the local clock, for every group), ``step`` (a peer's message for
one group), ``heard`` and ``peer_restarted`` (node liveness), ``submit`` / ``witness`` /
``read`` (a caller, named by a ``Token`` the driver chose, asks to propose a command, to hear
of a command's result wherever it was proposed, or for a linearizable read point),
``transfer``, and the completions of what it asked for:
``job_done`` (a disk job is committed and its applies were computed) and ``applied_early``
(the applies of a job were computed, not yet committed).

Effects (``take_effects``): ``DiskJob``s (Paxos records, snapshots to install, chosen slots to
apply and shards to snapshot, for every group at once: one transaction, one fsync), messages
to send now, liveness pings, and answers for tokens: a command's result, a refusal, a read
that may be served.

Many shards, idle cheaply: a group whose replica is ``quiescent`` (``paxos.replica``) is not
ticked until an input comes for it, and is then resumed with the ticks it missed; a turn
touches only the groups an input reached. What keeps quiet groups live is one liveness
signal per pair of nodes, not per group: every message from a peer counts, and a node that
sent a peer nothing for ``PING_TICKS`` sends it a ``Ping``. A peer silent for
``SILENT_TICKS`` wakes every quiet group here that follows a leader on it (they elect anew
if it is gone), as CockroachDB's quiesced ranges wake on node liveness.

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

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeAlias

from cluster import ClusterConfig
from cluster.keys import KeySpan
from cluster.ranges import META_RANGE_ID, RangeDescriptor, base_slot_of
from kvstore.model import snapshot as snapshots
from kvstore.model.commands import (
    NO_REQUEST,
    ApplyResult,
    Command,
    Compact,
    DeleteResult,
    Frozen,
    HistoryCompacted,
    LeaseDetached,
    LeaseGranted,
    LeaseRevoke,
    LeaseRevoked,
    LeasesForgotten,
    LeaseTable,
    LeaseTableRead,
    Merge,
    MergeDone,
    PlacementSet,
    PutResult,
    RangesRecorded,
    Reconfigured,
    RequestId,
    SplitDone,
    TxnResult,
    encode_command,
    merge_in,
    reconfigure_in,
)
from kvstore.model.lease_clock import LeaseClock
from kvstore.model.lease_keeper import LeaseKeeper, LeaseState
from kvstore.model.ranges import Successor
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
# A group this node asked to split is not asked about again for this many seconds (the
# split, or its refusal, comes within them; a refused one waits as long before a retry).
SPLIT_REST_S = 10
# A frozen range still not merged this long after its freeze (its merge's caller stopped
# half-way): the node leading it asks the driver to finish the merge.
MERGE_FINISH_S = 5
# A range this node asked to merge (or to finish merging) is not asked about again for this
# many seconds (the merge, or its refusal, comes within them).
MERGE_REST_S = 10
# Liveness per pair of nodes (quiet groups rely on it): a ping to a peer sent nothing for
# this many ticks, and a peer silent this long wakes the quiet groups that follow it.
PING_TICKS = 5
SILENT_TICKS = 25
# Every group starts dormant (quiet, untimed): a node of many shards must not tick them all,
# nor start an election for each, at once. The preferred replica of each is queued to
# campaign, a few at a time (while fewer than ``AWAKE_TARGET`` groups are awake here), and
# its messages wake the others. A dormant group that has heard no leader after
# ``DORMANT_TICKS`` (spread over as many again, by group) wakes anyway (a preferred replica
# that cannot campaign, say, as it waits for a snapshot).
AWAKE_TARGET = 48
# A node asks a peer about a group it does not host (``Host``) at most this often per group;
# it remembers at most this many questions.
HOST_ASK_TICKS = 10
HOST_ASKED_MAX = 1024
# A dormant group with no leader heard this long tells its preferred replica of itself
# (``Node._tell_preferred``), and again this often while it stays so.
TELL_PREFERRED_AFTER_TICKS = 2 * SILENT_TICKS
TELL_PREFERRED_TICKS = 10 * SILENT_TICKS
NODE_LOG = -1  # what ``logger_for`` is asked for the node's own log (not a group's)
DORMANT_TICKS = 1000


@dataclass(frozen=True, slots=True)
class Ping:
    """Node-to-node liveness, with nothing else to say (``Effects.pings``). ``incarnation``:
    the sender's process start, so a peer notices a restart however quick."""

    src: int
    dst: int
    incarnation: int = 0


@dataclass(frozen=True, slots=True)
class Host:
    """Node-to-node, about a group one of them does not host. A question (``descriptor``
    None): ``dst`` sent ``src`` a message of group ``group_id``, which ``src`` knows
    nothing of. The answer: the group's descriptor as ``src`` knows it; ``dst``, if among
    its replicas, hosts the group from then on (waiting for a snapshot). How a replica added
    by a reconfiguration (or one kept that did not apply the stop) learns of its group: no
    log it holds tells it."""

    src: int
    dst: int
    group_id: int
    descriptor: RangeDescriptor | None = None
    # With an answer: the incarnation of the disk the group's configuration listed for
    # ``dst`` (0: none known). A disk still that one never took part in the group: it votes
    # at once.
    incarnation: int = 0
    # With an answer: the group's descriptor now, if a split or merge changed it since it
    # began (``descriptor``): what a node hosting a range split off it since takes.
    current: RangeDescriptor | None = None


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
    # Each group's descriptor as the node knows it, for a state machine that has none stored
    # yet (a shard of the configured layout, before its first apply).
    descriptors: dict[int, RangeDescriptor] = field(default_factory=dict)
    # Groups merged into another here (group -> the merged descriptor): their slots touch no
    # state (right's keys are the left shard's now); every command in them is OutOfRange.
    retired: dict[int, RangeDescriptor] = field(default_factory=dict)
    # Groups this node found merged away (a snapshot of the group that took them over):
    # (group, the one that took it), recorded in the group's state, for every restart.
    tombstones: list[tuple[int, int]] = field(default_factory=list)
    # Groups first hosted here on a ``Host`` answer: their descriptor is stored, so a restart
    # hosts them again (with their Paxos records) before any state of theirs arrives.
    hosted: list[RangeDescriptor] = field(default_factory=list)
    # Per group installing a snapshot: the spans of the other groups served here, whose keys
    # its install leaves alone (``snapshot.restore``).
    keep: dict[int, list[KeySpan]] = field(default_factory=dict)
    # (an ended group, its successor): the successor's first state written from the ended
    # group's as installed here (a snapshot of after its stop), before anything else.
    bases: list[tuple[int, RangeDescriptor]] = field(default_factory=list)
    sends_first: bool = False  # the turn that made it also sent messages
    # Filled by ``run_job``: each installed snapshot's ``Freeze`` slot (0: none), as the
    # restore left it in the state machine (read there, off the node's loop).
    installed_frozen: dict[int, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(
            self.records
            or self.installs
            or self.applies
            or self.dumps
            or self.tombstones
            or self.hosted
            or self.bases
        )

    @property
    def replaced(self) -> list[int]:
        """The groups whose whole state this job writes anew (a snapshot installed, a
        successor's base): their watchers catch up again from history."""
        return [group for group, _ in self.installs] + [d.range_id for _, d in self.bases]

    @property
    def answers_peers(self) -> bool:
        """Its records carry replies to peers (a follower's Accepted, a Promise)."""
        return any(messages for _, _, messages in self.follow_ups)

    def split_applies(self) -> tuple[DiskJob, DiskJob]:
        """The records (and their replies) first, the applies and dumps after."""
        return replace(self, applies=[], dumps=[]), DiskJob(
            applies=self.applies,
            dumps=self.dumps,
            descriptors=self.descriptors,
            retired=self.retired,
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
            out.descriptors.update(job.descriptors)
            out.retired.update(job.retired)
            out.tombstones.extend(job.tombstones)
            out.hosted.extend(job.hosted)
            out.keep.update(job.keep)
            out.bases.extend(job.bases)
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
    # Groups this node leads that ``[sharding]`` finds too big or too hot: the driver splits
    # each (a new range id, the halving key, ``Split`` proposed here).
    splits_wanted: list[int] = field(default_factory=list)
    # Left ranges whose right neighbour (led here) should merge into them: small and cold
    # (``[sharding]``). The driver merges each, as ``Admin.MergeRange`` of the left range.
    merges_wanted: list[int] = field(default_factory=list)
    # Frozen ranges led here whose merge did not follow in time (its caller stopped
    # half-way, or the left range moved meanwhile, and may not be hosted here): the driver
    # merges each into whatever range ends where it starts, moving that one onto its
    # replicas first if they differ (a frozen range changes none).
    merges_unfinished: list[int] = field(default_factory=list)
    pings: list[Ping] = field(default_factory=list)  # peers sent nothing else a while
    hosts: list[Host] = field(default_factory=list)  # questions and answers (``Host``)
    # Descriptors of ranges led here that the meta range may not know yet (this node began
    # to lead them, or split or merged them): the driver records them there
    # (``RecordRanges`` at the meta leader) and calls ``ranges_recorded`` once it did.
    ranges_to_record: list[RangeDescriptor] = field(default_factory=list)
    # Ended leases (this node leads the meta range) whose keys may remain somewhere: the
    # driver proposes ``DetachLease`` to every range, then ``LeasesEnded`` to the meta range.
    leases_to_detach: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class NotLeaseholder:
    """Lease questions are for the meta range's leader, once it holds its read lease and
    has read the lease table: ask ``leader_hint`` (None: unknown), or again shortly."""

    leader_hint: int | None


@dataclass(frozen=True, slots=True)
class GroupStatus:
    group_id: int
    descriptor: RangeDescriptor
    role: str
    promised: str
    leader_node_id: int
    chosen_through: int
    applied_slot: int
    lease: bool
    preferred_dc: str
    staleness_bound_ticks: int | None
    ops_per_s: float  # commands applied here in the last whole second
    quiet: bool = False  # quiescent: not ticked until an input comes


# ---------------------------------------------------------------------- one group


@dataclass
class _Group:
    group_id: int
    replica: Replica
    descriptor: RangeDescriptor
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
    placed_leader_dc: str | None = None  # set through the log, if ever
    ops: int = 0  # commands applied here so far
    ops_at_sample: int = 0  # ``ops`` at the last whole second
    ops_per_s: float = 0.0
    size_bytes: int = 0  # keys and values, as the last job that changed them left them
    split_rest_s: int = 0  # seconds before this node may ask to split the group again
    frozen_for_s: int = 0  # whole seconds this node saw it frozen and not merged
    unchanged_s: int = 0  # whole seconds since its span last changed here (or since start)
    merge_rest_s: int = 0  # seconds before this node may ask to merge it again
    frozen_slot: int = 0  # applied a Freeze there: final, waiting to be merged (0: not)
    # Merged into this group here: a tombstone that still votes in its Paxos group (a
    # lagging peer may need its log to reach the freeze) but touches no state.
    absorbed_by: int | None = None
    # Reconfigured without this node (``Reconfigure``): the successor group, hosted
    # elsewhere. Final, as a tombstone is, but its state is its own (no group here took its
    # keys), so it may still be snapshotted for a replica that lags.
    ended_into: int | None = None
    # Began as a reconfigured group's successor: its replicas answer ``Host`` questions
    # about it (a replica new to it learns of it from no log).
    tells_members: bool = False
    # The descriptor it began with (what ``Host`` answers: the span of the configuration it
    # succeeded, which a node behind on that configuration still holds).
    born_as: RangeDescriptor | None = None
    disks: dict[int, int] = field(default_factory=dict)  # its replicas' disks (``Host``)
    # Chosen slots held back from a Merge on: applied once this node's replica of the
    # right shard has applied its freeze (so every replica merges the same final state).
    held: list[ChosenEntry] = field(default_factory=list)
    # A snapshot that came while a merge of this group was in flight, or while an older
    # replica here still replays over its keys (``_replaying_under``): installed after.
    held_install: Snapshot | None = None
    merging_into: int | None = None  # a Merge of this group is queued there, outcome unknown
    # Shards split off this one whose base state may be held by too few of their replicas
    # (new shard id -> split slot): until each has chosen a slot past its base, which its
    # replicas accept only once they hold the base, this log keeps the split, so a replica
    # that lags catches up through it and makes the base itself rather than receiving a
    # snapshot without it (sim seed 1715).
    young_successors: dict[int, int] = field(default_factory=dict)
    # The slot of a split past the stored snapshot (0: none): once the split settles
    # (``young_successors``), the snapshot's bytes are forgotten (``_forget_pre_split``).
    split_past_snapshot: int = 0
    quiet_since: int | None = None  # the node tick it went quiet at (None: ticked)
    told_preferred_at: int | None = None  # dormant: when its preferred replica was told of it
    # History (``[history]``): the newest revision applied here as results showed it, that
    # revision once a second when it moved (seconds of this node's clock), what the group
    # compacted to, and whether its pass removing unneeded versions goes on.
    revision: int = 0
    revision_samples: deque[tuple[float, int]] = field(default_factory=deque)
    compacted: int = 0
    collecting: bool = False

    @property
    def holds_back(self) -> bool:
        """Chosen slots or a snapshot held back here (``Node._release``)."""
        return bool(self.held) or self.held_install is not None

    @property
    def retired(self) -> bool:
        """No range of the map any more here: merged or reconfigured away."""
        return self.absorbed_by is not None or self.ended_into is not None

    @property
    def awaiting(self) -> bool:
        """Hosted, but without the state it starts from: a snapshot will bring it (until
        its install is applied here, the descriptor is only what its parent recorded)."""
        base = self.replica.config.base_slot
        return self.replica.chosen_through < base or self.applied_slot < base


def _needs_base(waiting: _Group) -> bool:
    """Whether a successor hosted on a ``Host`` answer still has no state: it may start
    from the base its predecessor's stop makes here. A snapshot received (on its way to the
    disk in a job, or installed) brings a later state: the replica that holds it stays, and
    no base is written over it (the fault suite: a rebirth under an install in flight broke
    the node's write order, and the node stopped; sim seed 1571 with Prepares resent: the
    predecessor's final snapshot, installed just before, wrote its state over the one the
    successor's install brought, and the range after it applied one revision behind)."""
    return (
        waiting.awaiting
        and not waiting.retired
        and waiting.replica.snapshot_slot < waiting.replica.config.base_slot
    )


def _final_snapshot(start: GroupStart, compacted: int) -> bool:
    """Whether the group ended (a ``Reconfigure``) or froze for a merge at or before its
    stored snapshot: nothing after that slot changes its state."""
    if start.frozen_slot and start.frozen_slot <= compacted:
        return True
    return any(
        s.descriptor.range_id == start.ended_into and s.split_slot <= compacted
        for s in start.successors
    )


@dataclass(frozen=True, slots=True)
class GroupStart:
    """What a node knows of a group it hosts when it starts (from its disk)."""

    durable: DurableState
    applied_slot: int
    placed_leader_dc: str | None  # set through the log (``SetPlacement``), if ever
    descriptor: RangeDescriptor
    # The shards split off this one, as its state last knew them: a node that learned of a
    # split from a snapshot hosts the new shard before it has any of its state.
    successors: tuple[Successor, ...] = ()
    size_bytes: int = 0  # keys and values (the split policy's measure)
    frozen_slot: int = 0  # the slot of the ``Freeze`` that made it final for a merge (0: none)
    # Whether it votes was decided as it starts (a new group with nothing on disk yet): the
    # node records the decision in its first job, or storage's default would undo it.
    record_voting: bool = False
    merged_into: int = 0  # merged away here into that group (0: not)
    ended_into: int = 0  # reconfigured into that group (0: not; ``Reconfigure``)
    reconfigured_from: int = 0  # began as that group's successor (0: not)
    disks: tuple[tuple[int, int], ...] = ()  # its replicas then, with their disks'
    born_as: RangeDescriptor | None = None  # the descriptor it began with, as a successor


def votes_in_new_group(parent: DurableState | Replica, split_slot: int, *, founding: bool) -> bool:
    """Whether this node's replica of a group split off ``parent`` at ``split_slot`` may vote
    at once. Only if this disk never lost its state since before that split: then no earlier
    life of this node took part in the new group. A parent that lost its state and rejoined
    through slot B knows every slot above B was chosen after the loss; at or below B (or while
    it still rejoins), the new group's replica rejoins too (``paxos.rejoin``).

    ``split_slot`` 0: the group was split off another one, since merged into ``parent``, at
    a slot of that other log, which says nothing about ``parent``'s. Then only a disk that
    never lost its state (``founding``: made for the cluster, never wiped) may vote at once:
    it holds every group it ever took part in (seed 3538: two replicas of such a group that
    learned of it from the merged range's snapshot both waited to rejoin, and a group of
    three with two rejoining never elects)."""
    if split_slot == 0:
        return founding
    voting = parent.voting if isinstance(parent, DurableState) else not parent.rejoining
    return voting and split_slot > parent.rejoined_at


def on_listed_disk(listed: int, disk: int) -> bool:
    """Whether this node's disk (incarnation ``disk``) is the one a configuration change
    listed for it (``listed``, from ``Reconfigure.disks``; 0: none listed). That disk was
    there before the new group was, so no earlier life of this node took part in the group:
    its replica may vote at once."""
    return listed != 0 and listed == disk


def _supersedes(newer: RangeDescriptor, older: RangeDescriptor) -> bool:
    """``newer`` took over some of ``older``'s keys: they overlap and its generation is
    higher (every split, merge and reconfiguration raises it past those it replaced)."""
    return newer.generation > older.generation and newer.overlaps(older)


def taken_over(newer: RangeDescriptor, older: RangeDescriptor) -> bool:
    """Whether ``older``'s range is gone, its keys ``newer``'s (``newer`` supersedes it):
    ``newer`` holds its first key. A range keeps its first key as long as it lives (a
    split keeps the left part, a merge the left range), so a newer range holding it came
    after its end (a merge, a reconfiguration). A newer range holding only later keys of
    it was split off it, which may live on (with those keys no longer its own)."""
    return newer.contains(older.start)


def _has_state(group: _Group) -> bool:
    """Whether the group's state is in the state machine here, or a snapshot bringing it
    is (installed by the Paxos replica, on its way): not just hosted, waiting for one."""
    return not group.awaiting or group.replica.snapshot_slot >= group.replica.config.base_slot


def _blank(durable: DurableState) -> bool:
    """Nothing was ever recorded for the group on this disk."""
    return (
        durable.promised == DurableState().promised
        and not durable.log
        and not durable.chosen_through
        and durable.snapshot is None
    )


def hosted_at_start(
    node_id: int,
    layout: Mapping[int, RangeDescriptor],
    open_group: Callable[[RangeDescriptor], GroupStart],
    *,
    disk_incarnation: int = 0,
) -> dict[int, GroupStart]:
    """The groups a node hosts as it starts, and what it knows of each.

    ``layout``: the configured layout overlaid with every descriptor the node's storage holds
    (a stored one is newer). ``open_group`` reads one group's start from storage. A group
    split off a hosted one, that this node replicates and knows of only from its parent's
    state, is hosted too (it waits for a snapshot). ``disk_incarnation``: this node's disk
    (a successor that listed it votes at once, ``Node._votes_in_successor``)."""
    known = dict(layout)
    queue = sorted(g for g, d in known.items() if node_id in d.replicas)
    starts: dict[int, GroupStart] = {}
    while queue:
        group_id = queue.pop(0)
        start = starts[group_id] = open_group(known[group_id])
        for successor in start.successors:
            d = successor.descriptor
            if node_id in d.replicas and d.range_id not in known:
                known[d.range_id] = d
                queue.append(d.range_id)
    # A new group with nothing recorded yet (the node stopped before its first record) votes
    # as it would have when created; storage's default knows only how the disk was made.
    for start in list(starts.values()):
        for successor in start.successors:
            child = starts.get(successor.descriptor.range_id)
            if child is not None and _blank(child.durable):
                # A blank group's storage default says how the disk was made (founding). A
                # successor whose change listed this very disk votes as at its creation.
                listed = dict(child.disks).get(node_id, 0)
                voting = on_listed_disk(listed, disk_incarnation) or votes_in_new_group(
                    start.durable, successor.split_slot, founding=child.durable.voting
                )
                starts[successor.descriptor.range_id] = replace(
                    child, durable=replace(child.durable, voting=voting), record_voting=True
                )
    return starts


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
        founding: bool = True,
        lease_clock_class: type[LeaseClock] = LeaseClock,
        disk_incarnation: int = 0,
    ) -> None:
        """``make_replica`` builds each group's replica (``paxos.Replica``'s signature): the
        simulator's planted bugs pass broken ones. ``founding``: this node's disk was made
        for the cluster and never lost its state (``votes_in_new_group``)."""
        self._founding = founding
        # This node's disk (a new one, after a loss, has another): see ``Host``.
        self._disk_incarnation = disk_incarnation
        self.cluster = cluster
        self._make_replica = make_replica
        self.node_id = node_id
        self.dc = cluster.node(node_id).dc
        self._rng_for = rng_for
        self._incarnation = incarnation
        self._logger_for = logger_for
        self._log = logger_for(NODE_LOG)
        self._overrides = dict(paxos_overrides or {})
        self._compact_every = compact_every_slots
        self._groups: dict[int, _Group] = {}
        # Groups an input reached since the last turn: only these can owe anything (an idle
        # group costs a turn nothing, which matters with many shards on a node).
        self._touched: dict[int, None] = {}
        self._next_read_id = 0
        self._effects = Effects()
        # Records the node itself owes the disk (a new group's vote), for the next job.
        self._records: list[tuple[int, DurableRecord]] = []
        self._tombstones: list[tuple[int, int]] = []  # for the next job (``DiskJob``)
        self._hosted: list[RangeDescriptor] = []  # for the next job (``DiskJob.hosted``)
        self._bases: list[tuple[int, RangeDescriptor]] = []  # for the next job (``bases``)
        # Writes of a replica replaced since they were queued (``_reborn``), per group: the
        # first that many of the group's writes to complete are its, and go unanswered.
        self._orphan_writes: dict[int, int] = {}
        # Unknown groups asked about (``Host``), by the tick of the last question.
        self._asked: dict[int, int] = {}
        # Grows whenever a hosted group's descriptor changes, a group comes, or the meta
        # range's directory here changes: routers that cache this node's layout refresh when
        # it moves.
        self.layout_version = 0
        self._ticks = 0
        self._ticks_per_s = max(1, 1000 // cluster.tick_ms)
        # Per group: the lowest revision a watcher served here has seen up to (the driver
        # sets it); a compaction proposed here stays at or below it.
        self.watch_floors: dict[int, int] = {}
        # The groups ticked: all but the quiet ones (``quiet_since``).
        self._active: dict[int, None] = {}
        self._holding: dict[int, None] = {}  # groups with chosen slots held back
        # Liveness per peer node: the tick we last heard from it / sent it anything.
        peers = [n.node_id for n in cluster.nodes if n.node_id != node_id]
        self._peer_heard: dict[int, int] = dict.fromkeys(peers, 0)
        self._peer_sent: dict[int, int] = dict.fromkeys(peers, 0)
        self._peers_silent: set[int] = set()
        self._peer_incarnation: dict[int, int] = {}  # as their pings said
        # Dormant groups this node prefers to lead, waiting for their turn to campaign.
        self._to_campaign: deque[int] = deque()
        # Ranges led here whose descriptor the meta range has not confirmed (``Effects.
        # ranges_to_record``).
        self._unrecorded: dict[int, None] = {}
        paxos_defaults = Config(
            node_id=NodeId(node_id), voters=(NodeId(node_id),), **self._overrides
        )
        self._guard_ticks = paxos_defaults.election_ticks_min
        # The meta range's leases, kept while this node leads it (``lease_keeper``).
        self._lease_table_logged = False
        self._lease_slot = 0  # the meta slot whose results the lease keeper last heard
        self._leases = LeaseKeeper(
            lease_clock_class(cluster.tick_ms, paxos_defaults.clock_drift_max_permille),
            self._ticks_per_s,
        )
        for group_id, start in sorted(groups.items()):
            self._open(group_id, start)
        for group_id, start in groups.items():
            if start.record_voting:
                self._records.append((group_id, DurableRecord(voting=start.durable.voting)))
            if start.merged_into and start.merged_into in self._groups:
                self._groups[group_id].absorbed_by = start.merged_into
            if start.ended_into and start.ended_into not in self._groups:
                self._groups[group_id].ended_into = start.ended_into
        for group in list(self._groups.values()):
            self._absorb_covered(group)
        # At once, not a second later: a peer may ask as soon as this node is back (sim seed
        # 10718, 0.7 s after a restart of every node).
        self._forget_pre_split()

    # ------------------------------------------------------------------ groups

    def _open(self, group_id: int, start: GroupStart, *, fresh: bool = False) -> _Group:
        """``fresh``: a group this process made (``_create``, born here), whose replica
        needs no lease guard at its start (``paxos.election``)."""
        descriptor = start.descriptor
        base_slot = base_slot_of(self.cluster, group_id)
        config = Config(
            node_id=NodeId(self.node_id),
            voters=tuple(NodeId(r) for r in descriptor.replicas),
            base_slot=base_slot,
            **self._overrides,
        )
        durable = start.durable
        if base_slot and durable.snapshot is None and start.applied_slot >= base_slot:
            # The base state is in the state machine (made here by the split): the log
            # starts after it. Derived, not stored, so no crash can separate the two.
            durable = replace(
                durable,
                snapshot=Snapshot(slot=Slot(base_slot), data=b""),
                chosen_through=max(durable.chosen_through, Slot(base_slot)),
            )
        preferred_dc = start.placed_leader_dc or descriptor.leader_dc or self.dc
        if preferred_dc == self.dc:
            # Leader preference, as a bias: the preferred replica campaigns as soon as the
            # guard allows, the others later at random. The guard itself (election_ticks_min)
            # stays the same everywhere, as the lease requires.
            config = replace(config, election_ticks_max=config.election_ticks_min)
        replica = self._make_replica(
            config,
            rng=self._rng_for(group_id),
            logger=self._logger_for(group_id),
            durable=durable,
            applied_through=Slot(start.applied_slot),
            incarnation=self._incarnation,
            guarded=not fresh,
        )
        group = _Group(group_id, replica, descriptor, start.applied_slot)
        if self._peers_silent:
            replica.set_absent(self._absent_of(group))
        group.size_bytes = start.size_bytes
        group.frozen_slot = start.frozen_slot
        compacted = durable.snapshot.slot if durable.snapshot is not None else 0
        group.young_successors = {
            s.descriptor.range_id: s.split_slot
            for s in start.successors
            if s.split_slot > compacted and self.node_id in s.descriptor.replicas
        }
        group.placed_leader_dc = start.placed_leader_dc
        group.tells_members = bool(start.reconfigured_from)
        if not _final_snapshot(start, compacted):
            group.split_past_snapshot = max(
                (s.split_slot for s in start.successors if s.split_slot > compacted), default=0
            )
        if group.tells_members and not _final_snapshot(start, compacted):
            # Of a shape unknown here: see ``_replay_forbidden``. An ended or frozen range's
            # final snapshot is kept: nothing after its stop (or freeze) changes it, and once
            # a tombstone here it could not be dumped again (sim seeds 941 and 3200: nobody
            # could serve a lagging replica).
            replica.snapshot_outdated()
        group.disks = dict(start.disks)
        group.born_as = start.born_as
        self._prefer(group, preferred_dc)
        self._groups[group_id] = group
        self._touched[group_id] = None
        if self._starts_dormant(group):
            group.quiet_since = self._ticks
            if group.preferred_leader == self.node_id:
                self._to_campaign.append(group_id)
        else:
            self._active[group_id] = None
        self.layout_version += 1
        return group

    def _starts_dormant(self, group: _Group) -> bool:
        """A group with a preferred leader that needs no ticks of its own to get going (see
        ``AWAKE_TARGET``): not rejoining, not waiting for a snapshot."""
        return (
            group.preferred_leader is not None
            and len(group.descriptor.replicas) > 1
            and not group.replica.rejoining
            and not group.awaiting
        )

    def _admit_campaigns(self) -> None:
        """Wake and campaign for queued dormant groups while few groups are awake here; one
        that heard a leader meanwhile (another node's, after a restart here) is left be."""
        if self._ticks < self._guard_ticks:
            return  # peers that just started too would refuse: they guard nobody yet
        queue = self._to_campaign
        while queue and len(self._active) < AWAKE_TARGET:
            group = self._groups.get(queue.popleft())
            # (A tombstone too: a peer that lags may need its log, from a leader, to go on.)
            if group is None or group.quiet_since is None:
                continue
            if group.replica.leader_hint is not None:
                continue
            self._wake(group)
            group.replica.campaign()

    def _prefer(self, group: _Group, dc: str) -> None:
        group.preferred_dc = dc
        group.preferred_leader = next(
            (r for r in group.descriptor.replicas if self.cluster.node(r).dc == dc), None
        )

    def _create(
        self, descriptor: RangeDescriptor, *, born_here: bool, placed: str | None, voting: bool
    ) -> None:
        """Host a group that did not exist when this node started: born here (this replica
        applied the split, so the state machine holds its base) or learned of from a
        snapshot of its parent (it waits for a snapshot of its own). Whether it votes is
        recorded at once (storage's default is for groups of the disk's first layout)."""
        group_id = descriptor.range_id
        base = base_slot_of(self.cluster, group_id)
        durable = DurableState(voting=voting)
        self._records.append((group_id, DurableRecord(voting=voting)))
        group = self._open(
            group_id,
            GroupStart(
                durable=durable,
                applied_slot=base if born_here else 0,
                placed_leader_dc=placed,
                descriptor=descriptor,
            ),
            # Born here: the leader that made it (a split's, a stop's) wins at once.
            fresh=born_here,
        )
        self._log.info(
            "range_created",
            shard=group_id,
            start=descriptor.start,
            end=descriptor.end,
            generation=descriptor.generation,
            awaiting_snapshot=group.awaiting,
        )

    def _absorb_covered(self, by: _Group, d: RangeDescriptor | None = None) -> None:
        """Every other hosted group whose span ``by``'s descriptor (or ``d``, the one a
        snapshot being installed brings) overlaps with a newer generation was merged away
        (the higher generation of two overlapping descriptors is the newer: every split and
        merge raises it past those it replaced). It is a tombstone from now: nothing of it
        may touch the state any more, which is ``by``'s."""
        d = d or by.descriptor
        for group in self._groups.values():
            if (
                group is not by
                and group.absorbed_by is None
                and _supersedes(d, group.descriptor)
                and taken_over(d, group.descriptor)
            ):
                self._tombstone(group, by.group_id)

    def _tombstone(self, group: _Group, into: int) -> None:
        group.absorbed_by = into
        self._tombstones.append((group.group_id, into))
        group.merging_into = None
        group.held_install = None
        self._touched[group.group_id] = None  # its held slots go, as a tombstone's
        self.layout_version += 1
        self._log.info("range_retired", shard=group.group_id, merged_into=into)

    @staticmethod
    def _merge_ready(right: _Group, merge: Merge) -> bool:
        return right.absorbed_by is not None or (
            right.applied_slot >= merge.frozen_slot
            and right.replica.snapshot_slot >= merge.frozen_slot
            and right.merging_into is None
        )

    def _superseded(
        self, d: RangeDescriptor, such_that: Callable[[_Group], bool] | None = None
    ) -> int | None:
        """Another live hosted group overlapping ``d`` with a newer generation (and meeting
        ``such_that``), if any (the group ``d`` describes may know a newer descriptor of its
        own: a ``Host`` answer's)."""
        for group in self._groups.values():
            if (
                group.absorbed_by is None
                and group.group_id != d.range_id
                and _supersedes(group.descriptor, d)
                and (such_that is None or such_that(group))
            ):
                return group.group_id
        return None

    def taken_over_by(self, group_id: int) -> RangeDescriptor:
        """A tombstone's keys are those of the group that took it over (a merge's left one,
        a successor): its descriptor if hosted here, else the tombstone's own."""
        group = self._groups[group_id]
        taker = self._groups.get(group.absorbed_by) if group.absorbed_by is not None else None
        return taker.descriptor if taker is not None else group.descriptor

    def merged_away(self, group_id: int) -> bool:
        """A tombstone: merged into another group here (still a Paxos voter)."""
        return self._groups[group_id].absorbed_by is not None

    def hosts(self, group_id: int) -> bool:
        return group_id in self._groups

    def descriptor(self, group_id: int) -> RangeDescriptor:
        return self._groups[group_id].descriptor

    def span(self, group_id: int) -> KeySpan:
        return self._groups[group_id].descriptor.span

    def descriptors(self) -> list[RangeDescriptor]:
        """Every live hosted group's descriptor as this node knows it, in key order."""
        return sorted(
            (
                g.descriptor
                for g in self._groups.values()
                if not g.retired and not g.descriptor.is_meta
            ),
            key=lambda d: d.start,
        )

    def route(self, key: bytes) -> int | None:
        """The hosted group holding ``key`` as far as this node knows (None: none here).
        Should two claim it (a descriptor this node has not seen superseded), the newer."""
        best: RangeDescriptor | None = None
        for group in self._groups.values():
            d = group.descriptor
            if group.retired:
                continue
            if d.contains(key) and (best is None or d.generation > best.generation):
                best = d
        return best.range_id if best is not None else None

    def frozen_slot(self, group_id: int) -> int:
        """The slot of the ``Freeze`` the group applied here, by log or snapshot (0: not
        frozen): final, waiting to be merged into its left neighbour."""
        return self._groups[group_id].frozen_slot

    def awaiting(self, group_id: int) -> bool:
        return self._groups[group_id].awaiting

    def group_ids(self) -> list[int]:
        return sorted(self._groups)

    # ------------------------------------------------------------------ time

    def tick(self, ticks: int = 1) -> None:
        """``ticks`` ticks of this node's clock passed, for every group (the quiet ones count
        them when they resume). A driver that fell behind passes all it owes at once: time
        counts every one, while timers fire once (a node of many groups that falls behind
        would otherwise fire every overdue timeout in a row and fall further behind)."""
        before = self._ticks
        self._ticks += ticks
        groups = self._groups
        for group_id in self._active:
            groups[group_id].replica.tick(ticks)
        self._touched.update(self._active)
        self._balance(ticks)
        self._watch_peers(before)
        self._admit_campaigns()
        self._tend_leases()
        if self._ticks // self._ticks_per_s > before // self._ticks_per_s:  # once a second
            for group in self._groups.values():
                group.ops_per_s = float(group.ops - group.ops_at_sample)
                group.ops_at_sample = group.ops
            self._want_splits()
            self._want_merges()
            self._want_records()
            self._want_compactions()
            self._want_final_snapshots()
            self._forget_pre_split()
            self._effects.leases_to_detach = self._leases.due_to_detach()

    def _want_final_snapshots(self) -> None:
        """Once a second: a frozen group whose final snapshot is still owed is looked at
        again. Its dump waits while a split it holds is young (``_keeps_splits``), and a
        quiet group is touched by nothing else once that split settles: without this, its
        merge waits on the snapshot for ever."""
        for group in self._groups.values():
            if (
                not group.dumping
                and group.absorbed_by is None
                and group.replica.snapshot_slot < group.frozen_slot <= group.applied_slot
            ):
                self._touched[group.group_id] = None

    def _forget_pre_split(self) -> None:
        """Once a second: a live range whose stored snapshot is from before a split that
        has settled forgets its bytes (``_replay_forbidden``), so a peer that asks gets the
        state as it is now. A peer that lost its disk may have rebuilt the range split off
        (moved to it, with its state) first: replaying the older shape would write those
        keys, so it would retire its replica of this range for good (sim seed 10718). While
        the split is young the snapshot stays: a lagging replica catches up through the
        split and makes the new range's base (``young_successors``, sim seed 1715)."""
        for group in self._groups.values():
            split = group.split_past_snapshot
            if not split:
                continue
            if group.retired or group.frozen_slot or group.replica.snapshot_slot >= split:
                group.split_past_snapshot = 0  # a final state is kept; or dumped since
            elif not self._keeps_splits(group):
                group.split_past_snapshot = 0
                self._replay_forbidden(group)

    def _want_splits(self) -> None:
        """Once a second: the groups this node leads that ``[sharding]`` wants split."""
        policy = self.cluster.sharding
        for group in self._groups.values():
            if group.split_rest_s:
                group.split_rest_s -= 1
                continue
            if (
                group.replica.role is not Role.LEADER
                or group.awaiting
                or group.frozen_slot
                or group.retired
                or group.descriptor.is_meta
            ):
                continue
            if policy.wants_split(group.size_bytes, group.ops_per_s):
                group.split_rest_s = SPLIT_REST_S
                self._effects.splits_wanted.append(group.group_id)
                self._log.info(
                    "split_wanted",
                    shard=group.group_id,
                    size_bytes=group.size_bytes,
                    ops_per_s=group.ops_per_s,
                )

    def _want_merges(self) -> None:
        """Once a second: the ranges this node leads that should merge into their left
        neighbour (``[sharding]``), and frozen ones whose merge did not follow in time."""
        policy = self.cluster.sharding
        live = [g for g in self._groups.values() if not g.retired and not g.descriptor.is_meta]
        by_end = {g.descriptor.end: g for g in live if g.descriptor.end}
        for right in live:
            right.unchanged_s += 1
            if right.frozen_slot:
                right.frozen_for_s += 1
            if right.merge_rest_s:
                right.merge_rest_s -= 1
                continue
            if right.replica.role is not Role.LEADER or right.awaiting:
                continue
            if right.frozen_slot:
                # Its left neighbour need not be hosted here (moved since: sim seed 10291).
                if right.frozen_for_s >= MERGE_FINISH_S:
                    right.merge_rest_s = MERGE_REST_S
                    self._effects.merges_unfinished.append(right.group_id)
                    self._log.info("merge_unfinished", shard=right.group_id)
                continue
            left = by_end.get(right.descriptor.start) if right.descriptor.start else None
            if (
                left is None
                or base_slot_of(self.cluster, right.group_id) == 0  # a configured boundary
                or left.awaiting
                # A merge needs both on the same replicas (a move first, else).
                or sorted(left.descriptor.replicas) != sorted(right.descriptor.replicas)
                or left.frozen_slot
                or min(left.unchanged_s, right.unchanged_s) < policy.merge_after_s
                or not policy.wants_merge(
                    left.size_bytes + right.size_bytes, left.ops_per_s + right.ops_per_s
                )
            ):
                continue
            right.merge_rest_s = MERGE_REST_S
            self._effects.merges_wanted.append(left.group_id)
            self._log.info(
                "merge_wanted",
                shard=left.group_id,
                right_shard=right.group_id,
                size_bytes=left.size_bytes + right.size_bytes,
            )

    def _want_records(self) -> None:
        """Once a second: the descriptors of ranges led here that meta has not confirmed.
        Asked again every second until it does (recording is idempotent); a range this node
        stopped leading is its new leader's to record."""
        wanted = []
        for group_id in list(self._unrecorded):
            group = self._groups.get(group_id)
            if (
                group is None
                or group.retired
                or group.descriptor.is_meta
                or group.replica.role is not Role.LEADER
            ):
                del self._unrecorded[group_id]
            elif not group.awaiting:
                wanted.append(group.descriptor)
        if wanted:
            self._effects.ranges_to_record = wanted

    def _want_compactions(self) -> None:
        """Once a second: every group samples its revision (any replica may lead next), and
        one this node leads whose history reaches past ``[history]`` proposes ``Compact``."""
        policy = self.cluster.history
        now_s = self._ticks / self._ticks_per_s
        for group in self._groups.values():
            samples = group.revision_samples
            if not samples or samples[-1][1] != group.revision:
                samples.append((now_s, group.revision))
            # Keep one sample at least ``retention_s`` old: the next target.
            while len(samples) > 1 and samples[1][0] <= now_s - policy.retention_s:
                samples.popleft()
            if (
                group.replica.role is not Role.LEADER
                or group.awaiting
                or group.frozen_slot
                or group.retired
                or group.descriptor.is_meta
            ):
                continue
            target = policy.compact_to(group.revision, samples, now_s)
            floor = self.watch_floors.get(group.group_id)
            if floor is not None:
                target = min(target, floor)  # a watcher here still needs what is above it
            if target > group.compacted or group.collecting:
                self._propose_compact(group, max(target, group.compacted))

    # ------------------------------------------------------------------ leases

    def _tend_leases(self) -> None:
        """While this node leads the meta range: read the lease table through the log once
        per ballot, and end each lease whose deadline passed."""
        meta = self._groups.get(META_RANGE_ID)
        if meta is None:
            return
        replica = meta.replica
        ballot = replica.promised if replica.role is Role.LEADER else None
        if self._leases.leading(ballot, self._ticks):
            self._propose_own(meta, LeaseTable(NO_REQUEST))
        if ballot is not None and self._leases.ready and not self._lease_table_logged:
            self._lease_table_logged = True
            self._log.info("lease_table_read", shard=META_RANGE_ID, leases=len(self._leases.live()))
        elif not self._leases.ready:
            self._lease_table_logged = False
        for lease_id in self._leases.to_revoke(self._ticks):
            self._log.info("lease_expired", shard=META_RANGE_ID, lease=lease_id)
            self._propose_own(meta, LeaseRevoke(NO_REQUEST, lease_id))

    def _lease_results(self, results: Sequence[tuple[RequestId | None, ApplyResult]]) -> None:
        for _, result in results:
            if isinstance(result, LeaseTableRead | LeaseGranted | LeaseRevoked | LeasesForgotten):
                self._leases.applied(result, self._ticks)
                if isinstance(result, LeaseRevoked) and result.existed:
                    # Its keys go now, not at the next whole second.
                    self._effects.leases_to_detach = self._leases.due_to_detach()

    def _leaseholder(self) -> NotLeaseholder | None:
        meta = self._groups.get(META_RANGE_ID)
        if meta is None:
            return NotLeaseholder(None)
        replica = meta.replica
        if (
            replica.role is not Role.LEADER
            or not self._leases.ready
            or not replica.lease_valid(self.skipped_ticks(META_RANGE_ID))
        ):
            self._wake(meta)  # a quiet leader's read lease comes back with its heartbeats
            hint = replica.leader_hint
            return NotLeaseholder(hint if hint != self.node_id else None)
        return None

    def lease_keep_alive(self, lease_id: int) -> int | NotLeaseholder | None:
        """A keep-alive: the lease's TTL in ms, a full TTL from now (None: no such lease)."""
        return self._leaseholder() or self._leases.keep_alive(lease_id, self._ticks)

    def lease_keep_alives(self, lease_ids: Sequence[int]) -> list[int] | NotLeaseholder:
        """Keep-alives of many leases at once: each one's TTL in ms (0: no such lease)."""
        refused = self._leaseholder()
        if refused is not None:
            return refused
        keep, now = self._leases.keep_alive, self._ticks
        return [keep(lease_id, now) or 0 for lease_id in lease_ids]

    def lease_state(self, lease_id: int) -> LeaseState | NotLeaseholder | None:
        return self._leaseholder() or self._leases.state(lease_id, self._ticks)

    def lease_ids(self) -> list[int] | NotLeaseholder:
        return self._leaseholder() or self._leases.live()

    def _propose_own(self, group: _Group, command: Command) -> None:
        """A command the node proposes itself: nobody waits for it; one lost is proposed
        again by whoever wanted it."""
        self._wake(group)
        group.replica.propose(encode_command(command))
        self._touched[group.group_id] = None

    def _propose_compact(self, group: _Group, revision: int) -> None:
        """Proposed by the node itself: nobody waits for it, and a lost one is proposed
        again the next second (it is idempotent)."""
        outcome = group.replica.propose(encode_command(Compact(NO_REQUEST, revision)))
        self._touched[group.group_id] = None
        if isinstance(outcome, Proposed):
            self._log.debug("compact_proposed", shard=group.group_id, revision=revision)

    def ranges_recorded(self, descriptors: Iterable[RangeDescriptor]) -> None:
        """The meta range applied a record of ``descriptors``."""
        for d in descriptors:
            group = self._groups.get(d.range_id)
            if group is not None and group.descriptor == d:
                self._unrecorded.pop(d.range_id, None)

    # ------------------------------------------------------------------ quiescence

    def add_peer(self, peer: int) -> None:
        """A node joined the cluster (the config the node shares knows it already): its
        liveness is watched from now, as every other peer's."""
        if peer != self.node_id and peer not in self._peer_heard:
            self._peer_heard[peer] = self._ticks
            self._peer_sent[peer] = 0

    def heard(self, peer: int) -> None:
        """Something came from node ``peer`` (any message, or a ``Ping``)."""
        if peer not in self._peer_heard:
            return
        self._peer_heard[peer] = self._ticks
        if peer in self._peers_silent:
            self._peers_silent.discard(peer)
            # The groups led here that went quiet without it: it hears from them again.
            woken = self._wake_each(
                g for g in self._tell_absent(peer) if g.replica.role is Role.LEADER
            )
            self._log.info("peer_heard_again", peer=peer, woken_shards=woken)

    def peer_restarted(self, peer: int) -> None:
        """Node ``peer`` runs a new process (however quickly it came back): the groups
        quiet here that followed a leader there wake (it leads nothing any more), and those
        led here that it replicates wake too, so it hears who leads before it campaigns."""
        woken = self._wake_each(
            g
            for g in self._groups_of(peer)
            if self._awaits(g) == peer or g.replica.role is Role.LEADER
        )
        self._log.info("peer_restarted", peer=peer, woken_shards=woken)

    def _groups_of(self, peer: int) -> list[_Group]:
        return [g for g in self._groups.values() if peer in g.descriptor.replicas]

    def _watch_peers(self, before: int) -> None:
        """Ping peers we sent nothing lately; wake the quiet followers of a silent one."""
        now = self._ticks
        for peer, sent in self._peer_sent.items():
            if now - sent >= PING_TICKS:
                self._peer_sent[peer] = now
                self._effects.pings.append(
                    Ping(src=self.node_id, dst=peer, incarnation=self._incarnation)
                )
        if now // SILENT_TICKS > before // SILENT_TICKS:
            self._wake_dormant()
            self._tell_preferred()
        for peer, heard in self._peer_heard.items():
            if now - heard < SILENT_TICKS or peer in self._peers_silent:
                continue
            self._peers_silent.add(peer)
            # Its groups quiesce without it now; the quiet ones that wait for it wake.
            woken = self._wake_each(g for g in self._tell_absent(peer) if self._awaits(g) == peer)
            self._log.info("peer_silent", peer=peer, woken_shards=woken)

    def _tell_absent(self, peer: int) -> list[_Group]:
        """The groups ``peer`` has a replica of, each told which of its peers are silent."""
        groups = self._groups_of(peer)
        for group in groups:
            group.replica.set_absent(self._absent_of(group))
        return groups

    def _absent_of(self, group: _Group) -> frozenset[NodeId]:
        return frozenset(NodeId(p) for p in group.descriptor.replicas if p in self._peers_silent)

    def _awaits(self, group: _Group) -> int | None:
        """The node a quiet group waits to hear from: its leader, or (dormant, no leader
        heard yet) its preferred one."""
        hint = group.replica.leader_hint
        return group.preferred_leader if hint is None else hint

    def _tell_preferred(self) -> None:
        """Dormant groups that still heard no leader tell their preferred replica of
        themselves, as a ``Host`` answer (again every ``TELL_PREFERRED_TICKS``). A node that
        hosts the group ignores it; one that lost it (its disk was wiped while the group
        was led elsewhere) hosts it again, and its replica's messages wake the dormant ones
        here. Without this, a group whose replicas all restarted waits for a preferred
        replica that does not exist until ``DORMANT_TICKS`` pass (sim seed 5056)."""
        now = self._ticks
        told = 0
        for group in self._groups.values():
            since = group.quiet_since
            target = group.preferred_leader
            if (
                since is None
                or now - since < TELL_PREFERRED_AFTER_TICKS
                or target is None
                or target == self.node_id
                or target in self._peers_silent
                or group.replica.leader_hint is not None
                or not group.tells_members
                or group.retired
                or group.ended_into is not None
                or group.awaiting
            ):
                continue
            last = group.told_preferred_at
            if last is not None and now - last < TELL_PREFERRED_TICKS:
                continue
            group.told_preferred_at = now
            self._effects.hosts.append(self._host_answer(group, target))
            told += 1
        if told:
            self._log.info("dormant_shards_told_preferred", shards=told)

    def _wake_dormant(self) -> None:
        """Dormant groups that heard no leader in their time (see ``DORMANT_TICKS``) run
        their own timers."""
        now = self._ticks
        for group in self._groups.values():
            since = group.quiet_since
            if since is None or group.replica.leader_hint is not None:
                continue
            if now - since >= DORMANT_TICKS + group.group_id * 7919 % DORMANT_TICKS:
                self._wake(group)

    def _wake_each(self, groups: Iterable[_Group]) -> int:
        """Wake those of ``groups`` that are quiet; how many were."""
        quiet = [g for g in groups if g.quiet_since is not None]
        for group in quiet:
            self._wake(group)
        return len(quiet)

    def _wake(self, group: _Group) -> None:
        """Tick ``group`` again, after counting the ticks it missed while quiet."""
        if group.quiet_since is None:
            return
        group.replica.resume(self.skipped_ticks(group.group_id))
        group.quiet_since = None
        self._active[group.group_id] = None
        self._touched[group.group_id] = None

    def _may_quiesce(self, group: _Group) -> bool:
        """Whether ``group``, its replica quiescent, can stop being ticked: nothing of the
        node's own waits on ticks (held slots, a merge, a move to its preferred DC, leases
        kept alive here: their keep-alives need a current read lease)."""
        return (
            not self._keeps_leases(group)
            and not group.held
            and group.merging_into is None
            and not group.read_waits
            and not self._balance_due(group)
        )

    def _keeps_leases(self, group: _Group) -> bool:
        return group.group_id == META_RANGE_ID and self._leases.busy

    def quiet_count(self) -> int:
        """How many hosted groups are quiet (not ticked) now."""
        return len(self._groups) - len(self._active)

    def _balance_due(self, group: _Group) -> bool:
        """We lead outside the preferred DC and its replica is up: a move is coming. Not in
        a retired range (its leadership serves nothing: after a move, the ended range's
        leadership went to the preferred DC as well, a transfer for nothing)."""
        target = group.preferred_leader
        return (
            not group.retired
            and group.replica.role is Role.LEADER
            and target is not None
            and target != self.node_id
            and target not in self._peers_silent
        )

    def _balance(self, ticks: int) -> None:
        """Hand leadership to the group's preferred-DC replica when it is healthy.

        Only a leader outside the preferred DC acts, only toward a replica that answered
        recently and is caught up (an aborted transfer would cost this ballot its lease),
        and at most once per ``BALANCE_COOLDOWN_TICKS``, so leaders never flap. Quiet
        groups are never due (``_may_quiesce``).
        """
        for group_id in self._active:
            group = self._groups[group_id]
            group.transfer_cooldown_ticks = max(0, group.transfer_cooldown_ticks - ticks)
            target = group.preferred_leader
            replica = group.replica
            if (
                target is None
                or not self._balance_due(group)
                or group.transfer_cooldown_ticks
                or not replica.peer_is_current(NodeId(target))
            ):
                continue
            group.transfer_cooldown_ticks = BALANCE_COOLDOWN_TICKS
            if replica.transfer_leadership(NodeId(target)):
                self._touched[group.group_id] = None
                self._log.info("leader_moving_to_preferred_dc", shard=group.group_id, to=target)

    # ------------------------------------------------------------------ inputs

    def step(self, group_id: int, msg: Message | Ping | Host) -> None:
        """A peer's message for one group (a group this node does not host: dropped)."""
        self.heard(msg.src)
        if isinstance(msg, Ping):
            known = self._peer_incarnation.get(msg.src)
            self._peer_incarnation[msg.src] = msg.incarnation
            if known is not None and known != msg.incarnation:
                self.peer_restarted(msg.src)
            return
        if isinstance(msg, Host):
            self._host(msg)
            return
        group = self._groups.get(group_id)
        if group is None:
            self._ask_host(group_id, msg.src)
            return
        if group.quiet_since is not None:
            if not group.replica.stirs(msg):
                return
            self._wake(group)
        group.replica.step(msg)
        self._touched[group_id] = None

    def submit(self, group_id: int, command: Command, token: Token) -> Accepted | Refusal:
        """Propose ``command``; its result (or ``Dropped``) comes for ``token`` once applied."""
        group = self._groups[group_id]
        self._wake(group)
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
        self._wake(group)
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
        group = self._groups[group_id]
        self._wake(group)
        self._touched[group_id] = None
        return group.replica.transfer_leadership(NodeId(to_node))

    # ------------------------------------------------------------------ effects

    def take_effects(self) -> Effects:
        """Everything the driver owes the node now (see the module's contract)."""
        effects = self._effects
        job = DiskJob(
            records=self._records,
            tombstones=self._tombstones,
            hosted=self._hosted,
            bases=self._bases,
        )
        self._records, self._tombstones, self._hosted, self._bases = [], [], [], []
        touched = [self._groups[g] for g in self._touched if g in self._groups]
        self._touched = {}
        for group in touched:
            ready = group.replica.take_ready()
            for msg in ready.send_now:
                effects.sends.setdefault(msg.dst, []).append((group.group_id, msg))
            for write in ready.writes:
                job.records.append((group.group_id, write.record))
                job.follow_ups.append((group.group_id, write.seq, write.then_send))
            if ready.snapshot is not None and group.absorbed_by is None:
                if group.merging_into is not None:
                    group.held_install = ready.snapshot  # after the merge's outcome
                elif self._queue_install(group, ready.snapshot, job) and group.absorbed_by is None:
                    group.held = []  # slots the snapshot covers (all that were held)
            if (
                ready.snapshot_wanted
                and not group.dumping
                and group.absorbed_by is None
                and group.merging_into is None
            ):
                # A peer needs state our log no longer holds as entries: serialize it now.
                # (Never a tombstone's: its keys hold the merged shard's state.)
                group.dumping = True
                job.dumps.append(group.group_id)
            self._release(group, ready.chosen, job)
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
                self._unrecorded[group.group_id] = None
            # Role changes are logged by the replica itself (with shard, node and ballot).
            # Proposals of a replica that stopped leading stay registered: when their slot
            # is applied here, the answer tells success from Dropped; the caller's deadline
            # bounds a slot that is never filled.
            self._release_reads(group)
        for group_id in list(self._holding):
            group = self._groups[group_id]
            if group.holds_back and group not in touched:
                self._release(group, [], job)
            if not group.holds_back:
                del self._holding[group_id]
        job.sends_first = bool(effects.sends)
        for dst in effects.sends:
            self._peer_sent[dst] = self._ticks
        for group in touched:
            if group.holds_back:
                self._holding[group.group_id] = None
            else:
                self._holding.pop(group.group_id, None)
            if group.quiet_since is None and group.replica.quiescent:
                if self._may_quiesce(group):
                    group.quiet_since = self._ticks
                    del self._active[group.group_id]
                elif self._balance_due(group) or self._keeps_leases(group):
                    # The move needs a current peer, and keep-alives a current read lease,
                    # so heartbeats must go on.
                    group.replica.keep_awake()
        for group in touched:
            if (
                not group.dumping
                and group.absorbed_by is None
                and group.merging_into is None
                and not self._keeps_splits(group)
                and (
                    group.applied_slot - group.replica.snapshot_slot >= self._compact_every
                    # A frozen shard keeps its final state as a snapshot: any replica that
                    # still needs it can have it once the others merged it away.
                    or group.replica.snapshot_slot < group.frozen_slot <= group.applied_slot
                )
            ):
                group.dumping = True
                job.dumps.append(group.group_id)
        if job:
            # A group merged away during this turn: none of its work may touch the state.
            job.installs = [(g, s) for g, s in job.installs if self._groups[g].absorbed_by is None]
            job.dumps = [g for g in job.dumps if self._groups[g].absorbed_by is None]
            working = {g for g, _ in job.applies} | {g for g, _ in job.installs} | set(job.dumps)
            job.descriptors = {g: self._groups[g].descriptor for g in working}
            job.keep = {g: self._spans_besides(g) for g, _ in job.installs}
            for g in working:
                absorber = self._groups[g].absorbed_by
                if absorber is not None:
                    job.retired[g] = self._groups[absorber].descriptor
            effects.jobs.append(job)
        self._effects = Effects()
        return effects

    def _spans_besides(self, group_id: int) -> list[KeySpan]:
        """The spans of the live groups served here other than ``group_id``."""
        return [
            g.descriptor.span
            for g in self._groups.values()
            if g.group_id != group_id and not g.retired and not g.descriptor.is_meta
        ]

    def _queue_install(self, group: _Group, snap: Snapshot, job: DiskJob) -> bool:
        """Queue ``snap`` to replace ``group``'s state here, unless that state is another
        group's now (``group`` a tombstone from now) or an older replica here still replays
        over its keys (held: ``held_install``). False: held."""
        installed = snapshots.header(snap.data).descriptor
        if installed is not None:
            d = installed
            newer = self._superseded(
                d, lambda other: taken_over(other.descriptor, d) or _has_state(other)
            )
            if newer is not None:
                # The state of a range merged away or reconfigured since (this node learned
                # of it late): its keys are another group's here. (Or of a range split since
                # whose split-off part has its state here already: its replay would write
                # that part's keys. It waits as a tombstone; see docs/sim-sweeps.md.)
                self._tombstone(group, newer)
                return True
            if self._replaying_under(installed):
                group.held_install = snap
                return False
        job.installs.append((group.group_id, snap))
        if installed is not None:
            # Before any later work of the groups it took over is queued.
            self._absorb_covered(group, installed)
        return True

    def _replaying_under(self, d: RangeDescriptor) -> bool:
        """Whether a group here with state is one ``d`` overlaps with a newer generation but
        did not take over: a replica behind a split whose split-off part ``d`` came of. Its
        log still writes keys of ``d``'s span (sim seed 5853: a node that lost its disk
        replayed a range through its splits while the snapshot of a range split off it
        since came). ``d``'s state waits until that replica applied the split."""
        return any(
            not other.retired
            and other.group_id != d.range_id
            and _supersedes(d, other.descriptor)
            and not taken_over(d, other.descriptor)
            and _has_state(other)
            for other in self._groups.values()
        )

    def _release(self, group: _Group, chosen: Sequence[ChosenEntry], job: DiskJob) -> None:
        """Queue ``group``'s chosen slots for applying, holding back those from a Merge on
        until this node's replica of the right shard has applied its freeze and kept that
        state as its snapshot (then every replica merges the same final state, and one that
        lags can still get it). While a merge of ``group`` is being applied
        here, nothing of ``group``'s is queued: if it succeeds, nothing of it ever is."""
        pending = [*group.held, *chosen]
        group.held = []
        if group.merging_into is not None:
            group.held = pending
            return
        if group.held_install is not None:
            snap, group.held_install = group.held_install, None
            if group.absorbed_by is None:
                if not self._queue_install(group, snap, job):
                    group.held = pending  # held again: an older replica here still replays
                    return
                if group.absorbed_by is None:
                    pending = [entry for entry in pending if entry.slot > snap.slot]
        final_dump = False
        for index, entry in enumerate(pending):
            stop = reconfigure_in(entry.value) if group.absorbed_by is None else None
            hosted = self._groups.get(stop.successor_id) if stop is not None else None
            if hosted is not None and not hosted.awaiting:
                # The successor is hosted here already (a ``Host`` answer) and has a state
                # (a snapshot came): this stop would write its base over it. Ended here now.
                # (One still waiting for its state takes the base this stop makes.)
                self._tombstone(group, hosted.group_id)
            elif stop is not None and group.ended_into is None:
                # The range's final state, kept as a snapshot of this job (nothing changes
                # it after the stop): a replica of it that lags, here a tombstone from then on
                # (its keys the successor's), can still be given it.
                final_dump = True
            merge = merge_in(entry.value) if group.absorbed_by is None else None
            if merge is not None:
                right = self._groups.get(merge.right.range_id)
                if right is None and _supersedes(group.descriptor, merge.right):
                    # Merged already (this node has the merged state from a snapshot and
                    # never hosted the right shard): the state machine refuses it again.
                    right_ready = True
                else:
                    right_ready = right is not None and self._merge_ready(right, merge)
                if not right_ready:
                    group.held = pending[index:]
                    return
                if right is not None and right.absorbed_by is None:
                    right.merging_into = group.group_id
            job.applies.append((group.group_id, entry))
        if final_dump and group.group_id not in job.dumps:
            group.dumping = True
            job.dumps.append(group.group_id)

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

    def job_done(
        self,
        job: DiskJob,
        applied: list[Applied],
        dumped: list[Dumped],
        sizes: Mapping[int, int] | None = None,
    ) -> None:
        """``job`` is committed (fsync'd): what depends on it may go. ``sizes``: the bytes of
        keys and values of each group the job changed (``jobs.run_job`` fills them)."""
        effects = self._effects
        for group_id, size in (sizes or {}).items():
            hosted = self._groups.get(group_id)
            if hosted is not None:
                hosted.size_bytes = size
        self._touched.update(dict.fromkeys(g for g, _, _ in job.follow_ups))
        self._touched.update(dict.fromkeys(g for g, _ in job.installs))
        self._touched.update(dict.fromkeys(g for g, _, _ in applied))
        self._touched.update(dict.fromkeys(g for g, _, _ in dumped))
        for group_id, seq, then_send in job.follow_ups:
            if self._orphan_writes.get(group_id):
                self._orphan_writes[group_id] -= 1
                continue  # its replica is gone; what it would send after, too
            for msg in then_send:
                effects.sends.setdefault(msg.dst, []).append((group_id, msg))
            self._groups[group_id].replica.write_done(seq)
        for group_id, snap in job.installs:
            group = self._groups[group_id]
            group.applied_slot = snap.slot
            # A frozen range's state (sim seed 10291: its leader, learning it so, never
            # asked for the merge to be finished, and took writes it could only refuse).
            group.frozen_slot = job.installed_frozen.get(group_id, 0)
            self._installed(group, snapshots.header(snap.data))
        for group_id, slot, (_value, results) in applied:
            group = self._groups[group_id]
            group.applied_slot = slot
            group.ops += len(results)
            if group.replica.role is Role.LEADER and any(
                isinstance(result, SplitDone | Frozen | Reconfigured) for _, result in results
            ):
                # Its followers act on it (host the new range, let a merge on, vote in the
                # successor) once they apply it: tell them it is chosen now, not at the next
                # heartbeat (a stop is the last slot of its log).
                group.replica.announce_commit()
            for _, result in results:
                if isinstance(result, PlacementSet):
                    group.placed_leader_dc = result.leader_dc or None
                    self._prefer(group, result.leader_dc or group.descriptor.leader_dc or self.dc)
                    self._log.info("placement_set", shard=group_id, leader_dc=group.preferred_dc)
                elif isinstance(result, SplitDone):
                    self._split_done(group, result)
                elif isinstance(result, Frozen):
                    group.frozen_slot = result.slot
                    self._log.info("range_frozen", shard=group_id, slot=result.slot)
                elif isinstance(result, MergeDone):
                    self._merge_done(group, result)
                elif isinstance(result, Reconfigured) and result.slot == slot:
                    self._reconfigured(group, result)
                elif isinstance(result, RangesRecorded) and result.changed:
                    self.layout_version += 1  # the meta directory routers read moved
                elif isinstance(result, PutResult | DeleteResult | TxnResult | LeaseDetached):
                    group.revision = max(group.revision, result.revision)
                elif isinstance(result, HistoryCompacted):
                    group.compacted = result.revision
                    group.collecting = result.more
                    if result.more and group.replica.role is Role.LEADER:
                        self._propose_compact(group, result.revision)  # the pass goes on
            if group.absorbed_by is None and (merge := merge_in(_value)) is not None:
                right = self._groups.get(merge.right.range_id)
                if right is not None and right.merging_into == group_id:
                    right.merging_into = None  # failed, or done (then it is a tombstone)
                    self._touched[right.group_id] = None
        for group_id, slot, data in dumped:
            # The snapshot is of the state through `slot`: the log up to it can go.
            group = self._groups[group_id]
            group.dumping = False
            group.replica.compact(Slot(slot), data)
        self.applied_early(applied)  # answers not given early (applies done on the loop)
        for group_id in self._touched:
            self._release_reads(self._groups[group_id])

    def _split_done(self, group: _Group, done: SplitDone) -> None:
        """This replica applied a split: the group keeps the left part; the right part is a
        new group here, its base the state the split left in the state machine. The parent's
        leader campaigns for it at once, so it serves without waiting out an election."""
        group.descriptor = done.left
        group.unchanged_s = 0
        self.layout_version += 1
        self._unrecorded[group.group_id] = None
        self._unrecorded[done.right.range_id] = None
        right = done.right
        self._log.info(
            "range_split",
            shard=group.group_id,
            new_shard=right.range_id,
            at=right.start,
            generation=right.generation,
        )
        self._retire_if_superseded(group)
        if group.tells_members:
            self._replay_forbidden(group)
        group.split_past_snapshot = done.slot  # forgotten once the split settles
        if self.node_id not in right.replicas:
            return
        group.young_successors[right.range_id] = done.slot
        if right.range_id in self._groups:
            return
        voting = votes_in_new_group(group.replica, done.slot, founding=self._founding)
        self._create(right, born_here=True, placed=group.placed_leader_dc, voting=voting)
        if group.replica.role is Role.LEADER:
            born = self._groups[right.range_id]
            self._wake(born)
            born.replica.campaign()

    def _reconfigured(self, group: _Group, done: Reconfigured) -> None:
        """This replica applied a stop sign: the group's configuration ended at
        ``done.slot``. Where this node is in the new configuration, the successor is a new
        group here, its base the state the stop left, and the old one a tombstone (its log
        stays, for a replica that lags behind the stop); elsewhere the old one is final."""
        successor = done.successor
        self.layout_version += 1
        self._log.info(
            "range_reconfigured",
            shard=group.group_id,
            successor=successor.range_id,
            replicas=list(successor.replicas),
            generation=successor.generation,
            slot=done.slot,
        )
        if self.node_id not in successor.replicas:
            group.ended_into = successor.range_id
            self._touched[group.group_id] = None
            return
        self._unrecorded[successor.range_id] = None
        waiting = self._groups.get(successor.range_id)
        if waiting is not None and _needs_base(waiting):
            self._reborn(waiting, group, done)
        elif successor.range_id not in self._groups:
            voting = self._votes_in_successor(group, done)
            self._create(successor, born_here=True, placed=group.placed_leader_dc, voting=voting)
            born = self._groups[successor.range_id]
            born.tells_members = True
            born.born_as = successor
            born.disks = dict(done.disks)
            # Awake, so its election runs even when the leader that ended the old
            # configuration left it; that leader, if it stays, campaigns at once.
            self._wake(born)
            if group.replica.role is Role.LEADER:
                born.replica.campaign()
        self._absorb_covered(self._groups[successor.range_id])

    def _votes_in_successor(self, ended: _Group, done: Reconfigured) -> bool:
        """Whether this node's replica of ``done.successor``, made from ``ended``'s stop,
        votes at once: if ``ended``'s replica here could (``votes_in_new_group``), or if this
        disk is the one the new configuration listed for this node (``Reconfigure.disks``).
        That disk was there before the successor was, so no earlier life of this node took
        part in it. (Sim seed 3231: a drain moved five ranges while three of their five
        replicas were on disks lost and still rejoining the old configurations. Their
        successors' replicas all rejoined too, and three rejoining replicas of five never
        elect a leader.)"""
        listed = dict(done.disks).get(self.node_id, 0)
        if on_listed_disk(listed, self._disk_incarnation):
            return True
        return votes_in_new_group(ended.replica, done.slot, founding=self._founding)

    def _reborn(self, waiting: _Group, ended: _Group, done: Reconfigured) -> None:
        """This node hosted the successor on a ``Host`` answer and waited for its state, and
        has now made that state itself (its replica of the ended range applied the stop): it
        starts from it as if born here, keeping what its replica promised meanwhile (an
        awaiting replica accepts nothing). Else the successor could wait for ever: the
        replicas that made the base may all be gone (seed 6 of the wipe-heavy worlds)."""
        successor = done.successor
        group_id = successor.range_id
        promised = waiting.replica.promised
        voting = self._votes_in_successor(ended, done)
        # Its writes in jobs on their way (a promise) complete for no replica (``job_done``);
        # those not taken into a job yet go with it.
        self._orphan_writes[group_id] = waiting.replica.writes_taken
        del self._groups[group_id]
        self._active.pop(group_id, None)
        self._holding.pop(group_id, None)
        self._records.append((group_id, DurableRecord(voting=voting)))
        born = self._open(
            group_id,
            GroupStart(
                durable=DurableState(promised=promised, voting=voting),
                applied_slot=base_slot_of(self.cluster, group_id),
                placed_leader_dc=ended.placed_leader_dc,
                descriptor=successor,
            ),
        )
        born.tells_members = True
        born.born_as = successor
        born.disks = dict(done.disks)
        self._wake(born)
        self._log.info("range_reborn", shard=group_id, voting=voting)

    def _ask_host(self, group_id: int, peer: int) -> None:
        """A message of a group not hosted here: ask its sender what the group is (at most
        once per ``HOST_ASK_TICKS`` per group)."""
        asked = self._asked.get(group_id)
        if asked is not None and self._ticks - asked < HOST_ASK_TICKS:
            return
        if len(self._asked) >= HOST_ASKED_MAX:
            self._asked.clear()  # a bound, not a cache: forgetting only allows a question
        self._asked[group_id] = self._ticks
        self._effects.hosts.append(Host(self.node_id, peer, group_id))

    def _host(self, msg: Host) -> None:
        """A question about a group hosted here, or an answer about one that is not."""
        if msg.descriptor is None:
            group = self._groups.get(msg.group_id)
            if (
                group is None
                or group.ended_into is not None
                or group.awaiting
                or not group.tells_members
            ):
                return
            # (A tombstone answers too. Merged away: a replica of it that lags must still get
            # its final state, or its node's left range waits on the merge for ever, sim seed
            # 3768. Reconfigured away, where this node is in the successor: a node that lost
            # its disk learns from its final state of the ranges split off it since, which no
            # other range tells it, sim seeds 622 and 736.)
            if msg.src in group.descriptor.replicas:
                self._effects.hosts.append(self._host_answer(group, msg.src))
            return
        if msg.group_id in self._groups:
            return
        # The group as it began, which a node behind on the configuration it succeeded still
        # holds; else as it is now, for a node that hosts a range split off it since (sim
        # seeds 354 and 2389: it could take neither, and never served the group).
        d = next(
            (
                told
                for told in (msg.descriptor, msg.current)
                if told is not None and self._may_host(msg.group_id, told)
            ),
            None,
        )
        if d is None:
            return
        # Nothing of the group is on this disk (or it would be hosted). It votes at once if
        # the disk never lost its state, or if it is the very disk the group's configuration
        # listed for this node (then nothing of the group was ever on it:
        # ``Reconfigure.disks``); another may have promised in an earlier life, and rejoins
        # first.
        same_disk = on_listed_disk(msg.incarnation, self._disk_incarnation)
        self._create(d, born_here=False, placed=None, voting=self._founding or same_disk)
        hosted = self._groups[d.range_id]
        hosted.tells_members = True
        hosted.born_as = msg.descriptor
        # (Hosted as it is now, it needs a snapshot of now: its peers forget a stored snapshot
        # of an older shape, ``_replay_forbidden``.)
        self._hosted.append(d)
        # A configuration of the same span that ``d`` succeeded, behind its stop here, goes
        # on: if it reaches the stop first, the successor starts from the base it makes
        # (``_reborn``); if the successor's snapshot comes first, it is a tombstone from the
        # install on (``_absorb_covered``), before anything more of it is applied.
        self._asked.pop(d.range_id, None)

    def _host_answer(self, group: _Group, dst: int) -> Host:
        """What ``dst``, a replica of ``group``, is told of it (``Host``)."""
        told = group.born_as or group.descriptor
        current = group.descriptor if group.descriptor != told else None
        return Host(self.node_id, dst, group.group_id, told, group.disks.get(dst, 0), current)

    def _may_host(self, group_id: int, d: RangeDescriptor) -> bool:
        """Whether a ``Host`` answer's descriptor ``d`` may be hosted here as it is."""
        if (
            d.range_id != group_id
            or self.node_id not in d.replicas
            or d.is_meta
            or self._superseded(d) is not None
        ):
            return False
        # A replica here of a range ``d`` came of by splits or merges still catching up: its
        # log would write keys of ``d``'s over ``d``'s state (keys are stored once per
        # node). It makes ``d``, or learns of it, as it catches up. Only the configuration
        # ``d`` succeeded may wait beside it (its span, one generation before: its log ends
        # in ``d``'s stop); an older one of the span was merged away since, and a lagging
        # neighbour here replaying that merge would be retired under ``d`` with keys of its
        # own still to apply (sim seed 16 once Prepares were resent: an acknowledged write
        # missing from a leader's state).
        older = [g for g in self._groups.values() if not g.retired and _supersedes(d, g.descriptor)]
        return all(
            g.descriptor.span == d.span and g.descriptor.generation == d.generation - 1
            for g in older
        )

    @staticmethod
    def _replay_forbidden(group: _Group) -> None:
        """The range changed shape (a split or a merge): a replica that a ``Host`` answer
        added, or one that lost its disk and rebuilt a range split off since
        (``_forget_pre_split``), must not start from a snapshot of before it and replay it,
        since the keys it would write may be another range's on that node already (keys
        are stored once per node). Such a replica gets a snapshot of the state as it is
        then."""
        group.replica.snapshot_outdated()

    def _retire_if_superseded(self, group: _Group) -> None:
        """A replica catching up (its descriptor just changed) whose range a group hosted
        here took over already (a reconfiguration's successor, hosted on a ``Host``
        answer): a tombstone from now."""
        if group.absorbed_by is not None:
            return
        d = group.descriptor
        # (One still waiting for its state may take it from this replica: ``_reborn``.)
        newer = self._superseded(
            d, lambda other: not other.awaiting and taken_over(other.descriptor, d)
        )
        if newer is not None:
            self._tombstone(group, newer)

    def _keeps_splits(self, group: _Group) -> bool:
        """Whether the group's log must keep a split it holds (``young_successors``). A new
        shard is settled here once its replica knows a slot past its base chosen (or it was
        merged away, which took such a slot: its freeze)."""
        young = group.young_successors
        for successor_id in list(young):
            successor = self._groups.get(successor_id)
            if (
                successor is None
                or successor.absorbed_by is not None
                or successor.replica.chosen_through > successor.replica.config.base_slot
            ):
                del young[successor_id]
        return bool(young)

    def _merge_done(self, group: _Group, done: MergeDone) -> None:
        """This replica merged the right shard into ``group``: it spans both now, and the
        right shard's group here is a tombstone."""
        group.descriptor = done.merged
        group.unchanged_s = 0
        self.layout_version += 1
        self._unrecorded[group.group_id] = None
        self._log.info(
            "range_merged",
            shard=group.group_id,
            merged_shard=done.right.range_id,
            start=done.merged.start,
            end=done.merged.end,
            generation=done.merged.generation,
        )
        self._absorb_covered(group)
        self._retire_if_superseded(group)
        if group.tells_members:
            self._replay_forbidden(group)

    def _installed(self, group: _Group, header: snapshots.Header) -> None:
        """A snapshot replaced the group's state: take its descriptor, and host the groups
        split off it (that include this node) which this node has not heard of yet."""
        if header.descriptor is not None:
            if header.descriptor != group.descriptor:
                group.unchanged_s = 0
            group.descriptor = header.descriptor
            self.layout_version += 1
            self._absorb_covered(group)
        if header.disks:
            # Its replicas' disks, for its Host answers: this replica may have learned of
            # the group from no stop of its own (sim seed 353).
            group.disks = dict(header.disks)
        for successor in header.successors:
            d = successor.descriptor
            # The next configuration of the whole span (the state installed is of an ended
            # range): hosted here if this node is in it, else the range is final here.
            stop = (
                header.descriptor is not None
                and d.span == header.descriptor.span
                and d.generation == header.descriptor.generation + 1
            )
            waiting = self._groups.get(d.range_id)
            if stop and self.node_id in d.replicas and (waiting is None or _needs_base(waiting)):
                # The state installed is the successor's first: it starts from it here (its
                # base written by the next job, before anything of it is applied).
                self._bases.append((group.group_id, d))
                done = Reconfigured(group.descriptor, d, successor.split_slot, header.ended_disks)
                if waiting is not None:
                    self._reborn(waiting, group, done)
                else:
                    voting = self._votes_in_successor(group, done)
                    self._create(d, born_here=True, placed=group.placed_leader_dc, voting=voting)
                    self._groups[d.range_id].tells_members = True
                    self._groups[d.range_id].born_as = d
                    self._groups[d.range_id].disks = dict(done.disks)
                    self._wake(self._groups[d.range_id])
                self._absorb_covered(self._groups[d.range_id])
            elif self.node_id in d.replicas and d.range_id not in self._groups:
                voting = votes_in_new_group(
                    group.replica, successor.split_slot, founding=self._founding
                )
                self._create(d, born_here=False, placed=group.placed_leader_dc, voting=voting)
            elif stop and self.node_id not in d.replicas and group.absorbed_by is None:
                group.ended_into = d.range_id

    def applied_early(self, applied: list[Applied]) -> None:
        """A job's applies were computed (maybe not yet committed): answer their proposers
        and witnesses. Each is answered once; a second call for the same slots is a no-op."""
        for group_id, slot, (value, results) in applied:
            group = self._groups.get(group_id)
            if group is None:
                continue
            if group_id == META_RANGE_ID and slot > self._lease_slot:
                # The lease keeper hears of a grant before its grantor does (that answer is
                # given just below): a keep-alive or a put naming it never finds it unknown.
                self._lease_slot = slot
                self._lease_results(results)
            if group.witnesses:
                for index, encoded in enumerate(value):
                    for token in group.witnesses.pop(encoded, ()):
                        self._effects.answers.append((token, results[index][1]))
            # Identical commands without a request id are distinct writes: the n-th proposed
            # gets the n-th copy's result (each its own revision), not the first's.
            next_copy: dict[bytes, int] = {}
            for encoded, token in group.proposals.pop(slot, ()):
                try:
                    index = value.index(encoded, next_copy.get(encoded, 0))
                except ValueError:
                    answer: Answer = Dropped(slot)
                else:
                    next_copy[encoded] = index + 1
                    answer = results[index][1]
                self._effects.answers.append((token, answer))

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
        return group.replica.stale_read_bound(
            Slot(group.applied_slot), self.skipped_ticks(group_id)
        )

    def skipped_ticks(self, group_id: int) -> int:
        """Ticks the group's replica has not been given because it is quiet (its views of
        time, the lease and staleness bounds, take them as an argument)."""
        since = self._groups[group_id].quiet_since
        return 0 if since is None else self._ticks - since

    def replica(self, group_id: int) -> Replica:
        """The group's replica, read-only (tests and the simulator inspect it)."""
        return self._groups[group_id].replica

    def status(self) -> list[GroupStatus]:
        out = []
        for group_id, group in sorted(self._groups.items()):
            if group.retired:
                continue  # a tombstone: no range of the map any more
            replica = group.replica
            out.append(
                GroupStatus(
                    group_id=group_id,
                    descriptor=group.descriptor,
                    role="rejoining" if replica.rejoining else replica.role.value,
                    promised=str(replica.promised),
                    leader_node_id=replica.leader_hint or 0,
                    chosen_through=replica.chosen_through,
                    applied_slot=group.applied_slot,
                    lease=replica.lease_valid(self.skipped_ticks(group_id)),
                    preferred_dc=group.preferred_dc,
                    staleness_bound_ticks=self.stale_read_bound_ticks(group_id),
                    ops_per_s=group.ops_per_s,
                    quiet=group.quiet_since is not None,
                )
            )
        return out
