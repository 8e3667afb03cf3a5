"""Positions and their tokens against a key-by-key model, and garbage refused by name."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.keys import KeySpan
from cluster.position import Position

KEYS = [b"", b"a", b"a\x00", b"b", b"c", b"m", b"z", b"\xff"]
spans = (
    st.tuples(st.sampled_from(KEYS), st.sampled_from(KEYS))
    .filter(lambda p: p[1] == b"" or p[0] < p[1])
    .map(lambda p: KeySpan(*p))
)


@given(
    whole=spans,
    start=st.integers(0, 5),
    steps=st.lists(st.tuples(spans, st.integers(0, 9)), max_size=12),
)
def test_a_position_is_a_revision_per_key_that_only_grows(
    whole: KeySpan, start: int, steps: list[tuple[KeySpan, int]]
) -> None:
    """``advanced`` raises exactly the keys of the span inside the range, never lowers
    one, and the token carries the same position."""
    position = Position.at(whole, start)
    model = {k: start for k in KEYS if whole.contains(k)}
    for span, revision in steps:
        position = position.advanced(span, revision)
        for key, seen in model.items():
            if span.contains(key):
                model[key] = max(seen, revision)
        assert position.span == whole
        assert {k: position.revision_at(k) for k in model} == model
        assert Position.from_token(position.token()) == position
        assert all(
            a.revision != b.revision
            for a, b in zip(position.pieces, position.pieces[1:], strict=False)
        )
    for key, seen in model.items():
        assert position.is_new(key, seen + 1) and not position.is_new(key, seen)


def test_lowest_is_the_least_revision_over_the_part_of_a_span_in_range() -> None:
    position = Position.at(KeySpan(b"a", b"z"), 5).advanced(KeySpan(b"c", b"m"), 9)
    assert position.lowest(KeySpan(b"c", b"m")) == 9
    assert position.lowest(KeySpan(b"b", b"d")) == 5
    assert position.lowest(KeySpan(b"z", b"")) is None
    with pytest.raises(KeyError):
        position.revision_at(b"zz")


@given(st.text(max_size=60) | st.binary(max_size=60).map(lambda b: b.hex()))
def test_anything_but_a_token_is_refused_with_a_value_error(text: str) -> None:
    try:
        Position.from_token(text)
    except ValueError as exc:
        assert "not a position token" in str(exc)


def test_a_tampered_token_is_refused() -> None:
    token = Position.at(KeySpan(b"a", b""), 7).token()
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(ValueError, match="not a position token"):
        Position.from_token(flipped)
    assert token.isascii() and token.isprintable() and "=" not in token
