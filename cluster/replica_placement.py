"""Where each range's replicas should be: a pure planner of replica moves (issue 21).

The rules: ``replicas_per_dc`` replicas of every range in each datacenter that has nodes
able to take them; never two replicas of one range on one node; nothing left on a node
that is draining, removed or dead while its datacenter has a node to take the replica; and
within a datacenter, replicas spread by count. A replica never leaves its datacenter: a
datacenter with no node to take it keeps what it has (losing a datacenter is an outage to
ride out, not a reason to put two replicas of a range in one place).

The planner proposes at most one change per range (a range's configuration changes one
step after another) and at most ``budget`` changes per call: the caller carries them out,
waits, and asks again, so how often it asks is the rate limit of a rebalance. Repeated
planning reaches a layout with nothing left to do (``tests/unit/cluster/test_replica_placement.py``
shows it for random clusters, drains and deaths, with a hypothesis property).
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cluster.ranges import RangeDescriptor


class NodeState(enum.Enum):
    ACTIVE = "active"  # holds replicas and takes new ones
    DRAINING = "draining"  # running, but its replicas move off
    REMOVED = "removed"  # no longer a member
    DEAD = "dead"  # gone for good (an operator said so): rebuild its replicas elsewhere


@dataclass(frozen=True, slots=True)
class Member:
    node_id: int
    dc: str
    state: NodeState = NodeState.ACTIVE

    @property
    def takes_replicas(self) -> bool:
        return self.state is NodeState.ACTIVE


@dataclass(frozen=True, slots=True)
class Move:
    """One configuration change of one range: ``add`` gets a replica, ``remove`` loses one
    (either may be None; both: a replacement within one datacenter)."""

    range_id: int
    add: int | None
    remove: int | None
    reason: str  # "draining", "removed", "dead", "missing", "surplus" or "balance"


def plan_moves(
    ranges: Sequence[RangeDescriptor],
    members: Sequence[Member],
    *,
    replicas_per_dc: int = 1,
    budget: int = 1,
) -> list[Move]:
    """The next changes toward the rules above, most urgent first: replicas on nodes that
    may not keep them, then missing ones, then surplus, then balance within datacenters.
    Deterministic: ties go to the lower node id, ranges in id order."""
    if replicas_per_dc < 1:
        raise ValueError("replicas_per_dc must be at least 1")
    if budget < 1:
        return []
    by_id = {m.node_id: m for m in members}
    strangers = sorted({r for d in ranges for r in d.replicas} - set(by_id))
    if strangers:
        raise ValueError(f"replicas on nodes that are not members: {strangers}")
    counts: Counter[int] = Counter(r for d in ranges for r in d.replicas if by_id[r].takes_replicas)
    for m in members:
        if m.takes_replicas:
            counts.setdefault(m.node_id, 0)
    planner = _Planner(sorted(ranges, key=lambda d: d.range_id), by_id, counts, replicas_per_dc)
    moves: list[Move] = []
    for step in (planner.evacuate, planner.fill, planner.trim, planner.balance):
        for move in step():
            if len(moves) == budget:
                return moves
            moves.append(move)
    return moves


class _Planner:
    """One planning pass: it keeps the counts as if its moves were already made, and
    touches each range at most once."""

    def __init__(
        self,
        ranges: list[RangeDescriptor],
        members: dict[int, Member],
        counts: Counter[int],
        replicas_per_dc: int,
    ) -> None:
        self._ranges = ranges
        self._members = members
        self._counts = counts
        self._per_dc = replicas_per_dc
        self._touched: set[int] = set()
        self._dcs = sorted({m.dc for m in members.values()})

    def _takers(self, dc: str, holding: Iterable[int]) -> list[int]:
        """Nodes of ``dc`` that may take a replica of a range held on ``holding``,
        least loaded first."""
        held = set(holding)
        return sorted(
            (
                m.node_id
                for m in self._members.values()
                if m.dc == dc and m.takes_replicas and m.node_id not in held
            ),
            key=lambda n: (self._counts[n], n),
        )

    def _in_dc(self, d: RangeDescriptor, dc: str, *, active: bool) -> list[int]:
        return [
            r
            for r in d.replicas
            if self._members[r].dc == dc and self._members[r].takes_replicas == active
        ]

    def _take(self, move: Move) -> Move:
        self._touched.add(move.range_id)
        if move.add is not None:
            self._counts[move.add] += 1
        if move.remove is not None and self._members[move.remove].takes_replicas:
            self._counts[move.remove] -= 1
        return move

    def _open(self) -> Iterable[RangeDescriptor]:
        return (d for d in self._ranges if d.range_id not in self._touched)

    def evacuate(self) -> Iterable[Move]:
        """A replica on a node that may not keep it goes to a node of its datacenter."""
        for d in self._open():
            for r in d.replicas:
                member = self._members[r]
                if member.takes_replicas:
                    continue
                takers = self._takers(member.dc, d.replicas)
                if takers:
                    yield self._take(Move(d.range_id, takers[0], r, member.state.value))
                    break

    def fill(self) -> Iterable[Move]:
        """A datacenter short of replicas of a range gets one, where it can."""
        for d in self._open():
            for dc in self._dcs:
                have = len(self._in_dc(d, dc, active=True))
                if have >= self._per_dc:
                    continue
                takers = self._takers(dc, d.replicas)
                if takers:
                    yield self._take(Move(d.range_id, takers[0], None, "missing"))
                    break

    def trim(self) -> Iterable[Move]:
        """A datacenter with more replicas of a range than the rule gives one up (the most
        loaded node's)."""
        for d in self._open():
            for dc in self._dcs:
                active = self._in_dc(d, dc, active=True)
                if len(active) > self._per_dc:
                    loser = max(active, key=lambda n: (self._counts[n], n))
                    yield self._take(Move(d.range_id, None, loser, "surplus"))
                    break

    def balance(self) -> Iterable[Move]:
        """Within a datacenter, a replica moves from the most loaded node to the least
        loaded while they differ by two or more."""
        for dc in self._dcs:
            nodes = [m.node_id for m in self._members.values() if m.dc == dc and m.takes_replicas]
            while len(nodes) > 1:
                most = max(nodes, key=lambda n: (self._counts[n], n))
                least = min(nodes, key=lambda n: (self._counts[n], n))
                if self._counts[most] - self._counts[least] < 2:
                    break
                movable = next(
                    (d for d in self._open() if most in d.replicas and least not in d.replicas),
                    None,
                )
                if movable is None:
                    break  # every range the busiest node holds was already moved this pass
                yield self._take(Move(movable.range_id, least, most, "balance"))


def apply_move(d: RangeDescriptor, move: Move) -> RangeDescriptor:
    """``d`` after ``move``: the next configuration (generation + 1)."""
    assert move.range_id == d.range_id
    replicas = [r for r in d.replicas if r != move.remove]
    if move.add is not None:
        assert move.add not in replicas, "a range never has two replicas on one node"
        replicas.append(move.add)
    return RangeDescriptor(
        d.range_id, d.start, d.end, tuple(sorted(replicas)), d.generation + 1, d.leader_dc
    )
