"""``Replica``: one member of one Multi-Paxos group. Deterministic; performs no I/O.

It composes the roles (it *has* an acceptor, a learner, an election timer and, while it
campaigns or leads, a leader) and routes every input to them with one exhaustive ``match``.
Inputs are verbs (``step``, ``tick``, ``propose``, ``read``, ``transfer_leadership``,
``compact``), completions are past participles (``write_done``), and everything the caller
owes the replica comes out of ``take_ready()``. Invariants are asserted after every input.

Quiescence (as CockroachDB quiesces an idle range): a leader with nothing to do for
``quiesce_ticks`` marks its heartbeats ``quiesce``; a follower that has everything chosen goes
quiet on one and says so in its ack; once every peer did, the leader is ``quiescent`` too.
A driver may then stop ticking the replica, and must call ``resume(ticks)`` with the ticks
it skipped before giving it any other input: time-based state (the lease, the follower's
guard, the staleness bound) then reads exactly as if every tick had been delivered, so no
safety argument changes; only liveness does, and the driver keeps that: it wakes the quiet
followers of a leader whose node fell silent (``kvstore.model.node``).
"""

from __future__ import annotations

from collections import deque
from typing import assert_never

from paxos.acceptor import Acceptor
from paxos.config import Config
from paxos.election import Election
from paxos.ids import Ballot, NodeId, Slot
from paxos.leader import Leader, Phase
from paxos.learner import Learner
from paxos.log import ReplicaLog
from paxos.messages import (
    Accept,
    Accepted,
    CatchUp,
    CatchUpRequest,
    Heartbeat,
    HeartbeatAck,
    InstallSnapshot,
    LogEntry,
    Message,
    Prepare,
    Promise,
    Reject,
    RejoinInfo,
    RejoinQuery,
    Stamp,
    TimeoutNow,
)
from paxos.outbox import Outbox
from paxos.ports import Logger, NullLogger, Rng
from paxos.ready import (
    DurableRecord,
    DurableState,
    NotLeader,
    ProposeOutcome,
    ReadOutcome,
    Ready,
    Role,
    RoleChange,
    Snapshot,
)
from paxos.rejoin import Rejoin

_NOTHING_APPLIED = Slot(0)
_FRESHNESS_KEPT = 16
_REJOIN_REPORT_TICKS = 500  # 5 s at 10 ms a tick


class Replica:
    """One member of one group. See the driver contract in ``paxos/__init__.py``."""

    leader_class: type[Leader] = Leader  # the proposer role, built anew for every campaign

    def __init__(
        self,
        config: Config,
        *,
        rng: Rng,
        logger: Logger | None = None,
        durable: DurableState | None = None,
        applied_through: Slot = _NOTHING_APPLIED,
        incarnation: int = 0,
        guarded: bool = True,
    ) -> None:
        state = durable if durable is not None else DurableState()
        self._cfg = config
        self._logger: Logger = logger if logger is not None else NullLogger()
        self._out = Outbox(config.node_id)
        self._log = ReplicaLog(state)
        self._acceptor = Acceptor(
            config.node_id, state.promised, self._log, self._out, config.voters
        )
        self._learner = Learner(config, self._log, self._out, self._logger, applied_through)
        # ``guarded=False``: the caller vouches that no earlier replica of this group on
        # this node, in this process or a past one, acknowledged a leader (a heartbeat's
        # acknowledgement, which counts toward a lease, writes nothing): a group this
        # process has just made (``paxos.election``). A promise on disk contradicts that.
        fresh = not guarded and state.promised == Ballot.ZERO
        self._election = Election(config, rng, guarded=not fresh)
        self._leader: Leader | None = None
        self._role = Role.FOLLOWER
        self._now = 0
        self._max_seen = state.promised
        self._base_asks = 0  # see ``_ask_for_base``
        self._quiet = False  # a follower that went quiet on its leader's ``quiesce`` heartbeat
        self._absent: frozenset[NodeId] = frozenset()  # see ``set_absent``
        # Tick counts restart at zero: stamps carry this to tell our own echoes from a
        # previous life's. The driver passes a value unique to this process start.
        self._incarnation = incarnation
        # Freshness claims from leaseholders, oldest first: (commit, our tick); see
        # ``stale_read_bound``. A few suffice: an older claim only helps a replica behind.
        self._freshness: deque[tuple[Slot, int]] = deque(maxlen=_FRESHNESS_KEPT)
        # The newest claim covering a given applied slot, kept until a claim arrives:
        # (claims seen, applied) -> tick. Asked after every simulator event, it rarely moves.
        self._claims_seen = 0
        self._newest_claim: tuple[int, Slot, int | None] = (0, Slot(0), None)
        # Set while this replica, having lost its durable state, may not vote yet.
        self._rejoin: Rejoin | None = None
        self.rejoined_at: Slot = state.rejoined_at
        if not state.voting:
            self._rejoin = Rejoin(config.peers)
            self._logger.info("rejoining", chosen_through=self._log.chosen_through)
            self._query_peers()

    # ================================================================== inspection

    @property
    def node_id(self) -> NodeId:
        return self._cfg.node_id

    @property
    def config(self) -> Config:
        return self._cfg

    @property
    def role(self) -> Role:
        return self._role

    @property
    def now(self) -> int:
        return self._now

    @property
    def promised(self) -> Ballot:
        return self._acceptor.promised

    @property
    def leader_ballot(self) -> Ballot | None:
        """Our ballot while we lead (phase 2 running), else None."""
        leader = self._leader
        return leader.ballot if leader is not None and leader.phase is Phase.LEADING else None

    @property
    def rejoining(self) -> bool:
        """Whether this replica lost its durable state and may not vote yet (``paxos.rejoin``)."""
        return self._rejoin is not None

    @property
    def leader_hint(self) -> NodeId | None:
        if self._role is Role.LEADER:
            return self.node_id
        return self._election.leader

    @property
    def chosen_through(self) -> Slot:
        return self._log.chosen_through

    @property
    def applied_through(self) -> Slot:
        """The last slot handed to the state machine (``Ready.chosen`` or a snapshot)."""
        return self._learner.emitted_through

    @property
    def snapshot_slot(self) -> Slot:
        return self._log.snapshot_slot

    def log_entry(self, slot: Slot) -> LogEntry | None:
        return self._log.entries.get(slot)

    def lease_valid(self, skipped: int = 0) -> bool:
        """We may serve linearizable reads locally now (deliver elapsed ticks first, or
        name them: ``skipped`` ticks the driver has not delivered while we were quiescent)."""
        leader = self._leader
        return leader is not None and leader.lease_valid(self._now + skipped)

    def lease_read_point(self, skipped: int = 0) -> Slot | None:
        """While we hold the lease: the slot a linearizable read arriving now is served at
        (once applied). Every write acknowledged anywhere before now is at or below it (the
        lease read's argument; the simulator checks it at every event). None: no lease."""
        leader = self._leader
        if leader is None or not self.lease_valid(skipped):
            return None
        return leader.read_point()

    def stale_read_bound(self, applied: Slot, skipped: int = 0) -> int | None:
        """How stale a read of our state through ``applied`` can be, in nominal ticks.

        0 while we hold the lease and have applied all we know chosen. Otherwise from the
        newest leaseholder claim "everything acknowledged before your tick T is at or below
        slot C" (``Heartbeat.echo``) with C <= ``applied``: our state misses nothing
        acknowledged more than ``now - T + 1`` of our ticks ago (the +1 covers the part of
        tick T already gone when we stamped), which is at most that times ``1 + rho``
        nominal ticks. None when no claim covers ``applied``. Deliver elapsed ticks first
        (or name the undelivered ones, as for ``lease_valid``).
        """
        return self.read_promise(applied, skipped)[1]

    def read_promise(self, applied: Slot, skipped: int = 0) -> tuple[Slot | None, int | None]:
        """``(lease_read_point(skipped), stale_read_bound(applied, skipped))`` in one pass
        (the simulator asks both after every event)."""
        leader = self._leader
        point = None
        if leader is not None and leader.lease_valid(self._now + skipped):
            point = leader.read_point()
            if applied >= point:
                return point, 0
        seen, covered, newest = self._newest_claim
        if seen != self._claims_seen or covered != applied:
            newest = max(
                (tick for commit, tick in self._freshness if commit <= applied), default=None
            )
            self._newest_claim = (self._claims_seen, applied, newest)
        if newest is None:
            return point, None
        own_ticks = self._now + skipped - newest + 1
        drift = self._cfg.clock_drift_max_permille
        return point, -(-own_ticks * (1000 + drift) // 1000)

    def peer_is_current(self, peer: NodeId) -> bool:
        """We lead, ``peer`` answered recently and is caught up (a safe transfer target)."""
        leader = self._leader
        return leader is not None and leader.phase is Phase.LEADING and leader.peer_is_current(peer)

    def lease_expiry_tick(self) -> int | None:
        leader = self._leader
        return leader.lease_expiry() if leader is not None else None

    @property
    def quiescent(self) -> bool:
        """Nothing here needs ticks until an input comes (see the module docstring)."""
        leader = self._leader
        if leader is not None:
            quiet = self._role is Role.LEADER and leader.quiescent
        else:
            quiet = self._quiet
        return quiet and self._rejoin is None and not self._learner.catching_up

    def stirs(self, msg: Message) -> bool:
        """Whether ``msg`` needs a quiescent replica resumed. Only a late ack of a heartbeat
        that asked for quiet does not: it says what we know (and is dropped)."""
        leader = self._leader
        return not (
            isinstance(msg, HeartbeatAck)
            and msg.quiesced
            and leader is not None
            and msg.ballot == leader.ballot
            and self.quiescent
        )

    @property
    def writes_outstanding(self) -> int:
        return self._out.writes_outstanding

    @property
    def writes_taken(self) -> int:
        """Writes the driver took (``take_ready``) and has not reported done."""
        return self._out.writes_taken

    # ================================================================== inputs

    def step(self, msg: Message) -> None:
        """A peer's message arrived."""
        assert msg.dst == self.node_id, (msg.dst, self.node_id)
        if msg.src not in self._cfg.voters:
            self._logger.info("message_from_non_voter_dropped", src=msg.src)
            return
        self._quiet = False  # only a ``quiesce`` heartbeat quiets us again
        self._dispatch(msg)
        self._process()

    def tick(self, ticks: int = 1) -> None:
        """``ticks`` ticks of this replica's clock passed (more than one: a driver that fell
        behind delivers them at once; time counts them all, timers fire at most once)."""
        self._now += ticks
        now = self._now
        self._learner.tick(now)
        rejoin = self._rejoin
        if rejoin is not None:
            self._election.tick(ticks)  # never campaigns: a rejoining replica cannot vote
            self._query_peers()
            reported = rejoin.ticks // _REJOIN_REPORT_TICKS
            rejoin.ticks += ticks
            if rejoin.ticks // _REJOIN_REPORT_TICKS > reported:
                # Normally a rejoin takes a few round trips; say what holds a long one up.
                self._logger.info(
                    "rejoin_waiting", ticks=rejoin.ticks, waiting_for=rejoin.waiting_for()
                )
            self._process()
            return
        leader = self._leader
        if leader is not None and leader.phase is Phase.LEADING:
            self._election.heard_leader(leader.ballot)  # we guard ourselves
            if not leader.tick(now, ticks):
                self._step_down()
        else:
            if leader is not None:
                leader.tick(now, ticks)
            if self._election.tick(ticks):
                self._campaign(transfer_of=None)
        self._process()

    def resume(self, ticks: int) -> None:
        """``ticks`` ticks of our clock passed while the driver skipped us (we were
        quiescent): count them, as ``tick`` would have, without acting on each."""
        self._quiet = False
        self._now += ticks
        self._election.skip(ticks)
        self._learner.tick(self._now)
        leader = self._leader
        if leader is not None:
            leader.resume(self._now)
        self._process()

    def keep_awake(self) -> None:
        """The driver has work for us that needs ticks (a leadership move it plans): a
        leader stops quiescing, so its heartbeats go on."""
        if self._leader is not None:
            self._leader.stir()

    def set_absent(self, peers: frozenset[NodeId]) -> None:
        """The driver knows these peers are down (their node fell silent): a leader may go
        quiescent without them (as CockroachDB quiesces without dead followers). A peer that
        comes back is named no more, and the driver resumes us so it hears from us."""
        self._absent = peers
        if self._leader is not None:
            self._leader.absent = peers

    def propose(self, command: bytes) -> ProposeOutcome:
        """Propose one client command; it is batched with others proposed in this turn."""
        leader = self._leader
        if leader is None:
            return NotLeader(self._election.leader)
        return leader.propose(command)

    def read(self, request_id: int) -> ReadOutcome:
        """Ask for a linearizable read point; a ``ReadState`` (or failure) follows in ``Ready``."""
        leader = self._leader
        if leader is None:
            return NotLeader(self._election.leader)
        outcome = leader.read(request_id)
        self._process()
        return outcome

    def transfer_leadership(self, to: NodeId) -> bool:
        """Hand leadership to ``to`` once it is caught up. False if we are not leading."""
        leader = self._leader
        ok = leader is not None and leader.transfer(to)
        self._process()
        return ok

    def announce_commit(self) -> None:
        """Leading: tell every follower the commit point now, not with the next Accept or
        heartbeat. For a slot no Accept may follow soon (a stop sign ends the group's log),
        whose application followers act on: a successor's replica votes only once its node
        applied the stop."""
        leader = self._leader
        if leader is not None and leader.phase is Phase.LEADING:
            leader.send_heartbeats()
            self._process()

    def campaign(self) -> None:
        """Start an election now (tests and operators; normally the timer does this)."""
        if self._role is not Role.LEADER and self._rejoin is None:
            self._campaign(transfer_of=None)
            self._process()

    def write_done(self, seq: int) -> None:
        """``DiskWrite`` #seq is durable (report in the order the writes were handed out)."""
        self._out.write_done(seq)
        self._process()

    def compact(self, slot: Slot, snapshot: bytes) -> bool:
        """The state machine state through ``slot`` (<= applied) is ``snapshot``: truncate."""
        ok = self._learner.compact(slot, snapshot)
        self._process()
        return ok

    def snapshot_outdated(self) -> None:
        """A peer must not start from the stored snapshot and replay the log after it (the
        caller's reason: what the state machine's later slots did can no longer be redone
        where that peer is). Keep its slot, forget its bytes: a peer that needs it makes this
        replica ask for a dump of the state as it is now (``Ready.snapshot_wanted``)."""
        log = self._log
        if log.snapshot is not None and not log.snapshot.placeholder:
            log.snapshot = Snapshot(slot=log.snapshot.slot, data=b"")

    def take_ready(self) -> Ready:
        leader = self._leader
        if leader is not None:
            leader.flush()
            self._process()
        return self._out.take()

    # ================================================================== routing

    def _dispatch(self, msg: Message) -> None:
        self._max_seen = max(self._max_seen, _ballot_of(msg))
        if self._rejoin is not None and self._step_rejoining(self._rejoin, msg):
            return
        match msg:
            case Prepare():
                self._on_prepare(msg)
            case Promise():
                if self._leader is not None:
                    self._leader.on_promise(msg)
            case Accept():
                self._on_accept(msg)
            case Accepted():
                leader = self._leader
                if leader is not None and leader.counts(msg):
                    leader.on_accepted(msg)
                else:
                    self._learner.on_accepted(msg)
            case Reject():
                self._on_reject(msg)
            case Heartbeat():
                self._on_heartbeat(msg)
            case HeartbeatAck():
                if self._leader is not None:
                    self._leader.on_heartbeat_ack(msg)
            case CatchUpRequest():
                self._learner.on_catchup_request(msg)
            case CatchUp():
                self._learner.on_catchup(msg)
            case InstallSnapshot():
                self._learner.on_install_snapshot(msg)
            case TimeoutNow():
                self._on_timeout_now(msg)
            case RejoinQuery():
                self._out.send(
                    RejoinInfo(
                        src=self.node_id,
                        dst=msg.src,
                        promised=self._acceptor.promised,
                        chosen_through=self._log.chosen_through,
                    )
                )
            case RejoinInfo():
                pass  # an answer that came after we rejoined
            case _:
                assert_never(msg)

    # ================================================================== rejoining

    def _step_rejoining(self, rejoin: Rejoin, msg: Message) -> bool:
        """What a replica that may not vote does with ``msg``; False: handle it as usual
        (catch-up, snapshots, queries: learning needs no vote)."""
        match msg:
            case Prepare() | Accept() | Heartbeat():
                if rejoin.refuses(msg.ballot) and rejoin.floor is not None:
                    # Possibly promised before we lost our state: refused, and a leader of
                    # it re-prepares above our floor at once (``_on_reject``).
                    self._out.send(
                        Reject(
                            src=self.node_id,
                            dst=msg.src,
                            ballot=msg.ballot,
                            promised=rejoin.floor,
                            chosen_through=self._log.chosen_through,
                        )
                    )
                if isinstance(msg, Accept | Heartbeat):
                    self._election.heard_leader(msg.ballot)  # a hint for redirects only
                    self._learner.note_peer_progress(msg.commit, msg.src)
                if isinstance(msg, Heartbeat):
                    rejoin.heard_leader(msg.ballot, msg.barrier)
                return True
            case RejoinInfo():
                if rejoin.answered(msg.src, msg.promised):
                    self._logger.info("rejoin_floor", floor=str(rejoin.floor))
                self._learner.note_peer_progress(msg.chosen_through, msg.src)
                return True
            case Promise() | Accepted() | HeartbeatAck() | TimeoutNow():
                return True  # we neither lead nor count votes while rejoining
            case _:
                return False

    def _query_peers(self) -> None:
        """Step 1's queries, resent until answered. Then, while no leader above the floor
        is heard, a query to every peer each election timeout: we cannot campaign, and a
        peer whose copy of the group lies dormant waiting for us (its driver's preferred
        leader) is stirred by it to elect one (sim seed 1952: both peers restarted while
        we rejoined, and the group had no leader for 18 s)."""
        rejoin = self._rejoin
        if rejoin is None or rejoin.target is not None:
            return
        sent = rejoin.last_query_tick
        every = self._cfg.retransmit_ticks if rejoin.floor is None else self._cfg.election_ticks_max
        if sent is not None and self._now - sent < every:
            return
        rejoin.last_query_tick = self._now
        for peer in rejoin.unanswered() if rejoin.floor is None else rejoin.peers:
            self._out.send(RejoinQuery(src=self.node_id, dst=peer))

    def _ask_for_base(self) -> None:
        """Ask one peer (the next each time) for what we lack from the base on: one that
        holds it answers with a snapshot, leader or not. Peers left quiet waiting for us to
        campaign (we are the replica they prefer) are stirred by it to elect one: they would
        otherwise wait out their dormant timeout (sim seed 1346: a moved range had no
        leader for 15 s after a restart of all its nodes)."""
        peers = tuple(p for p in self._cfg.peers if p not in self._absent) or self._cfg.peers
        if not peers:
            return
        self._base_asks += 1
        peer = peers[self._base_asks % len(peers)]
        self._out.send(
            CatchUpRequest(src=self.node_id, dst=peer, from_slot=Slot(self._log.chosen_through + 1))
        )

    def _finish_rejoin(self) -> None:
        """Step 3 of ``paxos.rejoin``: promise the new leader's ballot, durably, and vote."""
        rejoin = self._rejoin
        if rejoin is None or not rejoin.done(self._log.chosen_through):
            return
        self._rejoin = None
        acceptor = self._acceptor
        acceptor.promised = max(acceptor.promised, rejoin.ballot)
        assert rejoin.target is not None
        self.rejoined_at = rejoin.target
        self._out.persist(
            DurableRecord(promised=acceptor.promised, voting=True, rejoined_at=rejoin.target)
        )
        self._election.heard_leader(rejoin.ballot)
        self._logger.info(
            "rejoined", ballot=str(rejoin.ballot), chosen_through=self._log.chosen_through
        )

    def _on_prepare(self, msg: Prepare) -> None:
        if not self._election.may_promise(msg):
            self._logger.debug(
                "prepare_ignored_leader_guarded", src=msg.src, ballot=str(msg.ballot)
            )
            return
        new_ballot = msg.ballot > self._acceptor.promised
        if self._acceptor.on_prepare(msg):
            self._yield_to(msg.ballot)
            if msg.src != self.node_id and new_ballot:
                # A candidate we promised gets a whole timeout to finish phases 1 and 2 (as
                # a Raft vote resets the timer): a timer that ran out while no leader was
                # heard would fire on the next tick and preempt it. With a quorum of exactly
                # the live replicas, two such preempted each other's campaigns for good
                # (sim seed 7500: no leader through the whole liveness phase). Once per
                # ballot: a candidate that cannot hear our promise resends its Prepare
                # (``paxos.leader``), and restarting on each would never let us run.
                self._election.restart_timer()

    def _on_accept(self, msg: Accept) -> None:
        from_peer = msg.src != self.node_id
        if from_peer and msg.ballot >= self._acceptor.promised:
            self._yield_to(msg.ballot)
            self._election.heard_leader(msg.ballot)
            if self._log.chosen_through < self._cfg.base_slot:
                # Without the group's base state we accept nothing: a slot chosen past the
                # base then proves a majority holds it, which the parent's replicas wait for
                # before compacting away the log that makes it (sim seed 1715: the only
                # replica holding a new shard's base lost its disk). The commit point
                # starts the catch-up that brings the base.
                self._learner.learn_commit(msg.ballot, msg.commit, msg.src)
                return
        if self._acceptor.on_accept(msg) and from_peer:
            self._learner.learn_commit(msg.ballot, msg.commit, msg.src)

    def _on_heartbeat(self, msg: Heartbeat) -> None:
        if msg.ballot < self._acceptor.promised:
            self._out.send(
                Reject(
                    src=self.node_id,
                    dst=msg.src,
                    ballot=msg.ballot,
                    promised=self._acceptor.promised,
                    chosen_through=self._log.chosen_through,
                )
            )
            return
        self._yield_to(msg.ballot)
        self._election.heard_leader(msg.ballot)
        self._learner.learn_commit(msg.ballot, msg.commit, msg.src)
        echo = msg.echo
        if echo is not None and echo.incarnation == self._incarnation and echo.tick <= self._now:
            self._freshness.append((max(msg.commit, msg.echo_through), echo.tick))
            self._claims_seen += 1
        self._quiet = (
            msg.quiesce
            and self._leader is None
            and self._log.chosen_through >= msg.commit
            and not self._learner.catching_up
        )
        self._out.send(
            HeartbeatAck(
                src=self.node_id,
                dst=msg.src,
                ballot=msg.ballot,
                sent_tick=msg.sent_tick,
                round=msg.round,
                chosen_through=self._log.chosen_through,
                stamp=Stamp(self._incarnation, self._now),
                quiesced=self._quiet,
            )
        )

    def _on_reject(self, msg: Reject) -> None:
        self._max_seen = max(self._max_seen, msg.promised)
        self._learner.note_peer_progress(msg.chosen_through, msg.src)
        leader = self._leader
        if leader is None or msg.ballot != leader.ballot or msg.promised <= leader.ballot:
            return
        re_prepare = leader.phase is Phase.LEADING and not leader.handed_over
        self._logger.info("ballot_rejected", ballot=str(leader.ballot), promised=str(msg.promised))
        self._step_down()
        if re_prepare:
            # Usually a rejoining replica that campaigned alone: followers still guard us,
            # so re-preparing at once keeps the group available. Not after a hand-over:
            # then the higher ballot is the target's, and fighting it defeats the transfer.
            self._campaign(transfer_of=None)

    def _on_timeout_now(self, msg: TimeoutNow) -> None:
        election = self._election
        if (
            self._leader is None
            and msg.src == election.leader
            and msg.ballot == election.leader_ballot
        ):
            self._logger.info("leader_transfer_received", src=msg.src, ballot=str(msg.ballot))
            self._campaign(transfer_of=msg.ballot)

    # ================================================================== role changes

    def _campaign(self, *, transfer_of: Ballot | None) -> None:
        if self._log.chosen_through < self._cfg.base_slot:
            # Without the group's base state a leader would fill slot 1 with a no-op (and
            # another such replica could make that chosen): wait for a snapshot instead.
            self._ask_for_base()
            self._election.restart_timer()
            return
        if self._leader is not None:
            self._leader.abandon()
        ballot = max(self._max_seen, self._acceptor.promised).successor(self.node_id)
        self._max_seen = ballot
        leader = self._new_leader(ballot)
        self._leader = leader
        self._election.campaigned()
        self._election.restart_timer()
        self._election.forget_leader()
        self._set_role(Role.CANDIDATE, ballot)
        prepares = leader.prepare_messages(transfer_of)
        own = next(p for p in prepares if p.dst == self.node_id)
        others = tuple(p for p in prepares if p.dst != self.node_id)
        # The peers' Prepares ride our own promise's write: the ballot is durable before use.
        promised = self._acceptor.on_prepare(own, also_send=others)
        assert promised, (ballot, self._acceptor.promised)

    def _new_leader(self, ballot: Ballot) -> Leader:
        leader = self.leader_class(
            self._cfg,
            ballot,
            log=self._log,
            learner=self._learner,
            outbox=self._out,
            logger=self._logger,
            now=self._now,
        )
        leader.absent = self._absent
        return leader

    def _yield_to(self, ballot: Ballot) -> None:
        """Someone else's ``ballot`` is at least ours: stop campaigning or leading."""
        leader = self._leader
        if leader is not None and ballot > leader.ballot and ballot.node_id != self.node_id:
            self._step_down()

    def _step_down(self) -> None:
        leader = self._leader
        if leader is None:
            return
        leader.abandon()
        self._leader = None
        self._election.restart_timer()
        self._set_role(Role.FOLLOWER, self._acceptor.promised)

    def _set_role(self, role: Role, ballot: Ballot) -> None:
        if role is self._role:
            return
        self._role = role
        self._out.role_change = RoleChange(role=role, ballot=ballot, leader_hint=self.leader_hint)
        self._logger.info("role_changed", role=role.value, ballot=str(ballot))

    # ================================================================== the turn

    def _process(self) -> None:
        """Run local follow-ups (our own messages, leader progress) until nothing is left."""
        out = self._out
        while True:
            self._advance_leader()
            if not out.local_inbox:
                break
            self._dispatch(out.local_inbox.popleft())
        self._finish_rejoin()
        self._check_invariants()

    def _advance_leader(self) -> None:
        leader = self._leader
        if leader is None:
            return
        if leader.phase is Phase.CATCHING_UP:
            leader.try_finish_catch_up()
        if leader.phase is Phase.LEADING:
            if not leader.settle():
                self._step_down()
                return
            if self._role is not Role.LEADER:
                self._election.heard_leader(leader.ballot)  # sticky from the first moment
            self._set_role(Role.LEADER, leader.ballot)

    def _check_invariants(self) -> None:
        log = self._log
        assert log.snapshot_slot <= log.chosen_through, (log.snapshot_slot, log.chosen_through)
        assert self._learner.emitted_through <= log.chosen_through
        leader = self._leader
        assert self._rejoin is None or leader is None, "a replica that may not vote leads"
        if leader is not None:
            assert leader.ballot <= self._acceptor.promised
            if leader.phase is Phase.LEADING:
                assert leader.ballot == self._acceptor.promised, (
                    "leading below our own promise",
                    leader.ballot,
                    self._acceptor.promised,
                )


def _ballot_of(msg: Message) -> Ballot:
    match msg:
        case Prepare() | Promise() | Accept() | Accepted() | Heartbeat() | HeartbeatAck():
            return msg.ballot
        case Reject() | RejoinInfo():
            return msg.promised
        case TimeoutNow():
            return msg.ballot
        case CatchUpRequest() | CatchUp() | InstallSnapshot() | RejoinQuery():
            return Ballot.ZERO
        case _:
            assert_never(msg)
