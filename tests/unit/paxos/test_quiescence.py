"""Quiescence, driven by hand: an idle group stops needing ticks, and a quiet replica resumed
with the ticks it missed reads time exactly as if it had been ticked all along."""

from __future__ import annotations

from dataclasses import replace

from paxos import Ballot, HeartbeatAck, NodeId, Prepare, Role, Slot
from tests.harness import ManualCluster
from tests.unit.paxos.test_replica import elected

N1, N2, N3 = (NodeId(i) for i in range(1, 4))


def run_all(c: ManualCluster, ticks: int) -> None:
    """Tick every replica that is not quiescent, ``ticks`` times, delivering as we go (a
    driver skips quiescent replicas)."""
    for _ in range(ticks):
        for v in c.voters:
            if not c.replica(v).quiescent:
                c.tick(v)
        c.stabilize()


def quiet_cluster(**config: int) -> ManualCluster:
    c = elected(quiesce_ticks=5, **config)
    run_all(c, 20)
    assert all(c.replica(v).quiescent for v in c.voters)
    return c


def test_an_idle_group_goes_quiet_and_stops_sending() -> None:
    """After quiesce_ticks without work, the leader's heartbeats ask for quiet; once every
    follower went quiet, ticking the leader sends nothing at all."""
    c = quiet_cluster()
    assert c.replica(N1).role is Role.LEADER
    c.tick(N1, 50)
    assert c.net == []


def test_quiesce_is_off_with_zero_ticks() -> None:
    """quiesce_ticks = 0: never quiet."""
    c = elected(quiesce_ticks=0)
    run_all(c, 40)
    assert not any(c.replica(v).quiescent for v in c.voters)


def test_a_proposal_stirs_the_group_and_it_goes_quiet_again() -> None:
    """A write wakes the leader (and the followers, with its Accept); idle again, quiet again."""
    c = quiet_cluster()
    leader = c.replica(N1)
    leader.propose(b"w")
    assert not leader.quiescent
    c.drain(N1)
    c.stabilize()
    assert not c.replica(N2).quiescent, "an Accept wakes a quiet follower"
    assert c.applied[N2][-1] == (b"w",)
    run_all(c, 20)
    assert all(c.replica(v).quiescent for v in c.voters)


def test_a_lagging_follower_does_not_go_quiet_and_keeps_the_leader_awake() -> None:
    """A follower that misses a chosen slot never acks quiet, so the leader keeps ticking
    and heartbeating until it has caught up."""
    c = elected(quiesce_ticks=5)
    c.replica(N1).propose(b"w")
    c.drain(N1)
    c.flush(N1)
    c.drop(lambda m: m.dst == N3)  # n3 never sees the Accept
    c.stabilize()
    for _ in range(3):
        c.tick(N1)
        c.drop(lambda m: m.dst == N3)
        c.stabilize()
    assert not c.replica(N1).quiescent
    run_all(c, 40)  # heartbeats now reach n3: it catches up, then all go quiet
    assert c.replica(N3).chosen_through == c.replica(N1).chosen_through
    assert all(c.replica(v).quiescent for v in c.voters)


def test_resume_counts_the_skipped_ticks_against_the_lease() -> None:
    """A quiet leader keeps no lease past its time: resumed with the ticks it missed, it
    holds none (the views take the skipped ticks too, without resuming)."""
    c = quiet_cluster()
    leader = c.replica(N1)
    lease_ticks = leader.config.lease_ticks
    assert not leader.lease_valid(lease_ticks + 1)
    assert leader.lease_read_point(lease_ticks + 1) is None
    leader.resume(lease_ticks + 1)
    assert not leader.lease_valid()


def test_a_resumed_follower_stops_guarding_a_leader_it_has_not_heard_in_time() -> None:
    """Resumed after more than election_ticks_min untracked ticks, a follower promises a
    new candidate (the old leader's lease ran out by the same count)."""
    c = quiet_cluster()
    follower = c.replica(N2)
    prepare = Prepare(src=N3, dst=N2, ballot=Ballot(50, N3), from_slot=Slot(1))
    follower.resume(1)
    follower.step(prepare)
    assert follower.promised < prepare.ballot, "still guarding: heard the leader 1 tick ago"
    follower.resume(follower.config.election_ticks_min)
    follower.step(prepare)
    assert follower.promised == prepare.ballot


def test_a_late_quiet_ack_does_not_stir_a_quiescent_leader() -> None:
    """An ack that says only "gone quiet" needs no resume; any other message does."""
    c = quiet_cluster()
    leader = c.replica(N1)
    ballot = leader.leader_ballot
    assert ballot is not None
    late = HeartbeatAck(
        src=N2, dst=N1, ballot=ballot, sent_tick=0, round=1, chosen_through=Slot(0), quiesced=True
    )
    assert not leader.stirs(late)
    assert leader.stirs(replace(late, quiesced=False))
