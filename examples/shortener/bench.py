"""``kvstore-shortener bench``: shortens, then redirects, against running servers.

Rules:
- ``--processes`` client processes each keep ``--concurrency / processes`` HTTP/1.1
  keep-alive connections, spread round-robin over ``--urls``, one request in flight each.
  The client is a few lines over asyncio streams (not aiohttp's client): on two cores the
  load generator shares the CPU with the servers and the store, and a lighter client
  leaves more of it to what is measured.
- Phase 1, ``shorten``: ``POST /api/links`` of fresh URLs for ``--duration`` s. Phase 2,
  ``redirect``: ``GET /{code}`` of ``--hot`` codes per process that phase 1 made, each
  read once through every server first (not counted), so the phase measures cached
  redirects, as a shortener's skewed traffic mostly is, for ``--duration`` s. The
  processes start each phase together (a barrier).
- Prints per phase: requests, errors (any status but 201 / 302), throughput, p50, p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_PHASES = ("shorten", "redirect")
_EXPECTED = {"shorten": 201, "redirect": 302}


@dataclass
class PhaseResult:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)


def run(args: argparse.Namespace) -> int:
    urls = [u.strip().rstrip("/") for u in args.urls.split(",") if u.strip()]
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            print(f"kvstore-shortener: bench: not an http://host:port url: {url}")
            return 2
    processes = min(args.processes, args.concurrency)
    barrier = multiprocessing.Barrier(processes)
    results: multiprocessing.Queue[dict[str, PhaseResult]] = multiprocessing.Queue()
    plans = [
        _Plan(
            i,
            urls,
            args.concurrency // processes + (i < args.concurrency % processes),
            args.duration,
            args.url_bytes,
            args.hot,
        )
        for i in range(processes)
    ]
    workers = [
        multiprocessing.Process(target=_process, args=(plan, barrier, results)) for plan in plans
    ]
    print(
        f"bench: {processes} processes, {args.concurrency} connections over {len(urls)}"
        f" servers, {args.duration:g} s per phase",
        flush=True,
    )
    for w in workers:
        w.start()
    merged = {phase: PhaseResult() for phase in _PHASES}
    parts = [results.get(timeout=2 * args.duration + 300) for _ in workers]
    for w in workers:
        w.join()
    if not all(parts):
        return 1  # a client process failed and said why; no partial table
    for part_of_process in parts:
        for phase, part in part_of_process.items():
            into = merged[phase]
            into.requests += part.requests
            into.errors += part.errors
            into.seconds = max(into.seconds, part.seconds)
            into.latencies_ms += part.latencies_ms
    if any(not merged[p].requests for p in _PHASES):
        print("kvstore-shortener: bench: a phase made no requests (see the errors above)")
    print(f"{'phase':<10}{'requests':>10}{'errors':>8}{'per s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for phase, r in merged.items():
        r.latencies_ms.sort()
        print(
            f"{phase:<10}{r.requests:>10}{r.errors:>8}{r.requests / max(r.seconds, 1e-9):>10.0f}"
            f"{_pct(r.latencies_ms, 0.50):>9.2f}{_pct(r.latencies_ms, 0.99):>9.2f}"
        )
    return 0 if all(r.requests and r.errors == 0 for r in merged.values()) else 1


def _pct(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


@dataclass(frozen=True)
class _Plan:
    index: int
    urls: list[str]
    connections: int
    duration: float
    url_bytes: int
    hot: int


def _process(
    plan: _Plan,
    barrier: threading.Barrier,
    results: multiprocessing.Queue[dict[str, PhaseResult]],
) -> None:
    try:
        results.put(asyncio.run(_Client(plan, barrier).phases()))
    except Exception as exc:
        barrier.abort()  # the other processes stop waiting for this one
        print(f"kvstore-shortener: bench: a client process failed: {exc!r}", file=sys.stderr)
        results.put({})


class _Client:
    """One client process: its connections, and the codes its shorten phase made."""

    def __init__(self, plan: _Plan, barrier: threading.Barrier) -> None:
        self._plan = plan
        self._barrier = barrier
        self._rng = random.Random(os.getpid())
        self._codes: list[str] = []
        self._filler = "x" * max(0, plan.url_bytes - 40)

    async def phases(self) -> dict[str, PhaseResult]:
        plan = self._plan
        urls = plan.urls
        conns = [
            await _Connection.open(urls[(plan.index + i) % len(urls)])
            for i in range(plan.connections)
        ]
        out: dict[str, PhaseResult] = {}
        for phase in _PHASES:
            if phase == "redirect":
                await self._warm(urls)
            await asyncio.get_running_loop().run_in_executor(None, self._barrier.wait)
            result = PhaseResult()
            if phase == "redirect" and not self._codes:
                out[phase] = result
                continue
            started = time.perf_counter()
            stop_at = started + plan.duration
            await asyncio.gather(*(self._drive(c, phase, stop_at, result) for c in conns))
            result.seconds = time.perf_counter() - started
            out[phase] = result
        for conn in conns:
            conn.close()
        return out

    async def _warm(self, urls: list[str]) -> None:
        """The hot links (this process's first ``hot`` codes) read once through every
        server, so the redirect phase measures the cache, not first reads from the store."""
        self._codes = self._codes[: self._plan.hot]
        for url in urls:
            conn = await _Connection.open(url)
            for code in self._codes:
                await conn.get("/" + code)
            conn.close()

    async def _drive(
        self, conn: _Connection, phase: str, stop_at: float, result: PhaseResult
    ) -> None:
        while time.perf_counter() < stop_at:
            if phase == "shorten":
                url = f"https://example.com/{self._rng.getrandbits(64):x}/{self._filler}"
                request = conn.post("/api/links", json.dumps({"url": url}).encode())
            else:
                request = conn.get("/" + self._rng.choice(self._codes))
            sent = time.perf_counter()
            status, payload = await request
            result.latencies_ms.append((time.perf_counter() - sent) * 1000)
            result.requests += 1
            if status != _EXPECTED[phase]:
                result.errors += 1
            elif phase == "shorten" and len(self._codes) < 100_000:
                self._codes.append(json.loads(payload)["code"])


class _Connection:
    """One HTTP/1.1 keep-alive connection, one request at a time."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._host = host

    @staticmethod
    async def open(url: str) -> _Connection:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        return _Connection(reader, writer, parts.netloc)

    async def get(self, path: str) -> tuple[int, bytes]:
        self._writer.write(f"GET {path} HTTP/1.1\r\nHost: {self._host}\r\n\r\n".encode())
        return await self._answer()

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode() + body)
        return await self._answer()

    async def _answer(self) -> tuple[int, bytes]:
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self._reader.readexactly(length) if length else b""
        return status, body

    def close(self) -> None:
        self._writer.close()
