"""What the core hands the caller (``Ready``) and the answers of its synchronous calls.

Rules:
- ``DiskWrite`` carries the messages whose truth depends on it (``then_send``); the driver can
  only deliver them after the write is durable, so "reply before fsync" is not expressible.
- ``DurableRecord`` fields are applied in this order, atomically: ``snapshot`` (which drops
  every log entry at or below its slot), ``truncate_through``, ``entries`` (each replaces the
  entry of its slot), ``promised``, ``chosen_through``, ``voting``.
- Records become durable in the order they were handed out (one FIFO disk queue).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from paxos.ids import Ballot, NodeId, Slot
from paxos.messages import LogEntry, Message, Value


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """The state machine's state after applying every slot <= ``slot``; opaque to the core.

    Empty ``data`` is a placeholder: the state machine holds that state but it was never
    serialized (a group's base, made where the state already was). It marks where the log
    starts and is never sent: a peer that needs it makes the replica ask for a real one
    (``Ready.snapshot_wanted``)."""

    slot: Slot
    data: bytes

    @property
    def placeholder(self) -> bool:
        return not self.data


@dataclass(frozen=True, slots=True, kw_only=True)
class DurableRecord:
    """One atomic change to a replica's durable state. ``None`` means "unchanged"."""

    promised: Ballot | None = None
    entries: tuple[LogEntry, ...] = ()
    chosen_through: Slot | None = None
    snapshot: Snapshot | None = None
    truncate_through: Slot | None = None
    voting: bool | None = None  # True: a rejoin is complete (``paxos.rejoin``)
    # The barrier a completed rejoin caught up through: every slot above it was chosen after
    # this replica lost its state (so a group a split above it made is new to this disk).
    rejoined_at: Slot | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskWrite:
    """Durably write ``record`` (fsync), and only then deliver ``then_send``.

    A Promise or Accepted reveals state a peer will rely on forever, and a Prepare uses a
    ballot that must never be reissued after a crash, so they travel inside the write that
    makes them true; no driver can send them early.
    """

    seq: int
    record: DurableRecord
    then_send: tuple[Message, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChosenEntry:
    """Slot ``slot`` is chosen with ``value``: apply its commands, in order."""

    slot: Slot
    value: Value


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadState:
    """Read request ``request_id`` may be served once the state machine applied ``slot``."""

    request_id: int
    slot: Slot


class Role(Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleChange:
    role: Role
    ballot: Ballot
    leader_hint: NodeId | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready:
    """Everything the caller now owes the replica. See the contract in ``paxos/__init__``."""

    writes: tuple[DiskWrite, ...] = ()
    send_now: tuple[Message, ...] = ()
    snapshot: Snapshot | None = None
    chosen: tuple[ChosenEntry, ...] = ()
    reads: tuple[ReadState, ...] = ()
    failed_reads: tuple[int, ...] = ()
    role_change: RoleChange | None = None
    # A peer needs a snapshot and ours is a placeholder: dump the state machine and hand it
    # to ``compact`` (the peer's retransmission then gets it).
    snapshot_wanted: bool = False

    def is_empty(self) -> bool:
        return not (
            self.writes
            or self.send_now
            or self.snapshot
            or self.chosen
            or self.reads
            or self.failed_reads
            or self.role_change
            or self.snapshot_wanted
        )


# ------------------------------------------------------------------ synchronous answers


@dataclass(frozen=True, slots=True)
class Proposed:
    """The command will be proposed in ``slot`` (chosen there, or that slot gets another value)."""

    slot: Slot


@dataclass(frozen=True, slots=True)
class NotLeader:
    """Ask ``leader_hint`` instead (``None``: no leader known)."""

    leader_hint: NodeId | None


@dataclass(frozen=True, slots=True)
class Overloaded:
    """Too many commands are waiting for a slot; retry later."""


@dataclass(frozen=True, slots=True)
class TooLarge:
    """One command exceeds ``batch_bytes_max``."""

    limit_bytes: int


@dataclass(frozen=True, slots=True)
class ReadQueued:
    """The read is registered; its ``ReadState`` (or a failure) comes in a later ``Ready``."""


ProposeOutcome = Proposed | NotLeader | Overloaded | TooLarge
ReadOutcome = ReadQueued | NotLeader | Overloaded


@dataclass(slots=True)
class DurableState:
    """A replica's durable state as recovered from disk (see ``paxos.memory.MemoryStorage``)."""

    promised: Ballot = Ballot.ZERO
    log: dict[Slot, LogEntry] = field(default_factory=dict)
    chosen_through: Slot = Slot(0)
    snapshot: Snapshot | None = None
    # False: this replica lost its durable state (a wiped disk) and must rejoin before it
    # promises or accepts anything (``paxos.rejoin``). A new group's founding replicas vote.
    voting: bool = True
    rejoined_at: Slot = Slot(0)  # see ``DurableRecord.rejoined_at``; 0: never lost its state
