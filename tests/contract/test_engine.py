"""One contract for every Engine: the in-memory reference and the LMDB shard engine."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvstore.model import Engine, MemoryEngine, MemoryStore, Record, Version
from kvstore.storage import NodeStore
from kvstore.storage.layout import KEY_HEAD_BYTES


@contextmanager
def memory_engine() -> Iterator[Engine]:
    yield MemoryEngine()


@contextmanager
def lmdb_engine() -> Iterator[Engine]:
    with tempfile.TemporaryDirectory() as path:
        store = NodeStore(path, map_size=256 << 20)
        try:
            with store.write() as batch:
                yield batch.engine(3)
        finally:
            store.close()


ENGINES: list[Callable[[], AbstractContextManager[Engine]]] = [memory_engine, lmdb_engine]

rec = st.builds(
    Record,
    st.binary(max_size=4),
    st.integers(0, 9),
    st.integers(0, 9),
    st.integers(0, 9),
    st.sampled_from([0, 0, 1, (1 << 63) - 1]),  # a lease, or none
)
actions = st.lists(st.tuples(st.booleans(), st.binary(min_size=0, max_size=3), rec), max_size=40)


@pytest.mark.parametrize("make", ENGINES, ids=lambda m: m.__name__)
@given(
    actions=actions, start=st.binary(max_size=2), end=st.binary(max_size=2), limit=st.integers(0, 5)
)
def test_engine_behaves_like_a_sorted_dict(
    make: Callable[[], AbstractContextManager[Engine]],
    actions: list[tuple[bool, bytes, Record]],
    start: bytes,
    end: bytes,
    limit: int,
) -> None:
    model: dict[bytes, Record] = {}
    with make() as engine:
        for is_put, key, record in actions:
            if is_put:
                engine.put(key, record)
                model[key] = record
            else:
                engine.delete(key)
                model.pop(key, None)
        for key in {k for _, k, _ in actions}:
            assert engine.get(key) == model.get(key)
        expected = [(k, model[k]) for k in sorted(model) if k >= start and (not end or k < end)]
        assert engine.scan(start, end, limit) == (expected[:limit] if limit else expected)


@pytest.mark.parametrize("make", ENGINES, ids=lambda m: m.__name__)
def test_meta_is_a_separate_namespace(make: Callable[[], AbstractContextManager[Engine]]) -> None:
    with make() as engine:
        engine.meta_put(b"session/1", b"x")
        engine.meta_put(b"revision", b"y")
        assert engine.get(b"revision") is None
        assert engine.meta_scan(b"session/") == [(b"session/1", b"x")]
        engine.meta_delete(b"session/1")
        assert engine.meta_get(b"session/1") is None


# Keys of every size from 0 to twice the documented 4 KiB limit, arbitrary bytes: some share a
# head longer than the stored one (``layout.KEY_HEAD_BYTES``), so groups of long keys that only
# differ after it must still scan in key order; the boundaries are drawn often.
HEAD = KEY_HEAD_BYTES
BOUNDARY_SIZES = (0, 1, HEAD - 1, HEAD, HEAD + 1, 4095, 4096, 4097, 8192)
shared_heads = st.sampled_from([b"", b"a" * HEAD, b"a" * (HEAD - 1) + b"b", b"\xff" * (HEAD + 7)])
long_keys = st.one_of(
    st.builds(
        lambda head, tail: (head + tail)[:8192],
        shared_heads,
        st.binary(max_size=40) | st.binary(min_size=3000, max_size=4200),
    ),
    st.builds(lambda n, b: bytes([b]) * n, st.sampled_from(BOUNDARY_SIZES), st.integers(0, 255)),
    st.binary(max_size=8192),
)
# Values of every size from 0 to twice the documented 1 MiB limit.
VALUE_SIZES = (0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 2 << 20)
big_values = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda n, b: bytes([b]) * n, st.sampled_from(VALUE_SIZES), st.integers(0, 255)),
    st.builds(bytes, st.integers(0, 2 << 20)),
)
big_records = st.builds(
    Record, big_values, st.integers(0, 9), st.integers(0, 9), st.integers(1, 9), st.integers(0, 3)
)
long_actions = st.lists(st.tuples(st.booleans(), long_keys, big_records), max_size=12)


@pytest.mark.parametrize("make", ENGINES, ids=lambda m: m.__name__)
@settings(max_examples=60)
@given(actions=long_actions, start=long_keys, end=long_keys, limit=st.integers(0, 6))
def test_keys_and_values_of_every_size_behave_like_a_sorted_dict(
    make: Callable[[], AbstractContextManager[Engine]],
    actions: list[tuple[bool, bytes, Record]],
    start: bytes,
    end: bytes,
    limit: int,
) -> None:
    """LMDB stores keys over its 511-byte limit and values over a MiB, and scans them in key
    order, exactly like the in-memory reference (the long-key layout)."""
    model: dict[bytes, Record] = {}
    with make() as engine:
        for is_put, key, record in actions:
            if is_put:
                engine.put(key, record)
                model[key] = record
            else:
                engine.delete(key)
                model.pop(key, None)
        for key in {k for _, k, _ in actions} | {start, end}:
            assert engine.get(key) == model.get(key)
        for lo, hi in ((start, end), (b"", b""), (start, b"")):
            expected = [(k, model[k]) for k in sorted(model) if k >= lo and (not hi or k < hi)]
            assert engine.scan(lo, hi, limit) == (expected[:limit] if limit else expected)


def test_long_keys_sharing_a_head_scan_in_key_order_among_short_ones() -> None:
    """A worked case of the layout's ordering argument: short keys around a group of long keys
    with one head, the group stored in digest order, scanned in key order and cut by bounds."""
    head = b"k" * KEY_HEAD_BYTES
    long_ = [head + bytes([b]) * n for b in (0x00, 0x41, 0xFF) for n in (1, 2, 4000)]
    short = [head, head[:-1], head[:-1] + b"l", b"j", b"z"]
    with lmdb_engine() as engine:
        for i, key in enumerate(long_ + short):
            engine.put(key, Record(b"%d" % i, 1, 1, 1))
        keys = sorted(long_ + short)
        assert [k for k, _ in engine.scan(b"", b"", 0)] == keys
        lo, hi = long_[1], long_[7]
        assert [k for k, _ in engine.scan(lo, hi, 0)] == [k for k in keys if lo <= k < hi]
        assert [k for k, _ in engine.scan(lo, b"", 2)] == [k for k in keys if k >= lo][:2]


@contextmanager
def memory_store_engines() -> Iterator[Callable[[int], Engine]]:
    store = MemoryStore()
    yield store.engine


@contextmanager
def lmdb_store_engines() -> Iterator[Callable[[int], Engine]]:
    with tempfile.TemporaryDirectory() as path:
        store = NodeStore(path, map_size=16 << 20)
        try:
            with store.write() as batch:
                yield batch.engine
        finally:
            store.close()


@pytest.mark.parametrize(
    "make", [memory_store_engines, lmdb_store_engines], ids=lambda m: m.__name__
)
def test_shards_share_the_keys_and_keep_their_own_metadata_and_descriptor(
    make: Callable[[], AbstractContextManager[Callable[[int], Engine]]],
) -> None:
    """Data is stored by key, so two shards' engines share one keyspace (moving a boundary
    moves no data); metadata and the descriptor are each shard's own, and ``sibling`` is
    another shard's engine in the same transaction."""
    with make() as engine_for:
        one, two = engine_for(1), engine_for(2)
        one.put(b"apple", Record(b"1", 1, 1, 1))
        two.put(b"mango", Record(b"2", 1, 1, 1))
        one.meta_put(b"revision", b"1")
        two.meta_put(b"revision", b"2")
        one.range_put(b"left")
        assert [k for k, _ in one.scan(b"", b"", 0)] == [b"apple", b"mango"]
        assert one.meta_get(b"revision") == b"1" and two.meta_get(b"revision") == b"2"
        assert one.range_get() == b"left" and two.range_get() is None
        sibling = one.sibling(2)
        assert sibling.meta_get(b"revision") == b"2"
        sibling.range_put(b"right")
        assert engine_for(2).range_get() == b"right"
        one.range_delete()
        assert one.range_get() is None


def test_a_node_store_lists_every_recorded_descriptor() -> None:
    with tempfile.TemporaryDirectory() as path:
        store = NodeStore(path, map_size=16 << 20)
        with store.write() as batch:
            batch.engine(7).range_put(b"seven")
            batch.engine(2).range_put(b"two")
        assert store.ranges() == {2: b"two", 7: b"seven"}
        store.close()


# History: versions of keys of every size (long keys share heads), puts, deletes and drops.
history_keys = st.one_of(st.binary(max_size=3), long_keys)
history_actions = st.lists(
    st.tuples(
        st.sampled_from(["put", "delete", "drop"]),
        history_keys,
        st.integers(1, 12),
        st.binary(max_size=4),
    ),
    max_size=30,
)


@pytest.mark.parametrize("make", ENGINES, ids=lambda m: m.__name__)
@settings(max_examples=80)
@given(
    actions=history_actions,
    probe=st.integers(0, 13),
    start=history_keys,
    end=history_keys,
    limit=st.integers(0, 4),
)
def test_history_behaves_like_a_map_of_sorted_versions(  # noqa: PLR0917 - hypothesis
    make: Callable[[], AbstractContextManager[Engine]],
    actions: list[tuple[str, bytes, int, bytes]],
    probe: int,
    start: bytes,
    end: bytes,
    limit: int,
) -> None:
    """Versions by key and revision: the newest at or before a revision, those after one,
    and the keys that have any, in key order, exactly like a dict of sorted lists."""
    model: dict[bytes, dict[int, Record | None]] = {}
    with make() as engine:
        for kind, key, revision, value in actions:
            if kind == "drop":
                engine.history_delete(key, revision)
                versions = model.get(key, {})
                versions.pop(revision, None)
                if not versions:
                    model.pop(key, None)
                continue
            record = Record(value, 1, revision, 1, revision % 3) if kind == "put" else None
            engine.history_put(key, revision, record)
            model.setdefault(key, {})[revision] = record
        for key in {k for _, k, _, _ in actions} | {start}:
            versions = model.get(key, {})
            at = [r for r in versions if r <= probe]
            got = engine.history_at(key, probe)
            if not at:
                assert got is None
            else:
                newest = max(at)
                assert got == Version(key, newest, versions[newest])
            assert engine.history_after(key, probe) == [
                Version(key, r, versions[r]) for r in sorted(versions) if r > probe
            ]
        expected = [k for k in sorted(model) if k >= start and (not end or k < end)]
        assert engine.history_keys(start, end, limit) == (expected[:limit] if limit else expected)
