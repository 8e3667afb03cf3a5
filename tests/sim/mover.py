"""Replica moves in the schedule of the seeds that draw spare nodes: a shard's replica set
changes (``Reconfigure``, a stop sign) while clients write and read, splits and merges
happen and the nemesis injects faults.

Drawn from a stream of its own (``sub_rng(seed, "membership")``), so every other draw is
what it would be without it. A move picks a range of the true range map and one replica of
it (in a range of five, sometimes two: both change in one step, as the stop sign allows
while a majority of the new set holds the range already), and replaces each
with a node of the same datacenter that holds no replica of the range, as ``kvstore replica
move`` and ``node replace`` do. The node replaced may be crashed, paused or only cut off:
the move does not wait for it (the replacement of a node that is partitioned, not dead).
A range a merge involves is not moved (a frozen range can only be merged, which needs
both ranges on the same replicas). Sometimes the leader to be removed first hands
leadership to a replica that stays, as the admin service does; otherwise it proposes its
own removal.

Proposed at the range's leader of the moment, with a new range id from the world's
allocator (the meta range's, in the real cluster), until the truth shows the range ended
(by this move or another) or the attempts run out.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from cluster.ranges import RangeDescriptor
from kvstore.model import RequestId
from kvstore.model.commands import Reconfigure
from paxos import NodeId
from tests.sim.world import World

MOVES = (1, 3)  # per seed, during the safety phase
SPARES_PERMILLE = 500  # seeds with a spare node in each datacenter, and moves
ATTEMPTS = 20
RETRY_US = 150_000
TWO_AT_ONCE_PERMILLE = 250
TRANSFER_FIRST_PERMILLE = 500


def draws_spares(rng: random.Random) -> bool:
    return rng.randrange(1000) < SPARES_PERMILLE


class Mover:
    def __init__(
        self,
        world: World,
        rng: random.Random,
        window_us: tuple[int, int],
        busy: Callable[[int], bool],
        moves: int = 0,
        *,
        concurrent: bool = False,
    ) -> None:
        """``busy``: whether a merge involves a range (it is not moved then); ``moves``: how
        many (0: as drawn); ``concurrent``: each move proposes a second, different change
        of the same range at the same moment (only one may take effect)."""
        self._world = world
        self._busy = busy
        self._rng = rng
        self._concurrent = concurrent
        count = moves or (rng.randint(*MOVES) if world.params.spares else 0)
        self._times = sorted(rng.randrange(*window_us) for _ in range(count))
        self.proposed = 0
        # The moves under way, by the successor's id each proposes: (range, replicas). Two
        # moves of one range may be under way at once (the schedule does not wait for one).
        self._moving: dict[int, tuple[int, tuple[int, ...]]] = {}
        # Every replica set proposed for a range that still lives: a proposal may yet be
        # chosen after its move gave up (a later leader recovers it from an acceptor), so
        # a removal waits until the range ends (sim seed 14250: a second move of the range
        # hid the first's target, which landed on a node removed meanwhile).
        self._proposed: dict[int, set[tuple[int, ...]]] = {}
        self._last: RangeDescriptor | None = None  # the range a concurrent move goes to

    def moving(self, range_id: int) -> bool:
        """A move of the range is under way (a merge of it waits)."""
        return any(moved == range_id for moved, _ in self._moving.values())

    def moving_onto(self, node: NodeId) -> bool:
        """A move proposed may yet give ``node`` a replica (a removal waits for it): one
        under way, or one given up whose range has not ended."""
        for range_id in [r for r in self._proposed if r not in self._world.truth]:
            del self._proposed[range_id]  # ended: no proposal of it can take effect now
        return any(node in replicas for _, replicas in self._moving.values()) or any(
            node in replicas for proposed in self._proposed.values() for replicas in proposed
        )

    def start(self) -> None:
        for at_us in self._times:
            self._world.schedule(at_us, self._begin)

    def _begin(self, attempts: int = ATTEMPTS) -> None:
        if not self._move() and attempts > 1:
            # No node to move to yet (the spares have not joined): try again a little later.
            self._world.schedule(self._world.now_us + RETRY_US, self._begin, attempts - 1)
            return
        if self._concurrent:
            self._move()

    def _move(self) -> bool:
        world, rng = self._world, self._rng
        ranges = [
            d
            for d in sorted(world.truth.values(), key=lambda d: d.start)
            if not self._busy(d.range_id)
        ]
        if not ranges:
            return False
        d = rng.choice(ranges) if self._last is None else self._last
        self._last = d if self._concurrent and self._last is None else None
        replicas = list(d.replicas)
        # Two at once only where a majority of the new set stays (the state machine's rule).
        two = len(replicas) >= 5 and rng.randrange(1000) < TWO_AT_ONCE_PERMILLE
        return self.move(d, rng.sample(replicas, 2 if two else 1))

    def move(self, d: RangeDescriptor, leaving: list[int], to: NodeId | None = None) -> bool:
        """Replace the ``leaving`` replicas of range ``d``, each with ``to`` or a node of its
        datacenter in service that holds no replica of it; whether a move began."""
        world, rng = self._world, self._rng
        replicas = list(d.replicas)
        chosen = [r for r in replicas if r not in leaving]
        for out in leaving:
            dc = world.nodes[NodeId(out)].dc
            free = [
                v
                for v in world.in_service
                if v not in replicas
                and v not in chosen
                and v not in world.leaving
                and world.nodes[v].dc == dc
            ]
            if to is not None:
                free = [v for v in free if v == to]
            if not free:
                return False
            chosen.append(rng.choice(free))
        new_id = world.new_range_id()
        world.trace(
            0, "nemesis", f"move g{d.range_id} {sorted(leaving)} -> {sorted(chosen)} as g{new_id}"
        )
        transfer = rng.randrange(1000) < TRANSFER_FIRST_PERMILLE
        self._propose(d.range_id, d.generation, tuple(sorted(chosen)), new_id, transfer, ATTEMPTS)
        return True

    def _propose(  # noqa: PLR0917 - one move's state, carried between its attempts
        self,
        range_id: int,
        generation: int,
        replicas: tuple[int, ...],
        new_id: int,
        transfer: bool,
        attempts: int,
    ) -> None:
        world = self._world
        known = world.truth.get(range_id)
        if known is None or known.generation != generation or attempts <= 0 or self._busy(range_id):
            self._moving.pop(new_id, None)
            return  # ended (by this move, or another), split or merged meanwhile, or merging
        self._moving[new_id] = (range_id, replicas)
        leader = world.leader(range_id)
        if leader is not None:
            stays = [r for r in replicas if r in known.replicas]
            if transfer and leader not in replicas and stays:
                # Hand leadership to a replica that stays; propose once it leads.
                world.transfer(leader, range_id, NodeId(self._rng.choice(stays)))
            else:
                # The replicas with their disks as the proposer knows them (the transport's
                # hellos, in the runtime); a disk lost since then rejoins first.
                disks = tuple((r, world.nodes[NodeId(r)].disk.incarnation) for r in replicas)
                command = Reconfigure(RequestId(0, 0), new_id, replicas, disks)
                world.submit(leader, range_id, command, 0)
                self._proposed.setdefault(range_id, set()).add(replicas)
                self.proposed += 1
        world.schedule(
            world.now_us + RETRY_US,
            self._propose,
            range_id,
            generation,
            replicas,
            new_id,
            transfer,
            attempts - 1,
        )
