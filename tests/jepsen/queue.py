"""The queue workload and its checker, as Jepsen runs against Kafka and Redpanda.

A topic ``jq`` of 6 partitions. One producer per node (its client's first endpoint is its
node) sends batches of 1..5 records with unique values (``w<worker>-<n>``) and keys from a
small set, so each record's partition is known (the CRC-32 of its key); each call's outcome
is ok (with each partition's first offset), failed, or unknown (a timeout). Three members
of the consumer group ``jg`` run as ``kvstore consume --group`` processes, each printing what
it is handed; the workload SIGKILLs one every few seconds and starts it again (its claims
stay until its lease ends, as after a crash). The group's checkpoints are sampled twice a
second.

After the run (faults healed) the consumers are left to catch up, then each partition's
whole log is read. Checks (``check_queue``):
- **lost**: an acknowledged record is not in the log;
- **duplicated**: a value is in the log twice (a producer's retried call appended twice);
- **offsets**: a partition's log is not dense from its first offset, or an acknowledged
  call's records are not at the offsets it was told, in the order sent;
- **undelivered**: a record in the log that no consumer was handed;
- **checkpoint-back**: a partition's checkpoint moved backwards between two samples;
- **skipped**: a consumer process handed, within one partition, an offset more than one
  past the previous one it was handed there that no consumer was handed (a poll skip).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvstore import AsyncClient, KvError
from kvstore.streams.processor import describe

TOPIC = "jq"
GROUP = "jg"
PARTITIONS = 6
KEYS = [f"k{i}" for i in range(24)]
CONSUMERS = 3
ATTEMPT_S = 10.0
KILL_EVERY_S = (3.0, 8.0)


@dataclass
class Produce:
    worker: int
    values: list[str]
    keys: list[str]
    outcome: str  # ok, fail, unknown
    offsets: dict[int, int] = field(default_factory=dict)  # partition -> first offset (ok)


@dataclass
class QueueLog:
    produces: list[Produce] = field(default_factory=list)
    checkpoints: list[dict[int, int]] = field(default_factory=list)  # samples over time
    deliveries: list[list[tuple[int, int, str]]] = field(default_factory=list)  # per process
    log: dict[int, list[tuple[int, str]]] = field(default_factory=dict)  # the final logs
    consumer_kills: int = 0
    errors: dict[str, int] = field(default_factory=dict)


def partition_of(key: str) -> int:
    return zlib.crc32(key.encode()) % PARTITIONS


class QueueWorkload:
    def __init__(self, rng: random.Random, addresses: list[str], out: Path) -> None:
        self._rng = rng
        self._addresses = addresses
        self._out = out / "consumers"
        self.log = QueueLog()
        self._tasks: list[asyncio.Task[None]] = []
        self._sampler: asyncio.Task[None] | None = None
        self._consumers: dict[int, subprocess.Popen[bytes]] = {}
        self._outputs: list[Path] = []
        self._stop_at = 0.0

    async def start(self, stop_at: float) -> None:
        self._stop_at = stop_at
        self._out.mkdir(parents=True, exist_ok=True)
        async with AsyncClient(self._addresses, timeout_s=60) as kv:
            await kv.streams.create_topic(TOPIC, PARTITIONS)
        for i in range(CONSUMERS):
            self._start_consumer(i)
        self._tasks = [asyncio.create_task(self._producer(i)) for i in range(len(self._addresses))]
        self._tasks.append(asyncio.create_task(self._chaos()))
        self._sampler = asyncio.create_task(self._sample_checkpoints())

    async def wait(self) -> None:
        """The producers' and the chaos' end (the run's); checkpoints are sampled on."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def settle(self, limit_s: float = 60.0) -> bool:
        """After the run: every consumer running again, until the group's lag is 0."""
        for i in range(CONSUMERS):
            if self._consumers.get(i) is None or self._consumers[i].poll() is not None:
                self._start_consumer(i)
        deadline = time.monotonic() + limit_s
        async with AsyncClient(self._addresses, timeout_s=30) as kv:
            while time.monotonic() < deadline:
                with contextlib.suppress(KvError):
                    ends = await kv.streams.describe_topic(TOPIC)
                    states = await describe(kv, TOPIC, GROUP)
                    if all(
                        (s.checkpoint or 0) >= ends.partitions[s.partition].next_offset
                        for s in states
                    ):
                        return True
                await asyncio.sleep(0.5)
        return False

    async def read_final(self) -> None:
        async with AsyncClient(self._addresses, timeout_s=60) as kv:
            for p in range(PARTITIONS):
                records = []
                async for record in kv.streams.read(TOPIC, p, 0):
                    records.append((record.offset, record.value.decode()))
                self.log.log[p] = records

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._sampler] if self._sampler is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for proc in self._consumers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self._consumers.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._consumers.clear()
        self.log.deliveries = [_deliveries(path) for path in self._outputs]

    # ------------------------------------------------------------------ the clients

    async def _producer(self, index: int) -> None:
        own = self._addresses[index]
        others = [a for a in self._addresses if a != own]
        sequence = 0
        async with AsyncClient([own, *others], timeout_s=ATTEMPT_S) as kv:
            while time.monotonic() < self._stop_at:
                keys = [self._rng.choice(KEYS) for _ in range(self._rng.randint(1, 5))]
                values = []
                for _ in keys:
                    sequence += 1
                    values.append(f"w{index}-{sequence}")
                produce = Produce(index, values, keys, "unknown")
                self.log.produces.append(produce)
                try:
                    appended = await kv.streams.produce(TOPIC, list(zip(keys, values, strict=True)))
                except KvError as exc:
                    self.log.errors[exc.code.name] = self.log.errors.get(exc.code.name, 0) + 1
                    if exc.code.name not in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"):
                        produce.outcome = "fail"
                    await asyncio.sleep(0.1)
                    continue
                produce.outcome = "ok"
                produce.offsets = {a.partition: a.first_offset for a in appended}
                await asyncio.sleep(self._rng.uniform(0, 0.02))

    async def _chaos(self) -> None:
        while time.monotonic() < self._stop_at - 2:
            await asyncio.sleep(self._rng.uniform(*KILL_EVERY_S))
            victim = self._rng.randrange(CONSUMERS)
            proc = self._consumers.get(victim)
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
                self.log.consumer_kills += 1
            await asyncio.sleep(self._rng.uniform(0.2, 2.0))
            self._start_consumer(victim)

    async def _sample_checkpoints(self) -> None:
        async with AsyncClient(self._addresses, timeout_s=5) as kv:
            while True:
                with contextlib.suppress(KvError):
                    states = await describe(kv, TOPIC, GROUP)
                    self.log.checkpoints.append(
                        {s.partition: s.checkpoint for s in states if s.checkpoint is not None}
                    )
                await asyncio.sleep(0.5)

    def _start_consumer(self, index: int) -> None:
        path = self._out / f"c{index}-{len(self._outputs)}.jsonl"
        self._outputs.append(path)
        command = [sys.executable, "-m", "kvstore", "consume", TOPIC, "--group", GROUP]
        command += ["--name", f"c{index}", "-o", "json", "--endpoints", ",".join(self._addresses)]
        with path.open("wb") as sink:
            self._consumers[index] = subprocess.Popen(
                command, stdout=sink, stderr=subprocess.DEVNULL, env=os.environ.copy()
            )


def _deliveries(path: Path) -> list[tuple[int, int, str]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError, KeyError):
            record = json.loads(line)
            out.append((record["partition"], record["offset"], record["value"]))
    return out


# ---------------------------------------------------------------------- the checker


@dataclass
class QueueVerdict:
    verdict: str
    produced_ok: int
    produced_unknown: int
    records: int
    delivered: int
    problems: dict[str, list[str]]

    def summary(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "produced_ok": self.produced_ok,
            "produced_unknown": self.produced_unknown,
            "records": self.records,
            "delivered": self.delivered,
            **{kind: found[:10] for kind, found in self.problems.items()},
        }


KINDS = ("lost", "duplicated", "offsets", "undelivered", "checkpoint-back", "skipped")


def check_queue(log: QueueLog) -> QueueVerdict:
    problems: dict[str, list[str]] = {kind: [] for kind in KINDS}
    where: dict[str, tuple[int, int]] = {}
    for p, records in sorted(log.log.items()):
        first = records[0][0] if records else 0
        for i, (offset, value) in enumerate(records):
            if offset != first + i:
                problems["offsets"].append(f"partition {p}: offset {offset} at position {i}")
            if value in where:
                problems["duplicated"].append(f"{value} at {where[value]} and {(p, offset)}")
            else:
                where[value] = (p, offset)
    ok = [c for c in log.produces if c.outcome == "ok"]
    for call in ok:
        sent: dict[int, list[str]] = {}
        for key, value in zip(call.keys, call.values, strict=True):
            sent.setdefault(partition_of(key), []).append(value)
        for p, values in sent.items():
            for i, value in enumerate(values):
                found = where.get(value)
                if found is None:
                    problems["lost"].append(f"{value} (acknowledged in partition {p})")
                elif p not in call.offsets or found != (p, call.offsets[p] + i):
                    problems["offsets"].append(
                        f"{value}: acknowledged at {(p, call.offsets.get(p, -1) + i)}, in the"
                        f" log at {found}"
                    )
    handed = {(p, o) for process in log.deliveries for p, o, _ in process}
    for value, (p, offset) in where.items():
        if (p, offset) not in handed:
            problems["undelivered"].append(f"{value} at {(p, offset)}")
    last: dict[int, int] = {}
    for sample in log.checkpoints:
        for p, checkpoint in sample.items():
            if checkpoint < last.get(p, 0):
                problems["checkpoint-back"].append(f"partition {p}: {last[p]} then {checkpoint}")
            last[p] = max(last.get(p, 0), checkpoint)
    for process in log.deliveries:
        previous: dict[int, int] = {}
        for p, offset, _ in process:
            before = previous.get(p)
            if before is not None and offset > before + 1:
                missing = [o for o in range(before + 1, offset) if (p, o) not in handed]
                if missing:
                    problems["skipped"].append(f"partition {p}: {before} then {offset}")
            previous[p] = offset
    return QueueVerdict(
        "valid" if not any(problems.values()) else "invalid",
        len(ok),
        sum(1 for c in log.produces if c.outcome == "unknown"),
        len(where),
        len(handed),
        problems,
    )


def write_queue_history(path: Path, log: QueueLog) -> None:
    with path.open("w") as out:
        for call in log.produces:
            row = {
                "type": "produce",
                "worker": call.worker,
                "values": call.values,
                "keys": call.keys,
                "outcome": call.outcome,
                "offsets": call.offsets,
            }
            out.write(json.dumps(row) + "\n")
        for sample in log.checkpoints:
            out.write(json.dumps({"type": "checkpoints", "partitions": sample}) + "\n")
