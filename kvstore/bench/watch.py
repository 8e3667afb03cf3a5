"""``kvstore bench --workload watch``: many watchers of one shard under a steady write rate.

Watchers run in ``--clients`` processes (each its own event loop), one ``KV.Watch`` stream
each, spread over the nodes, every one watching the same prefix of one shard from the
revision after the warm-up write. Once all are created, one writer puts ``--rate`` keys a
second for ``--duration`` seconds, each value the wall-clock time of its put's call; each
watcher takes the time each event arrives. Reported: the events every watcher should have
had and those that came (each change once: the bench checks the count per watcher), and
the delivery lag from the put's call to the event's arrival (p50, p99, max), on one clock.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.synchronize import Event as EventType
from typing import Any

import grpc

from kvstore import event_loop
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.client import AsyncClient
from kvstore.v1 import kv_pb2, kv_pb2_grpc

BUCKET_MS = 0.1  # lag histogram resolution
DRAIN_S_MAX = 30.0  # after the last write, how long watchers may take to catch up


@dataclass(frozen=True)
class WatchSpec:
    endpoints: list[str]
    prefix: bytes
    start_revision: int
    watchers: int


@dataclass
class WatchResult:
    watchers: int
    writes: int
    failed_writes: int  # no answer in time (outcome unknown): the rate is too high here
    write_s: float
    expected: int
    delivered: int
    complete_watchers: int
    lag_ms: dict[str, float]

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("watchers", str(self.watchers)),
            (
                "writes",
                f"{self.writes} in {self.write_s:.1f} s ({self.writes / self.write_s:.0f}/s)",
            ),
            ("writes without an answer in 30 s", str(self.failed_writes)),
            ("events expected", str(self.expected)),
            ("events delivered", str(self.delivered)),
            ("watchers that saw every write", f"{self.complete_watchers}/{self.watchers}"),
            *((f"lag {k}", f"{v:.1f} ms") for k, v in self.lag_ms.items()),
        ]


def run(
    endpoints: list[str],
    prefix: bytes,
    *,
    watchers: int,
    rate: float,
    duration_s: float,
    processes: int,
    progress: bool,
) -> WatchResult:
    start_revision = event_loop.run_in_cli_loop(_warm_up(endpoints, prefix))
    ctx = multiprocessing.get_context("spawn")
    ready = [ctx.Event() for _ in range(processes)]
    stop = ctx.Event()
    expected: Any = ctx.Value("q", -1)  # writes made, once the writer is done
    results: Any = ctx.Queue()
    shares = [watchers // processes + (i < watchers % processes) for i in range(processes)]
    children = [
        ctx.Process(
            target=_watcher_process,
            args=(
                WatchSpec(endpoints, prefix, start_revision, share),
                i,
                (ready[i], stop, expected),
                results,
            ),
            daemon=True,
        )
        for i, share in enumerate(shares)
    ]
    for child in children:
        child.start()
    try:
        for event in ready:
            if not event.wait(60):
                raise RuntimeError("the watchers were not all created within 60 s")
        if progress:
            print(f"bench: {watchers} watchers created; writing", flush=True)
        writes, failed, write_s = event_loop.run_in_cli_loop(
            _write(endpoints, prefix, rate, duration_s)
        )
        expected.value = expected_each = writes
        deadline = time.monotonic() + DRAIN_S_MAX
        counts: list[int] = []
        lags: Counter[int] = Counter()
        for _ in children:
            remaining = max(0.1, deadline - time.monotonic())
            part_counts, part_lags = _collect(results, stop, remaining)
            counts += part_counts
            lags.update(part_lags)
    finally:
        stop.set()
        for child in children:
            child.join(10)
            if child.is_alive():
                child.kill()
    return WatchResult(
        watchers=watchers,
        writes=writes,
        failed_writes=failed,
        write_s=write_s,
        expected=expected_each * watchers,
        delivered=sum(counts),
        complete_watchers=sum(c == expected_each for c in counts),
        lag_ms=_percentiles(lags),
    )


def _collect(results: Any, stop: EventType, timeout_s: float) -> tuple[list[int], Counter[int]]:
    """One process's counts and lag histogram (it sends them once its watchers have every
    write, or when told to stop)."""
    try:
        counts, lags = results.get(timeout=timeout_s)
    except Exception:
        stop.set()
        counts, lags = results.get(timeout=10)
    return counts, Counter(lags)


async def _warm_up(endpoints: list[str], prefix: bytes) -> int:
    async with AsyncClient(endpoints, timeout_s=30) as kv:
        response = await kv.put(prefix + b"warm-up", b"0")
        return int(response.header.revision) + 1


async def _write(
    endpoints: list[str], prefix: bytes, rate: float, duration_s: float
) -> tuple[int, int, float]:
    """Writes made, those that failed (no answer in time: the machine is past what it can
    do at this rate), and the seconds it took."""
    async with AsyncClient(endpoints, timeout_s=30) as kv:
        writes = 0
        started = time.monotonic()
        pending: list[asyncio.Task[Any]] = []
        while (elapsed := time.monotonic() - started) < duration_s:
            due = int(elapsed * rate) + 1
            while writes < due:
                value = str(time.time_ns()).encode()
                task = asyncio.create_task(kv.put(prefix + b"k%08d" % writes, value))
                pending.append(task)
                writes += 1
            await asyncio.sleep(min(0.005, 1 / rate))
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        failed = sum(isinstance(o, BaseException) for o in outcomes)
        return writes, failed, time.monotonic() - started


def _watcher_process(
    spec: WatchSpec, index: int, signals: tuple[EventType, EventType, Any], results: Any
) -> None:
    # One loop for the process, closed at exit: grpc.aio calls into it until then.
    event_loop.run_in_cli_loop(_watchers(spec, index, signals, results))


async def _watchers(
    spec: WatchSpec, index: int, signals: tuple[EventType, EventType, Any], results: Any
) -> None:
    ready, stop, expected = signals
    channels = [grpc.aio.insecure_channel(e, options=CHANNEL_OPTIONS) for e in spec.endpoints]
    stubs = [kv_pb2_grpc.KVStub(c) for c in channels]
    counts = [0] * spec.watchers
    lags: Counter[int] = Counter()
    created = asyncio.Semaphore(0)
    end = spec.prefix[:-1] + bytes([spec.prefix[-1] + 1])

    async def watch(i: int) -> None:
        stub = stubs[(index + i) % len(stubs)]
        create = kv_pb2.WatchCreateRequest(
            key=spec.prefix, range_end=end, start_revision=spec.start_revision
        )
        call = stub.Watch(iter([kv_pb2.WatchRequest(create=create)]))
        async for response in call:
            if response.created:
                created.release()
                continue
            now = time.time_ns()
            for event in response.events:
                if event.kv.key.endswith(b"warm-up"):
                    continue
                counts[i] += 1
                lags[int((now - int(event.kv.value)) / 1e6 / BUCKET_MS)] += 1

    tasks = [asyncio.create_task(watch(i)) for i in range(spec.watchers)]
    for _ in range(spec.watchers):
        await created.acquire()
    ready.set()
    while not stop.is_set():
        wanted = expected.value
        if wanted >= 0 and all(c >= wanted for c in counts):
            break
        await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    results.put((counts, dict(lags)))
    for channel in channels:
        await channel.close()


def _percentiles(lags: Counter[int]) -> dict[str, float]:
    total = sum(lags.values())
    if not total:
        return {}
    out: dict[str, float] = {}
    seen = 0
    marks = [("p50", 0.5), ("p99", 0.99), ("max", 1.0)]
    for bucket in sorted(lags):
        seen += lags[bucket]
        while marks and seen >= marks[0][1] * total:
            out[marks[0][0]] = bucket * BUCKET_MS
            marks.pop(0)
    return out
