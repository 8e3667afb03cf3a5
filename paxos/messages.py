"""Every message one replica sends another. A closed union: ``Message``.

Rules:
- Messages are frozen, keyword-only values; ``src``/``dst`` are node ids of the same group.
- A slot's value is a ``Value``: a batch of opaque client commands; the empty batch is a no-op.
- Messages that reveal acceptor state a peer will rely on (``Promise``, ``Accepted``) and
  ``Prepare`` (which uses a ballot that must be durable first) are only ever produced inside
  a ``DiskWrite.then_send``; see ``paxos.ready``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from paxos.ids import Ballot, NodeId, Slot

Value: TypeAlias = tuple[bytes, ...]
NOOP: Value = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class LogEntry:
    """One accepted value: ``value`` accepted at ``ballot`` for ``slot``."""

    slot: Slot
    ballot: Ballot
    value: Value


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    """A value the leader asks acceptors to accept for one slot."""

    slot: Slot
    value: Value


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepare:
    """Phase 1a for every slot >= ``from_slot``.

    ``transfer_of`` is set when the current leader of that ballot handed leadership to ``src``
    (``TimeoutNow``): followers may then promise even while they still guard that leader.
    """

    src: NodeId
    dst: NodeId
    ballot: Ballot
    from_slot: Slot
    transfer_of: Ballot | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Promise:
    """Phase 1b: a promise to ignore ballots below ``ballot``.

    Carries every entry the acceptor accepted above its ``chosen_through`` (and >= the
    prepare's ``from_slot``). Slots at or below ``chosen_through`` are chosen; the new leader
    learns those by catch-up, not from here.
    """

    src: NodeId
    dst: NodeId
    ballot: Ballot
    entries: tuple[LogEntry, ...]
    chosen_through: Slot


@dataclass(frozen=True, slots=True, kw_only=True)
class Accept:
    """Phase 2a for a batch of slots, with the leader's commit point piggybacked.

    ``commit`` means: every slot <= commit is chosen, and for any of them where the receiver
    accepted a value at *this* ballot, that value is the chosen one.
    """

    src: NodeId
    dst: NodeId
    ballot: Ballot
    proposals: tuple[Proposal, ...]
    commit: Slot


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    """Phase 2b: the acceptor durably accepted these slots at ``ballot``."""

    src: NodeId
    dst: NodeId
    ballot: Ballot
    slots: tuple[Slot, ...]
    chosen_through: Slot


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    """A prepare/accept/heartbeat at ``ballot`` was refused: the acceptor promised ``promised``."""

    src: NodeId
    dst: NodeId
    ballot: Ballot
    promised: Ballot
    chosen_through: Slot


@dataclass(frozen=True, slots=True)
class Stamp:
    """A replica's tick count, tagged with its incarnation (tick counts restart at zero)."""

    incarnation: int
    tick: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """Leader liveness, commit point, and a lease round: ``sent_tick`` is the leader's clock."""

    src: NodeId
    dst: NodeId
    ballot: Ballot
    commit: Slot
    sent_tick: int
    round: int  # read-index round: counts heartbeats of this ballot
    # Freshness for bounded-staleness reads: the receiver's own ``Stamp`` from an ack that
    # reached us while we held the lease, so every write acknowledged (by any replica)
    # before that stamp is at or below ``max(commit, echo_through)``. None: no claim.
    echo: Stamp | None = None
    echo_through: Slot = Slot(0)
    # The last slot this leader re-proposed after its phase 1: a rejoining replica may vote
    # once it holds the chosen prefix through it (``paxos.rejoin``).
    barrier: Slot = Slot(0)
    # The leader has been idle a while: a follower that has everything through ``commit``
    # may stop ticking the group until something arrives for it (quiescence).
    quiesce: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatAck:
    """The follower accepts ``ballot`` as its leader as of ``sent_tick`` (a lease grant)."""

    src: NodeId
    dst: NodeId
    ballot: Ballot
    sent_tick: int
    round: int
    chosen_through: Slot
    stamp: Stamp | None = None  # the follower's clock when it sent this ack
    quiesced: bool = False  # the follower went quiet on this (a ``quiesce`` heartbeat)


@dataclass(frozen=True, slots=True, kw_only=True)
class CatchUpRequest:
    """Please send chosen values from ``from_slot`` on."""

    src: NodeId
    dst: NodeId
    from_slot: Slot


@dataclass(frozen=True, slots=True, kw_only=True)
class CatchUp:
    """Chosen values for consecutive slots starting at ``first_slot``."""

    src: NodeId
    dst: NodeId
    first_slot: Slot
    values: tuple[Value, ...]
    chosen_through: Slot


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallSnapshot:
    """The sender's state-machine snapshot through ``slot``, for a peer behind its truncation."""

    src: NodeId
    dst: NodeId
    slot: Slot
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class RejoinQuery:
    """A replica that lost its durable state asks for the receiver's promise (``paxos.rejoin``)."""

    src: NodeId
    dst: NodeId


@dataclass(frozen=True, slots=True, kw_only=True)
class RejoinInfo:
    """The answer: the receiver's promised ballot (in memory: at least its durable one)."""

    src: NodeId
    dst: NodeId
    promised: Ballot
    chosen_through: Slot


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutNow:
    """The leader of ``ballot`` hands leadership to ``dst``: campaign at once."""

    src: NodeId
    dst: NodeId
    ballot: Ballot


Message: TypeAlias = (
    Prepare
    | Promise
    | Accept
    | Accepted
    | Reject
    | Heartbeat
    | HeartbeatAck
    | CatchUpRequest
    | CatchUp
    | InstallSnapshot
    | TimeoutNow
    | RejoinQuery
    | RejoinInfo
)

MESSAGE_TYPES: tuple[type[Message], ...] = (
    Prepare,
    Promise,
    Accept,
    Accepted,
    Reject,
    Heartbeat,
    HeartbeatAck,
    CatchUpRequest,
    CatchUp,
    InstallSnapshot,
    TimeoutNow,
    RejoinQuery,
    RejoinInfo,
)
