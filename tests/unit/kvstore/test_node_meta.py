"""The node and the meta range, driven by hand: a range's leader asks for its descriptor to
be recorded once a second until told it was (a split asks again for both halves); meta is
hosted like any group but holds no keys, is never routed to, split or merged."""

from __future__ import annotations

import random

from cluster import META_RANGE_ID, ClusterConfig, KeySpan, NodeSpec, Sharding, ShardSpec
from cluster.ranges import hosted_layout
from kvstore.model import KvStateMachine, MemoryStore, RangesRecorded, RecordRanges, RequestId
from kvstore.model.commands import Split
from kvstore.model.jobs import run_job
from kvstore.model.node import GroupStart, Node
from paxos import DurableState, NullLogger, Role

TICKS_PER_S = 100  # tick_ms 10


def one_node() -> ClusterConfig:
    return ClusterConfig(
        name="t",
        tick_ms=10,
        datacenters=("d0",),
        nodes=(NodeSpec(1, "d0", "n:1"),),
        shards=(ShardSpec(1, KeySpan(b"", b""), (1,), None),),
        # Every group would split by load if the policy reached meta: 1 op/s is enough.
        sharding=Sharding(split_size_mb=0, split_ops_per_s=1),
    )


class Driven:
    """One node driven by hand: every job run at once on an in-memory store."""

    def __init__(self, config: ClusterConfig | None = None) -> None:
        config = config or one_node()
        self.store = MemoryStore()
        self.node = Node(
            config,
            1,
            {d.range_id: GroupStart(DurableState(), 0, None, d) for d in hosted_layout(config)},
            rng_for=random.Random,
            incarnation=1,
            logger_for=lambda _: NullLogger(),
        )
        self.to_record: list[list[int]] = []
        self.splits_wanted: list[int] = []
        self.answers: dict[int, object] = {}

    def settle(self) -> None:
        while True:
            effects = self.node.take_effects()
            if effects.ranges_to_record:
                self.to_record.append([d.range_id for d in effects.ranges_to_record])
            self.splits_wanted += effects.splits_wanted
            self.answers.update(effects.answers)
            if not effects.jobs:
                return
            for job in effects.jobs:
                applied, dumped = run_job(job, self.store.engine, sizes={})
                self.node.job_done(job, applied, dumped, {})

    def tick(self, ticks: int) -> None:
        for _ in range(ticks):
            self.node.tick()
            self.settle()

    def record(self, token: int) -> None:
        descriptors = tuple(self.node.descriptor(g) for g in self.node.group_ids() if g)
        self.node.submit(META_RANGE_ID, RecordRanges(RequestId(0, 0), descriptors), token)
        self.settle()
        assert isinstance(self.answers[token], RangesRecorded)
        self.node.ranges_recorded(descriptors)

    def directory(self) -> list[tuple[int, int]]:
        meta = self.node.descriptor(META_RANGE_ID)
        machine = KvStateMachine(self.store.engine(META_RANGE_ID), initial=meta)
        return [(d.range_id, d.generation) for d in machine.directory().current()]


def test_a_leader_asks_each_second_until_meta_recorded_its_range() -> None:
    d = Driven()
    d.tick(2 * TICKS_PER_S)
    assert d.node.role(1) is Role.LEADER and d.node.role(META_RANGE_ID) is Role.LEADER
    assert d.to_record == [[1], [1]]  # once a second; meta's own descriptor never
    d.record(token=1)
    assert d.answers[1] == RangesRecorded(changed=True)
    assert d.directory() == [(1, 1)]
    d.tick(2 * TICKS_PER_S)
    assert d.to_record == [[1], [1]]  # told: asks no more
    d.node.submit(1, Split(RequestId(0, 0), b"m", 7), 2)
    d.settle()
    d.tick(TICKS_PER_S)
    assert sorted(d.to_record[-1]) == [1, 7]  # both halves, at their new generation
    d.record(token=3)
    assert d.directory() == [(1, 2), (7, 2)]
    d.tick(2 * TICKS_PER_S)
    assert sorted(d.to_record[-1]) == [1, 7]  # nothing asked since


def test_meta_holds_no_keys_and_is_never_routed_to_split_or_merged() -> None:
    d = Driven()
    d.tick(TICKS_PER_S)
    for token in range(10, 20):  # meta applies a record a tick: busy enough to split by load
        d.record(token)
        d.tick(TICKS_PER_S // 10)
    d.tick(2 * TICKS_PER_S)
    assert META_RANGE_ID not in [x.range_id for x in d.node.descriptors()]
    assert d.node.route(b"\x00") == 1 and d.node.route(b"") == 1
    assert META_RANGE_ID not in d.splits_wanted
