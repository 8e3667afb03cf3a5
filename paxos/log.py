"""The replica's view of its log: accepted entries, the chosen prefix, the snapshot.

Rules:
- ``entries`` holds the acceptor's accepted value per slot above the snapshot.
- Every slot in ``(snapshot_slot, chosen_through]`` has an entry and that entry's value is
  the chosen one (the learner writes the chosen value when it differs); slots above
  ``chosen_through`` may be missing.
- Values known chosen out of order wait in ``chosen_ahead`` until the prefix reaches them.
"""

from __future__ import annotations

from paxos.ids import Slot
from paxos.messages import LogEntry, Value
from paxos.ready import DurableState, Snapshot


class ReplicaLog:
    def __init__(self, durable: DurableState) -> None:
        self.entries: dict[Slot, LogEntry] = dict(durable.log)
        self.snapshot: Snapshot | None = durable.snapshot
        self.chosen_through: Slot = max(durable.chosen_through, self.snapshot_slot)
        self.chosen_ahead: dict[Slot, Value] = {}

    @property
    def snapshot_slot(self) -> Slot:
        return self.snapshot.slot if self.snapshot is not None else Slot(0)

    def last_slot(self) -> Slot:
        """The highest slot with anything in it (an entry, or the snapshot)."""
        return max(max(self.entries, default=Slot(0)), self.snapshot_slot, self.chosen_through)

    def chosen_value(self, slot: Slot) -> Value:
        assert self.snapshot_slot < slot <= self.chosen_through, (slot, self.chosen_through)
        return self.entries[slot].value

    def unchosen_entries(self, from_slot: Slot) -> tuple[LogEntry, ...]:
        """Accepted entries above the chosen prefix and at or above ``from_slot``."""
        floor = max(from_slot, self.chosen_through + 1)
        return tuple(self.entries[s] for s in sorted(self.entries) if s >= floor)

    def drop_through(self, slot: Slot) -> None:
        for s in [s for s in self.entries if s <= slot]:
            del self.entries[s]
        for s in [s for s in self.chosen_ahead if s <= slot]:
            del self.chosen_ahead[s]
