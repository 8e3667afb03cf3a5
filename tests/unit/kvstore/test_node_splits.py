"""The node's split policy, driven by hand: a group it leads past ``[sharding]`` is asked
for once a second at most, then rests; a group it does not lead, or a small one, never."""

from __future__ import annotations

import random

from cluster import ClusterConfig, KeySpan, NodeSpec, Sharding, ShardSpec, initial_layout
from kvstore.model import MemoryStore, Put, RequestId
from kvstore.model.jobs import run_job
from kvstore.model.node import SPLIT_REST_S, GroupStart, Node
from paxos import DurableState, NullLogger, Role

TICKS_PER_S = 100  # tick_ms 10


def cluster(voters: tuple[int, ...], split_size_bytes: int) -> ClusterConfig:
    return ClusterConfig(
        name="t",
        tick_ms=10,
        datacenters=("d0",),
        nodes=tuple(NodeSpec(v, "d0", f"n:{v}") for v in voters),
        shards=(ShardSpec(1, KeySpan(b"", b""), voters, None),),
        sharding=Sharding(split_size_mb=split_size_bytes / (1 << 20)),
    )


class Driven:
    """One node, its disk jobs run at once on an in-memory store."""

    def __init__(self, config: ClusterConfig) -> None:
        self.store = MemoryStore()
        start = GroupStart(DurableState(), 0, None, initial_layout(config)[0])
        self.node = Node(
            config,
            1,
            {1: start},
            rng_for=random.Random,
            incarnation=1,
            logger_for=lambda _: NullLogger(),
        )
        self.wanted: list[int] = []

    def settle(self) -> None:
        while True:
            effects = self.node.take_effects()
            self.wanted += effects.splits_wanted
            if not effects.jobs:
                return
            for job in effects.jobs:
                sizes: dict[int, int] = {}
                applied, dumped = run_job(job, self.store.engine, sizes=sizes)
                self.node.job_done(job, applied, dumped, sizes)

    def tick(self, ticks: int) -> None:
        for _ in range(ticks):
            self.node.tick()
            self.settle()


def test_a_big_group_it_leads_is_asked_for_once_then_rests() -> None:
    d = Driven(cluster((1,), split_size_bytes=100))
    d.tick(TICKS_PER_S)
    assert d.node.role(1) is Role.LEADER
    d.tick(TICKS_PER_S)
    assert d.wanted == []  # empty: nothing to split
    for i in range(10):
        d.node.submit(1, Put(RequestId(7, i + 1), b"k%d" % i, b"v" * 20), i + 1)
        d.settle()
    d.tick(TICKS_PER_S)
    assert d.wanted == [1]
    d.tick((SPLIT_REST_S - 1) * TICKS_PER_S)
    assert d.wanted == [1]  # resting: the split (or its refusal) is on its way
    d.tick(2 * TICKS_PER_S)
    assert d.wanted == [1, 1]  # still too big: asked again


def test_a_group_it_does_not_lead_or_under_the_size_is_never_asked_for() -> None:
    follower = Driven(cluster((1, 2, 3), split_size_bytes=1))  # alone: never elected
    follower.tick(20 * TICKS_PER_S)
    assert follower.node.role(1) is not Role.LEADER and follower.wanted == []
    small = Driven(cluster((1,), split_size_bytes=10_000))
    small.tick(TICKS_PER_S)
    small.node.submit(1, Put(RequestId(7, 1), b"k", b"v" * 100), 1)
    small.tick(20 * TICKS_PER_S)
    assert small.wanted == []
