"""The range cache against a history of splits: it answers with the newest descriptor it
learned for a key, and with the true owner once it learned the current layout."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from cluster import RangeDescriptor, RangeMap

points = st.lists(st.binary(min_size=1, max_size=3), max_size=8, unique=True)


def history(cuts: list[bytes]) -> tuple[list[RangeDescriptor], list[RangeDescriptor]]:
    """Split one range covering everything at each cut in turn: every descriptor that ever
    existed, and the layout at the end."""
    layout = [RangeDescriptor(1, b"", b"", (1, 2, 3))]
    seen = list(layout)
    for at in cuts:
        owner = next(d for d in layout if d.contains(at))
        if not owner.can_split_at(at):
            continue
        left, right = owner.split(at, max(d.range_id for d in seen) + 1)
        layout = [d for d in layout if d is not owner] + [left, right]
        seen += [left, right]
    return seen, sorted(layout, key=lambda d: d.start)


@given(points, st.binary(max_size=4))
def test_knowing_the_current_layout_finds_the_owner(cuts: list[bytes], key: bytes) -> None:
    seen, layout = history(cuts)
    owner = next(d for d in layout if d.contains(key))
    assert RangeMap(layout).lookup(key) == owner
    assert RangeMap(seen).lookup(key) == owner  # stale descriptors lose to newer ones


@given(points, st.data())
def test_a_partial_history_answers_with_the_newest_descriptor_it_knows(
    cuts: list[bytes], data: st.DataObject
) -> None:
    seen, _ = history(cuts)
    known = [seen[0], *data.draw(st.lists(st.sampled_from(seen)))]
    key = data.draw(st.binary(max_size=4))
    cache = RangeMap()
    for d in known:  # one at a time, in any order
        cache.update([d])
    answer = cache.lookup(key)
    newest = max((d for d in known if d.contains(key)), key=lambda d: d.generation)
    assert answer is not None and answer.contains(key)
    assert answer.generation == newest.generation


@given(points, st.binary(max_size=4), st.binary(max_size=4))
def test_overlapping_pieces_cover_the_span_each_with_its_owner(
    cuts: list[bytes], a: bytes, b: bytes
) -> None:
    start, end = min(a, b), max(a, b)
    if start == end:
        end = b""
    _, layout = history(cuts)
    pieces = RangeMap(layout).overlapping(start, end)
    assert pieces[0][0] == start and pieces[-1][1] == end
    for (_, hi, _), (lo, _, _) in itertools.pairwise(pieces):
        assert hi == lo
    for lo, _, d in pieces:
        assert d.contains(lo)


@given(points, st.data())
def test_the_map_is_a_function_of_what_it_learned_not_of_the_order(
    cuts: list[bytes], data: st.DataObject
) -> None:
    """What the meta range relies on: its directory is a RangeMap told every descriptor in
    whatever order records arrive (retries and duplicates included), so replicas and
    retries agree."""
    seen, layout = history(cuts)
    told = data.draw(st.lists(st.sampled_from(seen), min_size=1))
    one_by_one = RangeMap()
    for d in data.draw(st.permutations(told)):
        one_by_one.update([d, d])
    at_once = RangeMap(told)
    assert one_by_one.known() == at_once.known()
    assert one_by_one.current() == at_once.current()
    everything = RangeMap(told + layout)
    assert everything.current() == layout
    assert RangeMap(everything.known()).current() == layout  # what meta stores rebuilds it
