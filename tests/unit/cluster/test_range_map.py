"""Shard lookup agrees with a linear scan over the spans, for any split points and key."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cluster import KeySpan, RangeMap, ShardSpec

splits = st.lists(st.binary(min_size=1, max_size=3), max_size=8, unique=True).map(sorted)


def shards_for(points: list[bytes]) -> list[ShardSpec]:
    bounds = [b"", *points, b""]
    return [
        ShardSpec(i + 1, KeySpan(bounds[i], bounds[i + 1]), (1, 2, 3), None)
        for i in range(len(bounds) - 1)
    ]


@given(splits, st.binary(max_size=4))
def test_lookup_matches_a_linear_scan(points: list[bytes], key: bytes) -> None:
    shards = shards_for(points)
    expected = next(s for s in shards if s.span.contains(key))
    assert RangeMap(shards).lookup(key) == expected


@given(splits, st.binary(max_size=4), st.binary(max_size=4))
def test_overlapping_matches_a_linear_scan(points: list[bytes], a: bytes, b: bytes) -> None:
    start, end = min(a, b), max(a, b)
    if start == end:
        end = b""
    shards = shards_for(points)
    query = KeySpan(start, end)
    expected = [s for s in shards if s.span.overlaps(query)]
    assert RangeMap(shards).overlapping(start, end) == expected
