"""Rejoining after the loss of durable state: when a replica that forgot its promises may vote.

An acceptor that forgot what it promised and accepted breaks Paxos: it may now accept a
ballot below one it promised, or be counted in a phase-1 quorum without reporting a value it
helped choose. So a replica whose durable state is gone (``DurableState.voting`` False: a
wiped or replaced disk) neither promises nor accepts (no Promise, no Accepted, no
HeartbeatAck, no campaign) until this rule lets it. Until then it learns like any replica
(commit points, catch-up, snapshots) and answers catch-up from what it learned.

The rule (Chandra et al., "Paxos Made Live" §5.1, made precise for Multi-Paxos):

1. Ask every other voter for its promised ballot (``RejoinQuery`` / ``RejoinInfo``) and let
   R be the highest round among the answers. Every ballot this replica could have promised
   before it lost its state was issued by a peer whose own promise, made durable before its
   Prepare left, is at least that ballot; so all of them have round <= R. (A ballot only we
   issued and nobody else promised never had a quorum.) From now on, refuse any ballot of
   round <= R: ``Reject(promised=floor)`` with ``floor = Ballot(R + 1, 0)``, which also makes
   a leader of a lower ballot re-prepare above it at once.
2. Wait for a leader of a ballot B >= floor, i.e. one that began its phase 1 after step 1,
   and for the chosen prefix to reach that leader's *barrier* (``Heartbeat.barrier``): the
   last slot it re-proposed after phase 1. B's phase-1 quorum could not include us (we
   promise nothing), so it intersects every quorum that chose anything at a lower ballot in
   a replica that reported it; B re-proposed every such value at or below its barrier. Once
   we hold the chosen prefix through the barrier, every value we may have helped choose
   before is in our log as chosen, and every later slot is decided at ballots >= B.
   Meanwhile we query every peer again each election timeout: we cannot campaign, and a
   peer whose copy of the group lies dormant waiting for us is stirred to elect B.
3. Then promise B durably and vote again (``DurableRecord(promised=B, voting=True)``); every
   reply we send from then on sits behind that record on the FIFO disk queue.

Every other voter must answer step 1, so a replica that lost its disk cannot rejoin while
another voter of its group is down: with three voters it would otherwise form a "quorum"
with one replica that may lack values chosen with the third.
"""

from __future__ import annotations

from paxos.ids import Ballot, NodeId, Slot


class Rejoin:
    """The rejoining state of one replica: the answers so far, the floor, the target."""

    def __init__(self, peers: tuple[NodeId, ...]) -> None:
        self._peers = peers
        self._answers: dict[NodeId, Ballot] = {}
        self.floor: Ballot | None = None
        self.target: Slot | None = None  # the barrier of a leader at a ballot >= floor
        self.ballot = Ballot.ZERO  # that leader's ballot
        self.last_query_tick: int | None = None
        self.ticks = 0  # since this replica started rejoining (for a periodic report)

    @property
    def peers(self) -> tuple[NodeId, ...]:
        return self._peers

    def unanswered(self) -> tuple[NodeId, ...]:
        return tuple(p for p in self._peers if p not in self._answers)

    def answered(self, peer: NodeId, promised: Ballot) -> bool:
        """A peer's promise arrived. True when it completed step 1 (the floor is now set)."""
        if self.floor is not None or peer not in self._peers:
            return False
        self._answers[peer] = promised
        if self.unanswered():
            return False
        highest = max(b.round for b in self._answers.values())
        self.floor = Ballot(highest + 1, NodeId(0))
        return True

    def refuses(self, ballot: Ballot) -> bool:
        """A ballot this replica may have promised before: never again (step 1)."""
        return self.floor is not None and ballot < self.floor

    def heard_leader(self, ballot: Ballot, barrier: Slot) -> None:
        """A leader of ``ballot`` (LEADING, with that barrier) sent a heartbeat."""
        if self.floor is not None and ballot >= self.floor and ballot >= self.ballot:
            self.ballot = ballot
            self.target = barrier

    def waiting_for(self) -> str:
        """What step the rejoin waits on, for people (a stalled rejoin is logged)."""
        if self.floor is None:
            missing = ", ".join(f"n{p}" for p in self.unanswered())
            return f"the promises of {missing} (every other replica must be up)"
        if self.target is None:
            return f"a leader at a ballot of at least {self.floor}"
        return f"the chosen log through slot {self.target}"

    def done(self, chosen_through: Slot) -> bool:
        """Step 2 is complete: we hold the chosen prefix through a new leader's barrier."""
        return self.target is not None and chosen_through >= self.target
