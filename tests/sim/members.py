"""Nodes that join and leave, in the schedule of the seeds that draw spare nodes: what
``kvstore serve --join``, ``node drain``, ``node replace`` and ``node remove`` do, while
clients write, ranges split, merge and move, and the nemesis injects faults.

Drawn from a stream of its own (``sub_rng(seed, "node_events")``), so every other draw is
what it would be without it.

- **Joins.** The spare nodes are down at first. Each joins early, in id order: the meta
  range registers it (``AddNode``, retried until answered, as a join is), and it starts.
  The id meta gives must be the node's own: the floor is the node's id, and a retried join
  gets its first id again.
- **Drains and replacements.** A node in service (a meta replica too: its other replicas
  move) has every range replica it holds moved off, to any node of its datacenter
  (``drain``) or to one spare (``replace``), range by range, again and again as ranges
  split, until it holds none or time runs out. The node may be crashed, paused or cut off
  meanwhile (a replacement of a node that is only partitioned).
- **Removals.** A spare is drained, then removed from meta's node table (``RemoveNode``) once
  it holds no replica of a range, and stops for good. A removed node is not in service: no
  fault restarts it, and the liveness phase heals the others.

At the end, the meta leader's node table must be exactly the joined spares not removed
(``node-table`` findings; a removal asked as time ran out and not answered may be either).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from kvstore.model import RequestId
from kvstore.model.commands import AddNode, NodeAdded, NodeRemoved, RemoveNode
from kvstore.model.node import Accepted
from kvstore.model.state_machine import KvStateMachine
from paxos import NodeId
from tests.sim.mover import Mover
from tests.sim.world import META_RANGE_ID, World

JOINS_US = (50_000, 1_000_000)  # when each spare asks to join
EVENTS = (0, 1, 1, 2)  # drains, replacements and removals per seed
KINDS = ("drain", "replace", "remove")
RETRY_US = 150_000
ANSWER_US = 1_000_000  # a proposal not answered by then is proposed again
DRAIN_EVERY_US = 300_000  # how often a drain looks again for ranges left on its node


class Membership:
    def __init__(
        self, world: World, rng: random.Random, window_us: tuple[int, int], mover: Mover
    ) -> None:
        self._world = world
        self._rng = rng
        self._mover = mover
        self._window = window_us
        self.spares = [v for v in world.node_ids if v not in world.voters]
        self._join_at = sorted(rng.randrange(*JOINS_US) for _ in self.spares)
        count = rng.choice(EVENTS) if self.spares else 0
        self._events = sorted(
            (rng.randrange(window_us[0] + 1_000_000, window_us[1]), rng.choice(KINDS))
            for _ in range(count)
        )
        self.joined: list[NodeId] = []
        self.removed: list[NodeId] = []
        self._removing: set[NodeId] = set()  # asked of meta, no answer yet
        self.drained = 0  # replicas moved off a node by its drain

    def start(self) -> None:
        if self.spares:
            self._world.schedule(self._join_at[0], self._join, 0)
        for at_us, kind in self._events:
            self._world.schedule(at_us, self._event, kind)

    # ------------------------------------------------------------------ joins

    def _join(self, index: int) -> None:
        """Ask meta to register spare ``index`` (in id order, so each gets its own id)."""
        world = self._world
        v = self.spares[index]
        command = AddNode(
            RequestId(0, 0), v, f"d{world.nodes[v].dc}", world.cluster.node(v).address
        )
        self._ask_meta(command, lambda answer: self._join_answered(index, answer))

    def _ask_meta(self, command: AddNode | RemoveNode, answered: Callable[[object], None]) -> None:
        """Propose ``command`` at meta's leader; ``answered`` gets the result, or None when
        there is no leader, the proposal was refused, or no answer came in time (the node
        crashed, say): the caller retries (both commands are idempotent)."""
        world = self._world
        leader = world.leader(META_RANGE_ID)
        if leader is not None:
            token = world.new_token()
            world.answer_to[token] = answered
            if isinstance(world.submit(leader, META_RANGE_ID, command, token), Accepted):
                world.schedule(world.now_us + ANSWER_US, self._no_answer, token)
                return
            world.answer_to.pop(token, None)
        world.schedule(world.now_us + RETRY_US, answered, None)

    def _no_answer(self, token: int) -> None:
        answered = self._world.answer_to.pop(token, None)
        if answered is not None:
            answered(None)

    def _join_answered(self, index: int, answer: object) -> None:
        world = self._world
        v = self.spares[index]
        if v in self.joined:
            return
        if not isinstance(answer, NodeAdded):
            self._join(index)  # not chosen, or not answered: again
            return
        if answer.node_id != v:
            world.fail("node-table", f"spare n{v} joined as node {answer.node_id}")
            return
        self.joined.append(v)
        world.join(v)
        if index + 1 < len(self.spares):
            at = max(world.now_us + 1, self._join_at[index + 1])
            world.schedule(at, self._join, index + 1)

    # ------------------------------------------------------------------ drains, removals

    def _event(self, kind: str) -> None:
        world, rng = self._world, self._rng
        spares = [v for v in self.joined if v in world.in_service and v not in world.leaving]
        if kind == "remove":
            if not spares:
                return
            node = rng.choice(spares)
            world.leaving.add(node)
            to = None
        else:
            candidates = [v for v in world.in_service if v not in world.leaving]
            if not candidates:
                return
            node = rng.choice(candidates)
            to = None
            if kind == "replace":
                same_dc = [
                    v for v in spares if v != node and world.nodes[v].dc == world.nodes[node].dc
                ]
                if not same_dc:
                    return
                to = rng.choice(same_dc)
        world.trace(0, "nemesis", f"{kind} n{node}" + (f" to n{to}" if to else ""))
        self._drain(node, to, kind == "remove", self._window[1])

    def _drain(self, node: NodeId, to: NodeId | None, remove: bool, deadline_us: int) -> None:
        """Move every range replica off ``node`` (to ``to``, if given); then remove it."""
        world = self._world
        holding = [d for d in world.truth.values() if node in d.replicas]
        if not holding and not self._mover.moving_onto(node):
            if remove:
                self._remove(node, deadline_us)
            return
        if world.now_us >= deadline_us or node in world.removed:
            world.leaving.discard(node)  # it keeps what it holds: not removed
            return
        for d in sorted(holding, key=lambda d: d.start):  # (none: a move onto it goes on)
            if not self._mover.moving(d.range_id) and self._mover.move(d, [node], to):
                self.drained += 1
        world.schedule(world.now_us + DRAIN_EVERY_US, self._drain, node, to, remove, deadline_us)

    def _remove(self, node: NodeId, deadline_us: int) -> None:
        if self._world.now_us >= deadline_us:
            self._world.leaving.discard(node)
            return
        self._removing.add(node)
        command = RemoveNode(RequestId(0, 0), node)
        self._ask_meta(command, lambda answer: self._removed(node, deadline_us, answer))

    def _removed(self, node: NodeId, deadline_us: int, answer: object) -> None:
        if node in self.removed:
            return
        if not isinstance(answer, NodeRemoved):
            self._remove(node, deadline_us)
            return
        self.removed.append(node)
        self._removing.discard(node)
        self._world.remove(node)

    # ------------------------------------------------------------------ the check

    def finish(self, core: list[NodeId]) -> None:
        """Meta's node table, on the core's meta leader: the joined spares not removed."""
        world = self._world
        leader = world.leader(META_RANGE_ID)
        if leader is None or leader not in core or not self.spares:
            return
        sim = world.nodes[leader]
        machine = KvStateMachine(sim.disk.kv.engine(META_RANGE_ID))
        table = {node_id for node_id, _, _ in machine.joined_nodes()}
        expected = {v for v in self.joined if v not in self.removed}
        # A removal asked when time ran out may have been chosen unanswered: either way.
        if table - expected or not expected - table <= self._removing:
            world.fail(
                "node-table", f"meta lists nodes {sorted(table)}, expected {sorted(expected)}"
            )
