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
  (``history_since``), and hands it to ``caught_up``, which delivers it, advances the
  position over the shard to that revision, and then replays what was held through the
  same filter: a change both read and held is delivered once. A shard whose history was
  compacted past the position cancels the watch, naming the compacted revision.
- Catch-up batches are cut only between revisions (a Txn's changes stay together), so the
  position after each batch is exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cluster.keys import KeySpan
from cluster.position import Position
from kvstore.model.engine import Engine
from kvstore.model.history import Change

CATCH_UP_BATCH_EVENTS = 1000


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
    _held: list[tuple[int, list[Change], KeySpan | None, int]] | None = None


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
        for watcher in self._watchers.values():
            if watcher.canceled is not None:
                continue
            if span is not None and not span.overlaps(watcher.span):
                continue
            if watcher._held is not None:
                watcher._held.append((shard, changes, span, revision))
                continue
            if _feed(watcher, shard, changes, span, revision):
                woken.append(watcher)
        return woken

    def caught_up(self, watch_id: int, parts: Iterable[ShardHistory]) -> Watcher | None:
        watcher = self._watchers.get(watch_id)
        if watcher is None or watcher._held is None:
            return None
        held, watcher._held = watcher._held, None
        for part in parts:
            lowest = watcher.position.lowest(part.span)
            if lowest is not None and lowest < part.compacted:
                watcher.canceled = part.compacted
                watcher.outbox.clear()
                return watcher
            batch: list[WatchEvent] = []
            for change in part.changes:
                if not watcher.span.contains(change.key):
                    continue
                if not watcher.position.is_new(change.key, change.revision):
                    continue
                if (
                    len(batch) >= CATCH_UP_BATCH_EVENTS
                    and batch[-1].change.revision != change.revision
                ):
                    _send(watcher, batch, part.span, batch[-1].change.revision)
                    batch = []
                batch.append(WatchEvent(part.shard, change))
            _send(watcher, batch, part.span, part.revision)
        for shard, changes, span, revision in held:
            _feed(watcher, shard, changes, span, revision)
        return watcher


def _feed(
    watcher: Watcher, shard: int, changes: list[Change], span: KeySpan | None, revision: int
) -> bool:
    """Deliver what is new to ``watcher``; whether it has a delivery to send.

    New is judged against the position before the batch (a batch holds each change once;
    a Txn's changes share a revision). The position after it is advanced over each span
    the changes were made in (a split in the batch leaves the part that moved where the
    parent's changes left it) and over the shard's span now."""
    before = watcher.position
    events = []
    reached: dict[KeySpan, int] = {}
    for change in changes:
        if watcher.span.contains(change.key) and before.is_new(change.key, change.revision):
            events.append(WatchEvent(shard, change))
        made_in = change.span or watcher.span
        reached[made_in] = max(reached.get(made_in, 0), change.revision)
    after = before
    for made_in, upto in reached.items():
        after = after.advanced(made_in, upto)
    watcher.position = after.advanced(span or watcher.span, revision)
    if events:
        watcher.outbox.append(Delivery(tuple(events), watcher.position))
    return bool(events)


def _send(watcher: Watcher, batch: list[WatchEvent], span: KeySpan, through: int) -> None:
    watcher.position = watcher.position.advanced(span, through)
    if batch:
        watcher.outbox.append(Delivery(tuple(batch), watcher.position))


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
