"""The watch workload and its checker.

Watchers, one per node (each datacenter's), watch every register key (``k…``) from the
first revision over ``KV.Watch``, through the node's client port, and record each event.
Every few seconds the harness restarts each one (its stream cancelled, as a client crash
would) and it resumes from its last token on its own node or, half the time, another; a
node the nemesis kills or cuts off ends its streams the same way.

After the run, each watcher goes on until it has seen every acknowledged write (or the
settle limit passes); then each one's events are checked against the register history:
- **lost**: an acknowledged put, or a cas that succeeded, the watcher never saw;
- **duplicate**: a change (key, revision) seen twice;
- **order**: a key's revisions not increasing, or two acknowledged writes of a key, one
  finished before the other began, seen in the opposite order;
- **phantom**: a value no put or cas of that key carried (a cas that failed its comparison,
  or a refused write, carried none: it was not applied).
Values are unique per write, so a value names its write.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

import grpc

from kvstore.v1 import kv_pb2
from tests.jepsen.history import Op

WATCHED_KEY, WATCHED_END = b"k", b"l"  # every register key
RESTART_EVERY_S = (2.0, 8.0)
SETTLE_S_MAX = 30.0


@dataclass
class Seen:
    key: str
    revision: int
    value: str | None  # None: a delete


@dataclass
class WatcherLog:
    index: int
    events: list[Seen] = field(default_factory=list)
    restarts: int = 0  # by the harness
    broken: int = 0  # streams that failed (a killed or cut-off node)
    canceled: int = 0  # ended by the node (the range moved, or fell behind)


class WatchWorkload:
    def __init__(self, rng: random.Random, nodes: list[Any]) -> None:
        """``nodes``: the harness's ``workload.Node`` of each node (``.kv``: its KV stub)."""
        self.rng = rng
        self.nodes = nodes
        self.logs = [WatcherLog(i) for i in range(len(nodes))]
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._watch(log)) for log in self.logs]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def settle(self, ops: list[Op]) -> bool:
        """Wait until every watcher saw every acknowledged write (False: not in time)."""
        wanted = _acknowledged(ops)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_S_MAX
        while loop.time() < deadline:
            if all(wanted <= {(e.key, e.value) for e in log.events} for log in self.logs):
                return True
            await asyncio.sleep(0.2)
        return False

    async def _watch(self, log: WatcherLog) -> None:
        token = ""
        attempt = 0
        loop = asyncio.get_running_loop()
        while True:
            home = attempt % 2 == 0
            node = self.nodes[log.index] if home else self.rng.choice(self.nodes)
            attempt += 1
            create = kv_pb2.WatchCreateRequest(
                key=WATCHED_KEY,
                range_end=WATCHED_END,
                start_token=token,
                start_revision=0 if token else 1,
            )
            call = node.kv.Watch(iter([kv_pb2.WatchRequest(create=create)]))
            restart_at = loop.time() + self.rng.uniform(*RESTART_EVERY_S)
            try:
                async with asyncio.timeout_at(restart_at):
                    async for response in call:
                        if response.canceled:
                            log.canceled += 1
                            break
                        for event in response.events:
                            deleted = event.type == kv_pb2.WatchEvent.DELETE
                            log.events.append(
                                Seen(
                                    event.kv.key.decode(),
                                    event.kv.mod_revision,
                                    None if deleted else event.kv.value.decode(),
                                )
                            )
                        token = response.token or token
            except TimeoutError:
                log.restarts += 1
            except grpc.aio.AioRpcError:
                log.broken += 1
                await asyncio.sleep(0.2)
            finally:
                call.cancel()


@dataclass
class WatchVerdict:
    verdict: str
    watchers: int
    events: int
    restarts: int
    broken: int
    canceled: int
    settled: bool
    lost: list[str]
    duplicates: list[str]
    order: list[str]
    phantoms: list[str]

    def summary(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "watchers": self.watchers,
            "events": self.events,
            "restarts": self.restarts,
            "broken_streams": self.broken,
            "canceled": self.canceled,
            "settled": self.settled,
            "lost": self.lost[:20],
            "duplicates": self.duplicates[:20],
            "order": self.order[:20],
            "phantoms": self.phantoms[:20],
        }


def check_watches(ops: list[Op], logs: list[WatcherLog], *, settled: bool) -> WatchVerdict:
    # What may have been applied: every put and cas not known to have failed.
    written = {
        (op.key, op.value)
        for op in ops
        if op.op in ("put", "cas") and op.value and op.ok is not False
    }
    acknowledged = [op for op in ops if op.op in ("put", "cas") and op.ok and op.value is not None]
    lost, duplicates, order, phantoms = [], [], [], []
    for log in logs:
        name = f"watcher {log.index}"
        seen: set[tuple[str, int]] = set()
        last: dict[str, int] = {}
        revision_of: dict[tuple[str, str], int] = {}
        for e in log.events:
            if (e.key, e.revision) in seen:
                duplicates.append(f"{name}: {e.key} at {e.revision}")
            seen.add((e.key, e.revision))
            if e.revision <= last.get(e.key, 0):
                order.append(f"{name}: {e.key} at {e.revision} after {last[e.key]}")
            last[e.key] = e.revision
            if e.value is not None:
                if (e.key, e.value) not in written:
                    phantoms.append(f"{name}: {e.key}={e.value} was never written")
                revision_of[(e.key, e.value)] = e.revision
        for op in acknowledged:
            if (op.key, op.value) not in revision_of:  # type: ignore[comparison-overlap]
                lost.append(f"{name}: {op.key}={op.value} (acknowledged) never seen")
        by_key: dict[str, list[Op]] = {}
        for op in acknowledged:
            by_key.setdefault(op.key, []).append(op)
        for key, writes in by_key.items():
            writes.sort(key=lambda o: o.call)
            for a in writes:
                for b in writes:
                    ra = revision_of.get((key, a.value or ""))
                    rb = revision_of.get((key, b.value or ""))
                    if a.ret is not None and a.ret < b.call and ra and rb and ra >= rb:
                        order.append(
                            f"{name}: {key}={a.value} finished before {key}={b.value} began,"
                            f" seen at {ra} >= {rb}"
                        )
    bad = lost or duplicates or order or phantoms
    return WatchVerdict(
        verdict="invalid" if bad else "valid",
        watchers=len(logs),
        events=sum(len(log.events) for log in logs),
        restarts=sum(log.restarts for log in logs),
        broken=sum(log.broken for log in logs),
        canceled=sum(log.canceled for log in logs),
        settled=settled,
        lost=lost,
        duplicates=duplicates,
        order=order,
        phantoms=phantoms,
    )


def _acknowledged(ops: list[Op]) -> set[tuple[str, str | None]]:
    return {(op.key, op.value) for op in ops if op.op in ("put", "cas") and op.ok and op.value}
