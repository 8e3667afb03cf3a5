"""The node and ``[history]``: a shard's leader compacts its history once it reaches past
the retention window or the revision cap, through the log, and goes on proposing until
the pass that removes unneeded versions is done."""

from __future__ import annotations

from dataclasses import replace

from cluster import History, Sharding
from kvstore.model import KvStateMachine, Put, RequestId
from tests.unit.kvstore.test_node_meta import TICKS_PER_S, Driven, one_node

SHARD = 1


def driven(history: History) -> Driven:
    config = replace(one_node(), sharding=Sharding(split_size_mb=0), history=history)
    d = Driven(config)
    d.tick(2 * TICKS_PER_S)  # elected
    return d


def machine(d: Driven) -> KvStateMachine:
    return KvStateMachine(d.store.engine(SHARD), initial=d.node.descriptor(SHARD))


def put(d: Driven, token: int, key: bytes) -> None:
    d.node.submit(SHARD, Put(RequestId(0, 0), key, b"v%d" % token), token)
    d.settle()


def test_history_older_than_the_retention_window_is_compacted_by_the_leader() -> None:
    d = driven(History(retention_s=2, revisions_max=0))
    token = 0
    revision_at: dict[int, int] = {}
    for second in range(6):
        for _ in range(5):
            token += 1
            put(d, token, b"k%d" % (token % 3))
        revision_at[second] = machine(d).revision
        d.tick(TICKS_PER_S)
    compacted = machine(d).compacted_revision
    # Compacted to a revision sampled at least 2 s before the last tick, and no later.
    assert revision_at[2] <= compacted <= revision_at[4]
    assert compacted < machine(d).revision
    # Only what reads from the compacted revision on need is left: per key, one version at
    # or before it.
    engine = d.store.engine(SHARD)
    for key in (b"k0", b"k1", b"k2"):
        older = [v for v in engine.history_after(key, -1) if v.revision <= compacted]
        assert len(older) == 1


def test_the_revision_cap_compacts_without_waiting_for_the_window() -> None:
    d = driven(History(retention_s=0, revisions_max=10))
    for token in range(1, 31):
        put(d, token, b"k")
    d.tick(TICKS_PER_S)
    sm = machine(d)
    assert sm.revision == 30
    assert sm.compacted_revision == 20


def test_nothing_is_compacted_while_history_is_within_both_bounds() -> None:
    d = driven(History(retention_s=3600, revisions_max=1000))
    for token in range(1, 31):
        put(d, token, b"k")
    d.tick(5 * TICKS_PER_S)
    assert machine(d).compacted_revision == 0
    assert len(d.store.engine(SHARD).history_after(b"k", -1)) == 30


def test_a_watcher_here_holds_compaction_at_what_it_has_seen() -> None:
    d = driven(History(retention_s=0, revisions_max=10))
    d.node.watch_floors = {SHARD: 5}
    for token in range(1, 31):
        put(d, token, b"k")
    d.tick(TICKS_PER_S)
    assert machine(d).compacted_revision == 5
    d.node.watch_floors = {}
    d.tick(TICKS_PER_S)
    assert machine(d).compacted_revision == 20
