"""Paxos messages cross the wire unchanged; a peer's garbage raises only PeerProtocolError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvstore.net import PeerProtocolError, decode_batch, from_wire, to_wire
from kvstore.v1 import peer_pb2
from paxos import (
    Accept,
    Accepted,
    Ballot,
    CatchUp,
    CatchUpRequest,
    Heartbeat,
    HeartbeatAck,
    InstallSnapshot,
    LogEntry,
    Message,
    NodeId,
    Prepare,
    Promise,
    Proposal,
    Reject,
    RejoinInfo,
    RejoinQuery,
    Slot,
    Stamp,
    TimeoutNow,
)

nodes = st.integers(1, 2**32).map(NodeId)
slots = st.integers(0, 2**40).map(Slot)
ballots = st.builds(Ballot, st.integers(1, 2**40), nodes) | st.just(Ballot.ZERO)
floors = st.builds(Ballot, st.integers(1, 2**40), st.just(NodeId(0)))  # paxos.rejoin's bound
values = st.lists(st.binary(max_size=8), max_size=4).map(tuple)
ints = st.integers(0, 2**40)
common = {"src": nodes, "dst": nodes}
stamps = st.builds(Stamp, st.integers(0, 2**62), ints)

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Prepare, ballot=ballots, from_slot=slots, transfer_of=st.none() | ballots, **common),
    st.builds(
        Promise,
        ballot=ballots,
        entries=st.lists(
            st.builds(LogEntry, slot=slots, ballot=ballots, value=values), max_size=3
        ).map(tuple),
        chosen_through=slots,
        **common,
    ),
    st.builds(
        Accept,
        ballot=ballots,
        proposals=st.lists(st.builds(Proposal, slot=slots, value=values), max_size=3).map(tuple),
        commit=slots,
        **common,
    ),
    st.builds(
        Accepted,
        ballot=ballots,
        slots=st.lists(slots, max_size=4).map(tuple),
        chosen_through=slots,
        **common,
    ),
    st.builds(Reject, ballot=ballots, promised=ballots | floors, chosen_through=slots, **common),
    st.builds(
        Heartbeat,
        ballot=ballots,
        commit=slots,
        sent_tick=ints,
        round=ints,
        echo=st.none() | stamps,
        echo_through=slots,
        barrier=slots,
        **common,
    ),
    st.builds(
        HeartbeatAck,
        ballot=ballots,
        sent_tick=ints,
        round=ints,
        chosen_through=slots,
        stamp=st.none() | stamps,
        **common,
    ),
    st.builds(CatchUpRequest, from_slot=slots, **common),
    st.builds(
        CatchUp,
        first_slot=slots,
        values=st.lists(values, max_size=3).map(tuple),
        chosen_through=slots,
        **common,
    ),
    st.builds(InstallSnapshot, slot=slots, data=st.binary(max_size=16), **common),
    st.builds(TimeoutNow, ballot=ballots, **common),
    st.builds(RejoinQuery, **common),
    st.builds(RejoinInfo, promised=ballots | floors, chosen_through=slots, **common),
)


@given(messages, st.integers(0, 2**32 - 1))
def test_every_message_round_trips_through_bytes(msg: Message, shard: int) -> None:
    data = peer_pb2.PeerBatch(
        cluster="c", from_node=1, messages=[to_wire(shard, msg)]
    ).SerializeToString()
    [wire] = decode_batch(data).messages
    assert from_wire(wire) == (shard, msg)


@given(st.binary(max_size=80))
def test_garbage_from_a_peer_raises_only_peer_protocol_errors(data: bytes) -> None:
    try:
        batch = decode_batch(data)
        for wire in batch.messages:
            from_wire(wire)
    except PeerProtocolError:
        return


def test_a_message_without_a_body_is_refused() -> None:
    with pytest.raises(PeerProtocolError, match="without a body"):
        from_wire(peer_pb2.PaxosMessage(shard_id=1, src=1, dst=2))
