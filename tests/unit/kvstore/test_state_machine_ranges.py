"""The state machine's range commands: a split divides state at one slot (keys, revision,
sessions), moved keys are refused with where they went, range ids are handed out once, and
the default split point halves the bytes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cluster import RangeDescriptor
from cluster.ranges import META_BOUND, META_RANGE_ID
from kvstore.model import (
    AllocateRangeId,
    Freeze,
    Frozen,
    Invalid,
    KvStateMachine,
    MemoryStore,
    Merge,
    MergeDone,
    OutOfRange,
    Put,
    PutResult,
    RangeIdAllocated,
    RangesRecorded,
    RecordRanges,
    RequestId,
    Split,
    SplitDone,
    StaleRequest,
    encode_command,
)

META = RangeDescriptor(META_RANGE_ID, META_BOUND, META_BOUND, (1, 2, 3))
FIRST = RangeDescriptor(1, b"", b"m", (1, 2, 3))
SECOND = RangeDescriptor(2, b"m", b"", (1, 2, 3))


def machine(store: MemoryStore, d: RangeDescriptor) -> KvStateMachine:
    return KvStateMachine(store.engine(d.range_id), initial=d)


def apply(sm: KvStateMachine, *commands: object) -> list[object]:
    return [r for _, r in sm.apply(sm.applied_slot + 1, [encode_command(c) for c in commands])]  # type: ignore[arg-type]


def test_a_split_moves_keys_revision_and_sessions_to_the_new_range() -> None:
    store = MemoryStore()
    parent = machine(store, SECOND)
    apply(parent, Put(RequestId(7, 1), b"p", b"1"), Put(RequestId(7, 2), b"x", b"2"))
    (done,) = apply(parent, Split(RequestId(0, 0), b"t", 9))
    assert isinstance(done, SplitDone)
    assert done.left == RangeDescriptor(2, b"m", b"t", (1, 2, 3), generation=2)
    assert done.right == RangeDescriptor(9, b"t", b"", (1, 2, 3), generation=2)
    assert (parent.keys, parent.owns(b"x"), parent.owns(b"p")) == (1, False, True)

    child = KvStateMachine(store.engine(9))
    assert child.descriptor == done.right
    assert (child.revision, child.keys, child.applied_slot) == (parent.revision, 1, 1)
    assert child.get(b"x") is not None and child.get(b"x").value == b"2"  # type: ignore[union-attr]
    # The parent refuses a moved key with where it went, and changes nothing.
    (moved,) = apply(parent, Put(RequestId(7, 3), b"x", b"3"))
    assert moved == OutOfRange(done.left, (done.right,))
    # A retry of a write the parent applied before the split is not applied again.
    (again,) = apply(child, Put(RequestId(7, 2), b"x", b"2"))
    assert isinstance(again, PutResult) and child.get(b"x").version == 1  # type: ignore[union-attr]


def test_a_split_outside_the_range_or_to_its_own_id_is_refused() -> None:
    sm = machine(MemoryStore(), SECOND)
    for cmd in (Split(RequestId(0, 0), b"m", 9), Split(RequestId(0, 0), b"a", 9)):
        (refused,) = apply(sm, cmd)
        assert isinstance(refused, Invalid)
    (refused,) = apply(sm, Split(RequestId(0, 0), b"q", 2))
    assert isinstance(refused, Invalid)
    assert sm.descriptor == SECOND


def test_range_ids_come_once_each_from_the_meta_range_only() -> None:
    store = MemoryStore()
    meta, first = machine(store, META), machine(store, FIRST)
    got = [apply(meta, AllocateRangeId(RequestId(0, 0), 4))[0] for _ in range(3)]
    assert got == [RangeIdAllocated(4), RangeIdAllocated(5), RangeIdAllocated(6)]
    assert apply(meta, AllocateRangeId(RequestId(0, 0), 2)) == [RangeIdAllocated(7)]
    assert apply(meta, AllocateRangeId(RequestId(0, 0), 100)) == [RangeIdAllocated(100)]
    (refused,) = apply(first, AllocateRangeId(RequestId(0, 0), 4))
    assert isinstance(refused, Invalid)
    # A restarted machine (the counter is state) goes on from where it was.
    assert apply(machine(store, META), AllocateRangeId(RequestId(0, 0), 4)) == [
        RangeIdAllocated(101)
    ]


def test_the_meta_range_keeps_the_directory_and_refuses_keys() -> None:
    store = MemoryStore()
    meta = machine(store, META)
    left, right = FIRST.split(b"f", 7)
    (done,) = apply(meta, RecordRanges(RequestId(0, 0), (FIRST, SECOND)))
    assert done == RangesRecorded(changed=True)
    assert apply(meta, RecordRanges(RequestId(0, 0), (right, left))) == [RangesRecorded(True)]
    # An older descriptor told late (a retry, a slow leader) changes nothing.
    assert apply(meta, RecordRanges(RequestId(0, 0), (FIRST,))) == [RangesRecorded(False)]
    assert machine(store, META).directory().current() == [left, right, SECOND]
    # FIRST owns no key any more: the directory keeps only what owns some.
    assert FIRST not in machine(store, META).directory().known()
    for command in (
        Put(RequestId(5, 1), b"a", b"x"),
        Split(RequestId(0, 0), b"a", 9),
        Freeze(RequestId(0, 0)),
        RecordRanges(RequestId(0, 0), (RangeDescriptor(4, b"b", b"a", (1,)),)),
        RecordRanges(RequestId(0, 0), (META,)),
    ):
        (refused,) = apply(meta, command)
        assert isinstance(refused, Invalid), command
    (refused,) = apply(machine(store, FIRST), RecordRanges(RequestId(0, 0), (FIRST,)))
    assert isinstance(refused, Invalid)
    assert machine(store, META).directory().current() == [left, right, SECOND]


@given(st.dictionaries(st.binary(min_size=1, max_size=6), st.binary(max_size=40), max_size=30))
def test_the_halving_key_splits_the_bytes_as_evenly_as_a_key_boundary_allows(
    data: dict[bytes, bytes],
) -> None:
    sm = machine(MemoryStore(), RangeDescriptor(1, b"", b"", (1, 2, 3)))
    for i, (key, value) in enumerate(sorted(data.items())):
        apply(sm, Put(RequestId(1, i + 1), key, value))
    at = sm.halving_key()
    if len(data) < 2:
        assert at is None
        return
    assert at is not None and sm.descriptor is not None and sm.descriptor.can_split_at(at)
    keys = sorted(data)
    sizes = [len(k) + len(data[k]) for k in keys]
    cut = keys.index(at)
    assert 0 < cut < len(keys)
    left = sum(sizes[:cut])
    # the first cut whose left side reaches half, or the last key if none does
    assert left >= sum(sizes) // 2 or cut == len(keys) - 1
    assert cut == 1 or sum(sizes[: cut - 1]) < sum(sizes) // 2


# ---------------------------------------------------------------------- merges


def test_a_merge_takes_the_frozen_right_shard_keys_size_sessions_and_revision() -> None:
    store = MemoryStore()
    left, right = machine(store, FIRST), machine(store, SECOND)
    apply(left, Put(RequestId(7, 1), b"a", b"1"))
    apply(right, Put(RequestId(7, 2), b"p", b"22"), Put(RequestId(8, 5), b"q", b"3"))
    apply(right, Put(RequestId(0, 0), b"r", b"4"))  # right's revision passes left's
    (frozen,) = apply(right, Freeze(RequestId(0, 0)))
    assert frozen == Frozen(SECOND, right.applied_slot)
    # Final: nothing changes right any more, not even a split.
    assert apply(right, Put(RequestId(9, 1), b"p", b"x"), Split(RequestId(0, 0), b"t", 9)) == [
        OutOfRange(SECOND),
        OutOfRange(SECOND),
    ]
    (done,) = apply(left, Merge(RequestId(0, 0), SECOND, frozen.slot))
    assert isinstance(done, MergeDone)
    assert done.merged == RangeDescriptor(1, b"", b"", (1, 2, 3), generation=2)
    assert (left.owns(b"p"), left.keys, left.size_bytes) == (True, 4, 2 + 3 + 2 + 2)
    assert left.revision == right.revision == 3
    assert left.get(b"p").value == b"22"  # type: ignore[union-attr]
    # Sessions: right's retry is still exactly-once in the merged shard; per client the
    # newer entry wins (client 7's seq 2 from right over seq 1 from left).
    (again,) = apply(left, Put(RequestId(8, 5), b"q", b"3"))
    assert isinstance(again, PutResult) and left.get(b"q").version == 1  # type: ignore[union-attr]
    (stale,) = apply(left, Put(RequestId(7, 1), b"a", b"1"))
    assert stale == StaleRequest(2)
    # The next write takes a revision above both shards'.
    (put,) = apply(left, Put(RequestId(0, 0), b"z", b"5"))
    assert isinstance(put, PutResult) and put.revision == 4


def test_a_merge_of_an_unfrozen_or_non_adjacent_shard_is_refused_and_changes_nothing() -> None:
    store = MemoryStore()
    left, right = machine(store, FIRST), machine(store, SECOND)
    apply(right, Put(RequestId(0, 0), b"p", b"1"))
    (unfrozen,) = apply(left, Merge(RequestId(0, 0), SECOND, 2))
    assert isinstance(unfrozen, Invalid)
    (frozen,) = apply(right, Freeze(RequestId(0, 0)))
    (wrong_slot,) = apply(left, Merge(RequestId(0, 0), SECOND, frozen.slot + 1))
    assert isinstance(wrong_slot, Invalid)
    far = RangeDescriptor(5, b"x", b"", (1, 2, 3))
    (not_adjacent,) = apply(left, Merge(RequestId(0, 0), far, frozen.slot))
    assert isinstance(not_adjacent, Invalid)
    other_nodes = RangeDescriptor(2, b"m", b"", (4, 5, 6))
    (elsewhere,) = apply(left, Merge(RequestId(0, 0), other_nodes, frozen.slot))
    assert isinstance(elsewhere, Invalid)
    assert left.descriptor == FIRST and not left.owns(b"p")
    # The first shard has no left neighbour: it cannot be frozen.
    (first,) = apply(left, Freeze(RequestId(0, 0)))
    assert isinstance(first, Invalid) and not left.frozen_slot
    # Freezing twice answers with the first freeze.
    (twice,) = apply(right, Freeze(RequestId(0, 0)))
    assert twice == frozen


def test_freeze_and_merge_survive_the_codec() -> None:
    from kvstore.model.commands import decode_command, merge_in

    merge = Merge(RequestId(3, 4), SECOND, 17)
    assert decode_command(encode_command(merge)) == merge
    assert decode_command(encode_command(Freeze(RequestId(1, 2)))) == Freeze(RequestId(1, 2))
    put = encode_command(Put(RequestId(0, 0), b"k", b"v"))
    assert merge_in((put, encode_command(merge))) == merge
    assert merge_in((put,)) is None
