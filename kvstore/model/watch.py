"""Watchers: the change streams one node serves from its own replicas. Pure.

Rules:
- A watch names a key span and a start (``cluster.position.Position``): it is told every
  change in the span after its position exactly once, in revision order per shard, each
  batch with the position after it (the token a client resumes from, on any node).
- The hub is fed every change this node's replicas apply, once the transaction that applied
  it committed, in apply order: ``applied(shard, changes, span, revision)``. A change is a
  watcher's if it is in the watcher's span and new to its position (``Position.is_new``);
  after a shard's batch the watcher has seen everything in the shard's span (as it is
  now) up to the shard's revision, so its position advances over it: a quiet shard's part
  of a position is current, so a progress mark is just the position.
- A watcher that starts behind (any start but "now") catches up from history first:
  ``add`` holds what the hub is fed for it meanwhile; the driver reads each hosted shard's
  history after the position up to the shard's revision, in one read transaction per shard
  (``history_since``; a shard that split or merged since it was listed is listed and read
  again), and hands it to ``caught_up``, which delivers it, advances the
  position over the shard to that revision, and then replays what was held through the
  same filter: a change both read and held is delivered once. A shard whose history was
  compacted past the position cancels the watch, naming the compacted revision.
- One delivery per revision (a Txn's changes share one), each with the exact position
  after it: a reader that stops anywhere resumes from the last token it took, missing and
  repeating nothing. Watchers at one position share the step to the next (1,000 watchers
  of one shard cost one position update per revision, not 1,000).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cluster.keys import END_OF_KEYSPACE, KeySpan
from cluster.position import Position
from cluster.ranges import RangeDescriptor
from kvstore.model.engine import Engine
from kvstore.model.history import Change
from kvstore.model.state_machine import KvStateMachine


class WatchNotHostedError(Exception):
    """Part of the watched span is on shards this node holds no replica of."""


def covering(hosted: Iterable[RangeDescriptor], span: KeySpan) -> list[RangeDescriptor]:
    """The ``hosted`` ranges over ``span``, in key order; ``WatchNotHostedError`` at a gap.
    A node serves a watch only while this holds: changes to keys it holds no replica of are
    made on other nodes, and a watch fed only some of its shards would skip the rest."""
    shards = sorted((d for d in hosted if d.span.overlaps(span)), key=lambda d: d.start)
    cursor = span.start
    for d in shards:
        if d.start > cursor:
            break
        if d.end == END_OF_KEYSPACE:
            return shards
        cursor = max(cursor, d.end)
        if span.end != END_OF_KEYSPACE and cursor >= span.end:
            return shards
    raise WatchNotHostedError(
        f"this node holds no replica of the watched keys from {cursor!r} on: watch them"
        " through a node that does (kvstore shards lists the replicas)"
    )


@dataclass(frozen=True, slots=True)
class WatchEvent:
    shard: int
    change: Change


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a watcher's stream sends next: events (none: a progress mark) and the position
    after them."""

    events: tuple[WatchEvent, ...]
    position: Position


@dataclass(frozen=True, slots=True)
class ShardHistory:
    """One hosted shard's part of a catch-up, read in one transaction."""

    shard: int
    span: KeySpan  # the shard's span then
    revision: int  # the shard's revision then: the history read goes through it
    compacted: int
    changes: tuple[Change, ...]  # after the watcher's position, in revision order


@dataclass
class Watcher:
    watch_id: int
    span: KeySpan
    position: Position
    prev_kv: bool
    outbox: list[Delivery] = field(default_factory=list)
    canceled: int | None = None  # the compacted revision that ended it
    cancel_reason: str = ""  # why it ended, if anything else did (the caller resumes)
    _held: list[tuple[int, list[Change], KeySpan | None, int]] | None = None
    # Bumped by each resync: a catch-up read before the latest one is stale (an install
    # since replaced the history it read) and is ignored; the latest one delivers.
    sync: int = 0


class WatchHub:
    def __init__(self) -> None:
        self._watchers: dict[int, Watcher] = {}

    def __len__(self) -> int:
        return len(self._watchers)

    def add(
        self, watch_id: int, span: KeySpan, position: Position, *, prev_kv: bool, now: bool
    ) -> Watcher:
        """``now``: the position is this node's present (nothing to catch up on)."""
        assert watch_id not in self._watchers, watch_id
        watcher = Watcher(watch_id, span, position, prev_kv, _held=None if now else [])
        self._watchers[watch_id] = watcher
        return watcher

    def remove(self, watch_id: int) -> None:
        self._watchers.pop(watch_id, None)

    def watcher(self, watch_id: int) -> Watcher | None:
        return self._watchers.get(watch_id)

    def applied(
        self, shard: int, changes: Iterable[Change], span: KeySpan | None, revision: int
    ) -> list[Watcher]:
        """Shard ``shard`` applied ``changes`` (committed) and is now at ``revision`` over
        ``span`` (None: every key): the watchers that have something new to send."""
        changes = list(changes)
        woken = []
        memo: _Memo = {}  # watchers at one position share each step from it
        # Watchers of one span at one position are told the same: computed once, shared.
        alike: dict[tuple[int, KeySpan], list[Watcher]] = {}
        for watcher in self._watchers.values():
            if watcher.canceled is not None or watcher.cancel_reason:
                continue
            if span is not None and not span.overlaps(watcher.span):
                continue
            if watcher._held is not None:
                watcher._held.append((shard, changes, span, revision))
                continue
            alike.setdefault((id(watcher.position), watcher.span), []).append(watcher)
        for first, *others in alike.values():
            before = len(first.outbox)
            sent = _feed(first, shard, changes, span, revision, memo=memo)
            added = first.outbox[before:]
            for other in others:
                other.outbox.extend(added)
                other.position = first.position
            if sent:
                woken.append(first)
                woken.extend(others)
        return woken

    def resync(self, watch_id: int) -> int | None:
        """The watcher's shards here skipped changes (a snapshot install): what it is fed
        is held until ``caught_up`` hands it the history from its position, read after
        this call; the sync number to hand it with (None: no such watcher)."""
        watcher = self._watchers.get(watch_id)
        if watcher is None or watcher.canceled is not None or watcher.cancel_reason:
            return None
        if watcher._held is None:
            watcher._held = []
        watcher.sync += 1
        return watcher.sync

    def cancel(self, watch_id: int, reason: str) -> None:
        watcher = self._watchers.get(watch_id)
        if watcher is not None:
            watcher.cancel_reason = reason
            watcher._held = None

    def caught_up(
        self, watch_id: int, parts: Iterable[ShardHistory], sync: int = 0
    ) -> Watcher | None:
        """The history read for the watcher (after ``add``, or after the ``resync`` that
        returned ``sync``): delivered, then what was held. A stale read is ignored."""
        watcher = self._watchers.get(watch_id)
        if watcher is None or watcher._held is None or sync != watcher.sync:
            return None
        held, watcher._held = watcher._held, None
        for part in parts:
            lowest = watcher.position.lowest(part.span)
            if lowest is not None and lowest < part.compacted:
                watcher.canceled = part.compacted
                watcher.outbox.clear()
                return watcher
            changes = [
                c
                for c in part.changes
                if watcher.span.contains(c.key) and watcher.position.is_new(c.key, c.revision)
            ]
            _feed(watcher, part.shard, changes, part.span, part.revision, memo={})
        for shard, changes, span, revision in held:
            _feed(watcher, shard, changes, span, revision, memo={})
        return watcher


_Memo = dict[tuple[int, KeySpan, int], tuple[Position, Position]]


def _feed(
    watcher: Watcher,
    shard: int,
    changes: list[Change],
    span: KeySpan | None,
    revision: int,
    *,
    memo: _Memo,
) -> bool:
    """Deliver what is new to ``watcher``, one delivery per revision (a revision is one
    atomic step: a Txn's changes share it), each with the exact position after it; whether
    there is one to send.

    After each revision the position advances over the span the changes were made in (a
    split later in the batch leaves the part that moved where the parent's changes left
    it); after the batch, over the shard's span now. New is judged against the position
    before each revision, which no earlier revision of the batch raised past it."""
    position = watcher.position
    sent = False
    i = 0
    while i < len(changes):
        at = changes[i].revision
        made_in = changes[i].span or watcher.span
        events = []
        while i < len(changes) and changes[i].revision == at:
            change = changes[i]
            if watcher.span.contains(change.key) and position.is_new(change.key, at):
                events.append(WatchEvent(shard, change))
            i += 1
        position = _advanced(position, made_in, at, memo)
        if events:
            watcher.outbox.append(Delivery(tuple(events), position))
            sent = True
    watcher.position = _advanced(position, span or watcher.span, revision, memo)
    return sent


def _advanced(position: Position, span: KeySpan, revision: int, memo: _Memo) -> Position:
    key = (id(position), span, revision)
    hit = memo.get(key)
    if hit is not None and hit[0] is position:
        return hit[1]
    after = position.advanced(span, revision)
    memo[key] = (position, after)
    return after


def shard_history(
    engine: Engine, descriptor: RangeDescriptor, position: Position
) -> ShardHistory | None:
    """One hosted shard's part of a catch-up: its history after ``position`` through its
    revision, read from ``engine`` (one transaction). None: the shard's span in this read
    is not ``descriptor``'s (it split or merged after the caller listed the hosted shards:
    a split's job was committed before the node heard of it); the caller lists them again
    and reads again. Otherwise a split's right part would be read by no shard: its changes
    up to the split are outside the left part's span now, and the new shard was not listed
    (sim seed 1585). None too for a successor whose base is not written yet (sim seed 876:
    read at revision 0, its watchers then skipped the ended range's last changes)."""
    if descriptor.generation > 1 and engine.range_get() is None:
        return None  # born of a split, merge or stop whose first state is not written yet
    machine = KvStateMachine(engine, initial=descriptor)
    span = machine.descriptor.span if machine.descriptor is not None else descriptor.span
    if span != descriptor.span:
        return None
    changes = history_since(engine, span, position, machine.revision)
    return ShardHistory(
        descriptor.range_id, span, machine.revision, machine.compacted_revision, tuple(changes)
    )


def history_since(engine: Engine, span: KeySpan, position: Position, through: int) -> list[Change]:
    """The changes in ``span`` after ``position`` and up to revision ``through``, from the
    shard's history, in revision order (then key order), each with the version before it
    when history still holds that one."""
    out: list[Change] = []
    start = span.start
    while True:
        keys = engine.history_keys(start, span.end, 256)
        for key in keys:
            seen = position.revision_at(key) if position.span.contains(key) else through
            previous = None
            first = True
            for version in engine.history_after(key, seen):
                if version.revision > through:
                    break
                if first:
                    before = engine.history_at(key, version.revision - 1)
                    previous = before.record if before is not None else None
                    first = False
                out.append(Change(key, version.revision, version.record, previous, span))
                previous = version.record
        if len(keys) < 256:
            break
        start = keys[-1] + b"\x00"
    out.sort(key=lambda c: (c.revision, c.key))
    return out
