"""The rebalancer's rounds (``kvstore.api.rebalancer.Rebalancer._round``) over fakes: what
it waits for before it moves, and what one move is."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import grpc
import pytest

from cluster import META_RANGE_ID, NodeSpec, RangeDescriptor
from kvstore.api import rebalancer as module
from kvstore.api.own_call import RefusedError
from kvstore.api.rebalancer import QUIET_S, Rebalancer
from kvstore.operator_state import OperatorState
from kvstore.v1 import admin_pb2
from paxos import Role

NODES = [NodeSpec(n, f"dc{(n + 1) // 2}", f"h:{n}") for n in range(1, 7)]
META = RangeDescriptor(META_RANGE_ID, b"", b"", (1, 3, 5))


class _Runtime:
    """What the rebalancer asks of a node: whether it leads meta, and the directory."""

    node_id = 1
    started = True

    def __init__(self, ranges: list[RangeDescriptor]) -> None:
        self.ranges = ranges
        self.leading = True

    def hosts(self, shard: int) -> bool:
        return shard == META_RANGE_ID

    def role(self, _shard: int) -> Role:
        return Role.LEADER if self.leading else Role.FOLLOWER

    def directory(self) -> list[RangeDescriptor]:
        return [META, *self.ranges]


class _Operator:
    def __init__(self) -> None:
        self.state = OperatorState()
        self.reads = 0

    async def read(self, _context: Any) -> OperatorState:
        self.reads += 1
        return self.state


class _World:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        monkeypatch.setattr(module.time, "monotonic", lambda: self.now)
        self.runtime = _Runtime(
            [RangeDescriptor(i, bytes([96 + i]), bytes([97 + i]), (1, 3, 5)) for i in (1, 2)]
        )
        self.operator = _Operator()
        self.asked: list[admin_pb2.ChangeReplicasRequest] = []
        self.refuse: grpc.StatusCode | None = None
        self.down: list[int] = []
        self.rebalancer = Rebalancer(
            self.runtime,  # type: ignore[arg-type]
            self.operator,  # type: ignore[arg-type]
            change=self.change,
            nodes=lambda: NODES,
            channel=lambda _node: None,  # type: ignore[arg-type,return-value]
            replicas_per_dc=1,
        )

        async def down(_nodes: Sequence[NodeSpec]) -> list[int]:
            return self.down

        monkeypatch.setattr(self.rebalancer, "_down", down)
        self.leads: dict[int, frozenset[int]] = {}  # what each node says it leads

        async def led_by(node: int) -> frozenset[int]:
            return self.leads.get(node, frozenset())

        monkeypatch.setattr(self.rebalancer, "_led_by", led_by)

    async def change(
        self, request: admin_pb2.ChangeReplicasRequest
    ) -> admin_pb2.ChangeReplicasResponse:
        self.asked.append(request)
        if self.refuse is not None:
            raise RefusedError(self.refuse, "the range ended")
        moved = next(d for d in self.runtime.ranges if d.range_id == request.shard_id)
        replicas = sorted({*moved.replicas, *request.add} - set(request.remove))
        successor = RangeDescriptor(
            100 + moved.range_id, moved.start, moved.end, tuple(replicas), 2
        )
        self.runtime.ranges = [successor if d is moved else d for d in self.runtime.ranges]
        return admin_pb2.ChangeReplicasResponse(
            successor=admin_pb2.ShardInfo(shard_id=successor.range_id)
        )

    def round(self) -> bool:
        return asyncio.run(self.rebalancer._round())


def test_it_waits_for_quiet_then_makes_one_move_and_counts_it_as_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = _World(monkeypatch)
    assert not world.round()  # a new leader: the layout just seen counts as a change
    world.now += QUIET_S - 1
    assert not world.round() and world.operator.reads == 0
    world.now += 2
    assert world.round()
    (asked,) = world.asked
    assert (list(asked.remove), list(asked.add)) == ([1], [2])
    # Its own move starts no quiet period: the next round moves again at once.
    world.now += 1
    assert world.round() and len(world.asked) == 2
    assert {d.range_id for d in world.runtime.ranges} == {101, 102}


def test_it_does_nothing_where_it_does_not_lead_meta_while_a_node_is_down_or_switched_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = _World(monkeypatch)
    world.round()
    world.now += QUIET_S + 1
    world.runtime.leading = False
    assert not world.round()
    world.runtime.leading = True
    world.round()  # leading again: quiet again
    world.now += QUIET_S + 1
    world.down = [4]
    assert not world.round() and world.operator.reads == 0
    world.down = []
    world.operator.state = OperatorState(rebalance=False)
    assert not world.round() and world.operator.reads == 1
    assert world.asked == []
    world.operator.state = OperatorState()
    assert world.round()


def test_a_refused_move_is_not_counted_and_a_change_it_did_not_make_restarts_the_quiet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = _World(monkeypatch)
    world.round()
    world.now += QUIET_S + 1
    world.refuse = grpc.StatusCode.NOT_FOUND
    assert not world.round() and world.rebalancer.moves == 0
    world.refuse = None
    split = RangeDescriptor(3, b"z", b"", (1, 3, 5))
    world.runtime.ranges = [*world.runtime.ranges, split]  # someone else's change
    assert not world.round()
    world.now += QUIET_S + 1
    assert world.round() and world.rebalancer.moves == 1


def test_it_moves_a_replica_its_node_does_not_lead_where_one_fits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = _World(monkeypatch)
    world.leads = {1: frozenset({1})}  # node 1 leads range 1, the planner's first pick
    world.round()
    world.now += QUIET_S + 1
    assert world.round()
    (asked,) = world.asked
    assert (asked.shard_id, list(asked.remove), list(asked.add)) == (2, [1], [2])


def test_it_rebuilds_the_replicas_left_on_a_removed_node_one_round_after_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Node 5 was removed while moves onto it were in flight; they landed. The node the
    rebalancer runs on knew 5's datacenter, so each range's replica there goes to node 6."""
    world = _World(monkeypatch)
    monkeypatch.setattr(world.rebalancer, "_nodes", lambda: [n for n in NODES if n.node_id != 5])
    monkeypatch.setattr(world.rebalancer, "_removed", lambda: [NODES[4]])
    world.round()
    world.now += QUIET_S + 1
    assert world.round() and world.round()
    assert [(list(a.remove), list(a.add)) for a in world.asked] == [([5], [6]), ([5], [6])]
    assert all(5 not in d.replicas for d in world.runtime.ranges)
    # Not known here (removed before this node heard of it): it stands aside, as before.
    monkeypatch.setattr(world.rebalancer, "_removed", list)
    world.runtime.ranges = [RangeDescriptor(7, b"x", b"y", (1, 3, 5))]
    world.now += QUIET_S + 1
    world.round()
    world.now += QUIET_S + 1
    assert not world.round() and len(world.asked) == 2
