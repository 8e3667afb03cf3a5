"""The automatic rebalancer: replicas spread within each datacenter by count, one move at a
time, run by the node that leads the meta range (issue 21).

Rules:
- Every node runs the loop; only the one whose replica of the meta range leads it acts (one
  rebalancer per cluster, moving with the meta range's leadership), and only while the
  operator state lets it (``kvstore node rebalance --auto off`` stops it; ``on`` again).
- Each round (every ``ROUND_S``) plans with ``cluster.replica_placement.plan_moves`` over the
  meta range's directory, the listed nodes and the draining ones (``next_move``), and makes
  at most one move through ``Admin.ChangeReplicas``, as an operator's command would. It then
  waits until the directory shows the range's successor and pauses ``PAUSE_S`` before the
  next round: one move at a time, with a pause between, is the rebalance's rate limit.
- It stands aside while any listed node does not answer (its replicas would be counted where
  they may not be served), while a draining node still holds a replica (``node drain`` moves
  them, with its progress: two movers would race for one range), and for ``QUIET_S`` after
  a range's configuration changed without it (an operator's move, a split), so it does not
  race an operator's commands.
- It only balances, fills a missing replica or trims a surplus one; it never evacuates a
  node, which is the drain's (an operator's decision).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cluster import META_RANGE_ID, NodeSpec, RangeDescriptor, RangeMap
from cluster.replica_placement import Member, Move, NodeState, plan_moves
from kvstore.api.operator_states import OperatorStates
from kvstore.api.own_call import OwnCall, RefusedError
from kvstore.operator_state import OperatorState
from kvstore.runtime.node import NodeRuntime
from kvstore.v1 import admin_pb2

ROUND_S = 2.0  # how often the leader of the meta range looks
PAUSE_S = 2.0  # after a move, before the next round
QUIET_S = 10.0  # after a change of a range's configuration that it did not make
SETTLE_S = 30.0  # at most, for the directory to show a move's successor
PROBE_S = 2.0  # for each node's answer
OWN_REASONS = frozenset({"balance", "missing", "surplus"})


def next_move(
    ranges: Sequence[RangeDescriptor],
    nodes: Sequence[NodeSpec],
    state: OperatorState,
    *,
    replicas_per_dc: int,
) -> Move | None:
    """The one move the rebalancer makes now, if any (pure). None while a draining node
    still holds a replica (the drain's work), while a replica is on a node no longer listed
    (``node remove --force`` is rebuilding it), or when nothing is left to balance."""
    draining = state.draining
    listed = {n.node_id for n in nodes}
    if any(r in draining or r not in listed for d in ranges for r in d.replicas):
        return None  # a drain under way, or a replica on a node gone from the list
    members = [
        Member(n.node_id, n.dc, NodeState.DRAINING if n.node_id in draining else NodeState.ACTIVE)
        for n in nodes
    ]
    for move in plan_moves(ranges, members, replicas_per_dc=replicas_per_dc, budget=len(ranges)):
        if move.reason in OWN_REASONS:
            return move
    return None


class Rebalancer:
    def __init__(
        self,
        runtime: NodeRuntime,
        operator: OperatorStates,
        *,
        change: Callable[
            [admin_pb2.ChangeReplicasRequest], Awaitable[admin_pb2.ChangeReplicasResponse]
        ],
        nodes: Callable[[], Sequence[NodeSpec]],
        channel: Callable[[int], grpc.aio.Channel],
        replicas_per_dc: int,
    ) -> None:
        """``change``: ``Admin.ChangeReplicas`` called in-process (an ``OwnCall``);
        ``nodes``: the listed nodes; ``channel``: a channel to a node."""
        self._runtime = runtime
        self._operator = operator
        self._change = change
        self._nodes = nodes
        self._channel = channel
        self._replicas_per_dc = replicas_per_dc
        self._task: asyncio.Task[None] | None = None
        self._seen: frozenset[tuple[int, int]] | None = None
        self._quiet_until = 0.0
        self._standing_aside = ""
        self.moves = 0
        self._log = structlog.get_logger("kvstore.rebalancer").bind(node=runtime.node_id)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(ROUND_S)
            try:
                moved = await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any: the next round tries again
                self._log.warning("rebalance_round_failed", error=repr(exc))
                continue
            if moved:
                await asyncio.sleep(PAUSE_S)

    def _leads_meta(self) -> bool:
        runtime = self._runtime
        return (
            runtime.started
            and runtime.hosts(META_RANGE_ID)
            and runtime.leader_hint(META_RANGE_ID) == runtime.node_id
        )

    def _ranges(self) -> list[RangeDescriptor]:
        directory = self._runtime.directory() or ()
        return [d for d in RangeMap(directory).current() if d.range_id != META_RANGE_ID]

    async def _round(self) -> bool:
        """One look; whether it made a move."""
        if not self._leads_meta():
            self._seen = None  # a new leader starts quiet: another may have just moved
            return False
        ranges = self._ranges()
        seen = frozenset((d.range_id, d.generation) for d in ranges)
        now = time.monotonic()
        if seen != self._seen:
            self._seen = seen
            self._quiet_until = now + QUIET_S
        if now < self._quiet_until:
            return self._aside("the ranges changed lately")
        own: Any = OwnCall()
        state = await self._operator.read(own)
        if not state.rebalance:
            return self._aside("switched off")
        nodes = list(self._nodes())
        down = await self._down(nodes)
        if down:
            return self._aside(f"node(s) {down} do not answer")
        move = next_move(ranges, nodes, state, replicas_per_dc=self._replicas_per_dc)
        if move is None:
            return self._aside("balanced, or a drain is under way")
        self._standing_aside = ""
        request = admin_pb2.ChangeReplicasRequest(
            shard_id=move.range_id,
            add=[] if move.add is None else [move.add],
            remove=[] if move.remove is None else [move.remove],
        )
        try:
            answer = await self._change(request)
        except RefusedError as refused:
            self._log.info("rebalance_move_refused", shard=move.range_id, reason=refused.details)
            return False
        self.moves += 1
        self._log.info(
            "rebalance_moved",
            shard=move.range_id,
            successor=answer.successor.shard_id,
            added=move.add,
            removed=move.remove,
            reason=move.reason,
        )
        await self._settled(move.range_id)
        self._seen = frozenset((d.range_id, d.generation) for d in self._ranges())
        return True

    def _aside(self, why: str) -> bool:
        if why != self._standing_aside:
            self._standing_aside = why
            self._log.info("rebalance_standing_aside", why=why)
        return False

    async def _settled(self, range_id: int) -> None:
        """Until the directory here shows the range ended (its successor recorded)."""
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            if all(d.range_id != range_id for d in self._ranges()):
                return
            await asyncio.sleep(0.1)

    async def _down(self, nodes: Sequence[NodeSpec]) -> list[int]:
        me = self._runtime.node_id

        async def answers(node: int) -> bool:
            if node == me:
                return True
            stub: Any = health_pb2_grpc.HealthStub(self._channel(node))  # untyped
            try:
                await stub.Check(health_pb2.HealthCheckRequest(), timeout=PROBE_S)
            except grpc.aio.AioRpcError:
                return False
            return True

        ids = [n.node_id for n in nodes]
        answered = await asyncio.gather(*(answers(node) for node in ids))
        return [node for node, ok in zip(ids, answered, strict=True) if not ok]
