"""One contract for every Engine: the in-memory reference now, LMDB when it lands."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvstore.model import Engine, MemoryEngine, Record

ENGINES: list[Callable[[], Engine]] = [MemoryEngine]

rec = st.builds(
    Record, st.binary(max_size=4), st.integers(0, 9), st.integers(0, 9), st.integers(0, 9)
)
actions = st.lists(st.tuples(st.booleans(), st.binary(min_size=0, max_size=3), rec), max_size=40)


@pytest.mark.parametrize("make", ENGINES, ids=lambda m: m.__name__)
@given(
    actions=actions, start=st.binary(max_size=2), end=st.binary(max_size=2), limit=st.integers(0, 5)
)
def test_engine_behaves_like_a_sorted_dict(
    make: Callable[[], Engine],
    actions: list[tuple[bool, bytes, Record]],
    start: bytes,
    end: bytes,
    limit: int,
) -> None:
    engine, model = make(), {}
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
def test_meta_is_a_separate_namespace(make: Callable[[], Engine]) -> None:
    engine = make()
    engine.meta_put(b"session/1", b"x")
    engine.meta_put(b"revision", b"y")
    assert engine.get(b"revision") is None
    assert engine.meta_scan(b"session/") == [(b"session/1", b"x")]
    engine.meta_delete(b"session/1")
    assert engine.meta_get(b"session/1") is None
