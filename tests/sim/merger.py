"""Merges in every seed's schedule: two neighbours become one while clients write and read,
splits happen and the nemesis injects faults.

Drawn from a stream of its own (``sub_rng(seed, "merges")``), so every other draw is what it
would be without it. A merge is the admin service's two steps, as a coordinator that may
be slow or retry: ``Freeze`` at the right range's leader, until some replica applied it
(its slot read from that replica's state, as the proposer would hear it); then ``Merge``
at the leader of whatever range ends where the frozen one starts (a split of the left one
meanwhile changes which), until the truth shows the merge. A frozen range is unavailable
until merged, so the coordinator keeps trying into the liveness phase: a merge that never
finishes shows up as clients that never finish.

Automatic merges come from the nodes (``Effects.merges_wanted``, in the seeds that draw a
split size): a node leading a small, quiet range asks, and the merger merges it into the
left range the node named, as the runtime's admin service does.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from cluster.ranges import RangeDescriptor
from cluster.replica_change import colocating_step
from kvstore.model import KvStateMachine, RequestId
from kvstore.model.commands import Freeze, Merge, Reconfigure
from paxos import NodeId
from tests.sim.world import World

MERGES = (1, 2)  # per seed, during the safety phase
RETRY_US = 150_000


class Merger:
    def __init__(
        self, world: World, rng: random.Random, window_us: tuple[int, int], merges: int = 0
    ) -> None:
        self._world = world
        self._rng = rng
        count = max(merges, 0) if merges else rng.randint(*MERGES)
        self._times = sorted(rng.randrange(*window_us) for _ in range(count))
        self.frozen = 0
        self.merged = 0
        self.automatic = 0
        self._active: set[int] = set()  # right ranges being merged: frozen until done
        # Left ranges being moved onto a frozen right one's replicas: (generation, new
        # range id, replicas), one id per step.
        self._colocating: dict[int, tuple[int, int, tuple[int, ...]]] = {}
        # Whether a replica move of a range is under way (``tests.sim.mover``; set by the
        # runner): such a range is not merged.
        self.moving: Callable[[int], bool] = lambda _range_id: False
        world.on_merge_wanted = self._wanted
        world.on_merge_unfinished = self._unfinished

    def start(self) -> None:
        for at_us in self._times:
            self._world.schedule(at_us, self._begin)

    def _begin(self) -> None:
        world = self._world
        ranges = sorted(world.truth.values(), key=lambda d: d.start)
        if len(ranges) < 2:
            return
        right = self._rng.choice(ranges[1:])
        if not self._colocated(right):
            return  # a merge needs both ranges on the same replicas (a move first, else)
        world.trace(0, "nemesis", f"merge g{right.range_id} into its left neighbour")
        self._freeze(right.range_id)

    def _colocated(self, right: RangeDescriptor) -> bool:
        """Both on the same replicas, and neither being moved."""
        left = next((d for d in self._world.truth.values() if d.end == right.start), None)
        return (
            left is not None
            and sorted(left.replicas) == sorted(right.replicas)
            and not self.moving(left.range_id)
            and not self.moving(right.range_id)
        )

    def busy(self, range_id: int) -> bool:
        """A merge involves the range: it is frozen, or the left neighbour of one that is
        (a replica move of either would leave the frozen one unmergeable)."""
        world = self._world
        for right_id in self._active:
            right = world.truth.get(right_id)
            if right_id == range_id or (
                right is not None
                and (left := world.truth.get(range_id)) is not None
                and left.end == right.start
            ):
                return True
        return False

    def _wanted(self, v: int, left_id: int) -> None:
        # Not from inside the node's turn: proposing is an input of its own.
        self._world.schedule(self._world.now_us + 1, self._auto_merge, left_id)

    def _unfinished(self, right_id: int) -> None:
        """A node leading a frozen range saw no merge follow: finish it, unless this
        coordinator is still at it (it never gives up)."""
        if right_id not in self._active:
            self._world.schedule(self._world.now_us + 1, self._freeze, right_id)

    def _auto_merge(self, left_id: int) -> None:
        world = self._world
        left = world.truth.get(left_id)
        right = next((d for d in world.truth.values() if left and d.start == left.end), None)
        if left is None or right is None or not left.end:
            return
        if right.range_id not in self._active and not self._colocated(right):
            return
        world.trace(0, "auto-merge", f"g{right.range_id} into g{left_id}")
        self.automatic += 1
        self._freeze(right.range_id)

    def idle(self) -> bool:
        """No merge in progress (a frozen range serves nothing until it is merged)."""
        return not self._active

    def _freeze(self, range_id: int) -> None:
        world = self._world
        if range_id not in world.truth:
            self._active.discard(range_id)
            return  # merged meanwhile (by an earlier coordinator)
        self._active.add(range_id)
        frozen = self._frozen_at(range_id)
        if frozen is not None:
            self.frozen += 1
            self._merge(*frozen)
            return
        leader = world.leader(range_id)
        if leader is not None:
            world.submit(leader, range_id, Freeze(RequestId(0, 0)), 0)
        world.schedule(world.now_us + RETRY_US, self._freeze, range_id)

    def _frozen_at(self, range_id: int) -> tuple[RangeDescriptor, int] | None:
        """The frozen range and its freeze slot, from any replica that applied the freeze."""
        for sim in self._world.nodes.values():
            node = sim.node
            if node is None or not node.hosts(range_id):
                continue
            machine = KvStateMachine(sim.disk.kv.engine(range_id))
            if machine.frozen_slot and machine.descriptor is not None:
                return machine.descriptor, machine.frozen_slot
        return None

    def _merge(self, right: RangeDescriptor, frozen_slot: int) -> None:
        world = self._world
        if right.range_id not in world.truth:
            self.merged += 1
            self._active.discard(right.range_id)
            return
        left = next((d for d in world.truth.values() if d.end == right.start), None)
        if left is not None:
            leader = world.leader(left.range_id)
            if leader is not None:
                if sorted(left.replicas) != sorted(right.replicas):
                    self._colocate(leader, left, right)
                else:
                    merge = Merge(RequestId(0, 0), right, frozen_slot)
                    world.submit(leader, left.range_id, merge, 0)
        world.schedule(world.now_us + RETRY_US, self._merge, right, frozen_slot)

    def _colocate(self, leader: NodeId, left: RangeDescriptor, right: RangeDescriptor) -> None:
        """The left range changed replicas after the right one froze (a move proposed
        before the freeze, chosen after it: sim seed 10291), and a frozen range changes
        none: move the left range onto the frozen one's replicas, a step at a time
        (``colocating_step``), as the admin service does."""
        world = self._world
        known = self._colocating.get(left.range_id)
        if known is None or known[0] != left.generation:
            dc_of = {int(v): str(sim.dc) for v, sim in world.nodes.items()}
            add, remove = colocating_step(left.replicas, right.replicas, dc_of)
            replicas = tuple(sorted({*left.replicas, *add} - set(remove)))
            known = (left.generation, world.new_range_id(), replicas)
            self._colocating[left.range_id] = known
            world.trace(0, "nemesis", f"colocate g{left.range_id} -> {list(replicas)}")
        _, new_id, replicas = known
        disks = tuple((r, world.nodes[NodeId(r)].disk.incarnation) for r in replicas)
        command = Reconfigure(RequestId(0, 0), new_id, replicas, disks)
        world.submit(leader, left.range_id, command, 0)
