"""``changed_replicas``: every rule of a replica-set change, and its limits at, just under
and just over them (``[placement] replicas_per_dc``, the majority kept)."""

from __future__ import annotations

import pytest

from cluster import RangeDescriptor
from cluster.replica_change import ChangeRefusedError, changed_replicas, colocating_step

DC_OF = {1: "a", 2: "b", 3: "c", 4: "a", 5: "b", 6: "c", 7: "a", 8: "b", 9: "c"}
THREE = RangeDescriptor(3, b"m", b"", (1, 2, 3), generation=5)


def change(add: list[int], remove: list[int], per_dc: int = 1) -> tuple[int, ...]:
    return changed_replicas(THREE, add, remove, DC_OF, per_dc)


def test_a_move_within_a_datacenter() -> None:
    assert change([4], [1]) == (2, 3, 4)


def test_adding_and_removing() -> None:
    assert change([4], [], per_dc=2) == (1, 2, 3, 4)
    assert change([], [3]) == (1, 2)


@pytest.mark.parametrize(
    ("add", "remove", "reason"),
    [
        ([], [], "name a node"),
        ([10], [1], "node 10 does not exist"),
        ([4], [4], "both added and removed"),
        ([2], [], "holds a replica of shard 3 already"),
        ([], [4], "holds no replica of shard 3"),
        ([4], [2], "replicas_per_dc"),  # two in datacenter a
    ],
)
def test_each_rule_refuses_by_name(add: list[int], remove: list[int], reason: str) -> None:
    with pytest.raises(ChangeRefusedError, match=reason):
        change(add, remove)


def test_an_unknown_node_is_told_apart() -> None:
    with pytest.raises(ChangeRefusedError) as refused:
        change([10], [])
    assert refused.value.unknown


def test_replicas_per_dc_at_under_and_over() -> None:
    assert change([4, 7], [], per_dc=3) == (1, 2, 3, 4, 7)  # at: three in datacenter a
    assert change([4], [], per_dc=2) == (1, 2, 3, 4)  # two, with room for three
    with pytest.raises(ChangeRefusedError, match="replicas_per_dc = 2"):
        change([4, 7], [], per_dc=2)  # over: three in datacenter a


def test_a_majority_of_the_new_set_is_kept_at_under_and_over() -> None:
    assert change([4], [1]) == (2, 3, 4)  # two of three kept: a majority
    with pytest.raises(ChangeRefusedError, match="not a majority"):
        change([4, 5], [1, 2])  # one of three kept
    five = RangeDescriptor(3, b"", b"", (1, 2, 3, 4, 5), generation=1)
    assert changed_replicas(five, [7, 8], [1, 2], DC_OF, 3) == (3, 4, 5, 7, 8)  # three of five
    with pytest.raises(ChangeRefusedError, match="2 of the 5"):
        changed_replicas(five, [6, 7, 8], [1, 2, 3], DC_OF, 3)


def test_the_last_replica_is_not_removed() -> None:
    one = RangeDescriptor(3, b"", b"", (1,), generation=1)
    with pytest.raises(ChangeRefusedError, match="no replica left"):
        changed_replicas(one, [], [1], DC_OF, 1)


def _colocated(left: tuple[int, ...], right: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The replica sets a range on ``left`` passes through to reach ``right``, each step a
    change ``changed_replicas`` accepts (placement and the kept majority)."""
    steps = []
    while set(left) != set(right):
        add, remove = colocating_step(left, right, DC_OF)
        d = RangeDescriptor(3, b"m", b"", left, generation=5)
        left = changed_replicas(d, add, remove, DC_OF, 2)
        steps.append(left)
        assert len(steps) <= 6, steps
    return steps


def test_a_merge_moves_the_left_range_onto_the_frozen_ones_replicas_a_step_at_a_time() -> None:
    """The left range moved after the right one froze (sim seed 10291): one replica of the
    same datacenter at a time; an addition or a removal alone where the sizes differ."""
    assert _colocated((1, 2, 3), (1, 2, 3)) == []
    assert _colocated((4, 2, 3), (1, 2, 3)) == [(1, 2, 3)]
    assert _colocated((4, 5, 6), (1, 2, 3)) == [(1, 5, 6), (1, 2, 6), (1, 2, 3)]
    assert _colocated((1, 2), (1, 2, 3)) == [(1, 2, 3)]
    assert _colocated((1, 2, 3, 4), (1, 2, 3)) == [(1, 2, 3)]
    assert _colocated((2, 3, 4, 7), (1, 2, 3)) == [(1, 2, 3, 7), (1, 2, 3)]
