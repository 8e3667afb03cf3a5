"""An in-memory durable store: the reference meaning of ``DurableRecord``.

The simulator uses it as the "platter" behind its disk, and the LMDB engine must behave the
same (a contract test runs both). It is also the tool for restarting a replica: build a
``Replica`` from ``storage.state()``.
"""

from __future__ import annotations

from dataclasses import replace

from paxos.ids import Slot
from paxos.ready import DurableRecord, DurableState


class MemoryStorage:
    """Applies records in order; ``state()`` is what a restarted replica recovers."""

    def __init__(self, *, voting: bool = True) -> None:
        """``voting=False``: the state of a replica whose disk was wiped (``paxos.rejoin``)."""
        self._state = DurableState(voting=voting)

    def apply(self, record: DurableRecord) -> None:
        state = self._state
        if record.snapshot is not None:
            snap = record.snapshot
            if state.snapshot is None or snap.slot > state.snapshot.slot:
                state.snapshot = snap
                _drop_through(state, snap.slot)
                state.chosen_through = max(state.chosen_through, snap.slot)
        if record.truncate_through is not None:
            _drop_through(state, record.truncate_through)
        for entry in record.entries:
            state.log[entry.slot] = entry
        if record.promised is not None:
            state.promised = max(state.promised, record.promised)
        if record.chosen_through is not None:
            state.chosen_through = max(state.chosen_through, record.chosen_through)
        if record.voting is not None:
            state.voting = record.voting
        if record.rejoined_at is not None:
            state.rejoined_at = record.rejoined_at

    @property
    def voting(self) -> bool:
        return self._state.voting

    def state(self) -> DurableState:
        """A copy of the durable state (the replica may mutate what it is given)."""
        s = self._state
        return replace(s, log=dict(s.log))


def _drop_through(state: DurableState, slot: Slot) -> None:
    for s in [s for s in state.log if s <= slot]:
        del state.log[s]
