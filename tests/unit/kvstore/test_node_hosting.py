"""How a replica added by a reconfiguration learns of its group (``Host``), driven by hand
on single nodes: a message of an unknown group makes a question; a successor's replica
answers with the descriptor and the disk the asker was added with; the asker hosts the group
(waiting for a snapshot), voting at once only on that very disk, while its replica of the
configuration the group succeeded goes on (it may make the base itself). A replica of an
ancestor still catching up refuses the answer (its log would write over the successor's
keys)."""

from __future__ import annotations

import random
from dataclasses import replace

from cluster import ClusterConfig, KeySpan, NodeSpec, RangeDescriptor, ShardSpec
from kvstore.model import (
    KvStateMachine,
    MemoryEngine,
    MemoryStore,
    Put,
    RequestId,
    encode_command,
)
from kvstore.model import snapshot as snapshots
from kvstore.model.commands import Freeze, Reconfigure, Reconfigured, SplitDone
from kvstore.model.jobs import run_job
from kvstore.model.node import (
    HOST_ASK_TICKS,
    SILENT_TICKS,
    TELL_PREFERRED_AFTER_TICKS,
    TELL_PREFERRED_TICKS,
    DiskJob,
    GroupStart,
    Host,
    Node,
    hosted_at_start,
    on_listed_disk,
)
from kvstore.model.ranges import Successor
from paxos import (
    CatchUpRequest,
    DurableState,
    Heartbeat,
    InstallSnapshot,
    NullLogger,
    Prepare,
    Snapshot,
)
from paxos.ids import Ballot, NodeId, Slot

OLD = RangeDescriptor(1, b"", b"", (1, 2, 3), generation=1)
SUCCESSOR = RangeDescriptor(7, b"", b"", (1, 2, 4), generation=2)
DISK = 41  # node 4's disk incarnation


def cluster() -> ClusterConfig:
    return ClusterConfig(
        name="t",
        tick_ms=10,
        datacenters=("d0",),
        nodes=tuple(NodeSpec(n, "d0", f"n:{n}") for n in (1, 2, 3, 4)),
        shards=(ShardSpec(1, KeySpan(b"", b""), (1, 2, 3), None),),
    )


def node(node_id: int, groups: dict[int, GroupStart], **kw: object) -> Node:
    return Node(
        cluster(),
        node_id,
        groups,
        rng_for=random.Random,
        incarnation=1,
        logger_for=lambda _: NullLogger(),
        **kw,  # type: ignore[arg-type]
    )


def start(d: RangeDescriptor, applied_slot: int = 0, **kw: object) -> GroupStart:
    """``applied_slot`` 1: a successor whose base this node made (it applied the stop)."""
    return GroupStart(
        durable=DurableState(),
        applied_slot=applied_slot,
        placed_leader_dc=None,
        descriptor=d,
        **kw,  # type: ignore[arg-type]
    )


def heartbeat(src: int, dst: int) -> Heartbeat:
    return Heartbeat(
        src=NodeId(src),
        dst=NodeId(dst),
        ballot=Ballot(1, NodeId(src)),
        commit=Slot(0),
        sent_tick=0,
        round=1,
    )


def test_a_message_of_an_unknown_group_asks_its_sender_once_in_a_while() -> None:
    new = node(4, {}, founding=False, disk_incarnation=DISK)
    new.step(7, heartbeat(1, 4))
    new.step(7, heartbeat(1, 4))  # asked already: not again so soon
    assert new.take_effects().hosts == [Host(4, 1, 7)]
    new.tick(HOST_ASK_TICKS)
    new.step(7, heartbeat(2, 4))
    assert new.take_effects().hosts == [Host(4, 2, 7)]


def test_a_successors_replica_answers_with_the_disk_the_asker_was_added_with() -> None:
    member = node(1, {7: start(SUCCESSOR, applied_slot=1, reconfigured_from=1, disks=((4, DISK),))})
    member.step(7, Host(4, 1, 7))
    assert member.take_effects().hosts == [Host(1, 4, 7, SUCCESSOR, DISK)]
    member.step(7, Host(3, 1, 7))  # node 3 is no replica of it: no answer
    assert member.take_effects().hosts == []


def test_a_group_that_did_not_begin_as_a_successor_is_not_told() -> None:
    member = node(1, {1: start(OLD, applied_slot=1)})
    member.step(1, Host(2, 1, 1))
    assert member.take_effects().hosts == []


def test_the_very_disk_added_votes_at_once_another_rejoins() -> None:
    same = node(4, {}, founding=False, disk_incarnation=DISK)
    same.step(7, Host(1, 4, 7, SUCCESSOR, DISK))
    assert same.hosts(7) and same.awaiting(7) and not same.replica(7).rejoining
    assert same.take_effects().jobs[0].hosted == [SUCCESSOR]  # stored: a restart hosts it
    wiped = node(4, {}, founding=False, disk_incarnation=DISK + 1)
    wiped.step(7, Host(1, 4, 7, SUCCESSOR, DISK))
    assert wiped.hosts(7) and wiped.replica(7).rejoining
    unknown = node(4, {}, founding=False, disk_incarnation=DISK)
    unknown.step(7, Host(1, 4, 7, SUCCESSOR, 0))
    assert unknown.replica(7).rejoining


def test_only_the_listed_disk_itself_counts_and_zero_lists_none() -> None:
    assert on_listed_disk(DISK, DISK)
    assert not on_listed_disk(DISK, DISK + 1)
    assert not on_listed_disk(0, 0)  # a node with no disk incarnation is listed by nothing


def test_an_answer_naming_a_group_the_node_is_no_replica_of_is_ignored() -> None:
    other = node(3, {}, disk_incarnation=DISK)
    other.step(7, Host(1, 3, 7, SUCCESSOR, DISK))
    assert not other.hosts(7)


def test_the_configuration_it_succeeded_goes_on_until_the_successor_has_a_state() -> None:
    """Its replica here may still make the successor's base (it reaches the stop first);
    until a snapshot of the successor comes, it is no tombstone."""
    lagging = node(2, {1: start(OLD)})
    lagging.step(7, Host(1, 2, 7, SUCCESSOR, 0))
    assert lagging.hosts(7) and lagging.awaiting(7) and not lagging.merged_away(1)


def test_an_ancestor_still_catching_up_refuses_the_answer() -> None:
    """The successor of a range split off ``OLD``: this node's replica of ``OLD`` has not
    applied the split yet, and would write the split-off keys over the successor's."""
    part = RangeDescriptor(9, b"m", b"", (1, 2, 4), generation=3)
    lagging = node(2, {1: start(OLD)})
    lagging.step(9, Host(1, 2, 9, part, 0))
    assert not lagging.hosts(9) and not lagging.merged_away(1)


def test_an_older_replica_of_the_span_that_is_not_its_predecessor_refuses_the_answer() -> None:
    """Same span, but more than one generation before the successor: not the configuration
    it succeeded, so merged away and split off again since (sim seed 16). A neighbour here
    may still replay that merge; it would be retired under the successor with keys of its
    own to apply. The predecessor (one generation before) may wait beside it."""
    far = RangeDescriptor(7, b"", b"", (1, 2, 4), generation=3)
    lagging = node(2, {1: start(OLD)})
    lagging.step(7, Host(1, 2, 7, far, 0))
    assert not lagging.hosts(7) and not lagging.merged_away(1)
    next_one = node(2, {1: start(OLD)})
    next_one.step(7, Host(1, 2, 7, SUCCESSOR, 0))  # generation 2: OLD's successor
    assert next_one.hosts(7)


def _successor_state(disks: tuple[tuple[int, int], ...]) -> bytes:
    """A snapshot of SUCCESSOR's first state, made from OLD's as a stop makes it."""
    engine = MemoryEngine(shard_id=1)
    old = KvStateMachine(engine, initial=OLD)
    old.write_successor_base(SUCCESSOR, disks)
    return snapshots.dump(engine.sibling(7))


def test_a_replica_that_learned_its_group_from_a_snapshot_answers_with_the_added_disk() -> None:
    """Node 2 hosts the successor on an answer and installs its state: it did not apply the
    stop, so only the snapshot tells it node 4's disk (sim seed 353: it answered with none,
    and node 4 rejoined instead of voting, two of three replicas rejoining for good)."""
    data = _successor_state(((4, DISK),))
    assert snapshots.header(data).disks == ((4, DISK),)
    member = node(2, {}, founding=False, disk_incarnation=DISK + 5)
    member.step(7, Host(1, 2, 7, SUCCESSOR, 0))
    member.take_effects()
    member.step(7, InstallSnapshot(src=NodeId(1), dst=NodeId(2), slot=Slot(3), data=data))
    for job in member.take_effects().jobs:
        member.job_done(job, [], [])
    member.take_effects()
    member.step(7, Host(4, 2, 7))
    assert member.take_effects().hosts == [Host(2, 4, 7, SUCCESSOR, DISK)]


def test_an_ended_ranges_final_snapshot_survives_a_restart() -> None:
    """A successor's stored snapshot loses its bytes at a restart (a peer must not replay
    from a shape it had before a split), but not once the range ended at or before it: that
    is its final state, and as a tombstone it could not be dumped again (sim seed 941)."""
    final = Snapshot(slot=Slot(5), data=b"final state")
    ended = start(
        SUCCESSOR,
        applied_slot=6,
        reconfigured_from=1,
        ended_into=8,
        successors=(Successor(RangeDescriptor(8, b"", b"", (1, 2, 3), 3), 5),),
    )
    going_on = start(SUCCESSOR, applied_slot=6, reconfigured_from=1)
    for group_start, kept in ((ended, True), (going_on, False)):
        durable = DurableState(snapshot=final, chosen_through=Slot(6))
        member = node(1, {7: replace(group_start, durable=durable)})
        member.take_effects()
        member.step(7, CatchUpRequest(src=NodeId(2), dst=NodeId(1), from_slot=Slot(2)))
        sent = [m for _, m in member.take_effects().sends.get(2, [])]  # by destination
        assert any(isinstance(m, InstallSnapshot) and m.data == final.data for m in sent) == kept


def _stop_applied(member: Node, slot: int, disks: tuple[tuple[int, int], ...] = ()) -> None:
    """The job that applied OLD's stop at ``slot`` (making SUCCESSOR) is done."""
    ended = replace(OLD, generation=2)
    done = Reconfigured(ended=ended, successor=SUCCESSOR, slot=slot, disks=disks)
    member.job_done(DiskJob(), [(1, slot, (b"stop", [(RequestId(0, 0), done)]))], [])


def test_a_kept_replica_still_rejoining_votes_in_the_successor_on_its_listed_disk() -> None:
    """Node 2 lost its disk and its replica of OLD still rejoins when it applies the stop.
    The change listed node 2 with this very disk: it was there before the successor was,
    so no earlier life of node 2 took part in it, and the successor's replica votes at once
    (sim seed 3231: three of five such replicas rejoined, and the group never elected).
    Listed with another disk, or none, it rejoins."""
    for listed, rejoins in (((2, DISK),), False), (((2, DISK - 1),), True), ((), True):
        old = start(OLD, applied_slot=4)
        old = replace(old, durable=DurableState(chosen_through=Slot(4), voting=False))
        member = node(2, {1: old}, founding=False, disk_incarnation=DISK)
        assert member.replica(1).rejoining
        _stop_applied(member, 5, listed)
        assert member.hosts(7) and member.replica(7).rejoining == rejoins


def test_a_stop_applied_while_the_successors_snapshot_is_on_its_way_keeps_its_replica() -> None:
    """Node 2 hosts the successor on an answer, and its install is in a job when the job
    with its own replica's stop completes: the install brings the state, so the successor's
    replica stays (the fault suite: it was replaced, and the install's write then completed
    for a replica that never made it: the node's write order broke and the node stopped)."""
    member = node(2, {1: start(OLD, applied_slot=4)})
    member.step(7, Host(1, 2, 7, SUCCESSOR, 0))
    member.take_effects()
    data = _successor_state(())
    # The state after slot 3 (a peer compacted past the base): a replica reborn at the base
    # would apply slots 2 and 3 again over it.
    member.step(7, InstallSnapshot(src=NodeId(1), dst=NodeId(2), slot=Slot(3), data=data))
    install_jobs = member.take_effects().jobs
    _stop_applied(member, 5)
    for job in install_jobs:
        member.job_done(job, [], [])  # the install's write completes for the replica it made
    member.take_effects()
    assert member.hosts(7) and not member.awaiting(7)
    assert member.replica(7).chosen_through == Slot(3)
    assert member.merged_away(1)


def test_a_successor_reborn_from_its_own_stop_drops_the_old_replicas_writes_in_flight() -> None:
    """Node 2 hosts the successor on an answer and promises a candidate (a write in a job),
    then its replica of OLD applies the stop: the successor starts from the base it made,
    keeping the promise, and the promise's write completes for no replica (it completed
    for the new replica, whose first write it was not: the node's write order broke)."""
    old = replace(start(OLD, applied_slot=4), durable=DurableState(chosen_through=Slot(4)))
    member = node(2, {1: old})
    member.step(7, Host(1, 2, 7, SUCCESSOR, 0))
    member.take_effects()
    member.tick(200)  # past the guard of a new process: it promises a candidate
    member.take_effects()
    member.step(7, _prepare(3))
    promise_jobs = member.take_effects().jobs
    assert any(job.follow_ups for job in promise_jobs)
    _stop_applied(member, 5)
    assert member.hosts(7) and not member.awaiting(7)  # reborn from its own base
    for job in promise_jobs:
        member.job_done(job, [], [])
    assert member.replica(7).promised == Ballot(3, NodeId(1))
    for job in member.take_effects().jobs:
        member.job_done(job, [], [])
    member.tick(200)
    member.take_effects()
    member.step(7, _prepare(4))
    for job in member.take_effects().jobs:  # the new replica's own writes complete in order
        member.job_done(job, [], [])
    assert member.replica(7).promised == Ballot(4, NodeId(1))


def _prepare(round_: int) -> Prepare:
    return Prepare(
        src=NodeId(1), dst=NodeId(2), ballot=Ballot(round_, NodeId(1)), from_slot=Slot(1)
    )


def _tick_hearing(member: Node, peer: int, ticks: int) -> list[Host]:
    """``ticks`` single ticks, hearing from ``peer`` on each; the ``Host`` messages sent."""
    hosts = []
    for _ in range(ticks):
        member.heard(peer)
        member.tick()
        hosts.extend(member.take_effects().hosts)
    return hosts


def test_a_dormant_group_tells_its_preferred_replica_of_itself_which_a_wiped_node_hosts() -> None:
    # Node 1 (the preferred replica: first of the one DC) lost its disk; nodes 2 and 4
    # restarted, their replicas dormant, waiting for it to campaign (sim seed 5056).
    started = start(SUCCESSOR, applied_slot=1, reconfigured_from=1, disks=((1, DISK),))
    member = node(2, {7: started})
    assert member.quiet_count() == 1
    told = _tick_hearing(member, 1, TELL_PREFERRED_AFTER_TICKS + SILENT_TICKS)
    assert told == [Host(2, 1, 7, SUCCESSOR, DISK)]
    # Told at tick 50 (the first multiple of SILENT_TICKS once 50 old); again at 300.
    assert _tick_hearing(member, 1, TELL_PREFERRED_TICKS - 2 * SILENT_TICKS) == []
    assert _tick_hearing(member, 1, SILENT_TICKS) == [Host(2, 1, 7, SUCCESSOR, DISK)]
    wiped = node(1, {}, founding=False, disk_incarnation=DISK + 1)
    wiped.step(7, told[0])
    assert wiped.hosts(7) and wiped.replica(7).rejoining
    # Its replica's first messages reach the dormant one, which runs its timers from then.
    to_member: list[tuple[int, object]] = []
    for _ in range(50):
        wiped.tick()
        to_member.extend(wiped.take_effects().sends.get(2, []))
        if to_member:
            break
    assert to_member
    for group_id, msg in to_member:
        member.step(group_id, msg)  # type: ignore[arg-type]
    assert member.quiet_count() == 0


def test_a_dormant_group_that_follows_a_leader_or_waits_for_a_silent_one_tells_nobody() -> None:
    started = start(SUCCESSOR, applied_slot=1, reconfigured_from=1)
    led = node(2, {7: started})
    led.step(7, heartbeat(4, 2))  # a leader on node 4: it follows that one
    assert _tick_hearing(led, 1, TELL_PREFERRED_TICKS) == []
    silent = node(2, {7: started})
    hosts = []
    for _ in range(TELL_PREFERRED_TICKS):
        silent.tick()  # node 1 is never heard: it is silent, and the group wakes instead
        hosts.extend(silent.take_effects().hosts)
    assert hosts == [] and silent.quiet_count() == 0


def test_a_predecessors_final_snapshot_writes_no_base_over_a_successors_install() -> None:
    """Node 2 lost its disk. Its replica of OLD takes OLD's final snapshot (the stop is in
    it); meanwhile it hosts SUCCESSOR on an answer, whose own snapshot, of a later slot, goes
    into the next job. When the first install completes, the successor must keep what its
    install brings: no base from OLD's state, no rebirth at the base (sim seed 1571 with
    Prepares resent: the base was written over the install, and the range after it applied
    one revision behind its peers)."""
    engine = MemoryEngine(shard_id=1)
    old = KvStateMachine(engine, initial=OLD)
    old.apply(1, [encode_command(Put(RequestId(0, 0), b"a", b"1"))])
    old.apply(2, [encode_command(Reconfigure(RequestId(0, 0), 7, SUCCESSOR.replicas, ()))])
    final = snapshots.dump(engine)
    member = node(2, {1: start(OLD)}, founding=False, disk_incarnation=DISK + 5)
    member.step(1, InstallSnapshot(src=NodeId(1), dst=NodeId(2), slot=Slot(2), data=final))
    old_install = member.take_effects().jobs
    member.step(7, Host(1, 2, 7, SUCCESSOR, 0))
    member.take_effects()
    data = _successor_state(())
    member.step(7, InstallSnapshot(src=NodeId(1), dst=NodeId(2), slot=Slot(5), data=data))
    successor_install = member.take_effects().jobs
    for job in old_install:
        member.job_done(job, [], [])
    after = member.take_effects().jobs
    assert [base for job in after for base in job.bases] == []
    for job in successor_install + after:
        member.job_done(job, [], [])
    assert member.replica(7).chosen_through == Slot(5) and not member.awaiting(7)
    assert member.merged_away(1)


def test_a_restart_before_the_successors_first_record_keeps_its_vote_on_the_listed_disk() -> None:
    """Node 2 applied OLD's stop (the successor's base is written) and stopped before the
    next job recorded the successor's vote. Restarted, it decides again as at the creation:
    on the disk the change listed, it votes (it rejoined before, whatever its replica of OLD
    could say: the same stall as sim seed 3231); on another disk it rejoins."""
    stop = Successor(SUCCESSOR, 5)
    old = start(OLD, applied_slot=5, successors=(stop,), ended_into=7)
    old = replace(old, durable=DurableState(chosen_through=Slot(5), voting=False))
    blank = start(SUCCESSOR, applied_slot=1, reconfigured_from=1, disks=((2, DISK),))
    layout = {1: OLD, 7: SUCCESSOR}
    opened = {1: old, 7: replace(blank, durable=DurableState(voting=False))}
    for disk, votes in ((DISK, True), (DISK + 1, False)):
        starts = hosted_at_start(2, layout, lambda d: opened[d.range_id], disk_incarnation=disk)
        assert starts[7].durable.voting == votes and starts[7].record_voting


def test_a_split_off_ranges_snapshot_waits_for_an_ancestor_replaying_toward_the_split() -> None:
    """Node 2 lost its disk: it hosts ``part`` (split off ``OLD`` at b"m" and moved since)
    waiting for its state, while its replica of ``OLD`` replays from the start. ``part``'s
    snapshot comes before the replay reached the split: installed now, the replay would
    write its keys over it; retired, ``OLD``'s replica would never apply the split and the
    ranges split off it later (sim seed 5853). It waits for the split; ``OLD``'s right part,
    born of it, is then ``part``'s predecessor, retired at the install."""
    part = RangeDescriptor(9, b"m", b"", (1, 2, 4), generation=3)
    engine = MemoryEngine(shard_id=9)
    put = encode_command(Put(RequestId(0, 0), b"x", b"1"))
    KvStateMachine(engine, initial=part).apply(1, [put])
    member = node(2, {1: start(OLD), 9: start(part)}, founding=False, disk_incarnation=DISK)
    member.take_effects()
    snap = snapshots.dump(engine)
    member.step(9, InstallSnapshot(src=NodeId(1), dst=NodeId(2), slot=Slot(4), data=snap))
    held = member.take_effects().jobs
    assert [i for job in held for i in job.installs] == []
    assert member.awaiting(9) and not member.merged_away(1)
    left = replace(OLD, end=b"m", generation=2)
    right = RangeDescriptor(8, b"m", b"", (1, 2, 3), generation=2)
    member.job_done(DiskJob(), [(1, 5, (b"", [(None, SplitDone(left, right, 5))]))], [])
    installs = [g for job in member.take_effects().jobs for g, _ in job.installs]
    assert installs == [9]
    assert member.merged_away(8) and not member.merged_away(1)
    assert member.descriptor(1) == left


def _sent_snapshot_or_dump(member: Node, group_id: int) -> tuple[bool, bool]:
    """A peer asks ``member`` for slot 2 on (below its stored snapshot): whether the
    stored bytes went to it, and whether a dump of the state as it is now was asked."""
    member.step(group_id, CatchUpRequest(src=NodeId(2), dst=NodeId(1), from_slot=Slot(2)))
    effects = member.take_effects()
    sent = [m for _, m in effects.sends.get(2, [])]
    stored = any(isinstance(m, InstallSnapshot) and m.data == b"before the split" for m in sent)
    return stored, any(group_id in job.dumps for job in effects.jobs)


def _a_second_later(member: Node) -> None:
    member.tick(100)  # 10 ms ticks
    member.take_effects()


def test_a_snapshot_from_before_a_settled_split_is_dumped_again_for_a_peer() -> None:
    """A peer that lost its disk may have rebuilt the range split off since (moved there,
    with its state) before it asks for this range's: a snapshot of before the split would
    have it replay the split-off keys over that state, so it would retire its replica of
    this range for good, and lead it with no state (sim seed 10718). Once the split settled,
    a peer gets a fresh dump; while it is young (the new range's replica here knows no slot
    past its base chosen) the stored snapshot stays, so a lagging replica catches up through
    the split and makes the new range's base itself (sim seed 1715)."""
    before = Snapshot(slot=Slot(3), data=b"before the split")
    durable = DurableState(snapshot=before, chosen_through=Slot(4))
    left = replace(OLD, end=b"m", generation=2)
    right = RangeDescriptor(8, b"m", b"", (1, 2, 3), generation=2)

    unsplit = node(1, {1: replace(start(OLD, applied_slot=4), durable=durable)})
    _a_second_later(unsplit)
    assert _sent_snapshot_or_dump(unsplit, 1) == (True, False)

    young = node(1, {1: replace(start(OLD, applied_slot=4), durable=durable)})
    young.take_effects()
    young.job_done(DiskJob(), [(1, 5, (b"", [(None, SplitDone(left, right, 5))]))], [])
    _a_second_later(young)
    assert _sent_snapshot_or_dump(young, 1) == (True, False)

    # Restarted with the split past its snapshot, and the new range settled (not hosted
    # here any more: moved away).
    split_since = start(left, applied_slot=6, successors=(Successor(right, 5),))
    settled = replace(split_since, durable=replace(durable, chosen_through=Slot(6)))
    restarted = node(1, {1: settled})
    restarted.take_effects()
    assert _sent_snapshot_or_dump(restarted, 1) == (False, True)  # at once (10718)


def test_a_frozen_ranges_snapshot_leaves_it_frozen_here() -> None:
    """A replica that gets a frozen range's state by a snapshot knows it frozen, as one that
    applied the ``Freeze`` does: as its leader it asks for the merge to be finished (sim
    seed 10291: it did not, and the merge never finished)."""
    part = RangeDescriptor(9, b"m", b"", (1, 2, 4), generation=3)
    source = MemoryStore()
    machine = KvStateMachine(source.engine(9), initial=part)
    machine.apply(1, [encode_command(Put(RequestId(0, 0), b"x", b"1"))])
    frozen = snapshots.dump(source.engine(9))
    machine.apply(2, [encode_command(Freeze(RequestId(0, 0)))])
    for data, frozen_slot in ((snapshots.dump(source.engine(9)), 2), (frozen, 0)):
        store = MemoryStore()
        member = node(2, {9: start(part)}, founding=False, disk_incarnation=DISK)
        member.take_effects()
        member.step(9, InstallSnapshot(src=NodeId(1), dst=NodeId(2), slot=Slot(4), data=data))
        for job in member.take_effects().jobs:
            applied, dumped = run_job(job, store.engine)
            member.job_done(job, applied, dumped)
        assert not member.awaiting(9)
        assert member.frozen_slot(9) == frozen_slot
