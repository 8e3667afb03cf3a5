"""The learner: which slots are chosen, handing them out in order, and catching up.

Rules:
- A slot is known chosen in four ways: (1) the leader counted a quorum of ``Accepted`` at
  its ballot; (2) a leader's commit point at ballot B covers a slot whose local entry was
  accepted at B (that leader proposed one value per slot, and only chosen-consistent ones);
  (3) a peer sent the chosen value (``CatchUp``) or a snapshot covering it; (4) any replica
  holds ``Accepted`` at ballot B for the slot from a quorum (its own among them, sent to
  itself only once durable; see ``paxos.acceptor``) and its own entry there is B's value.
- Values are handed to the state machine (``Ready.chosen``) strictly in slot order, each
  exactly once per replica incarnation, starting after what the caller says it applied.
- The durable ``chosen_through`` never runs ahead of the entries that back it: the record
  that raises it also writes any chosen value the local log did not hold.
- Any replica serves catch-up from its chosen prefix, or sends its snapshot when the asked
  slot was compacted away, so a laggard can learn from whoever is reachable.
"""

from __future__ import annotations

from paxos.config import Config
from paxos.ids import Ballot, NodeId, Slot
from paxos.log import ReplicaLog
from paxos.messages import Accepted, CatchUp, CatchUpRequest, InstallSnapshot, LogEntry, Value
from paxos.outbox import Outbox
from paxos.ports import Logger
from paxos.quorum import is_quorum
from paxos.ready import ChosenEntry, DurableRecord, Snapshot


class Learner:
    def __init__(
        self,
        cfg: Config,
        log: ReplicaLog,
        outbox: Outbox,
        logger: Logger,
        applied_through: Slot,
    ) -> None:
        self._cfg = cfg
        self._log = log
        self._out = outbox
        self._logger = logger
        # What the state machine has been given. After a restart the caller tells us what it
        # had applied durably; a snapshot newer than that is handed over first.
        self.emitted_through: Slot = applied_through
        if log.snapshot is not None and log.snapshot.slot > applied_through:
            # A placeholder stands for state the caller holds already: nothing to install.
            if not log.snapshot.placeholder:
                self._out.snapshot = log.snapshot
            self.emitted_through = log.snapshot.slot
        # Votes seen by a non-leader, per open slot: the highest ballot and who accepted at it.
        self._votes: dict[Slot, tuple[Ballot, set[NodeId]]] = {}
        self._catchup_target = Slot(0)
        self._catchup_peer: NodeId | None = None
        self._catchup_sent_tick: int | None = None
        # The last slot asked for since the window last (re)started: progress asks only
        # for pieces beyond it, so duplicated replies never multiply requests.
        self._catchup_requested_through = Slot(0)
        # Pieces are fetched in parallel only once a CatchUp has made progress: a first
        # request may be answered with a whole snapshot, and four copies of one would waste
        # the link.
        self._catchup_streaming = False
        self._now = 0
        self._emit()

    # ------------------------------------------------------------------ learning

    def learn(self, slot: Slot, value: Value) -> None:
        """``value`` is chosen for ``slot`` (known for certain by the caller)."""
        log = self._log
        if slot <= log.snapshot_slot:
            return
        if slot <= log.chosen_through:
            assert log.entries[slot].value == value, ("chosen value changed", slot)
            return
        log.chosen_ahead[slot] = value
        self._advance()

    def learn_commit(self, ballot: Ballot, commit: Slot, src: NodeId) -> None:
        """The leader of ``ballot`` says every slot <= ``commit`` is chosen."""
        log = self._log
        start = log.chosen_through
        slot = Slot(start + 1)
        while slot <= commit:
            entry = log.entries.get(slot)
            if entry is not None and entry.ballot == ballot:
                log.chosen_ahead.setdefault(slot, entry.value)
            elif slot not in log.chosen_ahead:
                break
            slot = Slot(slot + 1)
        self._advance()
        self.note_peer_progress(commit, src)

    def on_accepted(self, msg: Accepted) -> None:
        """``msg.src`` durably holds ballot ``msg.ballot``'s value for ``msg.slots``."""
        log, votes = self._log, self._votes
        for slot in msg.slots:
            if slot <= log.chosen_through:
                continue
            seen = votes.get(slot)
            if seen is None or seen[0] < msg.ballot:
                seen = votes[slot] = (msg.ballot, set())
            elif seen[0] > msg.ballot:
                continue
            seen[1].add(msg.src)
            entry = log.entries.get(slot)
            if (
                entry is not None
                and entry.ballot == msg.ballot
                and is_quorum(seen[1], self._cfg.voters)
            ):
                log.chosen_ahead.setdefault(slot, entry.value)
        self._advance()

    def note_peer_progress(
        self, peer_chosen_through: Slot, peer: NodeId, *, reachable: bool = False
    ) -> None:
        """``peer`` knows slots up to ``peer_chosen_through`` are chosen; fetch what we lack.
        ``reachable``: ``peer`` has just answered us (a promise), so fetch from it even if
        another reported more: that one may be cut off (sim seed 2186: a candidate kept
        asking a partitioned node for slots its promiser held, and never led)."""
        if peer_chosen_through <= self._log.chosen_through or peer == self._cfg.node_id:
            return
        if reachable or peer_chosen_through >= self._catchup_target or self._catchup_peer is None:
            # Ties go to the latest reporter: it has just shown that it can reach us.
            self._catchup_target = max(self._catchup_target, peer_chosen_through)
            self._catchup_peer = peer
        self._request_catchup(force=False)

    def _advance(self) -> None:
        log = self._log
        fixed: list[LogEntry] = []
        before = log.chosen_through
        while (nxt := Slot(log.chosen_through + 1)) in log.chosen_ahead:
            value = log.chosen_ahead.pop(nxt)
            entry = log.entries.get(nxt)
            if entry is None or entry.value != value:
                # Never accepted here, or accepted a value that lost: keep the chosen one.
                entry = LogEntry(slot=nxt, ballot=Ballot.ZERO, value=value)
                log.entries[nxt] = entry
                fixed.append(entry)
            log.chosen_through = nxt
        if log.chosen_through > before:
            for slot in [s for s in self._votes if s <= log.chosen_through]:
                del self._votes[slot]
            self._out.persist(
                DurableRecord(entries=tuple(fixed), chosen_through=log.chosen_through)
            )
            self._emit()

    def _emit(self) -> None:
        log = self._log
        while self.emitted_through < log.chosen_through:
            slot = Slot(self.emitted_through + 1)
            self._out.chosen.append(ChosenEntry(slot=slot, value=log.entries[slot].value))
            self.emitted_through = slot

    # ------------------------------------------------------------------ catch-up

    @property
    def catching_up(self) -> bool:
        """A catch-up from a peer is under way (it needs ticks to be retried)."""
        return self._catchup_peer is not None and self._catchup_target > self._log.chosen_through

    def tick(self, now: int) -> None:
        self._now = now
        self._request_catchup(force=False)

    def _request_catchup(self, *, force: bool) -> None:
        """Keep up to ``catchup_requests_max`` pieces of the gap requested. After progress
        (or the first time) ask only for pieces not yet asked for; after a silence of
        ``retransmit_ticks`` ask for the whole window again."""
        log = self._log
        if self._catchup_peer is None or self._catchup_target <= log.chosen_through:
            self._catchup_peer = None
            self._catchup_sent_tick = None
            self._catchup_streaming = False
            return
        sent = self._catchup_sent_tick
        if not force and sent is not None and self._now - sent < self._cfg.retransmit_ticks:
            return
        piece = self._cfg.catchup_slots_max
        if sent is not None:  # a retransmission: whatever was asked may be lost
            self._catchup_requested_through = log.chosen_through
            self._catchup_streaming = False
        pieces = self._cfg.catchup_requests_max if self._catchup_streaming else 1
        first = Slot(max(log.chosen_through, self._catchup_requested_through) + 1)
        window_end = min(self._catchup_target, log.chosen_through + piece * pieces)
        # The retransmission clock runs from the last send or progress, whichever is later.
        self._catchup_sent_tick = self._now
        while first <= window_end:
            self._out.send(
                CatchUpRequest(src=self._cfg.node_id, dst=self._catchup_peer, from_slot=first)
            )
            self._catchup_requested_through = Slot(min(first + piece - 1, window_end))
            first = Slot(first + piece)

    def on_catchup_request(self, msg: CatchUpRequest) -> None:
        log = self._log
        if msg.from_slot <= log.snapshot_slot and log.snapshot is not None:
            if log.snapshot.placeholder:
                # Nothing to send yet: ask for a dump; the peer's retransmission gets it.
                self._out.snapshot_wanted = True
                return
            self._out.send(
                InstallSnapshot(
                    src=self._cfg.node_id,
                    dst=msg.src,
                    slot=log.snapshot.slot,
                    data=log.snapshot.data,
                )
            )
            return
        last = min(log.chosen_through, msg.from_slot + self._cfg.catchup_slots_max - 1)
        values = tuple(log.entries[Slot(s)].value for s in range(msg.from_slot, last + 1))
        self._out.send(
            CatchUp(
                src=self._cfg.node_id,
                dst=msg.src,
                first_slot=msg.from_slot,
                values=values,
                chosen_through=log.chosen_through,
            )
        )

    def on_catchup(self, msg: CatchUp) -> None:
        log = self._log
        for offset, value in enumerate(msg.values):
            slot = Slot(msg.first_slot + offset)
            if slot > log.chosen_through:
                log.chosen_ahead.setdefault(slot, value)
        before = log.chosen_through
        self._advance()
        if log.chosen_through > before:
            # Progress: ask for the next piece at once. A reply that taught us nothing (a
            # duplicate, or an answer to an older request) must not, or duplicated messages
            # would multiply requests without bound.
            self._catchup_sent_tick = None
            self._catchup_streaming = True
        self.note_peer_progress(msg.chosen_through, msg.src)

    def on_install_snapshot(self, msg: InstallSnapshot) -> None:
        log = self._log
        if msg.slot <= log.chosen_through or not msg.data:
            return  # install only forward; a stale or duplicated snapshot teaches nothing
        snap = Snapshot(slot=msg.slot, data=msg.data)
        self._install(snap)
        self._out.persist(DurableRecord(snapshot=snap, chosen_through=snap.slot))
        self._logger.info("snapshot_installed", slot=snap.slot, src=msg.src)
        self._catchup_sent_tick = None
        self._advance()
        self._request_catchup(force=True)

    def _install(self, snap: Snapshot) -> None:
        log = self._log
        log.snapshot = snap
        log.drop_through(snap.slot)
        log.chosen_through = snap.slot
        self._votes = {s: v for s, v in self._votes.items() if s > snap.slot}
        # Whatever this Ready already held for slots the snapshot covers is superseded.
        self._out.chosen = [c for c in self._out.chosen if c.slot > snap.slot]
        self._out.snapshot = snap
        self.emitted_through = snap.slot

    # ------------------------------------------------------------------ compaction

    def compact(self, slot: Slot, data: bytes) -> bool:
        """The state machine's state through ``slot`` is ``data``: drop the log up to it (a
        placeholder may be replaced at its own slot)."""
        log = self._log
        current = log.snapshot
        if not data or slot <= 0 or slot > self.emitted_through:
            return False
        if current is not None and (
            slot < current.slot or (slot == current.slot and not current.placeholder)
        ):
            return False
        snap = Snapshot(slot=slot, data=data)
        log.snapshot = snap
        log.drop_through(slot)
        self._out.persist(DurableRecord(snapshot=snap))
        return True
