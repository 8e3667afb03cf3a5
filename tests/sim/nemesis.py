"""Faults, chosen by the seed (swarm testing: the seed also picks *which* faults and how hard).

Every ``interval`` the nemesis picks one enabled action: partitions (random halves, one node,
a whole DC, the leader, one-way links), message loss and duplication, crash with a later
restart, a wiped disk (crash, lose every durable byte, restart: the replica must rejoin
before it votes), pause with a later resume (longer than the lease and election timeouts),
leadership transfer, and killing every replica at once. ``stop`` ends the schedule;
``heal_core`` then heals a random quorum (restart, resume, reconnect) and leaves the rest as
they are, so the liveness phase proves progress needs only a healthy majority of voters (a
replica still rejoining is not one: then every replica is healed).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from paxos import NodeId, quorum_size
from tests.sim.world import World

FAULTS = ("partition", "loss", "duplicate", "crash", "pause", "transfer", "one_way", "kill_all")


@dataclass
class NemesisPlan:
    enabled: tuple[str, ...]
    interval_us: tuple[int, int]
    duration_us: tuple[int, int]
    loss_permille: int
    duplicate_permille: int

    @staticmethod
    def draw(rng: random.Random) -> NemesisPlan:
        enabled = tuple(f for f in FAULTS if rng.random() < 0.55) or (rng.choice(FAULTS),)
        plan = NemesisPlan(
            enabled=enabled,
            interval_us=(200_000, rng.choice((800_000, 1_500_000, 2_500_000))),
            duration_us=(150_000, rng.choice((600_000, 1_500_000, 3_000_000))),
            loss_permille=rng.choice((20, 50, 150, 300)),
            duplicate_permille=rng.choice((20, 100, 300)),
        )
        # Drawn last, so adding it left every other draw of every seed as it was.
        if rng.random() < 0.35:
            plan.enabled = (*plan.enabled, "wipe")
        return plan


class Nemesis:
    def __init__(self, world: World, rng: random.Random, plan: NemesisPlan) -> None:
        self._world = world
        self._rng = rng
        self.plan = plan
        self._active = True
        self.injected = 0

    def start(self) -> None:
        self._schedule_next()

    def stop(self) -> None:
        self._active = False

    def _after(self, lo_hi: tuple[int, int]) -> int:
        return self._world.now_us + self._rng.randrange(lo_hi[0], lo_hi[1] + 1)

    def _schedule_next(self) -> None:
        self._world.schedule(self._after(self.plan.interval_us), self._act)

    def _act(self) -> None:
        if not self._active:
            return
        self._schedule_next()
        world, rng = self._world, self._rng
        fault = rng.choice(self.plan.enabled)
        voters = list(world.in_service)  # joined spares too: a node a replica moves to may fail
        self.injected += 1
        until = self._after(self.plan.duration_us)
        net = world.network.faults
        if fault == "partition":
            kind = rng.choice(("halves", "node", "dc", "leader"))
            side = self._side(kind, voters)
            for a in voters:
                for b in voters:
                    if (a in side) != (b in side):
                        net.blocked.add((a, b))
            world.trace(0, "nemesis", f"partition {kind} {sorted(side)}")
            world.schedule(until, self._heal_links)
        elif fault == "one_way":
            for _ in range(rng.randrange(1, len(voters) + 1)):
                a, b = rng.sample(voters, 2)
                net.blocked.add((a, b))
            world.trace(0, "nemesis", f"one_way {sorted(net.blocked)}")
            world.schedule(until, self._heal_links)
        elif fault == "loss":
            net.loss_permille = self.plan.loss_permille
            world.trace(0, "nemesis", f"loss {net.loss_permille}")
            world.schedule(until, self._clear, "loss")
        elif fault == "duplicate":
            net.duplicate_permille = self.plan.duplicate_permille
            world.trace(0, "nemesis", f"duplicate {net.duplicate_permille}")
            world.schedule(until, self._clear, "duplicate")
        elif fault == "crash":
            target = self._target(voters)
            world.crash(target)
            world.schedule(until, self._restart, target)
        elif fault == "wipe":
            target = self._target(voters)
            # One lost disk at a time: two of three would lose acknowledged writes for real,
            # which no protocol can prevent (the rejoin rule then waits forever instead).
            if not [v for v in world.rejoining() if v != target]:
                world.wipe(target)
                world.schedule(until, self._restart, target)
        elif fault == "kill_all":
            for v in voters:
                world.crash(v)
                world.schedule(self._after((50_000, 400_000)), self._restart, v)
        elif fault == "pause":
            target = self._target(voters)
            world.pause(target)
            world.schedule(until, world.resume, target)
        elif fault == "transfer":
            group = rng.choice(world.groups)
            leader = world.leader(group)
            if leader is not None:
                to = rng.choice([v for v in voters if v != leader])
                world.transfer(leader, group, to)
                world.trace(leader, "nemesis", f"transfer g{group} to n{to}")

    def _side(self, kind: str, voters: list[NodeId]) -> set[NodeId]:
        world, rng = self._world, self._rng
        if kind == "node":
            return {rng.choice(voters)}
        if kind == "dc":
            dc = rng.randrange(world.params.dcs)
            return {v for v in voters if world.nodes[v].dc == dc}
        if kind == "leader":
            leader = world.leader(rng.choice(world.groups))
            return {leader} if leader is not None else {rng.choice(voters)}
        return set(rng.sample(voters, rng.randrange(1, len(voters))))

    def _target(self, voters: list[NodeId]) -> NodeId:
        leader = self._world.leader(self._rng.choice(self._world.groups))
        if leader is not None and self._rng.random() < 0.4:
            return leader
        return self._rng.choice(voters)

    def _heal_links(self) -> None:
        if self._active:
            self._world.network.faults.blocked.clear()
            self._world.trace(0, "nemesis", "heal links")

    def _clear(self, what: str) -> None:
        if not self._active:
            return
        faults = self._world.network.faults
        if what == "loss":
            faults.loss_permille = 0
        else:
            faults.duplicate_permille = 0

    def _restart(self, v: NodeId) -> None:
        if self._active and not self._world.nodes[v].up and v not in self._world.removed:
            self._world.start(v)

    def heal_core(self) -> list[NodeId]:
        """Stop faulting; heal a random quorum fully; cut the others off as they are."""
        self.stop()
        world = self._world
        voters = list(world.in_service)
        core = sorted(self._rng.sample(voters, quorum_size(len(voters))))
        if world.params.spares:
            # Replicas moved: a random majority of the nodes need not hold a majority of
            # each range's replicas, so every node is healed.
            core = voters
        elif world.rejoining():
            core = voters  # a replica that may not vote yet needs every other voter to rejoin
        elif world.awaiting_base():
            core = voters  # a new group's base may be held only outside a random quorum
        faults = world.network.faults
        faults.loss_permille = 0
        faults.duplicate_permille = 0
        faults.blocked.clear()
        for v in voters:
            if v in core:
                if not world.nodes[v].up:
                    world.start(v)
                world.resume(v)
            else:
                for other in voters:
                    if other != v:
                        faults.blocked.add((v, other))
                        faults.blocked.add((other, v))
        world.trace(0, "nemesis", f"heal core {core}")
        return core
