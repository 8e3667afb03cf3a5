"""``Reconfigure``, the stop sign of a replica-set change (issue 21): the shard ends at one
slot, its successor starts from exactly that state under the new replicas, and nothing is
ever applied in the ended shard again."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cluster import RangeDescriptor
from kvstore.model import (
    Freeze,
    Invalid,
    KvStateMachine,
    MemoryStore,
    Merge,
    OutOfRange,
    Put,
    PutResult,
    Reconfigure,
    Reconfigured,
    RequestId,
    Split,
    decode_command,
    encode_command,
)
from tests.unit.kvstore.test_state_machine_ranges import apply, machine

SECOND = RangeDescriptor(2, b"m", b"", (1, 2, 3), generation=4, leader_dc="dc1")
NOBODY = RequestId(0, 0)


def test_the_successor_starts_from_the_ended_shards_state_under_the_new_replicas() -> None:
    store = MemoryStore()
    old = machine(store, SECOND)
    first = apply(old, Put(RequestId(7, 1), b"p", b"1"), Put(RequestId(7, 2), b"x", b"2"))
    (done,) = apply(old, Reconfigure(NOBODY, 9, (1, 2, 4)))
    assert done == Reconfigured(
        SECOND, RangeDescriptor(9, b"m", b"", (1, 2, 4), generation=5, leader_dc="dc1"), 2
    )
    new = KvStateMachine(store.engine(9))
    assert new.descriptor == done.successor  # type: ignore[attr-defined]
    assert (new.revision, new.keys, new.size_bytes, new.applied_slot) == (
        old.revision,
        old.keys,
        old.size_bytes,
        1,  # its own log's slot 1 stands for the state it was born with
    )
    assert new.get(b"x").value == b"2"  # type: ignore[union-attr]
    # The session table came along: a retry at the successor answers as the first time.
    (again,) = apply(new, Put(RequestId(7, 2), b"x", b"changed?"))
    assert again == first[1] and new.get(b"x").value == b"2"  # type: ignore[union-attr]
    (later,) = apply(new, Put(RequestId(7, 3), b"x", b"3"))
    assert isinstance(later, PutResult) and later.revision == old.revision + 1


def test_the_successor_keeps_the_disk_of_every_replica_it_was_listed_with() -> None:
    """Kept replicas too, not only new ones (sim seed 3231: kept replicas on disks lost
    before the change could not vote in the successor, three of five rejoining for good).
    A node the change does not keep is dropped from the list."""
    store = MemoryStore()
    old = machine(store, SECOND)
    disks = ((1, 11), (2, 12), (3, 13), (4, 14))
    (done,) = apply(old, Reconfigure(NOBODY, 9, (1, 2, 4), disks))
    assert isinstance(done, Reconfigured)
    assert done.disks == ((1, 11), (2, 12), (4, 14))
    assert KvStateMachine(store.engine(9)).disk_incarnations == {1: 11, 2: 12, 4: 14}
    assert old.ended_disks == done.disks  # what its final snapshot tells (``Host``)


def test_an_ended_shard_applies_nothing_and_sends_callers_to_its_successor() -> None:
    store = MemoryStore()
    old = machine(store, SECOND)
    apply(old, Put(RequestId(7, 1), b"p", b"1"))
    (done,) = apply(old, Reconfigure(NOBODY, 9, (1, 2, 4)))
    assert isinstance(done, Reconfigured)
    revision = old.revision
    put, split, freeze = apply(
        old, Put(RequestId(7, 2), b"p", b"2"), Split(NOBODY, b"t", 10), Freeze(NOBODY)
    )
    assert put == OutOfRange(SECOND, (done.successor,))
    assert split == OutOfRange(SECOND, (done.successor,))
    assert isinstance(freeze, Invalid) and "reconfigured" in freeze.reason
    assert not old.owns(b"p") and old.revision == revision
    # Read back from its own state (a restart): still ended, the same answer to a retry.
    reopened = KvStateMachine(store.engine(2))
    assert reopened.ended_slot == done.slot and not reopened.owns(b"p")
    assert apply(reopened, Reconfigure(NOBODY, 11, (4, 5, 6))) == [done]


def test_a_bad_reconfigure_is_refused_and_changes_nothing() -> None:
    store = MemoryStore()
    sm = machine(store, SECOND)
    apply(sm, Put(RequestId(7, 1), b"p", b"1"))
    for bad in (
        Reconfigure(NOBODY, 9, (1, 2, 3)),  # no change
        Reconfigure(NOBODY, 9, (3, 2, 1)),  # no change, in another order
        Reconfigure(NOBODY, 9, ()),
        Reconfigure(NOBODY, 9, (1, 1, 4)),
        Reconfigure(NOBODY, 9, (0, 1, 2)),
        Reconfigure(NOBODY, 0, (1, 2, 4)),
        Reconfigure(NOBODY, 2, (1, 2, 4)),  # its own id
    ):
        (refused,) = apply(sm, bad)
        assert isinstance(refused, Invalid), bad
    assert sm.ended_slot == 0 and sm.owns(b"p")
    assert KvStateMachine(store.engine(9)).descriptor is None  # no successor was made


def test_a_frozen_shard_is_not_reconfigured_and_an_ended_one_is_not_merged() -> None:
    frozen = machine(MemoryStore(), RangeDescriptor(2, b"m", b"", (1, 2, 3)))
    apply(frozen, Freeze(NOBODY))
    (refused,) = apply(frozen, Reconfigure(NOBODY, 9, (1, 2, 4)))
    assert isinstance(refused, Invalid) and "frozen" in refused.reason

    store = MemoryStore()
    left = machine(store, RangeDescriptor(1, b"", b"m", (1, 2, 3)))
    right = RangeDescriptor(2, b"m", b"", (1, 2, 3))
    (done,) = apply(machine(store, right), Reconfigure(NOBODY, 9, (1, 2, 4)))
    assert isinstance(done, Reconfigured)
    (merge,) = apply(left, Merge(NOBODY, right, done.slot))  # as if it were frozen there
    assert isinstance(merge, Invalid) and "reconfigured" in merge.reason
    assert left.descriptor == RangeDescriptor(1, b"", b"m", (1, 2, 3))


@given(
    st.integers(1, 2**63 - 1),
    st.lists(st.integers(1, 2**63 - 1), min_size=0, max_size=64),
    st.integers(0, 2**63 - 1),
    st.integers(0, 2**63 - 1),
)
def test_reconfigure_survives_the_codec(
    successor: int, replicas: list[int], client: int, seq: int
) -> None:
    cmd = Reconfigure(RequestId(client, seq), successor, tuple(replicas))
    assert decode_command(encode_command(cmd)) == cmd


def test_a_change_keeps_a_majority_of_the_new_replicas_from_the_old_ones() -> None:
    """The successor's first state is made only by replicas of both configurations: fewer
    than a majority of the new set would leave it one lost disk from gone."""
    five = RangeDescriptor(2, b"m", b"", (1, 2, 3, 4, 5), generation=4)
    for replicas, allowed in [
        ((1, 2, 4), True),  # one of three changed: two kept, a majority
        ((1, 5, 6), False),  # two of three changed: one kept
        ((4, 5, 6), False),
        ((1, 2, 3, 6, 7), True),  # two of five: three kept
        ((1, 2, 6, 7, 8), False),  # three of five: two kept
        ((1, 2, 3, 4), True),  # a replica removed
        ((1, 2, 3, 4, 5, 6), True),  # one added: five of six kept
        ((1, 2, 3, 4, 5, 6, 7, 8), True),  # three added: five of eight kept
        ((1, 2, 3, 4, 5, 6, 7, 8, 9, 10), False),  # five added: five of ten, not a majority
    ]:
        store = MemoryStore()
        d = SECOND if len(replicas) == 3 else five
        (result,) = apply(machine(store, d), Reconfigure(NOBODY, 9, replicas))
        assert isinstance(result, Reconfigured) == allowed, (replicas, result)
        if not allowed:
            assert isinstance(result, Invalid) and "majority" in result.reason
