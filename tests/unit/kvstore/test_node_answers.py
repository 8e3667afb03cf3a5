"""Each proposer gets its own command's result: identical commands in one slot are distinct
writes, and a retry of a write (same request id) gets the first attempt's result."""

from __future__ import annotations

from dataclasses import replace

from cluster import Sharding
from kvstore.model import KvStateMachine, Put, RequestId
from kvstore.model.jobs import run_job
from tests.unit.kvstore.test_node_meta import TICKS_PER_S, Driven, one_node

SHARD = 1


def driven() -> Driven:
    d = Driven(replace(one_node(), sharding=Sharding(split_size_mb=0)))
    d.tick(2 * TICKS_PER_S)  # elected
    return d


def settle_counting(d: Driven, marker: bytes) -> int:
    """``Driven.settle``, counting the copies of ``marker`` in the slots the node accepted."""
    copies = 0
    while True:
        effects = d.node.take_effects()
        d.answers.update(effects.answers)
        if not effects.jobs:
            return copies
        for job in effects.jobs:
            for _, record in job.records:
                copies += sum(c.count(marker) for entry in record.entries for c in entry.value)
            applied, dumped = run_job(job, d.store.engine, sizes={})
            d.node.job_done(job, applied, dumped, {})


def revision(d: Driven) -> int:
    return KvStateMachine(d.store.engine(SHARD), initial=d.node.descriptor(SHARD)).revision


def test_a_retry_of_a_pending_write_gets_the_first_attempts_result() -> None:
    d = driven()
    write = Put(RequestId(7, 1), b"k", b"marker-of-the-retried-write")
    d.node.submit(SHARD, write, 1)
    d.node.submit(SHARD, write, 2)  # the first is not chosen yet: proposed again
    assert settle_counting(d, b"marker-of-the-retried-write") == 2
    assert revision(d) == 1  # the session table applies it once
    assert d.answers[1] == d.answers[2]
    d.node.submit(SHARD, write, 3)  # applied already: the session table answers
    d.settle()
    assert revision(d) == 1 and d.answers[3] == d.answers[1]


def test_identical_writes_without_a_request_id_are_two_writes() -> None:
    d = driven()
    write = Put(RequestId(0, 0), b"k", b"marker-of-the-twin-writes")
    d.node.submit(SHARD, write, 1)
    d.node.submit(SHARD, write, 2)
    assert settle_counting(d, b"marker-of-the-twin-writes") == 2
    assert revision(d) == 2
    assert d.answers[1] != d.answers[2]
