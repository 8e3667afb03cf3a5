"""``KV.Watch``: many watches on one bidirectional stream, served from this node's replicas.

Rules:
- A create that cannot be served (a bad range or token, a duplicate id, keys this node holds
  no replica of) is answered on the stream with ``created`` and ``canceled`` and the reason,
  as etcd does: the stream and its other watches go on.
- Every watch answers ``created`` first (its token is its start), then events: whatever
  waits when its watcher wakes goes in one response (cut after the revision that reaches
  ``RESPONSE_EVENTS_MAX`` events), each revision's last event carrying the token after it;
  or, after a second with nothing to send, a progress mark: no events, the token now.
- A watch whose start a shard has compacted ends with ``canceled`` and
  ``compact_revision``; one ended for another reason (its range moved off this node, or it
  fell ``OUTBOX_MAX`` deliveries behind) ends with ``canceled`` and a reason: the caller
  resumes from its last token, here or on another node.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from cluster.keys import END_OF_KEYSPACE, KeySpan
from cluster.position import Position
from kvstore.model.engine import Record
from kvstore.model.history import Change
from kvstore.model.watch import WatchNotHostedError
from kvstore.runtime.node import NodeRuntime
from kvstore.runtime.watches import Watch
from kvstore.v1 import kv_pb2

PROGRESS_S = 1.0  # a watch with nothing to send says where it is this often
OUTBOX_MAX = 10_000  # deliveries a watch may fall behind before it is ended (resume it)
RESPONSES_QUEUED_MAX = 1024
RESPONSE_EVENTS_MAX = 1000  # a response is cut after the revision that reaches this many
WATCHES_PER_STREAM_MAX = 10_000  # a stream asking for more is refused the extra ones


class WatchStream:
    """One ``KV.Watch`` call."""

    def __init__(self, runtime: NodeRuntime, dc: str) -> None:
        self._runtime = runtime
        self._dc = dc
        # Unbounded, so the end of the call is always queued; pumps wait while it is long.
        self._out: asyncio.Queue[kv_pb2.WatchResponse | None] = asyncio.Queue()
        self._taken = asyncio.Condition()
        self._watches: dict[int, tuple[Watch, asyncio.Task[None]]] = {}
        self._next_id = 1

    async def serve(
        self, requests: AsyncIterator[kv_pb2.WatchRequest]
    ) -> AsyncIterator[kv_pb2.WatchResponse]:
        reader = asyncio.create_task(self._read(requests))
        try:
            while (response := await self._out.get()) is not None:
                if self._out.qsize() < RESPONSES_QUEUED_MAX // 2:
                    async with self._taken:
                        self._taken.notify_all()
                yield response
            await reader  # a failed read (a malformed request) fails the call
        finally:
            reader.cancel()
            for watch_id in list(self._watches):
                self._end(watch_id)

    async def _read(self, requests: AsyncIterator[kv_pb2.WatchRequest]) -> None:
        try:
            async for request in requests:
                kind = request.WhichOneof("request")
                if kind == "create":
                    await self._create(request.create)
                elif kind == "cancel":
                    watch_id = request.cancel.watch_id
                    if watch_id in self._watches:
                        self._end(watch_id)
                        await self._send(watch_id, canceled=True, cancel_reason="canceled")
            # The caller closed its side: its watches go on until it cancels the call.
            await asyncio.Event().wait()
        finally:
            self._out.put_nowait(None)

    async def _create(self, create: kv_pb2.WatchCreateRequest) -> None:
        watch_id = create.watch_id or self._fresh_id()
        refusal = None
        start: Position | None = None
        longest = self._runtime.cluster.limits.key_bytes_max
        try:
            if max(len(create.key), len(create.range_end)) > longest:
                raise ValueError(f"a watched key is over the {longest}-byte key limit")
            span = watched_span(create.key, create.range_end)
            start = starting_position(span, create.start_token, create.start_revision)
        except ValueError as exc:
            refusal = f"INVALID_ARGUMENT: {exc}"
        if refusal is None and watch_id in self._watches:
            refusal = f"INVALID_ARGUMENT: watch id {watch_id} is in use on this stream"
        if refusal is None and len(self._watches) >= WATCHES_PER_STREAM_MAX:
            refusal = f"RESOURCE_EXHAUSTED: {WATCHES_PER_STREAM_MAX} watches on one stream at most"
        if refusal is not None:
            await self._send(watch_id, created=True, canceled=True, cancel_reason=refusal)
            return
        try:
            watch = self._runtime.watches.add(span, start, prev_kv=create.prev_kv)
        except WatchNotHostedError as exc:
            await self._send(
                watch_id, created=True, canceled=True, cancel_reason=f"UNAVAILABLE: {exc}"
            )
            return
        await self._send(watch_id, created=True, token=watch.watcher.position.token())
        task = asyncio.create_task(self._pump(watch_id, watch))
        self._watches[watch_id] = (watch, task)

    def _fresh_id(self) -> int:
        while self._next_id in self._watches:
            self._next_id += 1
        self._next_id += 1
        return self._next_id - 1

    def _end(self, watch_id: int) -> None:
        entry = self._watches.pop(watch_id, None)
        if entry is not None:
            watch, task = entry
            self._runtime.watches.remove(watch.watcher.watch_id)
            if task is not asyncio.current_task():
                task.cancel()

    async def _pump(self, watch_id: int, watch: Watch) -> None:
        watcher = watch.watcher
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PROGRESS_S):
                    await watch.wake.wait()
            watch.wake.clear()
            if watcher.canceled is not None:
                self._end(watch_id)
                await self._send(
                    watch_id,
                    canceled=True,
                    compact_revision=watcher.canceled,
                    cancel_reason=f"OUT_OF_RANGE: history starts at revision {watcher.canceled}",
                )
                return
            if watcher.cancel_reason or len(watcher.outbox) > OUTBOX_MAX:
                reason = watcher.cancel_reason or "too far behind: resume from the last token"
                self._end(watch_id)
                await self._send(watch_id, canceled=True, cancel_reason=f"UNAVAILABLE: {reason}")
                return
            deliveries, watcher.outbox = watcher.outbox, []
            if not deliveries:
                await self._send(watch_id, token=watcher.position.token())
                continue
            # Every delivery waiting, a response per RESPONSE_EVENTS_MAX events or so: one
            # message for a burst, each revision's last event carrying its token.
            events: list[kv_pb2.WatchEvent] = []
            for i, delivery in enumerate(deliveries):
                for event in delivery.events:
                    events.append(event_of(event.shard, event.change, watcher.prev_kv))
                events[-1].token = delivery.position.token()
                if len(events) >= RESPONSE_EVENTS_MAX or i == len(deliveries) - 1:
                    await self._send(watch_id, events=events, token=events[-1].token)
                    events = []

    async def _send(self, watch_id: int, **fields: Any) -> None:
        if self._out.qsize() >= RESPONSES_QUEUED_MAX:
            async with self._taken:  # a slow reader: its watches' outboxes grow instead
                await self._taken.wait_for(lambda: self._out.qsize() < RESPONSES_QUEUED_MAX)
        header = kv_pb2.ResponseHeader(
            served_by_node_id=self._runtime.node_id, served_by_dc=self._dc
        )
        await self._out.put(kv_pb2.WatchResponse(watch_id=watch_id, header=header, **fields))


def watched_span(key: bytes, range_end: bytes) -> KeySpan:
    """etcd's convention: no ``range_end`` is ``key`` alone; ``\\0`` is every key from ``key``."""
    if not range_end:
        return KeySpan(key, key + b"\x00")
    if range_end == b"\x00":
        return KeySpan(key, END_OF_KEYSPACE)
    if range_end <= key:
        raise ValueError("range_end must be after key (or empty, or \\0)")
    return KeySpan(key, range_end)


def starting_position(span: KeySpan, token: str, revision: int) -> Position | None:
    """Where a watch starts: after the token, else just before ``revision`` (its changes
    from that revision on), else None (now)."""
    if token and revision:
        raise ValueError("give start_token or start_revision, not both")
    if token:
        position = Position.from_token(token)
        whole = position.span
        if not (
            whole.contains(span.start)
            and (
                whole.end == END_OF_KEYSPACE
                or (span.end != END_OF_KEYSPACE and span.end <= whole.end)
            )
        ):
            raise ValueError(f"the token's position is of {whole}, not all of {span}")
        return position
    if revision:
        return Position.at(span, revision - 1)
    return None


def event_of(shard: int, change: Change, prev_kv: bool) -> kv_pb2.WatchEvent:
    event = kv_pb2.WatchEvent(shard_id=shard)
    if change.record is None:
        event.type = kv_pb2.WatchEvent.DELETE
        event.kv.CopyFrom(kv_pb2.KeyValue(key=change.key, mod_revision=change.revision))
    else:
        event.kv.CopyFrom(_key_value(change.key, change.record))
    if prev_kv and change.prev is not None:
        event.prev_kv.CopyFrom(_key_value(change.key, change.prev))
    return event


def _key_value(key: bytes, record: Record) -> kv_pb2.KeyValue:
    return kv_pb2.KeyValue(
        key=key,
        value=record.value,
        create_revision=record.create_revision,
        mod_revision=record.mod_revision,
        version=record.version,
    )
