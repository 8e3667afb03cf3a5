"""The automatic rebalancer: replicas spread within each datacenter by count, one move at a
time, run by the node that leads the meta range (issue 21).

Rules:
- Every node runs the loop; only the one whose replica of the meta range leads it acts (one
  rebalancer per cluster, moving with the meta range's leadership), and only while the
  operator state lets it (``kvstore node rebalance --auto off`` stops it; ``on`` again).
- Each round (every ``ROUND_S``) plans with ``cluster.replica_placement.plan_moves`` over the
  meta range's directory, the listed nodes and the draining ones (``next_moves``), and makes
  at most ``[placement] moves_at_once`` moves (default 1), each of another range, through
  ``Admin.ChangeReplicas``, as an operator's command would (which refuses a replica for a
  draining node). A balance move of a replica its node leads is made of another range
  that node holds and does not lead, where one fits (``sparing_leaders``: asked of the
  node, ``Admin.NodeStatus``): a follower's move costs the write load one short pause, a
  leader's a hand-over, the change and a transfer back to the preferred datacenter.
  It then waits until the directory shows each successor and pauses
  ``PAUSE_S``: a few moves at a time, with a pause between, is the rebalance's rate limit.
- It stands aside while any listed node does not answer as serving (its replicas would be
  counted where they may not be served), and for ``QUIET_S`` after a range's configuration
  changed without it (an operator's move, a split), so it rarely races an operator's
  command; it leaves alone every range with a replica on a draining node (``node drain``
  moves those, with its progress). The operator state is read last, just before it moves,
  so ``--auto off`` stops it from the next move on.
- It only balances, fills a missing replica, trims a surplus one, and rebuilds a replica
  left on a removed node; it never evacuates a listed node, which is the drain's (an
  operator's decision). A replica can land on a removed node when a ``ChangeReplicas``
  onto it was still in flight (its caller timed out, a later leader chose it) while
  ``node remove`` found the node holding nothing: the rebalancer replaces that replica
  in its datacenter, as CockroachDB's replicate queue does for a decommissioned node. It
  does undo an operator's ``replica move`` or ``replica remove`` that leaves a datacenter
  unbalanced or a replica short: switch it off for such a layout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cluster import META_RANGE_ID, NodeSpec, RangeDescriptor, RangeMap
from cluster.replica_placement import Member, Move, NodeState, plan_moves
from kvstore.api.operator_states import OperatorStates
from kvstore.api.own_call import OwnCall, RefusedError
from kvstore.operator_state import OperatorState
from kvstore.runtime.node import NodeRuntime, NodeStoppedError
from kvstore.v1 import admin_pb2, admin_pb2_grpc
from paxos import Role

ROUND_S = 2.0  # how often the leader of the meta range looks
PAUSE_S = 2.0  # after a move, before the next round
QUIET_S = 10.0  # after a change of a range's configuration that it did not make
SETTLE_S = 30.0  # at most, for the directory to show a move's successor
CHANGE_S = 30.0  # at most, for ChangeReplicas to answer
PROBE_S = 2.0  # for each node's answer
OWN_REASONS = frozenset({"balance", "missing", "surplus", "removed"})


def next_moves(
    ranges: Sequence[RangeDescriptor],
    nodes: Sequence[NodeSpec],
    state: OperatorState,
    *,
    replicas_per_dc: int,
    at_once: int = 1,
    removed: Sequence[NodeSpec] = (),
) -> list[Move]:
    """The moves the rebalancer makes now, at most ``at_once``, each of another range (pure).

    ``removed``: the removed nodes whose datacenter is known; a replica on one is rebuilt
    in that datacenter (reason "removed"), and such a range gets no other move (one would
    carry the removed node into its next configuration). None while a replica is on a node
    neither listed nor among them (one that joined a moment ago and is not known here yet:
    the planner cannot count it). A range with a replica on a draining node is left to the
    drain (two movers would race for it), but the rest are balanced; a removed node's drain
    mark (left if clearing it failed) counts for nothing."""
    listed = {n.node_id for n in nodes}
    draining = state.draining & listed
    gone = [n for n in removed if n.node_id not in listed]
    gone_ids = {n.node_id for n in gone}
    if any(r not in listed | gone_ids for d in ranges for r in d.replicas):
        return []
    members = [
        Member(n.node_id, n.dc, NodeState.DRAINING if n.node_id in draining else NodeState.ACTIVE)
        for n in nodes
    ] + [Member(n.node_id, n.dc, NodeState.REMOVED) for n in gone]
    by_id = {d.range_id: d for d in ranges}
    chosen = []
    for move in plan_moves(ranges, members, replicas_per_dc=replicas_per_dc, budget=len(ranges)):
        replicas = by_id[move.range_id].replicas
        if (
            move.reason in OWN_REASONS
            and not draining.intersection(replicas)
            and (move.reason == "removed" or not gone_ids.intersection(replicas))
        ):
            chosen.append(move)
        if len(chosen) == at_once:
            break
    return chosen


def sparing_leaders(
    moves: Sequence[Move],
    ranges: Sequence[RangeDescriptor],
    nodes: Sequence[NodeSpec],
    state: OperatorState,
    led: Mapping[int, frozenset[int]],
) -> list[Move]:
    """``moves`` with each balance move of a replica its node leads (``led``: the ranges
    each node leads, as it said) made of another range instead, where one fits the same
    way: held on that node and not led there, none of it on the target, none on a draining
    node, not moved already (pure). Moving a follower costs the write load one short pause
    (the successor elects at once under the same leader); moving a leader, a hand-over
    first, the change, and later a transfer back to the preferred datacenter. Counts per
    node are the same either way, and the datacenters are (source and target share one)."""
    dc_of = {n.node_id: n.dc for n in nodes}
    taken = {m.range_id for m in moves}
    spared = []
    for move in moves:
        source, target = move.remove, move.add
        if (
            move.reason == "balance"
            and source is not None
            and target is not None
            and dc_of.get(source) == dc_of.get(target)
            and move.range_id in led.get(source, frozenset())
        ):
            other = next(
                (
                    d.range_id
                    for d in ranges
                    if source in d.replicas
                    and target not in d.replicas
                    and d.range_id not in led.get(source, frozenset())
                    and d.range_id not in taken
                    and not state.draining.intersection(d.replicas)
                ),
                None,
            )
            if other is not None:
                taken.add(other)
                spared.append(replace(move, range_id=other))
                continue
        spared.append(move)
    return spared


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
        at_once: int = 1,
        removed: Callable[[], Sequence[NodeSpec]] = lambda: (),
    ) -> None:
        """``change``: ``Admin.ChangeReplicas`` called in-process (an ``OwnCall``);
        ``nodes``: the listed nodes; ``removed``: the removed ones whose datacenter is
        known; ``channel``: a channel to a node; ``at_once``: moves made together, each of
        another range (``[placement] moves_at_once``)."""
        self._runtime = runtime
        self._operator = operator
        self._change = change
        self._nodes = nodes
        self._removed = removed
        self._channel = channel
        self._replicas_per_dc = replicas_per_dc
        self._at_once = at_once
        self._task: asyncio.Task[None] | None = None
        self._seen: frozenset[tuple[int, int]] | None = None
        self._quiet_until = 0.0
        self._standing_aside = ""
        self.moves = 0
        self._log = structlog.get_logger("kvstore.rebalancer").bind(node=runtime.node_id)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A bug ended the loop: said, not hidden (the node serves on without it)."""
        if not task.cancelled() and task.exception() is not None:
            self._log.error("rebalancer_stopped", error=repr(task.exception()))

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        failed = ""
        while True:
            await asyncio.sleep(ROUND_S)
            try:
                moved = await self._round()
            except asyncio.CancelledError:
                raise
            except (RefusedError, grpc.aio.AioRpcError, NodeStoppedError) as exc:
                # The operator state could not be read (no leader of its shard, the node
                # stopping): the next round asks again. Logged once per kind of failure
                # (an error's text may differ each time: a timestamp, a peer's address).
                kind = _kind(exc)
                if kind != failed:
                    failed = kind
                    self._log.warning("rebalance_round_failed", kind=kind, error=repr(exc))
                continue
            failed = ""
            if moved:
                await asyncio.sleep(PAUSE_S)

    def _leads_meta(self) -> bool:
        runtime = self._runtime
        return (
            runtime.started
            and runtime.hosts(META_RANGE_ID)
            and runtime.role(META_RANGE_ID) is Role.LEADER
        )

    def _ranges(self) -> list[RangeDescriptor]:
        directory = self._runtime.directory() or ()
        return [d for d in RangeMap(directory).current() if d.range_id != META_RANGE_ID]

    async def _round(self) -> bool:
        """One look; whether it made a move. The cheap checks come first: the operator
        state is a linearizable read, made only once the rest allows a move."""
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
            return self._aside("ranges_changed_lately")
        nodes = list(self._nodes())
        down = await self._down(nodes)
        if down:
            return self._aside("nodes_down", nodes=down)
        moves = await self._planned(ranges, nodes)
        if not moves:
            return False
        self._standing_aside = ""
        made = await asyncio.gather(*(self._make(move) for move in moves))
        for move, successor in zip(moves, made, strict=True):
            if successor is not None:
                await self._settled(move.range_id)
        self._seen = frozenset((d.range_id, d.generation) for d in self._ranges())
        return any(successor is not None for successor in made)

    async def _planned(self, ranges: list[RangeDescriptor], nodes: list[NodeSpec]) -> list[Move]:
        own: Any = OwnCall()
        state = await self._operator.read(own)
        if not state.rebalance:
            self._aside("switched_off")
            return []
        moves = next_moves(
            ranges,
            nodes,
            state,
            replicas_per_dc=self._replicas_per_dc,
            at_once=self._at_once,
            removed=self._removed(),
        )
        if not moves:
            self._aside("nothing_to_move", draining=sorted(state.draining))
            return moves
        balanced = (m.remove for m in moves if m.reason == "balance")
        sources = sorted({n for n in balanced if n is not None})
        answers = await asyncio.gather(*(self._led_by(n) for n in sources))
        led = dict(zip(sources, answers, strict=True))
        return sparing_leaders(moves, ranges, nodes, state, led)

    async def _led_by(self, node: int) -> frozenset[int]:
        """The ranges ``node`` leads, as it says (none known: it did not answer)."""
        runtime = self._runtime
        if node == runtime.node_id:
            return frozenset(g for g in runtime.group_ids() if runtime.role(g) is Role.LEADER)
        stub = admin_pb2_grpc.AdminStub(self._channel(node))
        try:
            answer = await stub.NodeStatus(admin_pb2.NodeStatusRequest(), timeout=PROBE_S)
        except grpc.aio.AioRpcError:
            return frozenset()
        return frozenset(s.shard_id for s in answer.shards if s.role == Role.LEADER.value)

    async def _make(self, move: Move) -> int | None:
        """One move through ``ChangeReplicas``: the successor's id (None: refused, or no
        answer in time; the directory tells the next round what happened)."""
        request = admin_pb2.ChangeReplicasRequest(
            shard_id=move.range_id,
            add=[] if move.add is None else [move.add],
            remove=[] if move.remove is None else [move.remove],
        )
        try:
            answer = await asyncio.wait_for(self._change(request), CHANGE_S)
        except RefusedError as refused:
            self._log.info(
                "rebalance_move_refused",
                shard=move.range_id,
                code=refused.code.name,
                reason=refused.details,
            )
            return None
        except TimeoutError:
            # Made or not: a change the next round did not see made counts as someone
            # else's, and it waits QUIET_S before it moves again.
            self._log.warning("rebalance_move_unanswered", shard=move.range_id, after_s=CHANGE_S)
            return None
        self.moves += 1
        self._log.info(
            "rebalance_moved",
            shard=move.range_id,
            successor=answer.successor.shard_id,
            added=move.add,
            removed=move.remove,
            reason=move.reason,
        )
        return int(answer.successor.shard_id)

    def _aside(self, why: str, **facts: object) -> bool:
        """Log why it does nothing, once per reason in a row."""
        if why != self._standing_aside:
            self._standing_aside = why
            self._log.info("rebalance_standing_aside", why=why, **facts)
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
                answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=PROBE_S)
            except grpc.aio.AioRpcError:
                return False
            return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

        ids = [n.node_id for n in nodes]
        answered = await asyncio.gather(*(answers(node) for node in ids))
        return [node for node, ok in zip(ids, answered, strict=True) if not ok]


def _kind(exc: Exception) -> str:
    if isinstance(exc, RefusedError):
        return f"refused:{exc.code.name}"
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"rpc:{exc.code().name}"
    return type(exc).__name__
