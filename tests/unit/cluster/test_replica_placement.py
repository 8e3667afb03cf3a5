"""The replica planner: drains, deaths, replacements, and a property over random clusters:
planning again and again reaches a layout that keeps every rule, one change per range per
plan, never more than the budget."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.ranges import RangeDescriptor
from cluster.replica_placement import Member, Move, NodeState, apply_move, plan_moves

A, D, R, X = NodeState.ACTIVE, NodeState.DRAINING, NodeState.REMOVED, NodeState.DEAD


def members(*spec: tuple[int, str, NodeState]) -> list[Member]:
    return [Member(n, dc, state) for n, dc, state in spec]


def ranges_on(*replica_sets: tuple[int, ...]) -> list[RangeDescriptor]:
    bounds = [b""] + [bytes([ord("a") + i]) for i in range(1, len(replica_sets))] + [b""]
    return [
        RangeDescriptor(i + 1, bounds[i], bounds[i + 1], tuple(sorted(replicas)))
        for i, replicas in enumerate(replica_sets)
    ]


def settle(
    ranges: list[RangeDescriptor],
    cluster: list[Member],
    *,
    replicas_per_dc: int = 1,
    budget: int = 2,
    rounds_max: int = 500,
) -> tuple[list[RangeDescriptor], list[Move]]:
    """Plan and apply until nothing is left to do; every plan obeys its bounds."""
    done: list[Move] = []
    by_id = {d.range_id: d for d in ranges}
    for _ in range(rounds_max):
        moves = plan_moves(
            list(by_id.values()), cluster, replicas_per_dc=replicas_per_dc, budget=budget
        )
        if not moves:
            return sorted(by_id.values(), key=lambda d: d.range_id), done
        assert len(moves) <= budget
        assert len({m.range_id for m in moves}) == len(moves), "two changes of one range"
        for move in moves:
            by_id[move.range_id] = apply_move(by_id[move.range_id], move)
        done.extend(moves)
    raise AssertionError("planning never settled")


def assert_rules_kept(
    ranges: list[RangeDescriptor], cluster: list[Member], replicas_per_dc: int
) -> None:
    by_id = {m.node_id: m for m in cluster}
    dcs = {m.dc for m in cluster}
    for d in ranges:
        assert len(set(d.replicas)) == len(d.replicas)
        for dc in dcs:
            active_in_dc = [m for m in cluster if m.dc == dc and m.takes_replicas]
            here = [r for r in d.replicas if by_id[r].dc == dc]
            on_active = [r for r in here if by_id[r].takes_replicas]
            assert len(on_active) == min(replicas_per_dc, len(active_in_dc)), (d, dc)
            if len(active_in_dc) > len(on_active):  # room was left: nothing on leaving nodes
                assert on_active == here, (d, dc)
    for dc in dcs:
        load = Counter(
            r for d in ranges for r in d.replicas if by_id[r].dc == dc and by_id[r].takes_replicas
        )
        counts = [load[m.node_id] for m in cluster if m.dc == dc and m.takes_replicas]
        if counts:
            assert max(counts) - min(counts) <= 1, (dc, counts)


def test_a_drained_node_ends_with_no_replica_and_its_datacenter_takes_them() -> None:
    cluster = members((1, "dc1", D), (4, "dc1", A), (2, "dc2", A), (3, "dc3", A))
    before = ranges_on(*[(1, 2, 3)] * 5)
    after, moves = settle(before, cluster)
    assert all(d.replicas == (2, 3, 4) for d in after)
    assert {m.reason for m in moves} == {"draining"}
    assert all(m.remove == 1 and m.add == 4 for m in moves)
    assert all(d.generation == 2 for d in after)  # one change each


def test_a_dead_nodes_replicas_are_rebuilt_on_its_replacement() -> None:
    cluster = members((1, "dc1", A), (2, "dc2", A), (3, "dc3", X), (7, "dc3", A))
    after, _ = settle(ranges_on((1, 2, 3), (1, 2, 3), (1, 2, 7)), cluster)
    assert [d.replicas for d in after] == [(1, 2, 7)] * 3


def test_a_datacenter_with_nobody_to_take_a_replica_keeps_what_it_has() -> None:
    """Losing a datacenter is an outage to ride out: nothing moves across datacenters."""
    cluster = members((1, "dc1", A), (2, "dc2", A), (3, "dc3", X))
    assert plan_moves(ranges_on((1, 2, 3)), cluster) == []


def test_a_short_datacenter_is_filled_and_a_crowded_one_trimmed() -> None:
    cluster = members((1, "dc1", A), (4, "dc1", A), (2, "dc2", A), (3, "dc3", A))
    moves = plan_moves(ranges_on((1, 2), (1, 2, 3, 4)), cluster, budget=5)
    # node 1 holds two replicas, node 4 one: the surplus comes off the busier node
    assert moves == [Move(1, 3, None, "missing"), Move(2, None, 1, "surplus")]


def test_a_new_node_takes_an_even_share_of_its_datacenter() -> None:
    cluster = members((1, "dc1", A), (4, "dc1", A), (2, "dc2", A), (3, "dc3", A))
    after, moves = settle(ranges_on(*[(1, 2, 3)] * 6), cluster)
    on_four = sum(4 in d.replicas for d in after)
    assert on_four == 3 and all(m.reason == "balance" for m in moves)


def test_the_budget_bounds_each_plan_and_plans_are_deterministic() -> None:
    cluster = members((1, "dc1", D), (4, "dc1", A), (5, "dc1", A), (2, "dc2", A), (3, "dc3", A))
    layout = ranges_on(*[(1, 2, 3)] * 8)
    first = plan_moves(layout, cluster, budget=3)
    assert len(first) == 3 and first == plan_moves(layout, cluster, budget=3)
    assert [m.add for m in first] == [4, 5, 4]  # the least loaded node first, ties by id
    assert plan_moves(layout, cluster, budget=0) == []


def test_bad_input_is_refused() -> None:
    cluster = members((1, "dc1", A))
    with pytest.raises(ValueError, match="not members"):
        plan_moves(ranges_on((1, 9)), cluster)
    with pytest.raises(ValueError, match="replicas_per_dc"):
        plan_moves(ranges_on((1,)), cluster, replicas_per_dc=0)


STATES = st.sampled_from([A, A, A, D, R, X])


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[Member], list[RangeDescriptor], int, int]:
    per_dc = draw(st.integers(1, 2))
    cluster: list[Member] = []
    node = 1
    for dc in ("dc1", "dc2", "dc3"):
        for _ in range(draw(st.integers(per_dc, 4))):
            cluster.append(Member(node, dc, draw(STATES)))
            node += 1
    by_dc = {dc: [m.node_id for m in cluster if m.dc == dc] for dc in ("dc1", "dc2", "dc3")}
    layouts = []
    for _ in range(draw(st.integers(1, 12))):
        replicas: list[int] = []
        for nodes in by_dc.values():
            replicas += draw(st.lists(st.sampled_from(nodes), min_size=0, max_size=3, unique=True))
        layouts.append(tuple(replicas) or (by_dc["dc1"][0],))
    return cluster, ranges_on(*layouts), per_dc, draw(st.integers(1, 4))


@settings(max_examples=300, deadline=None)
@given(clusters())
def test_planning_again_and_again_settles_on_a_layout_that_keeps_every_rule(
    case: tuple[list[Member], list[RangeDescriptor], int, int],
) -> None:
    cluster, layout, per_dc, budget = case
    after, _ = settle(layout, cluster, replicas_per_dc=per_dc, budget=budget)
    assert_rules_kept(after, cluster, per_dc)
