"""The load loop of one benchmark client process: ``concurrency`` workers, one AsyncClient.

Latencies go into HDR histograms (microseconds, 3 significant digits) per operation kind;
the parent merges every process's histograms, so percentiles are exact over all of them.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from hdrh.histogram import HdrHistogram

from cluster import KeySpan
from kvstore import event_loop
from kvstore.bench.echo import METHOD
from kvstore.bench.keys import KeyChooser, spread_keys
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.client import AsyncClient, KvError
from kvstore.v1 import kv_pb2

LATENCY_US_MAX = 60_000_000


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, LATENCY_US_MAX, 3)


@dataclass
class LoadSpec:
    endpoints: list[str]
    workload: str  # put | get | mixed | cas | load | echo
    spans: list[tuple[bytes, bytes]]
    keys: int = 1000
    distribution: str = "uniform"
    read_ratio: float = 0.5
    stale: bool = False
    value_size: int = 100
    concurrency: int = 1
    duration_s: float = 10.0
    ops_max: int = 0  # 0: no limit
    seed: int = 0
    process_index: int = 0
    processes: int = 1
    echo_address: str = ""
    timeout_s: float = 10.0
    dc: str | None = None  # the clients' datacenter: they use gateways there
    max_staleness_ms: int = 0  # gets: bounded staleness (0: as ``stale`` says)


@dataclass
class LoadResult:
    ops: int = 0
    elapsed_s: float = 0.0
    histograms: dict[str, bytes] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


def run_in_process(spec: LoadSpec, counter: Any, results: Any) -> None:
    """Entry point of a spawned client process."""
    results.put(event_loop.run(_run(spec, counter)))


async def _run(spec: LoadSpec, counter: Any) -> LoadResult:
    rng = random.Random(spec.seed * 1000 + spec.process_index)
    keys = spread_keys([KeySpan(s, e) for s, e in spec.spans], spec.keys)
    chooser = KeyChooser(spec.keys, spec.distribution, rng)
    value = os.urandom(spec.value_size)
    histograms: dict[str, HdrHistogram] = {}
    errors: dict[str, int] = {}
    done = 0
    last_value: dict[int, bytes] = {}
    # ``load`` writes each key once: this process takes every processes-th key.
    to_load = iter(range(spec.process_index, spec.keys, spec.processes))
    client = AsyncClient(spec.endpoints, timeout_s=spec.timeout_s, dc=spec.dc)
    echo = (
        grpc.aio.insecure_channel(spec.echo_address, options=CHANNEL_OPTIONS)
        if spec.workload == "echo"
        else None
    )
    started = time.perf_counter()
    deadline = started + spec.duration_s

    async def one() -> str | None:
        if spec.workload == "echo":
            assert echo is not None
            call: Any = echo.unary_unary(METHOD)  # raw bytes both ways: no (de)serializer
            await call(value, timeout=spec.timeout_s)
            return "echo"
        if spec.workload == "load":
            index = next(to_load, None)
            if index is None:
                return None
            await client.put(keys[index], value)
            return "put"
        index = chooser.next()
        kind = spec.workload
        if kind == "mixed":
            kind = "get" if rng.random() < spec.read_ratio else "put"
        if kind == "get":
            await client.get(keys[index], stale=spec.stale, max_staleness_ms=spec.max_staleness_ms)
        elif kind == "put":
            await client.put(keys[index], value)
        else:
            await client.txn(_cas(keys[index], last_value.get(index, value), value))
            last_value[index] = value
        return kind

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline and (spec.ops_max == 0 or done < spec.ops_max):
            t0 = time.perf_counter_ns()
            try:
                kind = await one()
            except KvError as err:
                errors[err.code.name] = errors.get(err.code.name, 0) + 1
                continue
            except grpc.aio.AioRpcError as err:
                errors[err.code().name] = errors.get(err.code().name, 0) + 1
                continue
            if kind is None:
                return
            latency_us = max(1, (time.perf_counter_ns() - t0) // 1000)
            if kind not in histograms:
                histograms[kind] = new_histogram()
            histograms[kind].record_value(min(latency_us, LATENCY_US_MAX))
            done += 1
            with counter.get_lock():
                counter.value += 1

    try:
        await asyncio.gather(*(worker() for _ in range(spec.concurrency)))
    finally:
        await client.close()
        if echo is not None:
            await echo.close()
    return LoadResult(
        ops=done,
        elapsed_s=time.perf_counter() - started,
        histograms={k: h.encode() for k, h in histograms.items()},
        errors=errors,
    )


def _cas(key: bytes, expected: bytes, value: bytes) -> kv_pb2.TxnRequest:
    return kv_pb2.TxnRequest(
        compare=[
            kv_pb2.Compare(
                key=key,
                target=kv_pb2.Compare.TARGET_VALUE,
                op=kv_pb2.Compare.OP_EQUAL,
                value=expected,
            )
        ],
        success=[kv_pb2.RequestOp(put=kv_pb2.PutRequest(key=key, value=value))],
    )
