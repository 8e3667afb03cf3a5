"""Leases in the state machine: the meta range's table, keys attached in data ranges, and
what a lease's end does to them, through splits, merges and snapshots."""

from __future__ import annotations

import pytest

from cluster.ranges import RangeDescriptor, meta_descriptor
from kvstore.model import (
    Compare,
    CompareOp,
    Delete,
    Invalid,
    KvStateMachine,
    MemoryEngine,
    Put,
    RequestId,
    Target,
    encode_command,
)
from kvstore.model import snapshot as snapshots
from kvstore.model.codec import CodecError
from kvstore.model.commands import (
    Command,
    DetachLease,
    Freeze,
    LeaseDetached,
    LeaseGone,
    LeaseGrant,
    LeaseGranted,
    LeaseRevoke,
    LeaseRevoked,
    LeasesEnded,
    Merge,
    OpKind,
    Split,
    Txn,
    TxnOp,
    TxnResult,
    decode_command,
)
from kvstore.model.leases import attached, ending, live
from tests.unit.kvstore.test_node_meta import one_node

NO = RequestId(0, 0)
WHOLE = RangeDescriptor(1, b"", b"", (1, 2, 3), 1)


class Shard:
    def __init__(self, engine: MemoryEngine, descriptor: RangeDescriptor | None = WHOLE) -> None:
        self.engine = engine
        self.machine = KvStateMachine(engine, initial=descriptor)
        self.slot = 0

    def apply(self, *cmds: Command) -> list[object]:
        self.slot += 1
        return [r for _, r in self.machine.apply(self.slot, [encode_command(c) for c in cmds])]


def test_lease_commands_round_trip_and_a_put_without_a_lease_encodes_as_before() -> None:
    for cmd in (
        Put(RequestId(3, 4), b"k", b"v", 77),
        LeaseGrant(NO, 5, 3000),
        LeaseRevoke(NO, 5),
        LeasesEnded(NO, (5, 6)),
        DetachLease(NO, 5),
    ):
        assert decode_command(encode_command(cmd)) == cmd
    plain = encode_command(Put(NO, b"k", b"v"))
    assert decode_command(plain) == Put(NO, b"k", b"v", 0)
    assert len(plain) < len(encode_command(Put(NO, b"k", b"v", 1)))


def test_a_txn_s_leased_put_round_trips_and_a_txn_without_one_encodes_as_before() -> None:
    leased = Txn(NO, (), (TxnOp(OpKind.PUT, b"k", b"v", 9),), (TxnOp(OpKind.GET, b"k"),))
    assert decode_command(encode_command(leased)) == leased
    plain = Txn(NO, (), (TxnOp(OpKind.PUT, b"k", b"v"),), ())
    raw = encode_command(plain)
    assert decode_command(raw) == plain
    assert len(raw) + 8 == len(encode_command(Txn(NO, (), (TxnOp(OpKind.PUT, b"k", b"v", 9),), ())))
    # The lease flag on an op that is not a put: refused by the codec, not applied.
    bad = bytearray(encode_command(Txn(NO, (), (TxnOp(OpKind.DELETE, b"k"),), ())))
    at = bad.index(bytes([OpKind.DELETE]) + (1).to_bytes(4, "big"))
    bad[at] |= 0x80
    with pytest.raises(CodecError):
        decode_command(bytes(bad))


def test_a_txn_attaches_its_puts_to_their_lease_and_names_no_ended_lease() -> None:
    s = Shard(MemoryEngine())
    when_absent = Txn(
        NO,
        (Compare(b"lock", Target.CREATE_REVISION, CompareOp.EQUAL, number=0),),
        (TxnOp(OpKind.PUT, b"lock", b"me", 5),),
        (TxnOp(OpKind.GET, b"lock"),),
    )
    [took] = s.apply(when_absent)
    assert isinstance(took, TxnResult) and took.succeeded
    assert s.engine.get(b"lock").lease == 5  # type: ignore[union-attr]
    assert sorted(attached(s.engine, 5)) == [b"lock"]
    [held] = s.apply(when_absent)
    assert isinstance(held, TxnResult) and not held.succeeded
    s.apply(DetachLease(NO, 5))
    assert s.engine.get(b"lock") is None
    revision = s.machine.revision
    # A Txn naming an ended lease in either branch changes nothing, whichever would run.
    ended = Txn(NO, (), (TxnOp(OpKind.PUT, b"other", b"v"),), (TxnOp(OpKind.PUT, b"x", b"v", 5),))
    assert s.apply(ended) == [LeaseGone(5)]
    assert s.engine.get(b"other") is None and s.machine.revision == revision


def test_the_meta_range_keeps_the_table_and_leases_end_as_ending_until_detached() -> None:
    meta = Shard(MemoryEngine(), meta_descriptor(one_node()))
    assert meta.apply(LeaseGrant(NO, 7, 3000)) == [LeaseGranted(7, 3000)]
    [dup, zero_ttl, bad_id] = meta.apply(
        LeaseGrant(NO, 7, 5000), LeaseGrant(NO, 8, 0), LeaseGrant(NO, 0, 10)
    )
    assert (
        isinstance(dup, Invalid) and isinstance(zero_ttl, Invalid) and isinstance(bad_id, Invalid)
    )
    assert live(meta.engine) == {7: 3000}
    assert meta.apply(LeaseRevoke(NO, 7), LeaseRevoke(NO, 9)) == [
        LeaseRevoked(7, True),
        LeaseRevoked(9, False),
    ]
    assert live(meta.engine) == {} and ending(meta.engine) == [7]
    assert isinstance(meta.apply(LeaseGrant(NO, 7, 10))[0], Invalid)  # still ending
    meta.apply(LeasesEnded(NO, (7,)))
    assert ending(meta.engine) == []
    assert isinstance(meta.apply(LeaseGrant(NO, 7, 10))[0], Invalid)  # never granted again
    data = Shard(MemoryEngine())
    assert isinstance(data.apply(LeaseGrant(NO, 1, 10))[0], Invalid)  # only meta keeps them


def test_a_lease_s_end_deletes_its_keys_at_one_revision_and_refuses_it_after() -> None:
    s = Shard(MemoryEngine())
    s.apply(Put(NO, b"a", b"1", 5), Put(NO, b"b", b"2", 5), Put(NO, b"c", b"3", 6))
    s.apply(Put(NO, b"b", b"2'"))  # a put without the lease detaches the key
    s.apply(Put(NO, b"d", b"4", 5), Delete(NO, b"d"))  # a delete detaches it too
    assert s.engine.get(b"a").lease == 5  # type: ignore[union-attr]
    assert sorted(attached(s.engine, 5)) == [b"a"]
    before = s.machine.revision
    [detached] = s.apply(DetachLease(NO, 5))
    assert detached == LeaseDetached(5, 1, before + 1)
    assert s.engine.get(b"a") is None and s.engine.get(b"b") is not None
    assert [(c.key, c.record) for c in s.machine.changes] == [(b"a", None)]  # watchers see it
    assert s.apply(DetachLease(NO, 5)) == [LeaseDetached(5, 0, before + 1)]
    assert s.apply(Put(NO, b"e", b"5", 5)) == [LeaseGone(5)]
    assert s.engine.get(b"e") is None
    assert s.engine.get(b"c").lease == 6  # type: ignore[union-attr]


def test_split_halves_each_delete_their_own_keys_and_a_merge_takes_right_s_index() -> None:
    engine = MemoryEngine()
    left = Shard(engine)
    left.apply(Put(NO, b"a", b"1", 5), Put(NO, b"x", b"2", 5), Put(NO, b"y", b"3", 6))
    left.apply(Split(NO, b"m", 2))
    right = Shard(engine.sibling(2), None)
    right.slot = 1
    [done] = right.apply(DetachLease(NO, 5))
    assert isinstance(done, LeaseDetached) and done.deleted == 1
    assert engine.get(b"x") is None and engine.get(b"a") is not None  # left's key stays
    right.apply(Freeze(NO))
    assert right.machine.descriptor is not None
    left.apply(Merge(NO, right.machine.descriptor, right.slot))
    [merged] = left.apply(DetachLease(NO, 6))  # y was attached in right's index
    assert isinstance(merged, LeaseDetached) and merged.deleted == 1
    assert engine.get(b"y") is None
    assert left.apply(Put(NO, b"z", b"1", 5)) == [LeaseGone(5)]  # right's dead lease too
    [a_detach] = left.apply(DetachLease(NO, 5))
    assert isinstance(a_detach, LeaseDetached)


def test_a_lease_detached_on_the_left_is_detached_again_for_the_keys_a_merge_brings() -> None:
    """Sim seed 178: the left range had detached the lease, the right had not (its leader
    was away), then the right merged in. Detaching again must delete the right's key, not
    answer at once because the lease is already dead on the left."""
    engine = MemoryEngine()
    left = Shard(engine)
    left.apply(Put(NO, b"a", b"1", 5), Put(NO, b"x", b"2", 5))
    left.apply(Split(NO, b"m", 2))
    [early] = left.apply(DetachLease(NO, 5))
    assert isinstance(early, LeaseDetached) and early.deleted == 1  # a, on the left
    right = Shard(engine.sibling(2), None)
    right.slot = 1
    right.apply(Freeze(NO))
    assert right.machine.descriptor is not None
    left.apply(Merge(NO, right.machine.descriptor, right.slot))
    assert engine.get(b"x") is not None  # brought by the merge, still attached
    [again] = left.apply(DetachLease(NO, 5))
    assert isinstance(again, LeaseDetached) and again.deleted == 1
    assert engine.get(b"x") is None


def test_a_snapshot_carries_leases_and_their_index() -> None:
    source = Shard(MemoryEngine())
    source.apply(Put(NO, b"a", b"1", 5))
    restored = MemoryEngine()
    snapshots.restore(restored, snapshots.dump(source.engine, WHOLE), WHOLE)
    assert restored.get(b"a").lease == 5  # type: ignore[union-attr]
    assert attached(restored, 5) == [b"a"]
