"""A replica that lost its disk rejoins before it votes (``paxos.rejoin``), driven by hand."""

from __future__ import annotations

from paxos import Accept, Accepted, NodeId, Proposed, RejoinQuery, Role
from tests.harness import ManualCluster
from tests.unit.paxos.test_replica import elected, heartbeat

N1, N2, N3 = NodeId(1), NodeId(2), NodeId(3)


def chosen_by_n1_and_n2_only(c: ManualCluster) -> int:
    """``x`` accepted durably by n1 (leader) and n2, and nobody knows it is chosen: n3 never
    got the Accept and every Accepted was lost."""
    outcome = c.replica(N1).propose(b"x")
    assert isinstance(outcome, Proposed)
    c.drain(N1)
    c.flush(N1)
    c.drop(lambda m: isinstance(m, Accept) and m.dst == N3)
    c.deliver(lambda m: isinstance(m, Accept) and m.dst == N2)
    c.flush(N2)
    c.drop(lambda m: isinstance(m, Accepted))
    assert c.replica(N1).chosen_through < outcome.slot
    assert c.replica(N2).chosen_through < outcome.slot
    return outcome.slot


def test_a_wiped_replica_does_not_vote_while_a_peer_it_needs_is_down() -> None:
    """x was chosen by n1 and n2. With n2's disk wiped and n1 down, n2 and n3 are a majority
    of bodies but not of memories: n3 lacks x and n2 forgot it. n2 must not vote, so no
    leader arises that could choose something else for x's slot."""
    c = elected()
    slot = chosen_by_n1_and_n2_only(c)
    c.wipe(N2)
    c.crash(N1)
    c.take_events()
    assert c.replica(N2).rejoining
    for _ in range(10):
        for v in (N2, N3):
            c.tick(v, 10)
        c.stabilize()
    assert c.replica(N3).role is not Role.LEADER
    assert c.replica(N2).rejoining
    assert not [line for line in c.take_events() if "Promise n2->" in line]
    assert c.checker.ok, c.checker.violations
    # n1 returns: n2 learns every promise, refuses the old ballot, a new leader re-proposes x
    # at or below its barrier, n2 learns the prefix through it and votes again.
    c.restart(N1)
    for _ in range(500):  # elections time out within 10..1000 ticks
        for v in c.voters:
            c.tick(v, 5)
        c.stabilize()
        if not c.replica(N2).rejoining:
            break
    assert not c.replica(N2).rejoining
    assert c.storage[N2].state().voting
    for v in c.voters:
        assert c.applied[v][slot - 1] == (b"x",), v
    assert c.checker.ok, c.checker.violations


def test_a_rejoining_replica_makes_the_old_leader_re_prepare_above_its_floor() -> None:
    """The floor is one round above every promise the peers report; a leader below it gets a
    Reject carrying the floor and re-prepares above it, so the rejoin does not wait for a
    failure."""
    c = elected()
    old = c.replica(N1).leader_ballot
    assert old is not None
    c.wipe(N3)
    queries = [m for m in c.net if isinstance(m, RejoinQuery)]
    assert sorted(m.dst for m in queries) == [N1, N2]
    c.take_events()
    for _ in range(6):
        heartbeat(c)
        if not c.replica(N3).rejoining:
            break
    events = c.take_events()
    assert any(line.startswith("n1 <- Reject n3->n1") for line in events), events
    leader = c.replica(N1)
    assert leader.role is Role.LEADER
    assert leader.leader_ballot is not None and leader.leader_ballot.round > old.round
    assert not c.replica(N3).rejoining
    assert c.replica(N3).promised == leader.leader_ballot


def test_a_replica_waiting_for_a_leader_queries_its_peers_each_election_timeout() -> None:
    """Once its floor is set, a rejoining replica that hears no leader above it queries every
    peer again each election timeout: it cannot campaign, and peers whose group lies
    dormant waiting for it (its driver's preferred leader) are stirred to elect one (sim seed
    1952: without it the group had no leader for 18 s)."""
    c = elected()
    c.wipe(N3)
    c.deliver(lambda m: isinstance(m, RejoinQuery))
    c.stabilize()  # the answers: n3's floor is set
    c.crash(N1)  # the leader is gone; n2 is left alone to elect (as if dormant)
    c.net.clear()
    assert c.replica(N3).rejoining
    timeout = c.replica(N3)._cfg.election_ticks_max
    c.tick(N3, timeout)
    c.drain(N3)
    assert sorted(m.dst for m in c.net if isinstance(m, RejoinQuery)) == [N1, N2]
    c.net.clear()
    c.tick(N3, timeout - 1)
    c.drain(N3)
    assert not [m for m in c.net if isinstance(m, RejoinQuery)]  # no more often than that
