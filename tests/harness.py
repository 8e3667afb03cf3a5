"""A hand-driven cluster of real replicas: you decide every tick, delivery, fsync and crash.

The golden scripts (``tests/interaction``) and the hypothesis state machine use it. It obeys
the driver contract like the simulator does, and feeds the same checkers.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable

from paxos import (
    Accept,
    Accepted,
    CatchUp,
    CatchUpRequest,
    Config,
    DiskWrite,
    Heartbeat,
    HeartbeatAck,
    InstallSnapshot,
    MemoryStorage,
    Message,
    NodeId,
    Prepare,
    Promise,
    Ready,
    RecordingLogger,
    Reject,
    RejoinInfo,
    RejoinQuery,
    Replica,
    TimeoutNow,
    Value,
)
from tests.sim.checkers import Checker


class ManualCluster:
    def __init__(self, size: int = 3, *, seed: int = 0, **config: int) -> None:
        self.voters = tuple(NodeId(i) for i in range(1, size + 1))
        self.seed = seed
        self.configs = {v: Config(node_id=v, voters=self.voters, **config) for v in self.voters}
        self.storage = {v: MemoryStorage() for v in self.voters}
        self.disk: dict[NodeId, deque[DiskWrite]] = {v: deque() for v in self.voters}
        self.replicas: dict[NodeId, Replica | None] = {}
        self.loggers: dict[NodeId, RecordingLogger] = {}
        self.applied: dict[NodeId, list[Value]] = {}
        self.incarnation = dict.fromkeys(self.voters, 0)
        self.net: list[Message] = []
        self.checker = Checker(self.voters)
        self.events: list[str] = []
        for v in self.voters:
            self.restart(v)

    # ------------------------------------------------------------------ lifecycle

    def replica(self, v: NodeId) -> Replica:
        replica = self.replicas[v]
        assert replica is not None, f"n{v} is down"
        return replica

    def up(self, v: NodeId) -> bool:
        return self.replicas.get(v) is not None

    def crash(self, v: NodeId) -> int:
        lost = len(self.disk[v])
        self.disk[v].clear()
        self.replicas[v] = None
        self.net = [m for m in self.net if m.dst != v]
        return lost

    def wipe(self, v: NodeId) -> None:
        """Crash ``v``, lose its disk, and restart it from nothing: it must rejoin."""
        self.crash(v)
        self.storage[v] = MemoryStorage(voting=False)
        self.restart(v)

    def restart(self, v: NodeId) -> None:
        self.incarnation[v] += 1
        logger = RecordingLogger()
        self.loggers[v] = logger
        rng = random.Random(self.seed * 1000 + v * 10 + self.incarnation[v])
        self.applied[v] = []
        self.replicas[v] = Replica(
            self.configs[v], rng=rng, logger=logger, durable=self.storage[v].state()
        )
        self.drain(v)

    # ------------------------------------------------------------------ driving

    def drain(self, v: NodeId) -> Ready:
        ready = self.replica(v).take_ready()
        self.disk[v].extend(ready.writes)
        self.net.extend(ready.send_now)
        if ready.snapshot is not None:
            self.applied[v] = [() for _ in range(ready.snapshot.slot)]
        for entry in ready.chosen:
            self.applied[v].append(entry.value)
            self.checker.on_applied(v, entry.slot, entry.value)
        for line in render_ready(v, ready):
            self.events.append(line)
        for event, fields in self.loggers[v].drain():
            detail = " ".join(f"{k}={val}" for k, val in sorted(fields.items()))
            self.events.append(f"n{v} log {event} {detail}".rstrip())
        return ready

    def tick(self, v: NodeId, ticks: int = 1) -> None:
        for _ in range(ticks):
            self.replica(v).tick()
            self.drain(v)

    def flush(self, v: NodeId, count: int | None = None) -> int:
        """Make up to ``count`` of ``v``'s pending writes durable, in order."""
        done = 0
        while self.disk[v] and (count is None or done < count):
            write = self.disk[v].popleft()
            self.storage[v].apply(write.record)
            self.checker.on_durable(v, write.record)
            self.net.extend(write.then_send)
            self.replica(v).write_done(write.seq)
            self.drain(v)
            done += 1
        return done

    def deliver(self, match: Callable[[Message], bool] = lambda m: True) -> int:
        """Deliver (in order) every in-flight message that ``match`` selects."""
        chosen = [m for m in self.net if match(m)]
        self.net = [m for m in self.net if not match(m)]
        for msg in chosen:
            if self.up(msg.dst):
                self.events.append(f"n{msg.dst} <- {render_message(msg)}")
                self.replica(msg.dst).step(msg)
                self.drain(msg.dst)
        return len(chosen)

    def drop(self, match: Callable[[Message], bool]) -> int:
        before = len(self.net)
        self.net = [m for m in self.net if not match(m)]
        return before - len(self.net)

    def stabilize(self, rounds_max: int = 100) -> None:
        for _ in range(rounds_max):
            progressed = False
            for v in self.voters:
                if self.up(v) and self.flush(v):
                    progressed = True
            if self.deliver():
                progressed = True
            if not progressed:
                return
        raise AssertionError("cluster did not stabilize")

    def take_events(self) -> list[str]:
        out, self.events = self.events, []
        return out


# ---------------------------------------------------------------------- rendering


def render_message(m: Message) -> str:
    head = f"{type(m).__name__} n{m.src}->n{m.dst}"
    match m:
        case Prepare():
            extra = f" transfer_of={m.transfer_of}" if m.transfer_of else ""
            return f"{head} ballot={m.ballot} from_slot={m.from_slot}{extra}"
        case Promise():
            entries = " ".join(f"{e.slot}@{e.ballot}:{_value(e.value)}" for e in m.entries)
            return f"{head} ballot={m.ballot} chosen_through={m.chosen_through} [{entries}]"
        case Accept():
            props = " ".join(f"{p.slot}:{_value(p.value)}" for p in m.proposals)
            return f"{head} ballot={m.ballot} commit={m.commit} [{props}]"
        case Accepted():
            return f"{head} ballot={m.ballot} slots={list(m.slots)}"
        case Reject():
            return f"{head} ballot={m.ballot} promised={m.promised}"
        case Heartbeat():
            return f"{head} ballot={m.ballot} commit={m.commit}"
        case HeartbeatAck():
            return f"{head} ballot={m.ballot} chosen_through={m.chosen_through}"
        case CatchUpRequest():
            return f"{head} from_slot={m.from_slot}"
        case CatchUp():
            return f"{head} first_slot={m.first_slot} values={len(m.values)}"
        case InstallSnapshot():
            return f"{head} slot={m.slot}"
        case TimeoutNow():
            return f"{head} ballot={m.ballot}"
        case RejoinQuery():
            return head
        case RejoinInfo():
            return f"{head} promised={m.promised} chosen_through={m.chosen_through}"
    raise AssertionError(m)


def _value(value: Value) -> str:
    return "noop" if not value else ",".join(c.decode(errors="replace") for c in value)


def render_ready(v: NodeId, ready: Ready) -> list[str]:
    lines = []
    if ready.role_change is not None:
        rc = ready.role_change
        lines.append(f"n{v} becomes {rc.role.value} at {rc.ballot}")
    for w in ready.writes:
        rec = w.record
        parts = []
        if rec.promised is not None:
            parts.append(f"promised={rec.promised}")
        if rec.entries:
            parts.append("entries=" + ",".join(f"{e.slot}@{e.ballot}" for e in rec.entries))
        if rec.chosen_through is not None:
            parts.append(f"chosen_through={rec.chosen_through}")
        if rec.snapshot is not None:
            parts.append(f"snapshot={rec.snapshot.slot}")
        if rec.voting is not None:
            parts.append(f"voting={rec.voting}")
        then = ", ".join(f"{type(m).__name__}->n{m.dst}" for m in w.then_send)
        lines.append(
            f"n{v} write#{w.seq} {' '.join(parts) or '(ordering only)'}"
            + (f" then {then}" if then else "")
        )
    for entry in ready.chosen:
        lines.append(f"n{v} apply slot={entry.slot} {_value(entry.value)}")
    if ready.snapshot_wanted:
        lines.append(f"n{v} snapshot wanted")
    return lines
