"""``kvstore bench --workload lease``: what keeping many leases alive costs the meta leader.

``--leases`` leases of ``--ttl`` seconds are granted, then kept alive for ``--duration``
seconds the way the client library does it (each one every third of its TTL), by
``--clients`` processes, each over one ``Lease.KeepAlive`` stream to the meta range's
leader, every lease due at once in one message (``LeaseKeepAliveRequest.ids``); each is
kept alive from its grant on. Reported, once every grant is done: keep-alives sent and
answered per second, leases lost (a keep-alive answered ttl 0), and the meta leader's CPU
as a share of one core, next to its CPU over as long before anything (idle).
"""

from __future__ import annotations

import asyncio
import heapq
import multiprocessing
import time
from dataclasses import dataclass
from typing import Any

import grpc

from cluster import META_RANGE_ID
from kvstore import event_loop
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.client import AsyncClient
from kvstore.v1 import admin_pb2, admin_pb2_grpc, kv_pb2, kv_pb2_grpc

GRANTS_IN_FLIGHT = 64


@dataclass
class LeaseResult:
    leases: int
    ttl_s: float
    duration_s: float
    keep_alives: int
    answered: int
    lost: int
    leader_cpu_idle: float  # share of one core, no keep-alives
    leader_cpu: float  # share of one core, keeping every lease alive

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("leases", f"{self.leases} of {self.ttl_s:g} s"),
            ("keep-alives", f"{self.keep_alives} in {self.duration_s:.0f} s"
             f" ({self.keep_alives / self.duration_s:.0f}/s), {self.answered} answered"),
            ("leases lost", str(self.lost)),
            ("meta leader CPU, idle", f"{100 * self.leader_cpu_idle:.1f} % of a core"),
            ("meta leader CPU, keeping them", f"{100 * self.leader_cpu:.1f} % of a core"),
            ("their cost", f"{100 * (self.leader_cpu - self.leader_cpu_idle):.1f} % of a core"),
        ]  # fmt: skip


def run(
    endpoints: list[str], *, leases: int, ttl_s: float, duration_s: float, processes: int
) -> LeaseResult:
    leader = event_loop.run_in_cli_loop(_meta_leader(endpoints))
    idle = event_loop.run_in_cli_loop(_cpu_share(leader, duration_s))
    ctx = multiprocessing.get_context("spawn")
    results: Any = ctx.Queue()
    shares = [leases // processes + (i < leases % processes) for i in range(processes)]
    start_at = time.time() + 2.0 + leases / 500  # every process granting, then all keep
    children = [
        ctx.Process(
            target=_keeper_process,
            args=(endpoints, leader, share, ttl_s, start_at, duration_s, results),
            daemon=True,
        )
        for share in shares
    ]
    for child in children:
        child.start()
    try:
        time.sleep(max(0.0, start_at - time.time()))
        busy = event_loop.run_in_cli_loop(_cpu_share(leader, duration_s))
        totals = [results.get(timeout=duration_s + 60) for _ in children]
    finally:
        for child in children:
            child.join(10)
            if child.is_alive():
                child.kill()
    return LeaseResult(
        leases=leases,
        ttl_s=ttl_s,
        duration_s=duration_s,
        keep_alives=sum(t[0] for t in totals),
        answered=sum(t[1] for t in totals),
        lost=sum(t[2] for t in totals),
        leader_cpu_idle=idle,
        leader_cpu=busy,
    )


async def _meta_leader(endpoints: list[str]) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for endpoint in endpoints:
            status = await _status(endpoint)
            if status is None:
                continue
            for shard in status.shards:
                if shard.shard_id == META_RANGE_ID and shard.role == "leader":
                    return endpoint
        await asyncio.sleep(0.2)
    raise RuntimeError("no meta leader within 30 s")


async def _status(endpoint: str) -> admin_pb2.NodeStatusResponse | None:
    async with grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS) as channel:
        try:
            answer: admin_pb2.NodeStatusResponse = await admin_pb2_grpc.AdminStub(
                channel
            ).NodeStatus(admin_pb2.NodeStatusRequest(), timeout=5)
            return answer
        except grpc.aio.AioRpcError:
            return None


async def _cpu_share(endpoint: str, seconds: float) -> float:
    """The node's CPU over the next ``seconds``, as a share of one core."""
    before = await _status(endpoint)
    started = time.monotonic()
    await asyncio.sleep(seconds)
    after = await _status(endpoint)
    if before is None or after is None:
        raise RuntimeError(f"{endpoint} did not answer NodeStatus")
    return (after.cpu_seconds - before.cpu_seconds) / (time.monotonic() - started)


def _keeper_process(  # noqa: PLR0917 - a process target's arguments are positional
    endpoints: list[str],
    leader: str,
    leases: int,
    ttl_s: float,
    start_at: float,
    duration_s: float,
    results: Any,
) -> None:
    totals = event_loop.run_in_cli_loop(
        _keep(endpoints, leader, leases, ttl_s, start_at, duration_s)
    )
    results.put(totals)


async def _keep(  # noqa: PLR0917
    endpoints: list[str], leader: str, count: int, ttl_s: float, start_at: float, duration_s: float
) -> tuple[int, int, int]:
    """Grant ``count`` leases and keep each alive from its grant on; count the keep-alives
    of the measured phase (from ``start_at``, every grant done by then, for
    ``duration_s``)."""
    period = ttl_s / 3
    due: list[tuple[float, int]] = []  # (when, lease): each every third of its TTL
    end = time.monotonic() + (start_at - time.time()) + duration_s
    measured_from = end - duration_s
    sent = answered = lost = 0
    queue: asyncio.Queue[kv_pb2.LeaseKeepAliveRequest | None] = asyncio.Queue()

    async def requests() -> Any:
        while (item := await queue.get()) is not None:
            yield item

    async with (
        AsyncClient([leader, *endpoints], timeout_s=30) as kv,
        grpc.aio.insecure_channel(leader, options=CHANNEL_OPTIONS) as channel,
    ):
        slots = asyncio.Semaphore(GRANTS_IN_FLIGHT)

        async def grant() -> None:
            async with slots:
                lease = await kv.leases.grant(round(ttl_s * 1000))
                heapq.heappush(due, (time.monotonic() + period, lease))

        granting = asyncio.gather(*(grant() for _ in range(count)))
        stream = kv_pb2_grpc.LeaseStub(channel).KeepAlive(requests())

        async def answers() -> None:
            nonlocal answered, lost
            async for answer in stream:
                if time.monotonic() >= measured_from:
                    answered += len(answer.ttls_ms)
                    lost += sum(ttl == 0 for ttl in answer.ttls_ms)

        reader = asyncio.create_task(answers())
        while (now := time.monotonic()) < end:
            batch = []  # every lease due now, in one message (as a client holding many does)
            while due and due[0][0] <= now:
                _, lease = heapq.heappop(due)
                batch.append(lease)
                heapq.heappush(due, (now + period, lease))
            if batch:
                queue.put_nowait(kv_pb2.LeaseKeepAliveRequest(ids=batch))
                if now >= measured_from:
                    sent += len(batch)
            await asyncio.sleep(0.01)
        await granting
        queue.put_nowait(None)
        try:
            await asyncio.wait_for(reader, 10)
        except TimeoutError:
            reader.cancel()
    return sent, answered, lost
