"""Paxos messages <-> ``kvstore.v1.PaxosMessage``: the only module that knows both.

Rules: ``to_wire(from_wire(x)) == x`` for every message; anything a peer sends that does not
decode to a well-formed message raises ``PeerProtocolError`` (never another exception), so
the transport can drop it, log it and live on.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from kvstore.v1 import peer_pb2 as pb
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
    Value,
)


class PeerProtocolError(Exception):
    """A peer sent bytes we cannot decode (cf. h11's RemoteProtocolError)."""


def to_wire(shard_id: int, msg: Message) -> pb.PaxosMessage:
    out = pb.PaxosMessage(shard_id=shard_id, src=msg.src, dst=msg.dst)
    match msg:
        case Prepare():
            out.prepare.ballot.CopyFrom(_ballot(msg.ballot))
            out.prepare.from_slot = msg.from_slot
            if msg.transfer_of is not None:
                out.prepare.transfer_of.CopyFrom(_ballot(msg.transfer_of))
        case Promise():
            out.promise.ballot.CopyFrom(_ballot(msg.ballot))
            out.promise.entries.extend(
                pb.LogEntry(slot=e.slot, ballot=_ballot(e.ballot), value=_value(e.value))
                for e in msg.entries
            )
            out.promise.chosen_through = msg.chosen_through
        case Accept():
            out.accept.ballot.CopyFrom(_ballot(msg.ballot))
            out.accept.proposals.extend(
                pb.Proposal(slot=p.slot, value=_value(p.value)) for p in msg.proposals
            )
            out.accept.commit = msg.commit
        case Accepted():
            out.accepted.ballot.CopyFrom(_ballot(msg.ballot))
            out.accepted.slots.extend(msg.slots)
            out.accepted.chosen_through = msg.chosen_through
        case Reject():
            out.reject.ballot.CopyFrom(_ballot(msg.ballot))
            out.reject.promised.CopyFrom(_ballot(msg.promised))
            out.reject.chosen_through = msg.chosen_through
        case Heartbeat():
            out.heartbeat.CopyFrom(
                pb.Heartbeat(
                    ballot=_ballot(msg.ballot),
                    commit=msg.commit,
                    sent_tick=msg.sent_tick,
                    round=msg.round,
                    echo=_stamp(msg.echo),
                    echo_through=msg.echo_through,
                    barrier=msg.barrier,
                    quiesce=msg.quiesce,
                )
            )
        case HeartbeatAck():
            out.heartbeat_ack.CopyFrom(
                pb.HeartbeatAck(
                    ballot=_ballot(msg.ballot),
                    sent_tick=msg.sent_tick,
                    round=msg.round,
                    chosen_through=msg.chosen_through,
                    stamp=_stamp(msg.stamp),
                    quiesced=msg.quiesced,
                )
            )
        case CatchUpRequest():
            out.catch_up_request.from_slot = msg.from_slot
        case CatchUp():
            out.catch_up.first_slot = msg.first_slot
            out.catch_up.values.extend(_value(v) for v in msg.values)
            out.catch_up.chosen_through = msg.chosen_through
        case InstallSnapshot():
            out.install_snapshot.slot = msg.slot
            out.install_snapshot.data = msg.data
        case TimeoutNow():
            out.timeout_now.ballot.CopyFrom(_ballot(msg.ballot))
        case RejoinQuery():
            out.rejoin_query.SetInParent()
        case RejoinInfo():
            out.rejoin_info.promised.CopyFrom(_ballot(msg.promised))
            out.rejoin_info.chosen_through = msg.chosen_through
    return out


def from_wire(wire: pb.PaxosMessage) -> tuple[int, Message]:
    src, dst = NodeId(wire.src), NodeId(wire.dst)
    if src <= 0 or dst <= 0:
        raise PeerProtocolError(f"node ids must be positive: src={src} dst={dst}")
    kind = wire.WhichOneof("body")
    msg: Message
    if kind == "prepare":
        m = wire.prepare
        transfer = _from_ballot(m.transfer_of) if m.HasField("transfer_of") else None
        msg = Prepare(
            src=src,
            dst=dst,
            ballot=_from_ballot(m.ballot),
            from_slot=Slot(m.from_slot),
            transfer_of=transfer,
        )
    elif kind == "promise":
        p = wire.promise
        entries = tuple(
            LogEntry(
                slot=Slot(e.slot), ballot=_from_ballot(e.ballot), value=tuple(e.value.commands)
            )
            for e in p.entries
        )
        msg = Promise(
            src=src,
            dst=dst,
            ballot=_from_ballot(p.ballot),
            entries=entries,
            chosen_through=Slot(p.chosen_through),
        )
    elif kind == "accept":
        a = wire.accept
        proposals = tuple(
            Proposal(slot=Slot(x.slot), value=tuple(x.value.commands)) for x in a.proposals
        )
        msg = Accept(
            src=src,
            dst=dst,
            ballot=_from_ballot(a.ballot),
            proposals=proposals,
            commit=Slot(a.commit),
        )
    elif kind == "accepted":
        d = wire.accepted
        msg = Accepted(
            src=src,
            dst=dst,
            ballot=_from_ballot(d.ballot),
            slots=tuple(Slot(s) for s in d.slots),
            chosen_through=Slot(d.chosen_through),
        )
    elif kind == "reject":
        r = wire.reject
        msg = Reject(
            src=src,
            dst=dst,
            ballot=_from_ballot(r.ballot),
            promised=_from_ballot(r.promised, floor=True),
            chosen_through=Slot(r.chosen_through),
        )
    elif kind == "heartbeat":
        h = wire.heartbeat
        msg = Heartbeat(
            src=src,
            dst=dst,
            ballot=_from_ballot(h.ballot),
            commit=Slot(h.commit),
            sent_tick=h.sent_tick,
            round=h.round,
            echo=_from_stamp(h.echo) if h.HasField("echo") else None,
            echo_through=Slot(h.echo_through),
            barrier=Slot(h.barrier),
            quiesce=h.quiesce,
        )
    elif kind == "heartbeat_ack":
        k = wire.heartbeat_ack
        msg = HeartbeatAck(
            src=src,
            dst=dst,
            ballot=_from_ballot(k.ballot),
            sent_tick=k.sent_tick,
            round=k.round,
            chosen_through=Slot(k.chosen_through),
            stamp=_from_stamp(k.stamp) if k.HasField("stamp") else None,
            quiesced=k.quiesced,
        )
    elif kind == "catch_up_request":
        msg = CatchUpRequest(src=src, dst=dst, from_slot=Slot(wire.catch_up_request.from_slot))
    elif kind == "catch_up":
        c = wire.catch_up
        msg = CatchUp(
            src=src,
            dst=dst,
            first_slot=Slot(c.first_slot),
            values=tuple(_from_value(v) for v in c.values),
            chosen_through=Slot(c.chosen_through),
        )
    elif kind == "install_snapshot":
        s = wire.install_snapshot
        msg = InstallSnapshot(src=src, dst=dst, slot=Slot(s.slot), data=s.data)
    elif kind == "timeout_now":
        msg = TimeoutNow(src=src, dst=dst, ballot=_from_ballot(wire.timeout_now.ballot))
    elif kind == "rejoin_query":
        msg = RejoinQuery(src=src, dst=dst)
    elif kind == "rejoin_info":
        info = wire.rejoin_info
        msg = RejoinInfo(
            src=src,
            dst=dst,
            promised=_from_ballot(info.promised, floor=True),
            chosen_through=Slot(info.chosen_through),
        )
    else:
        raise PeerProtocolError("message without a body")
    return wire.shard_id, msg


def payload_bytes(msg: Message) -> int:
    """Roughly how many bytes of client data ``msg`` carries (its values), cheaply: what
    the peer links use to keep one batch of messages small."""
    match msg:
        case Accept():
            return sum(len(c) for p in msg.proposals for c in p.value)
        case Promise():
            return sum(len(c) for e in msg.entries for c in e.value)
        case CatchUp():
            return sum(len(c) for value in msg.values for c in value)
        case InstallSnapshot():
            return len(msg.data)
        case _:
            return 0


def decode_batch(data: bytes) -> pb.PeerBatch:
    batch = pb.PeerBatch()
    try:
        batch.ParseFromString(data)
    except DecodeError as exc:
        raise PeerProtocolError(f"undecodable peer batch: {exc}") from None
    return batch


def _ballot(ballot: Ballot) -> pb.Ballot:
    return pb.Ballot(round=ballot.round, node_id=ballot.node_id)


def _from_ballot(ballot: pb.Ballot, *, floor: bool = False) -> Ballot:
    """A ballot some node issued; with ``floor``, also a bound no node issued: a promise
    may be ``Ballot(r, 0)``, the floor of a rejoining replica (``paxos.rejoin``)."""
    if ballot.round == 0 and ballot.node_id == 0:
        return Ballot.ZERO
    if ballot.node_id == 0 and not floor:
        raise PeerProtocolError(f"ballot {ballot.round} without a node id")
    return Ballot(ballot.round, NodeId(ballot.node_id))


def _value(value: Value) -> pb.SlotValue:
    return pb.SlotValue(commands=list(value))


def _from_value(value: pb.SlotValue) -> Value:
    return tuple(value.commands)


def _stamp(stamp: Stamp | None) -> pb.Stamp | None:
    return None if stamp is None else pb.Stamp(incarnation=stamp.incarnation, tick=stamp.tick)


def _from_stamp(wire: pb.Stamp) -> Stamp:
    return Stamp(incarnation=wire.incarnation, tick=wire.tick)
