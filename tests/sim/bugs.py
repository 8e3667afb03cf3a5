"""Deliberately broken replicas, to prove the checkers catch what they claim to catch.

These live in the tests only; production code has no switch for any of them. Each is the
classic mistake named in ``../shared/reference/reliability-anchors.md`` §3, or a mistake a
split can make (``../shared/reference/wave2-anchors.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from kvstore.model import KvStateMachine
from kvstore.model.commands import HistoryCompacted, LeaseDetached, SplitDone
from kvstore.model.lease_clock import LeaseClock
from kvstore.model.node import Node
from kvstore.model.ranges import encode_descriptor
from kvstore.model.state_machine import SESSION_PREFIX
from paxos import (
    NOOP,
    Accept,
    Accepted,
    Ballot,
    Config,
    DurableRecord,
    Message,
    Prepare,
    RejoinInfo,
    Replica,
    Slot,
)
from paxos.acceptor import Acceptor
from paxos.leader import Leader, Phase
from paxos.learner import Learner
from paxos.rejoin import Rejoin


class EarlyReplyAcceptor(Acceptor):
    """Replies before its write is durable (the fsync-before-ack bug)."""

    def on_prepare(self, msg: Prepare, *, also_send: tuple[object, ...] = ()) -> bool:  # type: ignore[override]
        out = self._out
        promised = super().on_prepare(msg, also_send=also_send)  # type: ignore[arg-type]
        _release_early(out)
        return promised

    def on_accept(self, msg: Accept) -> bool:
        out = self._out
        accepted = super().on_accept(msg)
        _release_early(out)
        return accepted


def _release_early(out: object) -> None:
    """Move the replies of the newest write out of its then_send, into send_now."""
    writes = out._writes  # type: ignore[attr-defined]
    if not writes:
        return
    write = writes[-1]
    held = out._held_for_self.pop(write.seq, [])  # type: ignore[attr-defined]
    for msg in (*write.then_send, *held):
        out.send(msg)  # type: ignore[attr-defined]
    writes[-1] = type(write)(seq=write.seq, record=write.record, then_send=())


class ForgetfulLeader(Leader):
    """Skips phase 1's adoption: proposes no-ops where promisers had accepted values."""

    def try_finish_catch_up(self) -> bool:
        if (
            self.phase is Phase.CATCHING_UP
            and self._log.chosen_through >= self._need_chosen_through
        ):
            for promise in self._promises.values():
                object.__setattr__(
                    promise,
                    "entries",
                    tuple(
                        type(e)(slot=e.slot, ballot=e.ballot, value=NOOP) for e in promise.entries
                    ),
                )
        return super().try_finish_catch_up()


class ForgetfulReplica(Replica):
    leader_class = ForgetfulLeader


def early_reply_factory(config: Config, **kw: Any) -> Replica:
    replica = Replica(config, **kw)
    replica._acceptor.__class__ = EarlyReplyAcceptor
    return replica


def forgetful_leader_factory(config: Config, **kw: Any) -> Replica:
    return ForgetfulReplica(config, **kw)


def no_drift_margin_factory(config: Config, **kw: Any) -> Replica:
    """``lease <= guard - 1``: right about tick rounding, but no allowance for clock drift."""
    object.__setattr__(config, "lease_ticks", config.election_ticks_min - 1)
    return Replica(config, **kw)


def unguarded_follower_factory(config: Config, **kw: Any) -> Replica:
    """Leases without the follower half: followers promise anyone at once (no sticky guard)."""
    replica = Replica(config, **kw)
    replica._election.may_promise = lambda msg: True  # type: ignore[method-assign]
    return replica


class UnappliedFreshnessReplica(Replica):
    """Trusts the newest freshness claim even when it has not applied the claimed commit."""

    def read_promise(self, applied: Slot, skipped: int = 0) -> tuple[Slot | None, int | None]:
        point, _ = super().read_promise(applied, skipped)
        if not self._freshness:
            return point, None
        return point, self._now + skipped - self._freshness[-1][1] + 1


def unapplied_freshness_factory(config: Config, **kw: Any) -> Replica:
    return UnappliedFreshnessReplica(config, **kw)


class UncountedTickFreshnessReplica(Replica):
    """Counts only whole ticks since the stamp: forgets the part of the stamped tick gone."""

    def read_promise(self, applied: Slot, skipped: int = 0) -> tuple[Slot | None, int | None]:
        point, bound = super().read_promise(applied, skipped)
        return point, None if bound is None or bound == 0 else max(0, bound - 2)

    def _new_leader(self, ballot: Ballot) -> Leader:
        leader = super()._new_leader(ballot)
        leader._tells = False  # no early learning here: see the factory
        return leader


def uncounted_tick_freshness_factory(config: Config, **kw: Any) -> Replica:
    """Without the early learning of ``paxos.acceptor`` (followers learn from commit points
    only): with it, a follower usually holds a write as soon as the leader can acknowledge
    it, so a bound two ticks short is rarely exposed (no violation in 400 seeds). Whether
    the checker sees a two-tick error is what this case is about, so it runs where
    follower lag is the norm."""
    replica = UncountedTickFreshnessReplica(config, **kw)
    replica._acceptor._voters = ()
    return replica


class EarlyBarrierLeader(Leader):
    """Trusts its commit point once the *first* inherited slot is chosen (the barrier bug)."""

    def try_finish_catch_up(self) -> bool:
        started = super().try_finish_catch_up()
        if started:
            self.barrier_slot = min(self.proposals)
        return started


def _leading_as(leader_class: type[Leader]) -> Callable[..., Replica]:
    """A factory of replicas whose proposer role (built anew each campaign) is this one."""

    def factory(config: Config, **kw: Any) -> Replica:
        replica = Replica(config, **kw)
        replica.leader_class = leader_class
        return replica

    return factory


early_barrier_factory = _leading_as(EarlyBarrierLeader)


class LoneVoteLearner(Learner):
    """Takes the leader's acceptance alone as proof: forgets that its own must be durable."""

    def on_accepted(self, msg: Accepted) -> None:
        log = self._log
        for slot in msg.slots:
            own = log.entries.get(slot)
            if slot > log.chosen_through and own is not None and own.ballot == msg.ballot:
                log.chosen_ahead.setdefault(slot, own.value)
        super().on_accepted(msg)


def lone_vote_factory(config: Config, **kw: Any) -> Replica:
    replica = Replica(config, **kw)
    replica._learner.__class__ = LoneVoteLearner
    return replica


class CommitPointReadLeader(Leader):
    """Reads (and freshness claims) at its commit point, forgetting that a follower holding
    the leader's acceptance and its own may already have answered a client above it."""

    def read_point(self) -> Slot:
        return self._log.chosen_through


commit_point_read_factory = _leading_as(CommitPointReadLeader)


def amnesiac_factory(config: Config, **kw: Any) -> Replica:
    """A replica whose disk was wiped votes at once, as if it were a new group's founder: it
    may accept below a ballot it promised, or join a phase-1 quorum without reporting a value
    it helped choose (the bug the hardening issue reproduced on the real cluster)."""
    return Replica(config, **{**kw, "durable": replace(kw["durable"], voting=True)})


class HastyRejoinReplica(Replica):
    """Rejoins once its promises are safe (the floor is set) and it has caught up with what
    its peers reported chosen when it asked, without waiting for a leader that began after
    it asked: values it helped choose that no peer knew chosen yet are missing from its
    log, and a phase-1 quorum with it may miss them."""

    _caught_up_to = Slot(0)

    def _step_rejoining(self, rejoin: Rejoin, msg: Message) -> bool:
        if isinstance(msg, RejoinInfo):
            self._caught_up_to = max(self._caught_up_to, msg.chosen_through)
        return super()._step_rejoining(rejoin, msg)

    def _finish_rejoin(self) -> None:
        rejoin = self._rejoin
        if rejoin is None or rejoin.floor is None or self._log.chosen_through < self._caught_up_to:
            return
        self._rejoin = None
        self._acceptor.promised = max(self._acceptor.promised, rejoin.floor)
        self._out.persist(DurableRecord(promised=self._acceptor.promised, voting=True))


def hasty_rejoin_factory(config: Config, **kw: Any) -> Replica:
    return HastyRejoinReplica(config, **kw)


# ---------------------------------------------------------------------- splits


class SnapshotBornNode(Node):
    """Treats a group it learned of from its parent's snapshot as if it had made the split
    itself: the new group starts from whatever this node's state machine holds there (a log
    position before the split), not from a snapshot of the group."""

    def _installed(self, group: Any, header: Any) -> None:
        if header.descriptor is not None:
            group.descriptor = header.descriptor
        for successor in header.successors:
            d = successor.descriptor
            if self.node_id in d.replicas and d.range_id not in self._groups:
                self._create(d, born_here=True, placed=group.placed_leader_dc, voting=True)


class SessionlessSplitMachine(KvStateMachine):
    """Splits without handing the new shard the session table: a write applied before the
    split and retried after it (same request id) runs again in the new shard."""

    def _split(self, slot: int, cmd: Any) -> Any:
        result = super()._split(slot, cmd)
        if isinstance(result, SplitDone):
            child = self._engine.sibling(result.right.range_id)
            for name, _ in child.meta_scan(SESSION_PREFIX):
                child.meta_delete(name)
        return result


class GreedySplitMachine(KvStateMachine):
    """Records the split but keeps the parent's whole span: two shards hold the right half."""

    def _split(self, slot: int, cmd: Any) -> Any:
        before = self.descriptor
        result = super()._split(slot, cmd)
        if isinstance(result, SplitDone) and before is not None:
            kept = replace(result.left, end=before.end)
            self.descriptor = kept
            self._engine.range_put(encode_descriptor(kept))
            result = replace(result, left=kept)
        return result


# ---------------------------------------------------------------------- merges


class LeakyFreezeMachine(KvStateMachine):
    """Records the freeze (so the merge goes ahead) but keeps executing writes in the frozen
    shard: what it applies after the freeze is missing from the merged shard."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.frozen_slot = 0

    def _freeze(self, slot: int) -> Any:
        result = super()._freeze(slot)
        self.frozen_slot = 0
        return result


class HastyMergeNode(Node):
    """Applies a merge as soon as it is chosen, without waiting for its own replica of the
    right shard to reach the freeze: a lagging replica merges a different state."""

    @staticmethod
    def _merge_ready(right: Any, merge: Any) -> bool:
        return right.merging_into is None


class QuietClockReplica(Replica):
    """Resumes from quiescence without counting the ticks it missed: a quiet old leader
    still believes in a lease its followers stopped guarding long ago."""

    def resume(self, ticks: int) -> None:
        super().resume(0)


def quiet_clock_factory(config: Config, **kw: Any) -> Replica:
    return QuietClockReplica(config, **kw)


class DeafToSilenceNode(Node):
    """Never wakes the quiet followers of a peer that fell silent: a quiet group whose
    leader's node died waits for a message that never comes."""

    def _watch_peers(self, before: int) -> None:
        self._peer_heard = dict.fromkeys(self._peer_heard, self._ticks)
        super()._watch_peers(before)


# ---------------------------------------------------------------------- history


class OverCompactingMachine(KvStateMachine):
    """Compaction removes every version at or before the compacted revision, the one a
    read at that revision still needs included (as if the newest were garbage too)."""

    def _compact(self, revision: int) -> Any:
        result = super()._compact(revision)
        if isinstance(result, HistoryCompacted):
            engine = self._engine
            for key in engine.history_keys(b"", b"", 0):
                kept = engine.history_at(key, result.revision)
                if kept is not None and self.owns(key):
                    engine.history_delete(key, kept.revision)
        return result


# ---------------------------------------------------------------------- leases


class HastyLeaseClock(LeaseClock):
    """A new meta leader counts each lease's TTL from the moment its predecessor last saw a
    keep-alive, as it guesses it: here a quarter TTL ago. The client's keep-alive may have
    come later, so the lease ends before its TTL has passed since."""

    def led(self, leases: dict[int, int], now: int) -> None:
        super().led(leases, now)
        for lease, ttl in leases.items():
            self._set(lease, now + self.ticks_for(ttl) // 4)


class HastyLeaseNode(Node):
    """A node whose meta leader expires leases early after a leader change."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, lease_clock_class=HastyLeaseClock, **kwargs)


class KeyKeepingDetachMachine(KvStateMachine):
    """Detaching an ended lease refuses it from then on, but leaves its keys where they are:
    a key put with a lease outlives it."""

    def _detach_lease(self, lease_id: int) -> Any:
        from kvstore.model import leases

        leases.ended_here(self._engine, lease_id)
        return LeaseDetached(lease_id, 0, self.revision)


# ---------------------------------------------------------------------- reconfiguration


class BaselessMemberNode(Node):
    """A replica new to a group (told of it by ``Host``) takes the state its own disk holds
    there as the group's base and votes at once, before a snapshot brings the base: it may
    accept, lead and serve from a state that is not the group's."""

    def _host(self, msg: Any) -> None:
        d = msg.descriptor
        if (
            d is None
            or d.range_id in self._groups
            or self.node_id not in d.replicas
            or self._superseded(d) is not None
        ):
            super()._host(msg)
            return
        self._create(d, born_here=True, placed=None, voting=True)
        self._groups[d.range_id].tells_members = True
        self._hosted.append(d)
        self._absorb_covered(self._groups[d.range_id])


class LeakyStopMachine(KvStateMachine):
    """Records the stop sign (the successor starts from the state at it) but keeps executing
    commands in the ended configuration: what it applies later is missing from the
    successor."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.ended_slot = 0

    def _reconfigure(self, slot: int, cmd: Any) -> Any:
        result = super()._reconfigure(slot, cmd)
        self.ended_slot = 0
        return result


class UnorderedChangeMachine(KvStateMachine):
    """Takes every replica-set change as a change of the configuration it was proposed
    against, even after an earlier one ended it: two changes proposed at once each start a
    successor, and two configurations own the same keys."""

    def _reconfigure(self, slot: int, cmd: Any) -> Any:
        self.ended_slot = 0
        return super()._reconfigure(slot, cmd)
