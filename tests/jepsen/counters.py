"""The counter workload and its checker: concurrent takers of one counter under the nemesis.

Two workers per node, each with its own client library whose first endpoint is its node,
take ranges of 1..100 ids of counter ``jc`` (``AsyncClient.take_range``) until the run
ends; each take is recorded with its outcome: ``ok`` (its range came back), ``fail`` (a
definite refusal: nothing was taken) or ``unknown`` (the deadline passed, or any other
error: a range may have been taken that nobody will use). After the run the counter is read.

Checks (``check_counter``):
- **size**: an ok take's range is not the count it asked for;
- **overlap**: two ok takes' ranges share an id (an id handed out twice);
- **lost**: the counter ends below an ok take's end (it went back);
- **gap**: ids below the final counter that no ok take holds are more than the unknown
  takes could have taken (each gap must fit in what the unknown takes asked for).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from kvstore import AsyncClient, KvError

COUNTER = "jc"
WORKERS_PER_NODE = 2
COUNT_MAX = 100
ATTEMPT_S = 10.0
# Refusals that say nothing was taken (as the register workload's); any other error leaves
# the outcome unknown (RESOURCE_EXHAUSTED may follow an earlier attempt that applied).
DEFINITE = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)


@dataclass
class TakeOp:
    worker: int
    count: int
    outcome: str  # ok, fail, unknown
    start: int
    end: int
    call_s: float
    return_s: float


@dataclass
class CounterLog:
    takes: list[TakeOp] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    final: int | None = None  # the counter after the run


class CounterWorkload:
    def __init__(self, rng: random.Random, addresses: list[str]) -> None:
        self._rng = rng
        self._addresses = addresses
        self.log = CounterLog()
        self._tasks: list[asyncio.Task[None]] = []
        self._stop_at = 0.0

    def start(self, stop_at: float) -> None:
        self._stop_at = stop_at
        workers = len(self._addresses) * WORKERS_PER_NODE
        self._tasks = [asyncio.create_task(self._worker(i)) for i in range(workers)]

    async def wait(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def read_final(self) -> None:
        async with AsyncClient(self._addresses, timeout_s=30) as kv:
            self.log.final = await kv.counter(COUNTER)

    async def _worker(self, index: int) -> None:
        own = self._addresses[index % len(self._addresses)]
        others = [a for a in self._addresses if a != own]
        async with AsyncClient([own, *others], timeout_s=ATTEMPT_S) as kv:
            while time.monotonic() < self._stop_at:
                count = self._rng.randint(1, COUNT_MAX)
                op = TakeOp(index, count, "unknown", 0, 0, time.monotonic(), 0.0)
                self.log.takes.append(op)
                try:
                    op.start, op.end = await kv.take_range(COUNTER, count)
                    op.outcome = "ok"
                except KvError as exc:
                    self.log.errors[exc.code.name] = self.log.errors.get(exc.code.name, 0) + 1
                    if exc.code in DEFINITE:
                        op.outcome = "fail"
                    await asyncio.sleep(0.05)
                op.return_s = time.monotonic()


@dataclass
class CounterVerdict:
    verdict: str  # valid, invalid
    ok: int
    failed: int
    unknown: int
    ids_taken: int
    final: int | None
    problems: list[str]

    def summary(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "takes_ok": self.ok,
            "takes_failed": self.failed,
            "takes_unknown": self.unknown,
            "ids_taken": self.ids_taken,
            "final": self.final,
            "problems": self.problems[:20],
        }


def check_counter(log: CounterLog) -> CounterVerdict:
    ok = sorted((t for t in log.takes if t.outcome == "ok"), key=lambda t: (t.start, t.end))
    unknown = [t for t in log.takes if t.outcome == "unknown"]
    problems = [
        f"size: worker {t.worker} asked for {t.count} ids and got [{t.start}, {t.end})"
        for t in ok
        if t.end - t.start != t.count
    ]
    covered_to = 0
    gaps: list[tuple[int, int]] = []
    for before, after in zip([None, *ok], ok, strict=False):
        if before is not None and after.start < before.end:
            problems.append(
                f"overlap: [{before.start}, {before.end}) (worker {before.worker}) and"
                f" [{after.start}, {after.end}) (worker {after.worker})"
            )
        if after.start > covered_to:
            gaps.append((covered_to, after.start))
        covered_to = max(covered_to, after.end)
    if log.final is not None:
        if log.final < covered_to:
            problems.append(f"lost: the counter ends at {log.final}, below {covered_to} taken")
        if log.final > covered_to:
            gaps.append((covered_to, log.final))
    unknown_ids = sum(t.count for t in unknown)
    largest_unknown = max((t.count for t in unknown), default=0)
    for start, end in gaps:
        if end - start > unknown_ids or (len(unknown) == 1 and end - start != largest_unknown):
            problems.append(
                f"gap: ids [{start}, {end}) went to nobody, more than the {len(unknown)}"
                f" unknown takes ({unknown_ids} ids) explain"
            )
    if sum(end - start for start, end in gaps) > unknown_ids:
        problems.append(
            f"gap: {sum(e - s for s, e in gaps)} ids went to nobody; unknown takes asked"
            f" for {unknown_ids}"
        )
    return CounterVerdict(
        "invalid" if problems else "valid",
        len(ok),
        sum(1 for t in log.takes if t.outcome == "fail"),
        len(unknown),
        sum(t.count for t in ok),
        log.final,
        problems,
    )


def write_counter_history(path: Path, log: CounterLog) -> None:
    with path.open("w") as f:
        for take in log.takes:
            f.write(json.dumps(take.__dict__) + "\n")
