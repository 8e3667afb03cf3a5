"""Identifiers and the ballot order.

Rules:
- A ``Ballot`` is ``(round, node_id)`` and is totally ordered by that pair, so two nodes can
  never issue the same ballot and every pair of ballots is comparable.
- ``Ballot.ZERO`` sorts below every ballot a node can issue (node ids start at 1), so "nothing
  promised yet" is an ordinary ballot, never ``None``.
- Slots start at 1; ``Slot(0)`` means "before the first slot".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NewType

NodeId = NewType("NodeId", int)
Slot = NewType("Slot", int)


@dataclass(frozen=True, slots=True, order=True)
class Ballot:
    """A Paxos proposal number, totally ordered by ``(round, node_id)``."""

    round: int
    node_id: NodeId

    ZERO: ClassVar[Ballot]

    def successor(self, node_id: NodeId) -> Ballot:
        """The smallest ballot of ``node_id`` that is above this one."""
        return Ballot(self.round + 1, node_id)

    def __str__(self) -> str:
        return f"{self.round}.n{self.node_id}"


Ballot.ZERO = Ballot(0, NodeId(0))
