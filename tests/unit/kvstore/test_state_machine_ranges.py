"""The state machine's range commands: a split divides state at one slot (keys, revision,
sessions), moved keys are refused with where they went, range ids are handed out once, and
the default split point halves the bytes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cluster import RangeDescriptor
from kvstore.model import (
    AllocateRangeId,
    Invalid,
    KvStateMachine,
    MemoryStore,
    OutOfRange,
    Put,
    PutResult,
    RangeIdAllocated,
    RequestId,
    Split,
    SplitDone,
    encode_command,
)

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


def test_range_ids_come_once_each_from_the_first_range_only() -> None:
    store = MemoryStore()
    first, second = machine(store, FIRST), machine(store, SECOND)
    got = [apply(first, AllocateRangeId(RequestId(0, 0), 4))[0] for _ in range(3)]
    assert got == [RangeIdAllocated(4), RangeIdAllocated(5), RangeIdAllocated(6)]
    assert apply(first, AllocateRangeId(RequestId(0, 0), 2)) == [RangeIdAllocated(7)]
    assert apply(first, AllocateRangeId(RequestId(0, 0), 100)) == [RangeIdAllocated(100)]
    (refused,) = apply(second, AllocateRangeId(RequestId(0, 0), 4))
    assert isinstance(refused, Invalid)
    # A restarted machine (the counter is state) goes on from where it was.
    assert apply(machine(store, FIRST), AllocateRangeId(RequestId(0, 0), 4)) == [
        RangeIdAllocated(101)
    ]
    # The first range stays first through a split, and keeps counting; the new one cannot.
    (done,) = apply(first, Split(RequestId(0, 0), b"f", 50))
    assert isinstance(done, SplitDone)
    assert apply(first, AllocateRangeId(RequestId(0, 0), 4)) == [RangeIdAllocated(102)]
    (refused,) = apply(KvStateMachine(store.engine(50)), AllocateRangeId(RequestId(0, 0), 4))
    assert isinstance(refused, Invalid)


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
