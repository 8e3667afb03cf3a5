"""The proposer: phase 1 over every open slot, then streaming phase 2. Paxos Made Simple §3.

Life of a ballot:
1. PREPARING: ``Prepare(ballot, from_slot=chosen_through+1)`` goes to every voter, riding the
   write that makes our own promise durable (a ballot is never reused after a crash), and
   again every ``retransmit_ticks`` to those that have not promised: a peer that did not
   host the group yet (a split or a stop sign it has not applied) dropped the first, and
   the election would otherwise wait out a whole timeout.
2. CATCHING_UP: a quorum promised. Slots up to the highest ``chosen_through`` any promiser
   reported are chosen already; we fetch them (log or snapshot) before proposing anything.
3. LEADING: every slot above that is re-proposed with the highest-ballot value any promiser
   accepted, gaps become no-ops, and a fresh no-op is added if nothing was open: the last
   slot proposed then is the *barrier*; reads, the lease and freshness claims wait until it
   is chosen (a new leader knows the commit point only once every slot it inherited is).

Steady state: client commands are packed into batches (one batch per slot), at most
``inflight_slots_max`` slots are unchosen at a time, unacknowledged accepts are resent after
``retransmit_ticks``, and the commit point rides on every Accept and Heartbeat.

Lease: a heartbeat carries the tick we sent it at; once a quorum (we count ourselves at
``now``) acknowledged heartbeats sent at or after tick T, we hold the lease until tick
``T + lease_ticks`` (see ``paxos.config`` for why that is safe). A leader that handed
leadership away never claims the lease of that ballot again.
"""

from __future__ import annotations

from collections import deque
from enum import Enum

from paxos.config import Config
from paxos.ids import Ballot, NodeId, Slot
from paxos.learner import Learner
from paxos.log import ReplicaLog
from paxos.messages import (
    NOOP,
    Accept,
    Accepted,
    Heartbeat,
    HeartbeatAck,
    Message,
    Prepare,
    Promise,
    Proposal,
    Stamp,
    TimeoutNow,
    Value,
)
from paxos.outbox import Outbox
from paxos.ports import Logger
from paxos.quorum import is_quorum, pair_is_quorum, quorum_floor, quorum_size
from paxos.ready import (
    DurableRecord,
    NotLeader,
    Overloaded,
    Proposed,
    ProposeOutcome,
    ReadOutcome,
    ReadQueued,
    ReadState,
    TooLarge,
)


class Phase(Enum):
    PREPARING = "preparing"
    CATCHING_UP = "catching_up"
    LEADING = "leading"


class Leader:
    def __init__(
        self,
        cfg: Config,
        ballot: Ballot,
        *,
        log: ReplicaLog,
        learner: Learner,
        outbox: Outbox,
        logger: Logger,
        now: int,
    ) -> None:
        self._cfg = cfg
        self._voters = frozenset(cfg.voters)
        self._quorum = quorum_size(len(self._voters))
        self.ballot = ballot
        self._log = log
        self._learner = learner
        self._out = outbox
        self._logger = logger
        self.phase = Phase.PREPARING
        self._now = now
        self._started_tick = now
        self._promises: dict[NodeId, Promise] = {}
        self._need_chosen_through = Slot(0)
        self._prepares: tuple[Prepare, ...] = ()  # to the peers, resent until they promise
        self._prepared_at = now

        # phase 2
        self.proposals: dict[Slot, Value] = {}  # proposed at this ballot, not yet chosen
        self._acks: dict[Slot, set[NodeId]] = {}
        self._sent_at: dict[NodeId, dict[Slot, int]] = {p: {} for p in cfg.peers}
        self.next_slot = Slot(0)
        self._sent_through = Slot(0)
        self._open_batch: list[bytes] = []
        self._open_bytes = 0
        self.barrier_slot = Slot(0)
        # The highest slot whose acceptance we told the followers (see ``read_point``).
        self._told_through = Slot(0)
        self._tells = pair_is_quorum(len(cfg.voters))

        # liveness, lease, reads
        self._last_heard: dict[NodeId, int] = dict.fromkeys(cfg.peers, now)
        # Check-quorum counts calls of ``tick`` (see ``paxos.election``): a stall of ours
        # delivers many ticks in one call, and is no sign the peers went silent.
        self._tick_calls = 0
        self._heard_call: dict[NodeId, int] = dict.fromkeys(cfg.peers, 0)
        self.peer_chosen: dict[NodeId, Slot] = {p: Slot(0) for p in cfg.peers}
        self._lease_acks: dict[NodeId, int] = {}
        self._stamps: dict[NodeId, Stamp] = {}  # followers' stamps received under the lease
        self._hb_round = 0
        self._round_acks: dict[NodeId, int] = {}
        self._last_hb_tick: int | None = None
        self._pending_reads: deque[tuple[int, int]] = deque()  # (request_id, round needed)
        self.lease_forbidden = False
        self.transfer_to: NodeId | None = None
        self._transfer_deadline = 0
        self._timeout_now_sent = False

        # quiescence: ticks with nothing to do, and the peers that went quiet since
        self._idle_ticks = 0
        self._quiet_peers: set[NodeId] = set()
        self._quiet_from_round = 0  # acks to heartbeats of earlier rounds do not count
        # Peers the driver knows are down (``Replica.set_absent``): quiescence does not wait
        # for them to catch up or go quiet.
        self.absent: frozenset[NodeId] = frozenset()

    # ================================================================== phase 1

    def prepare_messages(self, transfer_of: Ballot | None) -> tuple[Prepare, ...]:
        from_slot = Slot(self._log.chosen_through + 1)
        prepares = tuple(
            Prepare(
                src=self._cfg.node_id,
                dst=v,
                ballot=self.ballot,
                from_slot=from_slot,
                transfer_of=transfer_of,
            )
            for v in self._cfg.voters
        )
        self._prepares = tuple(p for p in prepares if p.dst != self._cfg.node_id)
        self._prepared_at = self._now
        return prepares

    def _resend_prepares(self) -> None:
        """Phase 1 again to the peers that have not promised, once per ``retransmit_ticks``.
        Behind an empty write: writes complete in order, so never before the first send,
        which rode our own promise's write (a crash before it must not leave the ballot in
        use)."""
        if self._now - self._prepared_at < self._cfg.retransmit_ticks:
            return
        self._prepared_at = self._now
        unanswered = tuple(p for p in self._prepares if p.dst not in self._promises)
        if unanswered:
            self._out.persist(DurableRecord(), unanswered)

    def on_promise(self, msg: Promise) -> None:
        if self.phase is not Phase.PREPARING or msg.ballot != self.ballot:
            return
        self._promises[msg.src] = msg
        self._last_heard[msg.src] = self._now
        self._heard_call[msg.src] = self._tick_calls
        if not is_quorum(self._promises, self._cfg.voters):
            return
        self.phase = Phase.CATCHING_UP
        best = max(self._promises.values(), key=lambda p: (p.chosen_through, p.src))
        self._need_chosen_through = best.chosen_through
        self._learner.note_peer_progress(best.chosen_through, best.src, reachable=True)
        self.try_finish_catch_up()

    def try_finish_catch_up(self) -> bool:
        """Start phase 2 once we know every slot a promiser knows chosen. True if we did."""
        log = self._log
        if self.phase is not Phase.CATCHING_UP or log.chosen_through < self._need_chosen_through:
            return False
        start = Slot(log.chosen_through + 1)
        adopted: dict[Slot, tuple[Ballot, Value]] = {}
        for promise in self._promises.values():
            for entry in promise.entries:
                if entry.slot < start:
                    continue
                seen = adopted.get(entry.slot)
                if seen is None or entry.ballot > seen[0]:
                    adopted[entry.slot] = (entry.ballot, entry.value)
        top = max(adopted, default=Slot(start - 1))
        for slot in range(start, top + 1):
            self.proposals[Slot(slot)] = adopted.get(Slot(slot), (Ballot.ZERO, NOOP))[1]
        self.next_slot = Slot(top + 1)
        if not self.proposals:
            self.proposals[self.next_slot] = NOOP
            self.next_slot = Slot(self.next_slot + 1)
        # The barrier is the *last* slot proposed now: a slot the old leader acknowledged may
        # lie anywhere up to ``top``, so only once all of them are chosen do we know the
        # commit point (Raft's no-op at the end of the new term, not its start).
        self.barrier_slot = Slot(self.next_slot - 1)
        self._sent_through = Slot(start - 1)
        self._acks = {s: set() for s in self.proposals}
        self.phase = Phase.LEADING
        self._promises.clear()
        self._logger.info(
            "leader_elected",
            ballot=str(self.ballot),
            barrier_slot=self.barrier_slot,
            reproposed=len(self.proposals),
        )
        self.pump()
        self.send_heartbeats()
        return True

    # ================================================================== phase 2

    def propose(self, command: bytes) -> ProposeOutcome:
        cfg = self._cfg
        if self.phase is not Phase.LEADING:
            return NotLeader(None)
        if self.transfer_to is not None:
            return NotLeader(self.transfer_to)
        if self._idle_ticks:  # (at 0 a stir has nothing to undo: a hot path, per command)
            self.stir()
        if len(command) > cfg.batch_bytes_max:
            return TooLarge(cfg.batch_bytes_max)
        closed_unsent = self.next_slot - 1 - self._sent_through
        queued = closed_unsent * cfg.batch_commands_max + len(self._open_batch)
        if queued >= cfg.pending_commands_max:
            return Overloaded()
        if (
            len(self._open_batch) >= cfg.batch_commands_max
            or self._open_bytes + len(command) > cfg.batch_bytes_max
        ):
            self._close_batch()
        self._open_batch.append(command)
        self._open_bytes += len(command)
        return Proposed(self.next_slot)

    def _close_batch(self) -> None:
        if not self._open_batch:
            return
        slot = self.next_slot
        self.proposals[slot] = tuple(self._open_batch)
        self._acks[slot] = set()
        self._open_batch = []
        self._open_bytes = 0
        self.next_slot = Slot(slot + 1)

    def flush(self) -> None:
        """End of a turn: whatever was proposed since the last flush becomes one slot."""
        if self.phase is Phase.LEADING:
            self._close_batch()
            self.pump()

    def pump(self) -> None:
        """Send every closed batch the in-flight window admits, one Accept per voter."""
        cfg, log = self._cfg, self._log
        batch: list[Proposal] = []
        while (
            self._sent_through + 1 < self.next_slot
            and self._sent_through - log.chosen_through < cfg.inflight_slots_max
        ):
            slot = Slot(self._sent_through + 1)
            self._sent_through = slot
            value = self.proposals.get(slot)
            if value is None:
                continue  # learned chosen meanwhile (catch-up)
            batch.append(Proposal(slot=slot, value=value))
        if not batch:
            return
        proposals = tuple(batch)
        for voter in cfg.voters:
            self._send_accept(voter, proposals)

    def _send_accept(self, voter: NodeId, proposals: tuple[Proposal, ...]) -> None:
        if voter != self._cfg.node_id:
            sent = self._sent_at[voter]
            for p in proposals:
                sent[p.slot] = self._now
        self._out.send(
            Accept(
                src=self._cfg.node_id,
                dst=voter,
                ballot=self.ballot,
                proposals=proposals,
                commit=self._log.chosen_through,
            )
        )

    def counts(self, msg: Accepted) -> bool:
        """Whether ``msg`` is a vote for one of our proposals (else learners may use it)."""
        return msg.ballot == self.ballot and self.phase is Phase.LEADING

    def on_accepted(self, msg: Accepted) -> None:
        if not self.counts(msg):
            return
        self._heard(msg.src, msg.chosen_through)
        if msg.src == self._cfg.node_id and msg.slots and self._tells:
            # Our copies to the followers left with this (``paxos.acceptor``).
            self._told_through = max(self._told_through, *msg.slots)
        for slot in msg.slots:
            acks = self._acks.get(slot)
            if acks is None:
                continue
            acks.add(msg.src)
            if is_quorum(acks, self._cfg.voters):
                self._learner.learn(slot, self.proposals[slot])
        self.settle()

    def settle(self) -> bool:
        """Forget proposals that became chosen. False if one was chosen with another value."""
        log = self._log
        for slot in [s for s in self.proposals if s <= log.chosen_through]:
            if slot > log.snapshot_slot and log.entries[slot].value != self.proposals[slot]:
                self._logger.info("leader_deposed_by_chosen_value", slot=slot)
                return False
            del self.proposals[slot]
            self._acks.pop(slot, None)
            for sent in self._sent_at.values():
                sent.pop(slot, None)
        if self.phase is Phase.LEADING:
            self.pump()
            self._release_reads()
            self._maybe_hand_over()
        return True

    # ================================================================== heartbeats, lease, reads

    def tick(self, now: int, ticks: int = 1) -> bool:
        """Time is ``now`` (``ticks`` later than the last call). False when we lost contact
        with a quorum and must step down."""
        self._now = now
        cfg = self._cfg
        if self.phase is Phase.PREPARING:
            self._resend_prepares()
        if self.phase is not Phase.LEADING:
            return True
        if self._has_work():
            self.stir()
        else:
            self._idle_ticks += ticks
        if self.quiescent:
            return True  # the followers went quiet too: nothing to guard or resend
        self._tick_calls += 1
        heard = dict(self._heard_call)
        heard[cfg.node_id] = self._tick_calls
        if self._tick_calls - quorum_floor(heard, cfg.voters) > cfg.election_ticks_max:
            self._logger.info("leader_lost_quorum", ballot=str(self.ballot))
            return False
        if self._last_hb_tick is None or now - self._last_hb_tick >= cfg.heartbeat_ticks:
            self.send_heartbeats()
        self._retransmit()
        if self.transfer_to is not None and now >= self._transfer_deadline:
            self._logger.info("leader_transfer_aborted", to=self.transfer_to)
            self.transfer_to = None
        return True

    # ------------------------------------------------------------------ quiescence

    def _has_work(self) -> bool:
        """Anything that needs ticks: proposals in flight, reads waiting for a round, a
        transfer, the barrier not chosen yet, or a peer that lacks a chosen slot."""
        chosen = self._log.chosen_through
        return bool(
            self.proposals
            or self._open_batch
            or self._pending_reads
            or self.transfer_to is not None
            or not self._barrier_chosen()
            or any(self.peer_chosen[p] < chosen for p in self._present_peers())
        )

    def _present_peers(self) -> list[NodeId]:
        return [p for p in self._cfg.peers if p not in self.absent]

    def stir(self) -> None:
        """Work came: stop quiescing; heartbeats asking for quiet start over later."""
        self._idle_ticks = 0
        self._quiet_peers.clear()
        self._quiet_from_round = self._hb_round + 1

    @property
    def _quiescing(self) -> bool:
        return 0 < self._cfg.quiesce_ticks <= self._idle_ticks

    @property
    def quiescent(self) -> bool:
        """Leading, idle, and every peer went quiet (but those known to be down, as long as
        a quorum did): ticks may stop until an input comes."""
        return (
            self.phase is Phase.LEADING
            and self._quiescing
            and self._quiet_peers.issuperset(self._present_peers())
            and is_quorum({*self._quiet_peers, self._cfg.node_id}, self._cfg.voters)
        )

    def resume(self, now: int) -> None:
        """Ticks up to ``now`` passed untracked while we were quiescent (``Replica.resume``).
        The lease is not renewed: it is counted from acknowledgements, as ever."""
        self._now = now
        self._heard_call = dict.fromkeys(self._heard_call, self._tick_calls)
        self.stir()

    def send_heartbeats(self) -> None:
        self._hb_round += 1
        self._last_hb_tick = self._now
        quiesce = self._quiescing
        for peer in self._cfg.peers:
            self._out.send(
                Heartbeat(
                    src=self._cfg.node_id,
                    dst=peer,
                    ballot=self.ballot,
                    commit=self._log.chosen_through,
                    sent_tick=self._now,
                    round=self._hb_round,
                    echo=self._stamps.get(peer),
                    echo_through=self.read_point(),
                    barrier=self.barrier_slot,
                    quiesce=quiesce,
                )
            )

    def on_heartbeat_ack(self, msg: HeartbeatAck) -> None:
        if msg.ballot != self.ballot:
            return
        self._heard(msg.src, msg.chosen_through)
        self._lease_acks[msg.src] = max(self._lease_acks.get(msg.src, 0), msg.sent_tick)
        self._round_acks[msg.src] = max(self._round_acks.get(msg.src, 0), msg.round)
        if msg.quiesced and msg.round >= self._quiet_from_round and self._quiescing:
            self._quiet_peers.add(msg.src)
        if msg.stamp is not None and self.lease_valid(self._now):
            # We hold the lease on receipt, so no other leader can have acknowledged a write
            # we do not have chosen (a lease read's argument): everything acknowledged before
            # the follower stamped this is at or below our chosen_through, now and later.
            last = self._stamps.get(msg.src)
            if (
                last is None
                or last.incarnation != msg.stamp.incarnation
                or last.tick < msg.stamp.tick
            ):
                self._stamps[msg.src] = msg.stamp
        self._release_reads()
        self._maybe_hand_over()

    def peer_is_current(self, peer: NodeId) -> bool:
        """``peer`` answered within a heartbeat interval and has chosen all we have."""
        heard = self._last_heard.get(peer)
        return (
            heard is not None
            and self._now - heard <= 2 * self._cfg.heartbeat_ticks
            and self.peer_chosen.get(peer, Slot(0)) >= self._log.chosen_through
        )

    def _heard(self, peer: NodeId, chosen_through: Slot) -> None:
        if peer == self._cfg.node_id:
            return
        self._last_heard[peer] = self._now
        self._heard_call[peer] = self._tick_calls
        self.peer_chosen[peer] = max(self.peer_chosen[peer], chosen_through)

    def _barrier_chosen(self) -> bool:
        return self.phase is Phase.LEADING and self._log.chosen_through >= self.barrier_slot

    def lease_valid(self, now: int) -> bool:
        if self.lease_forbidden or not self._barrier_chosen():
            return False
        start = self._lease_start(now)
        return start > 0 and now < start + self._cfg.lease_ticks

    def lease_expiry(self) -> int | None:
        """The first tick at which the lease no longer holds, or None without a lease."""
        if not self.lease_valid(self._now):
            return None
        return self._lease_start(self._now) + self._cfg.lease_ticks

    def _lease_start(self, now: int) -> int:
        """The oldest heartbeat tick a quorum (us included, at ``now``) acknowledged:
        ``quorum_floor`` of the acks with ours set to ``now``, without copying them (every
        read asks, on the hot path)."""
        me, acks = self._cfg.node_id, self._lease_acks
        ranked = sorted((now if v == me else acks.get(v, 0) for v in self._voters), reverse=True)
        return ranked[self._quorum - 1]

    def read_point(self) -> Slot:
        """Every write acknowledged anywhere so far is at or below this slot.

        Our commit point, or above it the slots whose acceptance we told the followers: a
        follower holding its own acceptance too knows such a slot chosen before we do, and
        a gateway beside it may already have answered its client. A read from here waits
        until those are chosen and applied (one round trip, and only while writes are in
        flight); the lease argument covers them, as they are of our ballot.
        """
        return max(self._log.chosen_through, self._told_through)

    def read(self, request_id: int) -> ReadOutcome:
        if self.phase is not Phase.LEADING:
            return NotLeader(None)
        if self.lease_valid(self._now):
            self._out.reads.append(ReadState(request_id=request_id, slot=self.read_point()))
            return ReadQueued()
        if len(self._pending_reads) >= self._cfg.read_requests_max:
            return Overloaded()
        self.stir()
        # ReadIndex: confirm leadership with a heartbeat round sent after the read arrived.
        self.send_heartbeats()
        self._pending_reads.append((request_id, self._hb_round))
        return ReadQueued()

    def _release_reads(self) -> None:
        if not self._pending_reads or not self._barrier_chosen():
            return
        rounds = dict(self._round_acks)
        rounds[self._cfg.node_id] = self._hb_round
        confirmed = quorum_floor(rounds, self._cfg.voters)
        while self._pending_reads and self._pending_reads[0][1] <= confirmed:
            request_id, _ = self._pending_reads.popleft()
            self._out.reads.append(ReadState(request_id=request_id, slot=self.read_point()))

    def abandon(self) -> None:
        """We stop leading: pending reads fail (the caller retries elsewhere)."""
        self._out.failed_reads.extend(rid for rid, _ in self._pending_reads)
        self._pending_reads.clear()

    # ================================================================== retransmission

    def _retransmit(self) -> None:
        cfg, log = self._cfg, self._log
        for peer in cfg.peers:
            sent = self._sent_at[peer]
            stale = tuple(
                Proposal(slot=slot, value=self.proposals[slot])
                for slot in sorted(sent)
                if self._now - sent[slot] >= cfg.retransmit_ticks
                and peer not in self._acks.get(slot, ())
                and slot > log.chosen_through
            )
            if not stale:
                continue
            if self.peer_chosen[peer] >= stale[0].slot:
                # The peer knows the slot chosen and has not acknowledged it: it learned it
                # from our acceptance and its own (``paxos.acceptor``) while its Accepted to
                # us was lost, and may have compacted it since, so it can no longer vouch for
                # it. Fetch what it knows chosen instead of asking again (sim seed 2785: a
                # leader retransmitted forever). Only here, on a retransmission: a follower
                # is ahead of its leader all the time under load, by design.
                self._learner.note_peer_progress(self.peer_chosen[peer], peer)
                continue
            self._send_accept(peer, stale)

    # ================================================================== leadership transfer

    @property
    def handed_over(self) -> bool:
        """TimeoutNow went out: the target's campaign must win, not be fought."""
        return self._timeout_now_sent

    def transfer(self, to: NodeId) -> bool:
        if self.phase is not Phase.LEADING or to not in self._cfg.peers:
            return False
        self.stir()
        self.transfer_to = to
        self._transfer_deadline = self._now + self._cfg.transfer_ticks_max
        self._timeout_now_sent = False
        self._logger.info("leader_transfer_started", to=to, ballot=str(self.ballot))
        self._maybe_hand_over()
        return True

    def _maybe_hand_over(self) -> None:
        to = self.transfer_to
        if to is None or self._timeout_now_sent:
            return
        if self.peer_chosen[to] < self._log.chosen_through or self.proposals:
            return
        # From here on this ballot never claims the lease: the target's Prepare may pass
        # followers that still guard us.
        self.lease_forbidden = True
        self._timeout_now_sent = True
        msg: Message = TimeoutNow(src=self._cfg.node_id, dst=to, ballot=self.ballot)
        self._out.send(msg)
