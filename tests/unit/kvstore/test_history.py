"""History: reads at a past revision against the reference model's state at that revision,
through compaction, garbage collection, snapshots, splits and merges, in memory and on LMDB."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.ranges import RangeDescriptor
from kvstore.model import (
    Command,
    Delete,
    Engine,
    Invalid,
    KvStateMachine,
    MemoryEngine,
    Put,
    Record,
    RequestId,
    encode_command,
)
from kvstore.model import snapshot as snapshots
from kvstore.model.commands import Compact, Freeze, HistoryCompacted, Merge, Split
from kvstore.model.history import (
    Change,
    FutureRevisionError,
    RevisionCompactedError,
    collect,
)
from kvstore.storage import NodeStore
from tests.unit.kvstore.strategies import commands
from tests.unit.kvstore.test_state_machine import Reference, sessionless

NO_SESSION = RequestId(0, 0)


@contextmanager
def memory() -> Iterator[Callable[[int], Engine]]:
    engine = MemoryEngine()
    yield engine.sibling


@contextmanager
def lmdb() -> Iterator[Callable[[int], Engine]]:
    """One write transaction for the whole test (the state machine's view inside one)."""
    with tempfile.TemporaryDirectory() as path:
        store = NodeStore(path, map_size=256 << 20)
        try:
            with store.write() as batch:
                yield batch.engine
        finally:
            store.close()


ENGINES: list[Callable[[], AbstractContextManager[Callable[[int], Engine]]]] = [memory, lmdb]


def states_by_revision(cmds: list[Command]) -> dict[int, dict[bytes, list[object]]]:
    """The reference model's data after each revision it reached."""
    ref = Reference()
    states = {0: {}}
    for cmd in cmds:
        ref.apply(cmd)
        states[ref.revision] = copy.deepcopy(ref.data)
    return states


def as_rows(kvs: list) -> dict[bytes, list[object]]:  # type: ignore[type-arg]
    return {kv.key: [kv.value, kv.create_revision, kv.mod_revision, kv.version] for kv in kvs}


@pytest.mark.parametrize("make", ENGINES, ids=lambda m: m.__name__)
@settings(max_examples=60, deadline=None)
@given(
    cmds=st.lists(commands.map(sessionless), max_size=25),
    compact_at=st.integers(0, 30),
    collect_first=st.booleans(),
)
def test_every_revision_from_the_compacted_one_reads_as_the_reference_then_held(
    make: Callable[[], AbstractContextManager[Callable[[int], Engine]]],
    cmds: list[Command],
    compact_at: int,
    collect_first: bool,
) -> None:
    """Get and scan at every revision agree with the reference model's state then, before
    and after a compaction and its garbage collection; below the compacted revision the
    shard refuses, naming it; above its revision too."""
    states = states_by_revision(cmds)
    with make() as engine_of:
        sm = KvStateMachine(engine_of(1))
        for slot, cmd in enumerate(cmds, start=1):
            sm.apply(slot, [encode_command(cmd)])
        current = sm.revision
        target = min(compact_at, current)
        [(_, outcome)] = sm.apply(len(cmds) + 1, [encode_command(Compact(NO_SESSION, target))])
        assert outcome == HistoryCompacted(target)
        if collect_first:
            start: bytes | None = b""
            while start is not None:
                start = collect(engine_of(1), start, b"", target, 2)
        keys = {b"a", b"b", b"c", b"k1", b"\x00\xff", b"zz"}
        for revision in range(current + 2):
            if revision < target:
                with pytest.raises(RevisionCompactedError) as info:
                    sm.get_at(b"a", revision)
                assert info.value.compacted == target
                continue
            if revision > current:
                with pytest.raises(FutureRevisionError):
                    sm.scan_at(b"", b"", revision, 0)
                continue
            # The reference reaches only revisions a command made; between them, the last.
            state = states[max(r for r in states if r <= revision)]
            for key in keys:
                got = sm.get_at(key, revision)
                row = state.get(key)
                assert (
                    got and [got.value, got.create_revision, got.mod_revision, got.version]
                ) == (row or None)
            kvs, more = sm.scan_at(b"", b"", revision, 0)
            assert not more
            assert as_rows(kvs) == state
            page, more = sm.scan_at(b"", b"", revision, 1)
            assert as_rows(page) == dict(sorted(state.items())[:1])
            assert more == (len(state) > 1)


def test_compacting_ahead_of_the_revision_is_invalid_and_behind_the_compacted_one_a_no_op() -> None:
    sm = KvStateMachine(MemoryEngine())
    sm.apply(1, [encode_command(Put(NO_SESSION, b"a", b"1"))])
    sm.apply(2, [encode_command(Put(NO_SESSION, b"a", b"2"))])
    [(_, ahead)] = sm.apply(3, [encode_command(Compact(NO_SESSION, 3))])
    assert isinstance(ahead, Invalid)
    [(_, done)] = sm.apply(4, [encode_command(Compact(NO_SESSION, 2))])
    assert done == HistoryCompacted(2)
    [(_, again)] = sm.apply(5, [encode_command(Compact(NO_SESSION, 1))])
    assert again == HistoryCompacted(2)
    assert sm.compacted_revision == 2
    assert sm.revision == 2  # a compaction is not a change of the data


def test_each_apply_lists_its_changes_with_the_previous_records_for_watchers() -> None:
    sm = KvStateMachine(MemoryEngine())
    sm.apply(
        1,
        [encode_command(Put(NO_SESSION, b"a", b"1")), encode_command(Put(NO_SESSION, b"b", b"2"))],
    )
    assert [(c.key, c.revision, c.prev) for c in sm.changes] == [(b"a", 1, None), (b"b", 2, None)]
    sm.apply(
        2, [encode_command(Delete(NO_SESSION, b"a")), encode_command(Delete(NO_SESSION, b"x"))]
    )
    [change] = sm.changes
    assert isinstance(change, Change)
    assert (change.key, change.revision, change.record) == (b"a", 3, None)
    assert change.prev is not None and change.prev.value == b"1"


@settings(max_examples=40, deadline=None)
@given(
    cmds=st.lists(commands.map(sessionless), min_size=1, max_size=20), compact_at=st.integers(0, 20)
)
def test_a_snapshot_carries_the_history_reads_from_the_compacted_revision_need(
    cmds: list[Command], compact_at: int
) -> None:
    """A replica restored from a snapshot answers every readable revision as the one that
    dumped it, and refuses the same ones."""
    source_engine = MemoryEngine()
    source = KvStateMachine(source_engine)
    for slot, cmd in enumerate(cmds, start=1):
        source.apply(slot, [encode_command(cmd)])
    target = min(compact_at, source.revision)
    source.apply(len(cmds) + 1, [encode_command(Compact(NO_SESSION, target))])
    data = snapshots.dump(source_engine)
    restored_engine = MemoryEngine()  # with a key of its own, which the restore replaces
    restored_engine.put(b"stale", Record(b"old", 1, 1, 1))
    restored_engine.history_put(b"stale", 1, Record(b"old", 1, 1, 1))
    snapshots.restore(restored_engine, data)
    restored = KvStateMachine(restored_engine)
    assert restored.compacted_revision == target
    assert restored.get_at(b"stale", source.revision) is None
    for revision in range(target, source.revision + 1):
        assert restored.scan_at(b"", b"", revision, 0) == source.scan_at(b"", b"", revision, 0)
    if target:
        with pytest.raises(RevisionCompactedError):
            restored.scan_at(b"", b"", target - 1, 0)


def test_history_follows_keys_through_a_split_and_a_merge() -> None:
    """A key's versions are by key, so the shard holding it now answers for its past: the
    split child from the parent's revisions, the merged range from both halves' (each at its
    own revision), with the higher compacted revision of the two."""
    engine = MemoryEngine()
    whole = RangeDescriptor(1, b"", b"", (1, 2, 3), 1)
    left = KvStateMachine(engine, initial=whole)
    left.apply(1, [encode_command(Put(NO_SESSION, b"a", b"a1"))])  # revision 1
    left.apply(2, [encode_command(Put(NO_SESSION, b"m", b"m1"))])  # revision 2
    left.apply(3, [encode_command(Split(NO_SESSION, b"k", 2))])
    right = KvStateMachine(engine.sibling(2))
    assert right.get_at(b"m", 2) is not None and right.get_at(b"m", 1) is None
    right.apply(2, [encode_command(Put(NO_SESSION, b"m", b"m2"))])  # right's revision 3
    right.apply(3, [encode_command(Compact(NO_SESSION, 3))])
    left.apply(4, [encode_command(Put(NO_SESSION, b"a", b"a2"))])  # left's revision 3
    left.apply(5, [encode_command(Put(NO_SESSION, b"b", b"b1"))])  # left's revision 4
    [(_, frozen)] = right.apply(4, [encode_command(Freeze(NO_SESSION))])
    assert right.descriptor is not None
    left.apply(6, [encode_command(Merge(NO_SESSION, right.descriptor, 4))])
    assert left.revision == 4 and left.compacted_revision == 3
    at3, _ = left.scan_at(b"", b"", 3, 0)
    assert [(kv.key, kv.value) for kv in at3] == [(b"a", b"a2"), (b"m", b"m2")]
    with pytest.raises(RevisionCompactedError):
        left.get_at(b"a", 2)
    assert frozen is not None


def test_compaction_removes_what_no_read_needs_a_bounded_number_of_keys_at_a_time() -> None:
    """Each Compact looks through at most COLLECT_KEYS_MAX keys and says whether more are
    left; the leader proposes it again until none are, and then only the versions a read
    at or after the compacted revision needs remain (a delete's, none)."""
    from kvstore.model.state_machine import COLLECT_KEYS_MAX

    engine = MemoryEngine()
    sm = KvStateMachine(engine)
    keys = [b"k%04d" % i for i in range(COLLECT_KEYS_MAX + 10)]
    slot = 0
    for round_ in range(3):
        slot += 1
        sm.apply(slot, [encode_command(Put(NO_SESSION, k, b"%d" % round_)) for k in keys])
    slot += 1
    sm.apply(slot, [encode_command(Delete(NO_SESSION, keys[0]))])
    compacted = sm.revision
    passes = []
    more = True
    while more:
        slot += 1
        [(_, result)] = sm.apply(slot, [encode_command(Compact(NO_SESSION, compacted))])
        assert isinstance(result, HistoryCompacted) and result.revision == compacted
        more = result.more
        passes.append(more)
    assert passes == [True, False]
    assert engine.history_after(keys[0], -1) == []  # deleted before the compacted revision
    for key in keys[1:]:
        [kept] = engine.history_after(key, -1)
        assert kept.record is not None and kept.record.value == b"2"
    assert sm.get_at(keys[1], compacted) is not None


def test_a_collection_pass_finishes_while_the_compacted_revision_keeps_moving() -> None:
    """A new compacted revision does not restart the pass under way (it would never reach
    the last keys of a big shard): the pass goes on, and another follows for what the newer
    revision made garbage."""
    from kvstore.model.state_machine import COLLECT_KEYS_MAX

    engine = MemoryEngine()
    sm = KvStateMachine(engine)
    keys = [b"k%04d" % i for i in range(2 * COLLECT_KEYS_MAX + 1)]
    slot = 0
    for round_ in range(2):
        slot += 1
        sm.apply(slot, [encode_command(Put(NO_SESSION, k, b"%d" % round_)) for k in keys])
    results = []
    for step in range(20):
        if step < 4:  # the revision moves under the first pass
            slot += 1
            sm.apply(slot, [encode_command(Put(NO_SESSION, keys[-1], b"again"))])
        slot += 1
        [(_, result)] = sm.apply(slot, [encode_command(Compact(NO_SESSION, sm.revision - 1))])
        assert isinstance(result, HistoryCompacted)
        results.append(result.more)
        if not result.more:
            break
    # The first pass (3 commands) finished although the revision moved; a second one
    # followed for the newer revision.
    assert results == [True] * 5 + [False]
    for key in keys[:-1]:
        assert len(engine.history_after(key, -1)) == 1
    assert len(engine.history_after(keys[-1], -1)) <= 2
