"""What must never happen, checked continuously from what the world observes.

- **Agreement** (ground truth): from every *durable* acceptance (slot, ballot, value) we know
  which values a quorum accepted at one ballot, i.e. which values were chosen, independently
  of any replica's opinion. Two chosen values for one slot is a violation.
- **Learned only what is chosen**: a replica that hands the state machine a value for a slot
  must hand over the value a durable quorum accepted (never earlier, never another).
- **Prefix**: every replica applies slots in order with no gap, and the same value per slot
  as every other replica, so each applied log is a prefix of the longest.
- **Acknowledged proposals survive**: every command a client was told is chosen is in the
  chosen log at that slot, and in every replica's applied log once it has caught up.
- **Lease safety**: at no instant do two replicas believe they hold the lease.
- **Bounded staleness**: whenever a replica would serve a read of its applied state with
  a staleness bound B, every command acknowledged more than B before now is in that state.
- **Linearizable reads**: a read served from state through slot S misses no command
  acknowledged before the read was invoked.

Per key, across groups (``KeyChecker``: a split hands keys to a new group, revisions and
sessions with them, so slots no longer compare but a key's revisions do):

- **Linearizable reads of values**: a read returns the key at a revision no lower than
  every write to it acknowledged before the read was invoked, with that write's value.
- **Exactly once**: every execution of one command (a retry lands in another group after a
  split) yields one revision: the session table answered the retry.
- **Acknowledged writes survive**: at the end every replica holding a key holds its latest
  acknowledged write or a later one.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

from kvstore.model import (
    ApplyResult,
    CodecError,
    KeyValue,
    KvStateMachine,
    Put,
    PutResult,
    decode_command,
)
from paxos import Ballot, DurableRecord, NodeId, Slot, Value, quorum_size


@dataclass
class Violation:
    kind: str
    detail: str
    time_us: int

    def __str__(self) -> str:
        return f"[{self.kind}] at t={self.time_us}us: {self.detail}"


@dataclass
class Checker:
    voters: tuple[NodeId, ...]
    violations: list[Violation] = field(default_factory=list)
    chosen: dict[Slot, Value] = field(default_factory=dict)
    _accepts: dict[tuple[Slot, Ballot], tuple[Value, set[NodeId]]] = field(default_factory=dict)
    _applied: dict[Slot, Value] = field(default_factory=dict)
    acked: dict[bytes, Slot] = field(default_factory=dict)
    now_us: int = 0
    # Acknowledgements in time order, with the highest slot acknowledged so far at each.
    _ack_times: list[int] = field(default_factory=list)
    _ack_slot_max: list[Slot] = field(default_factory=list)

    def fail(self, kind: str, detail: str) -> None:
        if len(self.violations) < 50:
            self.violations.append(Violation(kind, detail, self.now_us))

    # ------------------------------------------------------------------ observations

    def on_durable(self, node: NodeId, record: DurableRecord) -> None:
        quorum = quorum_size(len(self.voters))
        for entry in record.entries:
            if entry.ballot == Ballot.ZERO:
                continue  # a learned (already chosen) value, not an acceptance
            key = (entry.slot, entry.ballot)
            seen = self._accepts.get(key)
            if seen is None:
                seen = (entry.value, set())
                self._accepts[key] = seen
            if seen[0] != entry.value:
                self.fail("one-value-per-ballot", f"slot {entry.slot} ballot {entry.ballot}")
                continue
            seen[1].add(node)
            if len(seen[1]) >= quorum:
                prior = self.chosen.get(entry.slot)
                if prior is None:
                    self.chosen[entry.slot] = entry.value
                elif prior != entry.value:
                    self.fail(
                        "agreement",
                        f"slot {entry.slot}: {_short(prior)} and {_short(entry.value)} both chosen",
                    )

    def on_applied(self, node: NodeId, slot: Slot, value: Value) -> None:
        truth = self.chosen.get(slot)
        if truth is None:
            self.fail("learned-unchosen", f"n{node} applied slot {slot} before a quorum held it")
        elif truth != value:
            self.fail("learned-wrong", f"n{node} applied {_short(value)} at slot {slot}")
        prior = self._applied.setdefault(slot, value)
        if prior != value:
            self.fail("prefix", f"n{node} applied a different value at slot {slot}")

    def on_ack(self, command: bytes, slot: Slot) -> None:
        self.acked[command] = slot
        highest = self._ack_slot_max[-1] if self._ack_slot_max else Slot(0)
        self._ack_times.append(self.now_us)
        self._ack_slot_max.append(max(highest, slot))

    def on_stale_read_bound(self, node: NodeId, applied: Slot, bound_us: int) -> None:
        older = bisect.bisect_left(self._ack_times, self.now_us - bound_us)
        if older and self._ack_slot_max[older - 1] > applied:
            self.fail(
                "stale-read",
                f"n{node} promises staleness <= {bound_us}us at slot {applied}, but slot "
                f"{self._ack_slot_max[older - 1]} was acknowledged before that",
            )

    @property
    def ack_count(self) -> int:
        return len(self._ack_times)

    def first_ack_after(self, slot: Slot) -> int | None:
        """When the first acknowledgement beyond ``slot`` (its own or an earlier one's slot)
        was made (None: none yet): a promise at ``slot`` can break only from then on."""
        index = bisect.bisect_right(self._ack_slot_max, slot)
        return self._ack_times[index] if index < len(self._ack_times) else None

    def on_lease_read_point(self, node: NodeId, read_point: Slot) -> None:
        """A leaseholder would serve a read arriving now at ``read_point``: every command
        acknowledged before now must be at or below it."""
        older = bisect.bisect_left(self._ack_times, self.now_us)
        if older and self._ack_slot_max[older - 1] > read_point:
            self.fail(
                "stale-read",
                f"n{node} holds the lease and would read at slot {read_point}, but slot "
                f"{self._ack_slot_max[older - 1]} was acknowledged before now",
            )

    def on_read(self, node: NodeId, invoked_us: int, served: Slot) -> None:
        """A linearizable read invoked at ``invoked_us`` was served from state through slot
        ``served``: every write acknowledged before the invocation must be in it."""
        older = bisect.bisect_left(self._ack_times, invoked_us)
        if older and self._ack_slot_max[older - 1] > served:
            self.fail(
                "stale-read",
                f"n{node} served a read invoked at t={invoked_us}us at slot {served}, but slot "
                f"{self._ack_slot_max[older - 1]} was acknowledged before it was invoked",
            )

    def on_lease_holders(self, holders: Iterable[NodeId]) -> None:
        held = sorted(holders)
        if len(held) > 1:
            self.fail("lease", f"replicas {held} all believe they hold the lease")

    # ------------------------------------------------------------------ final checks

    def check_acked_survive(self, applied_logs: dict[NodeId, list[Value]]) -> None:
        for command, slot in sorted(self.acked.items()):
            value = self.chosen.get(slot)
            if value is None or command not in value:
                self.fail("acked-lost", f"{command!r} acknowledged at slot {slot} is not chosen")
                continue
            for node, log in sorted(applied_logs.items()):
                if len(log) >= slot and command not in log[slot - 1]:
                    self.fail("acked-lost", f"n{node} lacks {command!r} at slot {slot}")

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass
class KeyChecker:
    violations: list[Violation] = field(default_factory=list)
    now_us: int = 0
    # key -> acknowledged writes in acknowledgement order: (ack time, revision, value)
    acked: dict[bytes, list[tuple[int, int, bytes]]] = field(default_factory=dict)
    _executions: dict[bytes, int] = field(default_factory=dict)  # command -> its revision

    def fail(self, kind: str, detail: str) -> None:
        if len(self.violations) < 50:
            self.violations.append(Violation(kind, detail, self.now_us))

    def on_result(self, command: bytes, result: ApplyResult) -> None:
        if not isinstance(result, PutResult):
            return
        prior = self._executions.setdefault(command, result.revision)
        if prior != result.revision:
            self.fail(
                "exactly-once",
                f"{_command(command)} executed at revisions {prior} and {result.revision}",
            )

    def on_ack(self, key: bytes, value: bytes, revision: int) -> None:
        self.acked.setdefault(key, []).append((self.now_us, revision, value))

    def _latest(self, key: bytes, before_us: int) -> tuple[int, bytes] | None:
        acks = [(r, v) for t, r, v in self.acked.get(key, ()) if t < before_us]
        return max(acks) if acks else None

    def on_read(self, node: NodeId, key: bytes, invoked_us: int, got: KeyValue | None) -> None:
        latest = self._latest(key, invoked_us)
        if latest is None:
            return
        revision, value = latest
        if got is None or got.mod_revision < revision:
            seen = "nothing" if got is None else f"revision {got.mod_revision}"
            self.fail(
                "stale-read",
                f"n{node} read {key!r} as {seen}, but revision {revision} was acknowledged "
                f"before the read was invoked (t={invoked_us}us)",
            )
        elif got.mod_revision == revision and got.value != value:
            self.fail("stale-read", f"n{node} read {key!r} at revision {revision}: another value")

    def check_final(self, node: NodeId, key: bytes, got: KeyValue | None) -> None:
        latest = self._latest(key, 1 << 62)
        if latest is None:
            return
        revision, value = latest
        if (
            got is None
            or got.mod_revision < revision
            or (got.mod_revision == revision and got.value != value)
        ):
            self.fail(
                "acked-lost",
                f"n{node} ends with {key!r} at "
                f"{'nothing' if got is None else got.mod_revision}; revision {revision} "
                "was acknowledged",
            )

    def check_history(self, node: NodeId, key: bytes, machine: KvStateMachine) -> None:
        """Read at its revision, each acknowledged write of ``key`` the shard still keeps
        history for is exactly that write."""
        for _, revision, value in self.acked.get(key, ()):
            if revision < machine.compacted_revision or revision > machine.revision:
                continue
            got = machine.get_at(key, revision)
            if got is None or got.mod_revision != revision or got.value != value:
                seen = "nothing" if got is None else f"revision {got.mod_revision}"
                self.fail(
                    "history",
                    f"n{node} reads {key!r} at revision {revision} as {seen}; that revision"
                    " was acknowledged",
                )


def _short(value: Value) -> str:
    if not value:
        return "noop"
    head = ",".join(_command(c) for c in value[:2])
    return f"[{head}{',...' if len(value) > 2 else ''}]"


def _command(raw: bytes) -> str:
    """A command as people read it (``put k03=c2-19``), or its bytes if it is no command."""
    try:
        cmd = decode_command(raw)
    except CodecError:
        return raw.decode(errors="replace")
    if isinstance(cmd, Put):
        return f"put {cmd.key.decode(errors='replace')}={cmd.value.decode(errors='replace')}"
    return type(cmd).__name__.lower()
