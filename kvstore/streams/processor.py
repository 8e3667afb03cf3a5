"""Event processors: a group of them shares a topic's partitions, each partition with one
owner at a time, balanced, with checkpoints (Azure Event Hubs' EventProcessorClient, on the
store's leases and Txn).

Rules:
- A processor holds one lease while it runs. Its **status** (``m/<group>/<topic>/<name>``:
  the partitions it owns, its last heartbeat) is put under that lease each cycle, so a
  crashed processor's status goes by itself; the live members are those with a status.
- A partition's **ownership** is the key ``own`` of the group's row for it, also under the
  owner's lease. A processor takes one (``kvstore.streams.balance`` says which) with a Txn
  that compares the record it read (absent: create revision 0; else its mod revision) and
  replaces it, deleting first, so the record is created anew: its create revision is the
  owner's **fencing token**, different for each taking.
- A processor learns it lost a partition at its next cycle (the record is no longer its
  own) and stops feeding that partition's events; until then it may still be handed some,
  which its checkpoints cannot move: ``checkpoint`` is a Txn that holds only while the
  token still owns the partition and only moves the offset forward (offsets are stored as
  16 hex digits, so comparing the bytes compares the numbers).
- Delivery is at least once: a new owner starts after the last checkpoint; ``on_event``
  sees each partition's events in offset order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import structlog

from cluster.keys import prefix_end
from cluster.stream_keys import (
    GROUPS,
    checkpoint_key,
    group_prefix,
    group_row,
    members_prefix,
    owner_key,
    partition_of_group_row,
    valid_name,
)
from kvstore.client import KvError
from kvstore.streams.balance import Take, plan
from kvstore.streams.client import Record

if TYPE_CHECKING:
    from kvstore.client import AsyncClient
    from kvstore.leasing import Lease
    from kvstore.v1 import kv_pb2

CYCLE_S = 2.0
TTL_S = 10.0
LEAVE_S = 2.0  # at most this long to remove the status when stopping


@dataclass
class _Owned:
    token: int  # the ownership record's create revision
    task: asyncio.Task[None]
    position: int = 0  # the next offset to hand over


@dataclass(frozen=True)
class PartitionState:
    """What ``describe`` tells of one partition of a group."""

    partition: int
    owner: str | None
    checkpoint: int | None  # the next offset to process (None: none yet)


class EventProcessor:
    """``EventProcessor(client, topic, group, on_event)``; ``await run()`` until ``stop()``.

    ``on_event(record)`` is awaited for each record, a partition's in offset order; call
    ``checkpoint(record)`` once it is processed (a processor that takes the partition over
    starts after the last checkpoint)."""

    def __init__(
        self,
        client: AsyncClient,
        topic: str,
        group: str,
        on_event: Callable[[Record], Awaitable[None]],
        *,
        name: str | None = None,
        cycle_s: float = CYCLE_S,
        ttl_s: float = TTL_S,
        max_staleness_ms: int = 0,
    ) -> None:
        """``max_staleness_ms``: read the partitions from a replica at most this stale (one
        in this client's datacenter when there is one) rather than from their leaders."""
        self.name = name or f"p{random.SystemRandom().randrange(1 << 40):010x}"
        for what, value in (("topic", topic), ("group", group), ("name", self.name)):
            if not valid_name(value.encode()):
                raise ValueError(f"a {what} is 1..249 of [A-Za-z0-9._-], not {value!r}")
        self._client = client
        self._topic = topic
        self._group = group.encode()
        self._on_event = on_event
        self._cycle_s = cycle_s
        self._max_staleness_ms = max_staleness_ms
        self._ttl_s = ttl_s
        self._owned: dict[int, _Owned] = {}
        self._stopping = asyncio.Event()
        self._rng = random.Random()
        self._log = structlog.get_logger("kvstore.processor").bind(
            group=group, topic=topic, member=self.name
        )
        self._seen_mod: dict[int, int] = {}  # each ownership record's, as last read
        self.partitions = 0

    @property
    def owned(self) -> list[int]:
        return sorted(self._owned)

    async def run(self) -> None:
        """Take part in the group until ``stop()`` (or the lease cannot be kept)."""
        described = await self._client.streams.describe_topic(self._topic)
        self.partitions = described.topic.partitions
        async with self._client.lease(self._ttl_s) as lease:
            try:
                while not self._stopping.is_set() and not lease.lost.is_set():
                    try:
                        await self._cycle(lease)
                    except KvError as exc:  # a node or the network failing: next cycle
                        self._log.info("cycle_failed", code=exc.code.name, reason=exc.details)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), self._cycle_s)
            finally:
                await self._drop_all()
                # Best effort, and bounded: the lease's end removes the status anyway.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._client.delete(self._member_key()), LEAVE_S)

    def stop(self) -> None:
        self._stopping.set()

    async def checkpoint(self, record: Record) -> bool:
        """Record that ``record`` was processed: the group resumes after it. False if this
        processor no longer owns its partition (or a later checkpoint is there)."""
        owned = self._owned.get(record.partition)
        if owned is None:
            return False
        row = group_row(self._group, self._topic.encode(), record.partition)
        value = b"%016x" % (record.offset + 1)
        for held in ("absent", "behind"):
            txn = self._client.txn().if_create_revision(owner_key(row), "=", owned.token)
            if held == "absent":
                txn = txn.if_version(checkpoint_key(row), "=", 0)
            else:
                txn = txn.if_value(checkpoint_key(row), "<", value)
            if (await txn.then_put(checkpoint_key(row), value).commit()).succeeded:
                return True
        return False

    # ------------------------------------------------------------------ one cycle

    async def _cycle(self, lease: Lease) -> None:
        members = await self._live_members()
        owners, records = await self._ownership()
        for p in [p for p, owned in self._owned.items() if records.get(p) != owned.token]:
            await self._drop(p)  # taken from us (or our claim expired)
        take = plan(self.partitions, owners, members, self.name, self._rng)
        if take is not None:
            await self._take(take, lease)
        status = {"owned": self.owned, "heartbeat_ms": int(time.time() * 1000)}
        await self._client.put(self._member_key(), json.dumps(status), lease=lease.id)

    async def _live_members(self) -> set[str]:
        prefix = members_prefix(self._group, self._topic.encode())
        items, _ = await self._client.scan(prefix, prefix_end(prefix), 10_000)
        return {item.key[len(prefix) :].decode() for item in items} | {self.name}

    async def _ownership(self) -> tuple[dict[int, str], dict[int, int]]:
        """Each claimed partition's owner, and the create revision of each of ours. A
        claim in our name that we are not feeding (a processor of the same name before a
        restart, on a lease of its own) counts as a dead member's: taken over anew."""
        owners: dict[int, str] = {}
        ours: dict[int, int] = {}
        self._seen_mod = {}
        for p, kind, item in await _group_rows(self._client, self._group, self._topic.encode()):
            if kind != b"own":
                continue
            owners[p] = item.value.decode()
            self._seen_mod[p] = item.mod_revision
            if owners[p] == self.name:
                ours[p] = item.create_revision
                owned = self._owned.get(p)
                if owned is None or owned.token != item.create_revision:
                    owners[p] = self.name + "~before"  # no member has that name
        return owners, ours

    async def _take(self, take: Take, lease: Lease) -> None:
        row = group_row(self._group, self._topic.encode(), take.partition)
        own = owner_key(row)
        txn = self._client.txn()
        if take.owner is None:
            txn = txn.if_create_revision(own, "=", 0)
        else:
            txn = txn.if_mod_revision(own, "=", self._seen_mod[take.partition]).then_delete(own)
        result = await txn.then_put(own, self.name, lease=lease.id).commit()
        if not result.succeeded:
            return  # another processor moved first: plan again next cycle
        start = await self._checkpoint_of(row)
        task = asyncio.create_task(self._feed(take.partition, start))
        self._owned[take.partition] = _Owned(result.revision, task, start)

    async def _checkpoint_of(self, row: bytes) -> int:
        got = await self._client.get(checkpoint_key(row))
        return int(got.value, 16) if got is not None else 0

    async def _feed(self, partition: int, offset: int) -> None:
        """Hand the partition's records from ``offset`` on to ``on_event``, in order, until
        the partition is dropped. A failed read is tried again from where it stopped; an
        offset trimmed meanwhile starts from the first retained one."""
        streams = self._client.streams
        while partition in self._owned:
            try:
                records = streams.subscribe(
                    self._topic, partition, offset, max_staleness_ms=self._max_staleness_ms
                )
                async for record in records:
                    owned = self._owned.get(partition)
                    if owned is None:
                        return
                    await self._on_event(record)
                    offset = owned.position = record.offset + 1
            except KvError as exc:
                if exc.code == grpc.StatusCode.OUT_OF_RANGE:
                    described = await streams.describe_topic(self._topic)
                    offset = described.partitions[partition].first_offset
                else:
                    self._log.info("fetch_failed", partition=partition, code=exc.code.name)
                    await asyncio.sleep(0.5)

    async def _drop(self, partition: int) -> None:
        owned = self._owned.pop(partition, None)
        if owned is not None:
            owned.task.cancel()
            await asyncio.gather(owned.task, return_exceptions=True)

    async def _drop_all(self) -> None:
        for p in list(self._owned):
            await self._drop(p)

    def _member_key(self) -> bytes:
        return members_prefix(self._group, self._topic.encode()) + self.name.encode()


async def describe(client: AsyncClient, topic: str, group: str) -> list[PartitionState]:
    """Each partition of ``topic``: its owner in ``group`` and the group's checkpoint."""
    owners: dict[int, str] = {}
    checkpoints: dict[int, int] = {}
    for p, kind, item in await _group_rows(client, group.encode(), topic.encode()):
        if kind == b"own":
            owners[p] = item.value.decode()
        elif kind == b"ckpt":
            checkpoints[p] = int(item.value, 16)
    partitions = (await client.streams.describe_topic(topic)).topic.partitions
    return [PartitionState(p, owners.get(p), checkpoints.get(p)) for p in range(partitions)]


async def _group_rows(
    client: AsyncClient, group: bytes, topic: bytes
) -> list[tuple[int, bytes, kv_pb2.KeyValue]]:
    """The group's row keys on ``topic``: (partition, ``own`` or ``ckpt``, the key-value)."""
    prefix = group_prefix(group, topic)
    items, _ = await client.scan(prefix, prefix_end(prefix), 10_000)
    return [
        (partition_of_group_row(prefix, item.key), item.key.rsplit(b"/", 1)[1], item)
        for item in items
    ]


async def group_topics(client: AsyncClient, group: str) -> list[str]:
    """The topics ``group`` has claimed or checkpointed partitions of."""
    prefix = GROUPS + group.encode() + b"/"
    topics: list[str] = []
    start = prefix
    while True:
        items, _ = await client.scan(start, prefix_end(prefix), 1)
        if not items:
            return topics
        topic = items[0].key[len(prefix) :].split(b"/", 1)[0]
        topics.append(topic.decode())
        start = prefix_end(prefix + topic + b"/")  # skip the rest of that topic's rows


async def member_heartbeats(client: AsyncClient, topic: str, group: str) -> dict[str, float]:
    """Each live member's last heartbeat (ms since the epoch, its own clock)."""
    prefix = members_prefix(group.encode(), topic.encode())
    items, _ = await client.scan(prefix, prefix_end(prefix), 10_000)
    beats: dict[str, float] = {}
    for item in items:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            beats[item.key[len(prefix) :].decode()] = float(json.loads(item.value)["heartbeat_ms"])
    return beats
