"""The simulated disk: one FIFO queue of jobs per node, one job at a time, as the runtime's disk
thread runs them: a job *starts* (its applies are computed, in an open transaction: the
runtime answers proposers then, before the fsync) when the one before it is done, and is
durable only when it *completes*. Jobs that queue while the disk is busy share the next
fsync, as the runtime's group commit merges them into one transaction: the first of them pays
the disk's latency, the rest complete right behind it (a disk that charged every queued job
a full fsync falls behind a busy leader for good, which the runtime never does).

A crash throws away every job not yet completed (what an fsync-less page cache loses) and
rolls back the open transaction; completed jobs live on: each group's Paxos records in a
``MemoryStorage``, the state machines' data in one ``MemoryStore`` (keyed by key, like LMDB),
both surviving restarts. A wiped disk loses both (its replicas must rejoin: ``paxos.rejoin``).
A group the disk has no record of reads as storage's default: it votes on a disk created
for the new cluster (``founding``), and rejoins first on a disk that was wiped, as LMDB's.
"""

from __future__ import annotations

import random
from collections import deque

from kvstore.model import MemoryStore
from kvstore.model.node import DiskJob
from paxos import MemoryStorage


class SimDisk:
    def __init__(self, rng: random.Random, latency_us: tuple[int, int]) -> None:
        self._rng = rng
        self._latency_us = latency_us
        self.founding = True
        self.incarnation = 1  # a wiped disk is another one (``Node``'s ``disk_incarnation``)
        self.storage: dict[int, MemoryStorage] = {}
        self.kv = MemoryStore()
        self.pending: deque[DiskJob] = deque()
        self._busy_until_us = 0
        self._batch_start_us = 0  # when the last batch (jobs sharing one fsync) starts

    def submit(self, job: DiskJob, now_us: int) -> tuple[int, int]:
        """Queue ``job``; returns when it starts and when it is durable (each job after
        every earlier one is durable)."""
        self.pending.append(job)
        if now_us < self._batch_start_us:  # the queued batch has not started: join it
            return self._busy_until_us, self._busy_until_us
        lo, hi = self._latency_us
        self._batch_start_us = max(now_us, self._busy_until_us)
        self._busy_until_us = self._batch_start_us + self._rng.randrange(lo, hi + 1)
        return self._batch_start_us, self._busy_until_us

    def complete(self) -> DiskJob:
        """The oldest job is durable: its Paxos records now; the caller runs the rest."""
        job = self.pending.popleft()
        for group, record in job.records:
            self.storage_of(group).apply(record)
        return job

    def storage_of(self, group: int) -> MemoryStorage:
        storage = self.storage.get(group)
        if storage is None:
            storage = self.storage[group] = MemoryStorage(voting=self.founding)
        return storage

    def crash(self) -> int:
        lost = len(self.pending)
        self.pending.clear()
        self.kv.rollback()  # the job that had started, uncommitted
        self._busy_until_us = 0
        self._batch_start_us = 0
        return lost

    def wipe(self) -> None:
        self.founding = False
        self.incarnation += 1
        self.storage = {}
        self.kv = MemoryStore()
