"""A hypothesis state machine over a three-replica group: it searches for (and shrinks) a
schedule of proposals, deliveries, losses, fsyncs, crashes, restarts and ticks that breaks
agreement, the applied-prefix rule, or the survival of acknowledged values."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from paxos import NodeId, Proposed, Slot
from tests.harness import ManualCluster

NODES = st.sampled_from((NodeId(1), NodeId(2), NodeId(3)))


class GroupMachine(RuleBasedStateMachine):
    @initialize(seed=st.integers(0, 1000))
    def start(self, seed: int) -> None:
        self.c = ManualCluster(
            3,
            seed=seed,
            election_ticks_min=4,
            election_ticks_max=8,
            lease_ticks=2,
            heartbeat_ticks=1,
        )
        self.counter = 0
        self.proposed: dict[bytes, tuple[NodeId, int, Slot]] = {}

    @rule(node=NODES)
    def propose(self, node: NodeId) -> None:
        if not self.c.up(node):
            return
        self.counter += 1
        cmd = f"p{self.counter}".encode()
        outcome = self.c.replica(node).propose(cmd)
        if isinstance(outcome, Proposed):
            self.proposed[cmd] = (node, self.c.incarnation[node], outcome.slot)
        self.c.drain(node)

    @precondition(lambda self: bool(self.c.net))
    @rule(index=st.integers(0, 1000), duplicate=st.booleans())
    def deliver_one(self, index: int, duplicate: bool) -> None:
        msg = self.c.net[index % len(self.c.net)]
        if not duplicate:
            self.c.net.remove(msg)
        if self.c.up(msg.dst):
            self.c.replica(msg.dst).step(msg)
            self.c.drain(msg.dst)

    @precondition(lambda self: bool(self.c.net))
    @rule(index=st.integers(0, 1000))
    def lose_one(self, index: int) -> None:
        self.c.net.pop(index % len(self.c.net))

    @rule(node=NODES, count=st.integers(1, 3))
    def fsync(self, node: NodeId, count: int) -> None:
        if self.c.up(node):
            self.c.flush(node, count)

    @rule(node=NODES)
    def campaign(self, node: NodeId) -> None:
        if self.c.up(node):
            self.c.replica(node).campaign()
            self.c.drain(node)

    @rule()
    def deliver_all(self) -> None:
        """Everything in flight arrives (but nothing more becomes durable)."""
        self.c.deliver()

    @rule(node=NODES)
    def crash(self, node: NodeId) -> None:
        if self.c.up(node):
            self.c.crash(node)

    @rule(node=NODES)
    def restart(self, node: NodeId) -> None:
        if not self.c.up(node):
            self.c.restart(node)

    @rule(node=NODES, ticks=st.integers(1, 6))
    def tick(self, node: NodeId, ticks: int) -> None:
        if self.c.up(node):
            self.c.tick(node, ticks)

    @invariant()
    def nothing_unsafe_happened(self) -> None:
        assert self.c.checker.ok, [str(v) for v in self.c.checker.violations]

    @invariant()
    def acknowledged_values_stay_chosen(self) -> None:
        # A proposal is acknowledged when its proposer applied its slot holding it.
        for cmd, (node, incarnation, slot) in self.proposed.items():
            if self.c.up(node) and self.c.incarnation[node] == incarnation:
                applied = self.c.applied[node]
                if len(applied) >= slot and cmd in applied[slot - 1]:
                    self.c.checker.on_ack(cmd, slot)
        self.c.checker.check_acked_survive(self.c.applied)
        assert self.c.checker.ok, [str(v) for v in self.c.checker.violations]


GroupMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=80, deadline=None)
TestGroupMachine = GroupMachine.TestCase
