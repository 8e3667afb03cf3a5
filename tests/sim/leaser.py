"""A lease client in the simulated world, and the checks on when its leases end.

A few leases are granted through the meta range's leader during the safety phase, each kept
alive (a keep-alive every third of its TTL, asked of whichever node leads the meta range)
for a while, then left to expire. A keep-alive reaches its node and its answer the client
after a network delay.

Checks: a lease ends (its ``LeaseRevoke`` applied anywhere, not asked by the client) no
earlier than one TTL of real time after the last keep-alive (or the grant) the client *sent*
and had answered, as a client counts its lease's life (``lease-early``); every lease whose
keep-alives stopped has ended by the end of the liveness phase (``lease-never-ends``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from cluster import META_RANGE_ID
from kvstore.model import Invalid, RequestId
from kvstore.model.commands import ApplyResult, LeaseGrant, LeaseGranted, LeaseRevoked
from kvstore.model.node import Accepted, NotLeaseholder
from paxos import NodeId
from tests.sim.world import World

LEASES = 4
TTL_MS = (200, 1_500)
ONE_WAY_US = 500  # client <-> node
RETRY_US = 20_000
FIRST_ID = 900_000


@dataclass
class _Lease:
    lease_id: int
    ttl_ms: int
    keep_until_us: int  # keep-alives stop being sent after this
    granted: bool = False
    valid_from_us: int = -1  # send time of the newest answered grant or keep-alive
    ended_at_us: int | None = None


class SimLeaser:
    def __init__(self, world: World, rng: random.Random, window: tuple[int, int]) -> None:
        self._world = world
        self._rng = rng
        self._window = window
        self._leases: dict[int, _Lease] = {}
        world.on_meta_applied = self._meta_applied

    @property
    def ended(self) -> int:
        return sum(1 for lease in self._leases.values() if lease.ended_at_us is not None)

    def start(self) -> None:
        for i in range(LEASES):
            at = self._rng.randrange(*self._window)
            ttl = self._rng.randrange(*TTL_MS)
            lease = _Lease(FIRST_ID + i, ttl, at + self._rng.randrange(0, 4 * ttl * 1000))
            self._leases[lease.lease_id] = lease
            self._world.schedule(at, self._grant, lease)

    # ------------------------------------------------------------------ the client

    def _grant(self, lease: _Lease) -> None:
        world = self._world
        v = world.leader(META_RANGE_ID)
        if v is None or lease.granted:
            if not lease.granted:
                world.schedule(world.now_us + RETRY_US, self._grant, lease)
            return
        sent = world.now_us
        token = world.new_token()
        world.answer_to[token] = lambda answer: self._granted(lease, sent, answer)
        command = LeaseGrant(RequestId(0, 0), lease.lease_id, lease.ttl_ms)
        if not isinstance(world.submit(v, META_RANGE_ID, command, token), Accepted):
            world.answer_to.pop(token, None)
            world.schedule(world.now_us + RETRY_US, self._grant, lease)

    def _granted(self, lease: _Lease, sent: int, answer: object) -> None:
        world = self._world
        if isinstance(answer, LeaseGranted) or (
            isinstance(answer, Invalid) and "exists" in answer.reason
        ):
            if not lease.granted:
                lease.granted = True
                lease.valid_from_us = sent
                self._next_keep_alive(lease)
            return
        world.schedule(world.now_us + RETRY_US, self._grant, lease)  # dropped: again

    def _next_keep_alive(self, lease: _Lease) -> None:
        at = self._world.now_us + lease.ttl_ms * 1000 // 3
        if at <= lease.keep_until_us and lease.ended_at_us is None:
            self._world.schedule(at, self._keep_alive, lease)

    def _keep_alive(self, lease: _Lease) -> None:
        world = self._world
        v = world.leader(META_RANGE_ID)
        if v is None:
            world.schedule(world.now_us + RETRY_US, self._keep_alive, lease)
            return
        sent = world.now_us
        world.schedule(sent + ONE_WAY_US, self._arrives, lease, v, sent)

    def _arrives(self, lease: _Lease, v: NodeId, sent: int) -> None:
        world = self._world
        sim = world.nodes[v]
        if sim.node is None or not sim.running or sim.paused:
            world.schedule(world.now_us + RETRY_US, self._keep_alive, lease)
            return
        answer = sim.node.lease_keep_alive(lease.lease_id)
        world.drain(v)  # a keep-alive may wake the meta group
        world.schedule(world.now_us + ONE_WAY_US, self._answered, lease, sent, answer)

    def _answered(self, lease: _Lease, sent: int, answer: int | NotLeaseholder | None) -> None:
        if isinstance(answer, NotLeaseholder):
            self._world.schedule(self._world.now_us + RETRY_US, self._keep_alive, lease)
            return
        if answer is None:
            return  # ended: nothing more to keep alive
        lease.valid_from_us = max(lease.valid_from_us, sent)
        self._next_keep_alive(lease)

    # ------------------------------------------------------------------ the checks

    def _meta_applied(self, v: NodeId, result: ApplyResult) -> None:
        if not isinstance(result, LeaseRevoked) or not result.existed:
            return
        lease = self._leases.get(result.lease_id)
        if lease is None or lease.ended_at_us is not None:
            return
        now = self._world.now_us
        lease.ended_at_us = now
        if lease.valid_from_us >= 0 and now < lease.valid_from_us + lease.ttl_ms * 1000:
            self._world.fail(
                "lease-early",
                f"lease {lease.lease_id} (TTL {lease.ttl_ms} ms) ended at {now} us, applied on"
                f" n{v}: {now - lease.valid_from_us} us after the last keep-alive its client"
                f" sent and had answered",
            )

    def all_ended(self) -> bool:
        """Every granted lease ended (those still kept alive stop by the safety phase's end)."""
        return all(
            not lease.granted or lease.ended_at_us is not None for lease in self._leases.values()
        )

    def finish(self) -> None:
        """After the liveness phase: every granted lease left to expire has ended."""
        for lease in self._leases.values():
            if lease.granted and lease.ended_at_us is None:
                self._world.fail(
                    "lease-never-ends",
                    f"lease {lease.lease_id} (TTL {lease.ttl_ms} ms) still live at the end",
                )
