"""Failure detection in ticks, randomized election timeouts, and the follower's lease guard.

Rules:
- A follower that hears the leader of a ballot >= its promise (an Accept or a Heartbeat)
  resets its timer and *guards* that leader: for ``election_ticks_min`` ticks it promises no
  other node (the sticky leader, and the follower half of the lease). The leader itself may
  re-prepare, and a ``Prepare`` marked as a transfer from the guarded ballot may pass.
- A replica that just started (or restarted, having forgotten whom it guarded) guards
  "nobody in particular" for the same time: it promises no other node at all. Not a
  replica of a group this process has just made (``guarded=False``: born of a split or a
  stop sign it applied): it has acknowledged no leader of the group, so no lease counts on
  it, and the leader that made the group can win its first election at once.
- Election timeouts are drawn uniformly from ``[election_ticks_min, election_ticks_max]``
  with the injected ``Rng``, anew for every attempt, so dueling candidates separate.
- Promising another node's ``Prepare`` restarts the timer (``Replica._on_prepare``), as a
  Raft vote does: the candidate gets a whole timeout to finish before this replica competes.
- Timeouts count *calls* of ``tick``, the guard counts ticks: a driver that fell behind
  delivers its overdue ticks in one call, and neither starts a campaign for each of them nor
  lets a stall of its own (peers' messages queued, unread) pass for their silence. The
  guard, which the lease rests on, still counts every tick.
- Each campaign in a row that heard no leader doubles the next timeout, up to
  ``BACKOFF_MAX`` times the drawn one (hearing a leader, or winning, resets it): a node of
  many groups whose campaigns time out because it is overloaded stops starting new ballots
  faster than it can answer the old ones (a storm that never elects).

Clock assumption: each replica's tick lasts within ``clock_drift_max_permille`` of nominal.
``paxos.config`` states the inequality that makes the lease safe under that bound.
"""

from __future__ import annotations

from paxos.config import Config
from paxos.ids import Ballot, NodeId
from paxos.messages import Prepare
from paxos.ports import Rng

BACKOFF_MAX = 8


class Election:
    def __init__(self, cfg: Config, rng: Rng, *, guarded: bool = True) -> None:
        self._cfg = cfg
        self._rng = rng
        self.ticks_since_leader = 0 if guarded else cfg.election_ticks_min
        self.leader: NodeId | None = None
        self.leader_ballot = Ballot.ZERO
        self.elapsed = 0
        self._backoff = 1  # the next timeout's multiplier (campaigns in a row double it)
        self.timeout = self._draw()

    def _draw(self) -> int:
        drawn = self._rng.randrange(self._cfg.election_ticks_min, self._cfg.election_ticks_max + 1)
        return drawn * self._backoff

    def campaigned(self) -> None:
        """We start a campaign: if it too hears no leader, the next waits twice as long."""
        self._backoff = min(2 * self._backoff, BACKOFF_MAX)

    def heard_leader(self, ballot: Ballot) -> None:
        self._backoff = 1
        self.ticks_since_leader = 0
        self.elapsed = 0
        if ballot >= self.leader_ballot:
            self.leader = ballot.node_id
            self.leader_ballot = ballot

    def forget_leader(self) -> None:
        self.leader = None

    def restart_timer(self) -> None:
        self.elapsed = 0
        self.timeout = self._draw()

    def skip(self, ticks: int) -> None:
        """``ticks`` went by untracked (a quiet group): they count toward the guard's end,
        and a fresh timeout starts now (so woken groups do not all campaign at once)."""
        self.ticks_since_leader += ticks
        self.restart_timer()

    def tick(self, ticks: int = 1) -> bool:
        """``ticks`` ticks in one call; True when the timeout ran out (campaign, or retry)."""
        self.ticks_since_leader += ticks
        self.elapsed += 1
        return self.elapsed >= self.timeout

    def guarded(self) -> bool:
        return self.ticks_since_leader < self._cfg.election_ticks_min

    def may_promise(self, msg: Prepare) -> bool:
        """Whether the guard lets us promise ``msg`` at all (the ballot rule comes after)."""
        if msg.src == self._cfg.node_id or not self.guarded():
            return True
        if self.leader is not None and msg.src == self.leader:
            return True
        return msg.transfer_of is not None and msg.transfer_of == self.leader_ballot
