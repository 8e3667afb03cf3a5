"""Splits in every seed's schedule: the range map changes while clients write and read and
the nemesis injects faults.

Drawn from a stream of its own (``sub_rng(seed, "splits")``), so the nemesis's and the
workload's draws are what they would be without it. Each split picks a group of the true
range map and a key of the workload strictly inside it, and proposes ``Split`` to the
group's leader of the moment (a new range id from the world's allocator, standing in for
the meta range's). A split that meets no leader tries again a little later; one refused or
overtaken by another is simply a split that did not happen.

Automatic splits come from the nodes themselves: in the seeds that draw a split size
(``sub_rng(seed, "sharding")``), a node that leads a group past it asks (``Effects.
splits_wanted``) and the splitter proposes ``Split`` there at the group's halving key, as
the runtime's admin service does.
"""

from __future__ import annotations

import random

from kvstore.model import KvStateMachine, RequestId
from kvstore.model.commands import Split
from paxos import NodeId
from tests.sim.workload import KEYS
from tests.sim.world import World

SPLITS = (1, 4)  # per seed, during the safety phase
NO_SPLITS = -1  # a world of the Paxos layer alone: no manual and no automatic splits
ATTEMPTS = 20


class Splitter:
    def __init__(
        self, world: World, rng: random.Random, window_us: tuple[int, int], splits: int = 0
    ) -> None:
        self._world = world
        self._rng = rng
        count = max(splits, 0) if splits else rng.randint(*SPLITS)
        self._times = sorted(rng.randrange(*window_us) for _ in range(count))
        self.proposed = 0
        self.automatic = 0
        world.on_split_wanted = self._wanted

    def start(self) -> None:
        for at_us in self._times:
            self._world.schedule(at_us, self._split, ATTEMPTS)

    def _wanted(self, v: NodeId, group: int) -> None:
        # Not from inside the node's turn: proposing is an input of its own.
        self._world.schedule(self._world.now_us + 1, self._auto_split, v, group)

    def _auto_split(self, v: NodeId, group: int) -> None:
        world = self._world
        sim = world.nodes[v]
        node = sim.node
        if node is None or sim.paused or not node.hosts(group):
            return
        descriptor = node.descriptor(group)
        at = KvStateMachine(sim.disk.kv.engine(group), initial=descriptor).halving_key()
        if at is None or not descriptor.can_split_at(at):
            return
        new_id = world.new_range_id()
        world.trace(v, "auto-split", f"g{group} at {at!r} into g{new_id}")
        world.submit(v, group, Split(RequestId(0, 0), at, new_id), 0)
        self.automatic += 1

    def _split(self, attempts: int) -> None:
        world, rng = self._world, self._rng
        candidates = [
            (d, key)
            for d in sorted(world.truth.values(), key=lambda d: d.start)
            for key in KEYS
            if d.can_split_at(key)
        ]
        if not candidates:
            return
        descriptor, at = rng.choice(candidates)
        leader = world.leader(descriptor.range_id)
        if leader is None:
            if attempts > 1:
                world.schedule(world.now_us + 200_000, self._split, attempts - 1)
            return
        new_id = world.new_range_id()
        world.trace(leader, "nemesis", f"split g{descriptor.range_id} at {at!r} into g{new_id}")
        world.submit(leader, descriptor.range_id, Split(RequestId(0, 0), at, new_id), 0)
        self.proposed += 1
