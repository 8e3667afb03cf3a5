"""One contract for every Engine: the in-memory reference and the LMDB shard engine."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvstore.model import Engine, MemoryEngine, Record
from kvstore.storage import NodeStore


@contextmanager
def memory_engine() -> Iterator[Engine]:
    yield MemoryEngine()


@contextmanager
def lmdb_engine() -> Iterator[Engine]:
    with tempfile.TemporaryDirectory() as path:
        store = NodeStore(path, map_size=16 << 20)
        try:
            with store.write() as batch:
                batch.engine(7).put(b"other-shard-key", Record(b"x", 1, 1, 1))  # noise
                yield batch.engine(3)
        finally:
            store.close()


ENGINES: list[Callable[[], AbstractContextManager[Engine]]] = [memory_engine, lmdb_engine]

rec = st.builds(
    Record, st.binary(max_size=4), st.integers(0, 9), st.integers(0, 9), st.integers(0, 9)
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
