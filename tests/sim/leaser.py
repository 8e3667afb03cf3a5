"""A lease client in the simulated world, and the checks on when its leases end.

A few leases are granted through the meta range's leader during the safety phase, each kept
alive (a keep-alive every third of its TTL, asked of whichever node leads the meta range)
for a while, then left to expire. A keep-alive reaches its node and its answer the client
after a network delay.

Each lease gets a key (``lease-key/<id>``) put with it once granted.

Checks: a lease ends (its ``LeaseRevoke`` applied anywhere, not asked by the client) no
earlier than one TTL of real time after the last keep-alive (or the grant) the client *sent*
and had answered, as a client counts its lease's life (``lease-early``); every lease whose
keep-alives stopped has ended, and been detached everywhere, by the end of the liveness
phase (``lease-never-ends``); then its key is gone from every node of the healed core
(``lease-key-kept``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from cluster import META_RANGE_ID
from kvstore.model import Invalid, KvStateMachine, Put, PutResult, RequestId
from kvstore.model.commands import (
    ApplyResult,
    LeaseGone,
    LeaseGrant,
    LeaseGranted,
    LeaseRevoked,
    LeasesForgotten,
)
from kvstore.model.node import Accepted, NotLeaseholder
from paxos import NodeId
from tests.sim.world import World

LEASES = 2  # each keeps the meta group awake while it lives: two cost a tenth of a seed's time
TTL_MS = (200, 1_500)
ONE_WAY_US = 500  # client <-> node
RETRY_US = 20_000
FIRST_ID = 900_000
LEASE_CLIENT_ID = 77_000_001  # the request ids of its puts (each lease's key once)
PUT_TRIES_MAX = 200


@dataclass
class SimLease:
    lease_id: int
    ttl_ms: int
    keep_until_us: int  # keep-alives stop being sent after this
    granted: bool = False
    valid_from_us: int = -1  # send time of the newest answered grant or keep-alive
    ended_at_us: int | None = None
    forgotten: bool = False  # the meta range applied LeasesEnded: detached everywhere
    key_written: bool = False  # its key's put with the lease was acknowledged

    @property
    def key(self) -> bytes:
        return b"lease-key/%d" % self.lease_id


class SimLeaser:
    def __init__(self, world: World, rng: random.Random, window: tuple[int, int]) -> None:
        self._world = world
        self._rng = rng
        self._window = window
        self._leases: dict[int, SimLease] = {}
        world.on_meta_applied = self._meta_applied
        self.on_granted: Callable[[SimLease], None] | None = None  # the lock client's cue

    @property
    def ended(self) -> int:
        return sum(1 for lease in self._leases.values() if lease.ended_at_us is not None)

    def start(self) -> None:
        for i in range(LEASES):
            at = self._rng.randrange(*self._window)
            ttl = self._rng.randrange(*TTL_MS)
            lease = SimLease(FIRST_ID + i, ttl, at + self._rng.randrange(0, 4 * ttl * 1000))
            self._leases[lease.lease_id] = lease
            self._world.schedule(at, self._grant, lease)

    # ------------------------------------------------------------------ the client

    def _grant(self, lease: SimLease) -> None:
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

    def _granted(self, lease: SimLease, sent: int, answer: object) -> None:
        world = self._world
        if isinstance(answer, LeaseGranted) or (
            isinstance(answer, Invalid) and "exists" in answer.reason
        ):
            if not lease.granted:
                lease.granted = True
                lease.valid_from_us = sent
                self._next_keep_alive(lease)
                self._put_key(lease, tries=1)
                if self.on_granted is not None:
                    self.on_granted(lease)
            return
        world.schedule(world.now_us + RETRY_US, self._grant, lease)  # dropped: again

    def _put_key(self, lease: SimLease, tries: int) -> None:
        """Attach a key to the lease (retried, as a client does, with the same request id
        until answered: once the lease ended in its range, ``LeaseGone``)."""
        world = self._world
        if tries > PUT_TRIES_MAX:
            return
        group = world.group_of(lease.key)
        v = world.leader(group)
        if v is None:
            world.schedule(world.now_us + RETRY_US, self._put_key, lease, tries + 1)
            return
        token = world.new_token()
        world.answer_to[token] = lambda answer: self._put_answered(lease, tries, answer)
        request = RequestId(LEASE_CLIENT_ID, lease.lease_id)
        command = Put(request, lease.key, b"held", lease.lease_id)
        if not isinstance(world.submit(v, group, command, token), Accepted):
            world.answer_to.pop(token, None)
            world.schedule(world.now_us + RETRY_US, self._put_key, lease, tries + 1)

    def _put_answered(self, lease: SimLease, tries: int, answer: object) -> None:
        if isinstance(answer, PutResult):
            lease.key_written = True
        elif not isinstance(answer, LeaseGone):
            self._world.schedule(self._world.now_us + RETRY_US, self._put_key, lease, tries + 1)

    def _next_keep_alive(self, lease: SimLease) -> None:
        at = self._world.now_us + lease.ttl_ms * 1000 // 3
        if at <= lease.keep_until_us and lease.ended_at_us is None:
            self._world.schedule(at, self._keep_alive, lease)

    def _keep_alive(self, lease: SimLease) -> None:
        world = self._world
        v = world.leader(META_RANGE_ID)
        if v is None:
            world.schedule(world.now_us + RETRY_US, self._keep_alive, lease)
            return
        sent = world.now_us
        world.schedule(sent + ONE_WAY_US, self._arrives, lease, v, sent)

    def _arrives(self, lease: SimLease, v: NodeId, sent: int) -> None:
        world = self._world
        sim = world.nodes[v]
        if sim.node is None or not sim.running or sim.paused:
            world.schedule(world.now_us + RETRY_US, self._keep_alive, lease)
            return
        answer = sim.node.lease_keep_alive(lease.lease_id)
        world.drain(v)  # a keep-alive may wake the meta group
        world.schedule(world.now_us + ONE_WAY_US, self._answered, lease, sent, answer)

    def _answered(self, lease: SimLease, sent: int, answer: int | NotLeaseholder | None) -> None:
        if isinstance(answer, NotLeaseholder):
            self._world.schedule(self._world.now_us + RETRY_US, self._keep_alive, lease)
            return
        if answer is None:
            return  # ended: nothing more to keep alive
        lease.valid_from_us = max(lease.valid_from_us, sent)
        self._next_keep_alive(lease)

    # ------------------------------------------------------------------ the checks

    def _meta_applied(self, v: NodeId, result: ApplyResult) -> None:
        if isinstance(result, LeasesForgotten):
            for lease_id in result.lease_ids:
                if lease_id in self._leases:
                    self._leases[lease_id].forgotten = True
            return
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
        return all(not lease.granted or lease.forgotten for lease in self._leases.values())

    def finish(self, core: list[NodeId]) -> None:
        """After the liveness phase: every granted lease left to expire has ended and was
        detached everywhere, and the key put with it is gone from every core node."""
        world = self._world
        for lease in self._leases.values():
            if lease.granted and (lease.ended_at_us is None or not lease.forgotten):
                world.fail(
                    "lease-never-ends",
                    f"lease {lease.lease_id} (TTL {lease.ttl_ms} ms) still live at the end"
                    if lease.ended_at_us is None
                    else f"lease {lease.lease_id} ended but was never detached everywhere",
                )
                continue
            if not lease.key_written:
                continue
            group = world.group_of(lease.key)
            for v in core:
                sim = world.nodes[v]
                if sim.node is None or not sim.node.hosts(group) or sim.node.awaiting(group):
                    continue
                engine = sim.disk.kv.engine(group)
                machine = KvStateMachine(engine, initial=sim.node.descriptor(group))
                if machine.get(lease.key) is not None:
                    world.fail(
                        "lease-key-kept",
                        f"n{v}: {lease.key!r} is still there after its lease"
                        f" {lease.lease_id} ended and was detached everywhere",
                    )
