"""The meta leader's leases, driven by hand on one node: the table is read through the log
before any lease question is answered; a lease ends through the log once its deadline (a
TTL at the fastest clock the drift bound allows) passes and not before; a keep-alive moves
the deadline; an ended lease is handed to the driver to detach until ``LeasesEnded``."""

from __future__ import annotations

from cluster import META_RANGE_ID
from kvstore.model import RequestId
from kvstore.model.commands import (
    LeaseGrant,
    LeaseGranted,
    LeasesEnded,
    LeasesForgotten,
    LeaseTableRead,
)
from kvstore.model.jobs import run_job
from kvstore.model.lease_clock import LeaseClock
from kvstore.model.lease_keeper import LeaseKeeper, LeaseState
from kvstore.model.node import NotLeaseholder
from paxos import Role
from tests.unit.kvstore.test_node_meta import TICKS_PER_S, Driven

TTL_MS = 1000
TTL_TICKS = 112  # 1 s of 10 ms ticks that may each be 10 % short: ceil(100 / 0.9)


class Leases(Driven):
    def __init__(self) -> None:
        super().__init__()
        self.to_detach: list[list[int]] = []

    def settle(self) -> None:
        while True:
            effects = self.node.take_effects()
            if effects.leases_to_detach:
                self.to_detach.append(effects.leases_to_detach)
            self.answers.update(effects.answers)
            if not effects.jobs:
                return
            for job in effects.jobs:
                applied, dumped = run_job(job, self.store.engine, sizes={})
                self.node.job_done(job, applied, dumped, {})

    def grant(self, lease_id: int, token: int) -> None:
        self.node.submit(META_RANGE_ID, LeaseGrant(RequestId(5, token), lease_id, TTL_MS), token)
        self.settle()
        assert self.answers[token] == LeaseGranted(lease_id, TTL_MS)

    def live(self) -> list[int]:
        ids = self.node.lease_ids()
        assert not isinstance(ids, NotLeaseholder), ids
        return ids


def led() -> Leases:
    d = Leases()
    assert isinstance(d.node.lease_ids(), NotLeaseholder)  # no leader yet
    for _ in range(3 * TICKS_PER_S):
        d.tick(1)
        if d.node.role(META_RANGE_ID) is Role.LEADER and d.node.lease_ids() == []:
            return d
    raise AssertionError("the meta leader never read its lease table")


def test_a_lease_ends_through_the_log_once_its_ttl_passed_and_not_before() -> None:
    d = led()
    d.grant(7, token=1)
    assert d.node.lease_state(7) == LeaseState(7, TTL_MS, TTL_TICKS * 10)
    d.tick(TTL_TICKS)
    assert d.live() == [7]  # at its deadline: not yet
    d.tick(1)
    assert d.live() == []  # expired: its revoke proposed and applied
    assert d.node.lease_state(7) is None
    assert d.node.lease_keep_alive(7) is None
    d.tick(TICKS_PER_S)
    assert d.to_detach[-1] == [7]  # ending: the driver detaches it everywhere
    d.node.submit(META_RANGE_ID, LeasesEnded(RequestId(5, 9), (7,)), 9)
    d.settle()
    assert d.answers[9] == LeasesForgotten((7,))
    count = len(d.to_detach)
    d.tick(2 * TICKS_PER_S)
    assert len(d.to_detach) == count  # forgotten: asked no more


def test_a_keep_alive_gives_a_full_ttl_from_its_arrival() -> None:
    d = led()
    d.grant(7, token=1)
    d.grant(8, token=2)
    for _ in range(5):
        d.tick(TTL_TICKS - 10)
        assert d.node.lease_keep_alive(7) == TTL_MS
    d.tick(TTL_TICKS)
    assert d.live() == [7]  # 8 had no keep-alive: gone long ago; 7 is at its deadline
    d.tick(2)
    assert d.live() == []


def test_a_new_ballot_forgets_every_deadline_and_reads_the_table_again() -> None:
    """Another leader may have taken keep-alives between two ballots of this node: each
    lease gets a full TTL from the new table's arrival, however near its old deadline was."""
    keeper = LeaseKeeper(LeaseClock(10, 100), TICKS_PER_S)
    assert keeper.leading("b1", now=0)  # ask for the table
    assert not keeper.leading("b1", now=1)  # asked: not again within the second
    keeper.applied(LeaseTableRead(((7, TTL_MS),), ()), now=5)
    assert keeper.ready and keeper.keep_alive(7, now=5) == TTL_MS
    assert keeper.to_revoke(now=5 + TTL_TICKS) == []
    assert not keeper.leading(None, now=5 + TTL_TICKS)  # deposed: nothing kept
    assert not keeper.ready and keeper.state(7, now=5 + TTL_TICKS) is None
    assert keeper.leading("b2", now=5 + TTL_TICKS)
    keeper.applied(LeaseGranted(8, TTL_MS), now=6 + TTL_TICKS)  # before the table: in it
    assert not keeper.ready
    keeper.applied(LeaseTableRead(((7, TTL_MS), (8, TTL_MS)), (3,)), now=200)
    assert keeper.state(7, now=200) == LeaseState(7, TTL_MS, TTL_TICKS * 10)
    assert keeper.to_revoke(now=200 + TTL_TICKS) == []
    assert keeper.to_revoke(now=201 + TTL_TICKS) == [7, 8]
    assert keeper.to_revoke(now=202 + TTL_TICKS) == []  # proposed: again only after a second
    assert keeper.to_revoke(now=201 + TTL_TICKS + TICKS_PER_S) == [7, 8]
    assert keeper.due_to_detach() == [3]
