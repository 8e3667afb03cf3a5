"""The lock workload and its checker: a counter incremented only under a lock, fenced.

One worker per node (so one per datacenter at least), each with its own client library
whose first endpoint is its node. A worker takes the lock ``jl`` (``AsyncClient.lock``, a
short lease), reads the counter ``jl.counter``, and writes the next value in a Txn that
holds only while its own lock key still has its fencing token as create revision; then it
lets the lock go. The nemesis pauses, kills and cuts nodes meanwhile, so leases expire
under holders, and holders go on after they lost the lock.

Checks (``check_locks``):
- **interleaved**: two increments that succeeded wrote the same value (both read the same
  count: two holders at once), or, in fencing-token order, a value that does not grow (a
  holder read a count older than an increment that succeeded before it);
- **lost**: the counter read after the run is below an increment that succeeded;
- **phantom**: the final count is no value any increment wrote (acknowledged or unknown).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvstore import AsyncClient, KvError

LOCK = "jl"
COUNTER = "jl.counter"  # next to the lock's keys (jl/...): the same shard, for the Txn
LOCK_TTL_S = 2.0
ATTEMPT_S = 10.0


@dataclass
class Increment:
    worker: int
    token: int
    read: int
    wrote: int
    outcome: str  # ok (applied), fenced (refused: the lock was lost), unknown
    start_s: float
    end_s: float


@dataclass
class LockLog:
    increments: list[Increment] = field(default_factory=list)
    acquired: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    final: int | None = None  # the counter after the run


class LockWorkload:
    def __init__(self, rng: random.Random, addresses: list[str]) -> None:
        self._rng = rng
        self._addresses = addresses
        self.log = LockLog()
        self._tasks: list[asyncio.Task[None]] = []
        self._stop_at = 0.0

    def start(self, stop_at: float) -> None:
        self._stop_at = stop_at
        self._tasks = [asyncio.create_task(self._worker(i)) for i in range(len(self._addresses))]

    async def wait(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def read_final(self) -> None:
        async with AsyncClient(self._addresses, timeout_s=30) as kv:
            got = await kv.get(COUNTER)
            self.log.final = int(got.value) if got is not None else 0

    async def _worker(self, index: int) -> None:
        own = self._addresses[index]
        others = [a for a in self._addresses if a != own]
        async with AsyncClient([own, *others], timeout_s=ATTEMPT_S) as kv:
            while time.monotonic() < self._stop_at:
                try:
                    await asyncio.wait_for(self._once(kv, index), ATTEMPT_S * 2)
                except (KvError, TimeoutError) as exc:
                    name = getattr(getattr(exc, "code", None), "name", type(exc).__name__)
                    self.log.errors[name] = self.log.errors.get(name, 0) + 1
                    await asyncio.sleep(0.1)

    async def _once(self, kv: AsyncClient, index: int) -> None:
        async with kv.lock(LOCK, ttl_s=LOCK_TTL_S) as token:
            self.log.acquired += 1
            got = await kv.get(COUNTER)
            count = int(got.value) if got is not None else 0
            start = time.monotonic()
            increment = Increment(index, int(token), count, count + 1, "unknown", start, start)
            self.log.increments.append(increment)
            if self._rng.random() < 0.2:
                await asyncio.sleep(self._rng.uniform(0, 0.3))  # a slow holder
            result = await (
                kv.txn()
                .if_create_revision(token.key, "=", int(token))
                .then_put(COUNTER, str(count + 1))
                .commit()
            )
            increment.outcome = "ok" if result.succeeded else "fenced"
            increment.end_s = time.monotonic()


@dataclass
class LockVerdict:
    verdict: str  # valid, invalid
    ok: int
    fenced: int
    unknown: int
    final: int | None
    problems: list[str]

    def summary(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "increments_ok": self.ok,
            "increments_fenced": self.fenced,
            "increments_unknown": self.unknown,
            "final": self.final,
            "problems": self.problems[:20],
        }


def check_locks(log: LockLog) -> LockVerdict:
    ok = [i for i in log.increments if i.outcome == "ok"]
    unknown = [i for i in log.increments if i.outcome == "unknown"]
    problems: list[str] = []
    seen: dict[int, Increment] = {}
    for inc in ok:
        if inc.wrote in seen:
            other = seen[inc.wrote]
            problems.append(
                f"interleaved: workers {other.worker} (token {other.token}) and {inc.worker}"
                f" (token {inc.token}) both wrote {inc.wrote}"
            )
        seen[inc.wrote] = inc
    by_token = sorted(ok, key=lambda i: i.token)
    for before, after in itertools.pairwise(by_token):
        if after.wrote <= before.wrote:
            problems.append(
                f"interleaved: token {after.token} wrote {after.wrote} after token"
                f" {before.token} wrote {before.wrote}"
            )
    top = max((i.wrote for i in ok), default=0)
    if log.final is not None:
        if log.final < top:
            problems.append(f"lost: the counter ends at {log.final}, below {top} written")
        written = {i.wrote for i in ok} | {i.wrote for i in unknown} | {0}
        if log.final not in written:
            problems.append(f"phantom: the counter ends at {log.final}, which nobody wrote")
    return LockVerdict(
        "invalid" if problems else "valid",
        len(ok),
        sum(1 for i in log.increments if i.outcome == "fenced"),
        len(unknown),
        log.final,
        problems,
    )


def write_lock_history(path: Path, log: LockLog) -> None:
    with path.open("w") as f:
        for inc in log.increments:
            f.write(json.dumps(inc.__dict__) + "\n")
