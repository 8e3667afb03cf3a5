"""The acceptor: promises (phase 1b) and acceptances (phase 2b). Paxos Made Simple §2.2.

Rules:
- P1: never promise or accept a ballot below ``promised``; ``promised`` only grows.
- P2: within one ballot, a slot has at most one value (a leader proposes once per slot).
- Every reply is a ``then_send`` of a ``DiskWrite``, even when nothing new is recorded: the
  empty record sits behind any pending write that made the reply true (FIFO disk).
- A chosen slot is never overwritten. An Accept for it is acknowledged only when it carries
  the chosen value, so a stale leader can never count this acceptor for another value.
- Where a quorum is two (three voters), an acceptance also goes to the learners that can
  use it: the leader's own to every voter, a follower's to itself. A follower holding both
  knows the slot chosen ({leader, self} is a quorum) one message delay before the leader's
  commit point could tell it, so a gateway beside it can answer its client then.
"""

from __future__ import annotations

from paxos.ids import Ballot, NodeId, Slot
from paxos.log import ReplicaLog
from paxos.messages import Accept, Accepted, LogEntry, Message, Prepare, Promise, Reject
from paxos.outbox import Outbox
from paxos.quorum import pair_is_quorum
from paxos.ready import DurableRecord


class Acceptor:
    def __init__(
        self,
        node_id: NodeId,
        promised: Ballot,
        log: ReplicaLog,
        outbox: Outbox,
        voters: tuple[NodeId, ...],
    ) -> None:
        self.node_id = node_id
        self.promised = promised
        self._log = log
        self._out = outbox
        # Who learns of our acceptances besides the proposer (see the module rules).
        self._voters = voters if pair_is_quorum(len(voters)) else ()

    def on_prepare(self, msg: Prepare, *, also_send: tuple[Message, ...] = ()) -> bool:
        """Promise ``msg.ballot`` unless a higher ballot was promised. True if promised."""
        if msg.ballot < self.promised:
            self._reject(msg.src, msg.ballot)
            return False
        raised = msg.ballot > self.promised
        self.promised = msg.ballot
        promise = Promise(
            src=self.node_id,
            dst=msg.src,
            ballot=msg.ballot,
            entries=self._log.unchosen_entries(msg.from_slot),
            chosen_through=self._log.chosen_through,
        )
        record = DurableRecord(promised=msg.ballot if raised else None)
        self._out.persist(record, (promise, *also_send))
        return True

    def on_accept(self, msg: Accept) -> bool:
        """Accept every proposal we may; reply once the record is durable. True if not rejected."""
        if msg.ballot < self.promised:
            self._reject(msg.src, msg.ballot)
            return False
        raised = msg.ballot > self.promised
        self.promised = msg.ballot
        log = self._log
        recorded: list[LogEntry] = []
        acked: list[Slot] = []
        for proposal in msg.proposals:
            slot = proposal.slot
            if slot <= log.snapshot_slot:
                continue  # chosen and compacted: we cannot vouch for the value any more
            existing = log.entries.get(slot)
            if slot <= log.chosen_through:
                assert existing is not None, slot
                if existing.value == proposal.value:
                    acked.append(slot)
                continue
            if existing is not None and existing.ballot == msg.ballot:
                assert existing.value == proposal.value, ("two values in one ballot", slot)
                acked.append(slot)
                continue
            entry = LogEntry(slot=slot, ballot=msg.ballot, value=proposal.value)
            log.entries[slot] = entry
            recorded.append(entry)
            acked.append(slot)
        record = DurableRecord(promised=msg.ballot if raised else None, entries=tuple(recorded))
        self._out.persist(record, self._accepted(msg, tuple(acked)))
        return True

    def _accepted(self, msg: Accept, slots: tuple[Slot, ...]) -> tuple[Accepted, ...]:
        """The replies: to the proposer, and to the learners that can complete a quorum."""
        if not self._voters or not slots:
            learners: tuple[NodeId, ...] = (msg.src,)
        elif msg.src == self.node_id:
            learners = self._voters  # we lead: every follower may count us
        else:
            learners = (msg.src, self.node_id)  # we follow: our own vote, once durable
        return tuple(
            Accepted(
                src=self.node_id,
                dst=to,
                ballot=msg.ballot,
                slots=slots,
                chosen_through=self._log.chosen_through,
            )
            for to in learners
        )

    def _reject(self, to: NodeId, ballot: Ballot) -> None:
        # A refusal reveals nothing a peer relies on for safety, so it needs no write.
        self._out.send(
            Reject(
                src=self.node_id,
                dst=to,
                ballot=ballot,
                promised=self.promised,
                chosen_through=self._log.chosen_through,
            )
        )
