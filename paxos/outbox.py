"""Accumulates a replica's effects between two ``take_ready`` calls.

Rules:
- ``send`` to another node goes out at once (``Ready.send_now``); to this node it is queued
  on the local inbox and stepped by the replica before the current call returns.
- ``persist`` hands out a ``DiskWrite``. Its self-addressed follow-ups are held here and
  released into the local inbox by ``write_done``, so the replica's own acceptance counts
  only after its own fsync, exactly like a peer's.
- ``write_done`` must report writes in the order they were handed out (one FIFO disk queue).
"""

from __future__ import annotations

from collections import deque

from paxos.ids import NodeId
from paxos.messages import Message
from paxos.ready import (
    ChosenEntry,
    DiskWrite,
    DurableRecord,
    ReadState,
    Ready,
    RoleChange,
    Snapshot,
)


class Outbox:
    def __init__(self, node_id: NodeId) -> None:
        self._node_id = node_id
        self._next_seq = 1
        self._outstanding: deque[int] = deque()
        self._held_for_self: dict[int, list[Message]] = {}
        self.local_inbox: deque[Message] = deque()

        self._writes: list[DiskWrite] = []
        self._send_now: list[Message] = []
        self.snapshot: Snapshot | None = None
        self.chosen: list[ChosenEntry] = []
        self.reads: list[ReadState] = []
        self.failed_reads: list[int] = []
        self.role_change: RoleChange | None = None
        self.snapshot_wanted = False

    def send(self, msg: Message) -> None:
        if msg.dst == self._node_id:
            self.local_inbox.append(msg)
        else:
            self._send_now.append(msg)

    def persist(self, record: DurableRecord, then_send: tuple[Message, ...] = ()) -> int:
        seq = self._next_seq
        self._next_seq += 1
        to_peers = tuple(m for m in then_send if m.dst != self._node_id)
        to_self = [m for m in then_send if m.dst == self._node_id]
        if to_self:
            self._held_for_self[seq] = to_self
        self._outstanding.append(seq)
        self._writes.append(DiskWrite(seq=seq, record=record, then_send=to_peers))
        return seq

    def write_done(self, seq: int) -> None:
        assert self._outstanding, f"write_done({seq}) with no write outstanding"
        oldest = self._outstanding.popleft()
        assert oldest == seq, f"writes must complete in order: expected {oldest}, got {seq}"
        self.local_inbox.extend(self._held_for_self.pop(seq, ()))

    @property
    def writes_outstanding(self) -> int:
        return len(self._outstanding)

    @property
    def writes_taken(self) -> int:
        """Writes handed to the driver (``take``) and not done yet."""
        return len(self._outstanding) - len(self._writes)

    def take(self) -> Ready:
        ready = Ready(
            writes=tuple(self._writes),
            send_now=tuple(self._send_now),
            snapshot=self.snapshot,
            chosen=tuple(self.chosen),
            reads=tuple(self.reads),
            failed_reads=tuple(self.failed_reads),
            role_change=self.role_change,
            snapshot_wanted=self.snapshot_wanted,
        )
        self._writes = []
        self._send_now = []
        self.snapshot = None
        self.chosen = []
        self.reads = []
        self.failed_reads = []
        self.role_change = None
        self.snapshot_wanted = False
        return ready
