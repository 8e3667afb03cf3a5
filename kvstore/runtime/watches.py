"""The watches one node serves: ``kvstore.model.watch.WatchHub`` driven by the runtime.

Rules:
- The runtime feeds the hub every apply that changed keys, after its transaction committed
  (``applied``), and tells it of snapshot installs (``installed``): a replica that installed
  a snapshot skipped the changes the snapshot covers, so its watchers over that shard catch
  up again from history, from their exact positions (nothing missed, nothing repeated).
- A watch covers only shards this node hosts (``WatchNotHostedError`` otherwise). "Now" is
  each hosted shard's revision as applied here; any other start catches up from history,
  read in one transaction per shard on the disk thread's executor (a read transaction does
  not wait for writes), then handed to the hub on the loop. A read that finds a shard split
  or merged since the hosted shards were listed (committed, not yet reported to the node)
  lists them again and reads again.
- Each watch has an ``asyncio.Event`` set whenever its watcher has something to send.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

from cluster.keys import END_OF_KEYSPACE, KeySpan
from cluster.position import Position
from cluster.ranges import RangeDescriptor
from kvstore.model import KvStateMachine
from kvstore.model.engine import Engine
from kvstore.model.jobs import Changed
from kvstore.model.watch import (
    ShardHistory,
    Watcher,
    WatchHub,
    WatchNotHostedError,
    covering,
    shard_history,
)

_RELIST_S = 0.005  # how soon a catch-up that read a layout the node has not heard of retries


@dataclass
class Watch:
    watcher: Watcher
    wake: asyncio.Event


class Watches:
    def __init__(
        self,
        hosted: Callable[[], list[RangeDescriptor]],
        read: Callable[[int], AbstractContextManager[Engine]],
    ) -> None:
        """``hosted``: the live ranges this node holds replicas of; ``read``: a read
        transaction's engine for a shard."""
        self._hub = WatchHub()
        self._hosted = hosted
        self._read = read
        self._watches: dict[int, Watch] = {}
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._watches)

    # ------------------------------------------------------------------ the runtime's side

    def applied(self, changed: list[Changed]) -> None:
        for shard, changes, span, revision in changed:
            for watcher in self._hub.applied(shard, changes, span, revision):
                self._watches[watcher.watch_id].wake.set()

    def installed(self, shards: list[int]) -> None:
        """These shards' replicas here installed snapshots: their watchers catch up again."""
        spans = [d.span for d in self._hosted() if d.range_id in shards]
        for watch in list(self._watches.values()):
            watcher = watch.watcher
            if watcher.canceled is None and any(s.overlaps(watcher.span) for s in spans):
                sync = self._hub.resync(watcher.watch_id)
                if sync is not None:
                    asyncio.get_running_loop().create_task(self._catch_up(watcher, sync))

    def recheck(self) -> None:
        """The hosted ranges changed: a watch over keys this node no longer serves (a
        replica moved off it) ends with the reason, and its client resumes elsewhere from
        its last token (else it would wait for changes that are made on other nodes)."""
        for watch in list(self._watches.values()):
            watcher = watch.watcher
            if watcher.canceled is not None or watcher.cancel_reason:
                continue
            try:
                self._covering(watcher.span)
            except WatchNotHostedError as exc:
                self._hub.cancel(watcher.watch_id, str(exc))
                watch.wake.set()

    def floors(self) -> dict[int, int]:
        """Per hosted shard, at most the lowest revision a watcher here has seen up to over
        it: compacting above it would cancel that watcher. A watcher counts its lowest
        piece for every shard its span overlaps (cheap, and only ever too low)."""
        shards = sorted(self._hosted(), key=lambda d: d.start)
        starts = [d.start for d in shards]
        out: dict[int, int] = {}
        for watch in self._watches.values():
            watcher = watch.watcher
            lowest = min(p.revision for p in watcher.position.pieces)
            first = max(0, bisect.bisect_right(starts, watcher.span.start) - 1)
            for d in shards[first:]:
                if not d.span.overlaps(watcher.span):
                    if watcher.span.end != END_OF_KEYSPACE and d.start >= watcher.span.end:
                        break
                    continue
                out[d.range_id] = min(out.get(d.range_id, lowest), lowest)
        return out

    # ------------------------------------------------------------------ the service's side

    def add(self, span: KeySpan, start: Position | None, *, prev_kv: bool) -> Watch:
        """A watch of ``span`` from ``start`` (None: now)."""
        shards = self._covering(span)
        now = start is None
        if start is None:
            start = Position.at(span, 0)
            for d, revision in self._revisions(shards):
                start = start.advanced(d.span, revision)
        watch_id = next(self._ids)
        watcher = self._hub.add(watch_id, span, start, prev_kv=prev_kv, now=now)
        watch = self._watches[watch_id] = Watch(watcher, asyncio.Event())
        if not now:
            asyncio.get_running_loop().create_task(self._catch_up(watcher))
        return watch

    def remove(self, watch_id: int) -> None:
        self._watches.pop(watch_id, None)
        self._hub.remove(watch_id)

    # ------------------------------------------------------------------ inside

    def _covering(self, span: KeySpan) -> list[RangeDescriptor]:
        return covering(self._hosted(), span)

    def _revisions(self, shards: list[RangeDescriptor]) -> Iterator[tuple[RangeDescriptor, int]]:
        for d in shards:
            with self._read(d.range_id) as engine:
                yield d, KvStateMachine(engine, initial=d).revision

    async def _catch_up(self, watcher: Watcher, sync: int = 0) -> None:
        position = watcher.position
        try:
            loop = asyncio.get_running_loop()
            while True:
                shards = self._covering(watcher.span)
                parts = await loop.run_in_executor(None, self._histories, shards, position)
                if parts is not None or watcher.watch_id not in self._watches:
                    break
                # A shard split or merged after it was listed (its job committed, its
                # job_done not yet run on the loop): list the shards again once it has.
                await asyncio.sleep(_RELIST_S)
        except WatchNotHostedError as exc:
            # A range moved off this node meanwhile: the caller resumes elsewhere.
            self._hub.cancel(watcher.watch_id, str(exc))
        else:
            if parts is not None:
                self._hub.caught_up(watcher.watch_id, parts, sync)
        watch = self._watches.get(watcher.watch_id)
        if watch is not None:
            watch.wake.set()

    def _histories(
        self, shards: list[RangeDescriptor], position: Position
    ) -> list[ShardHistory] | None:
        """None: a shard's span in its read is not the listed one (list again)."""
        parts = []
        for d in shards:
            with self._read(d.range_id) as engine:
                part = shard_history(engine, d, position)
            if part is None:
                return None
            parts.append(part)
        return parts
