"""Acceptor invariants under any sequence of (honest-but-arbitrary) peer messages.

Peers here are honest in one way only: one ballot never carries two values for one slot.
Everything else (order, duplicates, stale ballots, every message kind) is arbitrary. The
property for each step: no exception, and the acceptor's rules hold.
"""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from paxos import (
    Accept,
    Accepted,
    Ballot,
    CatchUp,
    CatchUpRequest,
    Config,
    Heartbeat,
    HeartbeatAck,
    InstallSnapshot,
    Message,
    NodeId,
    Prepare,
    Promise,
    Proposal,
    Reject,
    Replica,
    Slot,
    TimeoutNow,
)

ME, PEERS = NodeId(1), (NodeId(2), NodeId(3))
peers = st.sampled_from(PEERS)
ballots = st.builds(Ballot, st.integers(1, 4), peers)
slots = st.integers(1, 6).map(Slot)


def value_of(slot: int, ballot: Ballot) -> tuple[bytes, ...]:
    return (f"v{slot}@{ballot}".encode(),)


def chosen_value(slot: int) -> tuple[bytes, ...]:
    return (f"chosen{slot}".encode(),)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    src, ballot, slot = draw(peers), draw(ballots), draw(slots)
    kind = draw(st.sampled_from(range(11)))
    if kind == 0:
        return Prepare(src=src, dst=ME, ballot=ballot, from_slot=slot)
    if kind == 1:
        props = tuple(
            Proposal(slot=Slot(s), value=value_of(s, ballot))
            for s in range(slot, slot + draw(st.integers(1, 3)))
        )
        return Accept(src=src, dst=ME, ballot=ballot, proposals=props, commit=Slot(0))
    if kind == 2:
        return Heartbeat(
            src=src,
            dst=ME,
            ballot=ballot,
            commit=Slot(0),
            sent_tick=draw(st.integers(0, 30)),
            round=1,
        )
    if kind == 3:
        return Reject(
            src=src, dst=ME, ballot=ballot, promised=draw(ballots), chosen_through=Slot(0)
        )
    if kind == 4:
        return Promise(src=src, dst=ME, ballot=ballot, entries=(), chosen_through=Slot(0))
    if kind == 5:
        return Accepted(src=src, dst=ME, ballot=ballot, slots=(slot,), chosen_through=Slot(0))
    if kind == 6:
        return HeartbeatAck(
            src=src, dst=ME, ballot=ballot, sent_tick=1, round=1, chosen_through=Slot(0)
        )
    if kind == 7:
        return CatchUpRequest(src=src, dst=ME, from_slot=slot)
    if kind == 8:
        return CatchUp(
            src=src,
            dst=ME,
            first_slot=slot,
            values=tuple(chosen_value(s) for s in range(slot, slot + 2)),
            chosen_through=Slot(slot + 1),
        )
    if kind == 9:
        return InstallSnapshot(src=src, dst=ME, slot=slot, data=b"snap")
    return TimeoutNow(src=src, dst=ME, ballot=ballot)


@given(st.lists(messages(), max_size=40), st.integers(0, 3))
def test_acceptor_rules_hold_for_any_message_sequence(
    msgs: list[Message], ticks_between: int
) -> None:
    """P1: promised never decreases and nothing below it is accepted or promised.
    Promises and Accepted replies leave only inside the write that makes them true, and a
    Promise reports only acceptances at ballots below the promise."""
    replica = Replica(
        Config(node_id=ME, voters=(ME, *PEERS), election_ticks_max=1000),
        rng=random.Random(0),
    )
    for _ in range(10):
        replica.tick()
    replica.take_ready()
    promised = replica.promised
    pending = []
    for msg in msgs:
        replica.step(msg)
        for _ in range(ticks_between):
            replica.tick()
        ready = replica.take_ready()
        assert replica.promised >= promised, "promised went backwards"
        promised = replica.promised
        for sent in ready.send_now:
            assert not isinstance(sent, (Promise, Accepted)), f"{sent} sent before durable"
        for write in ready.writes:
            for entry in write.record.entries:
                if entry.ballot != Ballot.ZERO:
                    assert entry.ballot <= replica.promised
            for reply in write.then_send:
                if isinstance(reply, Promise):
                    assert all(
                        e.ballot < reply.ballot or e.ballot == reply.ballot for e in reply.entries
                    )
                if isinstance(reply, Accepted):
                    assert reply.ballot <= replica.promised
            pending.append(write.seq)
        # Complete writes in order, sometimes lagging behind by one.
        while len(pending) > (1 if msg.src == PEERS[0] else 0):
            replica.write_done(pending.pop(0))
            replica.take_ready()
