"""The nemesis: faults from a seed, one every 5-10 s, each lasting 5-10 s, overlapping freely.

Kinds (``--nemesis`` takes any comma-separated mix; ``all`` is every kind but
``clock-unsafe``; ``partition`` is the six partition kinds):

    isolate-node  isolate-dc  majority  ring  one-way  isolate-leader    (partitions)
    latency       WAN latency between DCs, 20-80 ms one way with 25 % jitter
    slow          packet loss (10-40 %) and 5-50 ms jittery delay on some nodes' links
    kill          SIGKILL a node, restart it when the fault ends
    wipe          SIGKILL a node and delete its data directory, restart it when the fault
                  ends: it must rejoin before it votes (one lost disk at a time)
    pause         SIGSTOP a node (half the time a shard leader), SIGCONT at the end
    kill-all      SIGKILL every node, restart them all at the end
    leader-storm  transfer-leader in a loop on random shards
    clock         clock rates within the lease's drift bound (must stay safe)
    clock-unsafe  rates far beyond the bound and forward jumps (see docs/jepsen.md)
    split         split a shard (``Admin.SplitRange``) at a key of the workloads' (a
                  register key or a set element), or where it halves its bytes; an event,
                  not a state: nothing to undo when the fault ends
    merge         merge a shard with the one after it (``Admin.MergeRange``): its right
                  neighbour is frozen, then taken over; also an event. A merge cut off
                  half-way (a partition, a kill) is finished by the frozen shard's leader
    membership    change replica sets (``Admin.ChangeReplicas``) on a schedule of its own
                  beside the other kinds', an event every 5-10 s: move one
                  replica of a shard to another node of its datacenter, drain a node (move
                  every replica it holds off it, one shard at a time), or replace a node
                  (every replica it holds to one other node of its datacenter) whatever
                  the node's state: killed, paused or cut off by a partition going on.
                  Needs two nodes per datacenter (the runner starts that many when this
                  kind is asked for). The meta range's replicas stay where they are.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from cluster import parse_cluster_config
from kvstore.v1 import admin_pb2
from tests.jepsen.cluster import JepsenCluster
from tests.jepsen.proxy import Network
from tests.jepsen.workload import now_ns

META_SHARD = 0  # the meta range: its replicas are the config's (they cannot move yet)
PARTITIONS = ("isolate-node", "isolate-dc", "majority", "ring", "one-way", "isolate-leader")
SAFE_KINDS = (
    *PARTITIONS,
    "latency",
    "slow",
    "kill",
    "wipe",
    "pause",
    "kill-all",
    "leader-storm",
    "clock",
    "split",
    "merge",
    "membership",
)
KINDS = (*SAFE_KINDS, "clock-unsafe")
DRIFT_MAX = 0.09  # inside the configured 10 % bound, away from its edge
INTERVAL_S = (5.0, 10.0)
DURATION_S = (5.0, 10.0)

End = Callable[[], Awaitable[None]]


async def _nothing() -> None:
    """The end of a fault that is an event (a split, a merge): nothing to undo."""


def parse_kinds(spec: str) -> list[str]:
    kinds: list[str] = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        if name == "all":
            kinds += SAFE_KINDS
        elif name == "partition":
            kinds += PARTITIONS
        elif name == "none":
            continue
        elif name in KINDS:
            kinds.append(name)
        else:
            raise ValueError(f"unknown nemesis {name!r}; kinds: all, partition, {', '.join(KINDS)}")
    return list(dict.fromkeys(kinds))


@dataclass
class Fault:
    kind: str
    detail: str
    start: int
    end: int | None = None

    def to_json(self) -> str:
        return json.dumps(
            {"fault": self.kind, "detail": self.detail, "start": self.start, "end": self.end}
        )


class Nemesis:
    def __init__(
        self,
        rng: random.Random,
        cluster: JepsenCluster,
        network: Network,
        kinds: list[str],
        timeline: Path,
    ) -> None:
        self.rng = rng
        self.cluster = cluster
        self.network = network
        self.kinds = kinds
        self.timeline = timeline.open("w")
        self.faults: list[Fault] = []
        self.active: dict[int, tuple[Fault, End]] = {}
        self._process_busy: set[int] = set()
        self._clock_busy: set[int] = set()
        self._shaping = False
        config = parse_cluster_config(cluster.config_path.read_text())
        self.replicas = {s.shard_id: list(s.replicas) for s in config.shards}
        self._ending: list[asyncio.Task[None]] = []
        self._wiped: set[int] = set()  # lost a disk; until every replica of it votes again

    # ------------------------------------------------------------------ schedule

    async def run(self, until: float) -> None:
        """The faults' schedule. Membership changes have one of their own, beside it: an
        event every 5-10 s while the other kinds come and go (else a change would be one
        pick among many, and seldom overlap a partition or a kill)."""
        tasks = [self._schedule(until, [k for k in self.kinds if k != "membership"])]
        if "membership" in self.kinds:
            tasks.append(self._schedule(until, ["membership"]))
        await asyncio.gather(*tasks)

    async def _schedule(self, until: float, kinds: list[str]) -> None:
        loop = asyncio.get_running_loop()
        if not kinds:
            return
        while True:
            await asyncio.sleep(self.rng.uniform(*INTERVAL_S))
            if loop.time() >= until:
                return
            duration = self.rng.uniform(*DURATION_S)
            started = await self._start_one(kinds)
            if started is not None:
                key, _ = started
                self._ending.append(asyncio.create_task(self._end_after(key, duration)))

    async def _end_after(self, key: int, duration: float) -> None:
        await asyncio.sleep(duration)
        await self._end(key)

    async def _start_one(self, kinds: list[str]) -> tuple[int, Fault] | None:
        for kind in self.rng.sample(kinds, len(kinds)):
            started = await self._start(kind)
            if started is not None:
                detail, end = started
                fault = Fault(kind, detail, now_ns())
                key = len(self.faults)
                self.faults.append(fault)
                self.active[key] = (fault, end)
                return key, fault
        return None

    async def _end(self, key: int) -> None:
        entry = self.active.pop(key, None)
        if entry is None:
            return
        fault, end = entry
        await end()
        fault.end = now_ns()
        self.timeline.write(fault.to_json() + "\n")
        self.timeline.flush()

    async def heal_all(self) -> None:
        for task in self._ending:
            task.cancel()
        await asyncio.gather(*self._ending, return_exceptions=True)
        for key in list(self.active):
            await self._end(key)
        self.network.heal()
        for node_id in self.cluster.ids:
            self.cluster.resume(node_id)
            if not self.cluster.running(node_id):
                self.cluster.start(node_id)
        self.timeline.close()

    def active_names(self) -> list[str]:
        return [fault.kind for fault, _ in self.active.values()]

    # ------------------------------------------------------------------ the faults

    async def _start(self, kind: str) -> tuple[str, End] | None:
        ids = self.cluster.ids
        rng = self.rng
        if kind == "isolate-node":
            node = rng.choice(ids)
            return f"n{node} alone", self._cut_groups([node])
        if kind == "isolate-dc":
            dc = rng.choice(sorted({n.dc for n in self.cluster.nodes}))
            group = [n.node_id for n in self.cluster.nodes if n.dc == dc]
            return f"{dc} alone", self._cut_groups(group)
        if kind == "majority":
            minority = rng.sample(ids, rng.randint(1, (len(ids) - 1) // 2))
            return f"minority {sorted(minority)}", self._cut_groups(minority)
        if kind == "ring":
            return self._ring()
        if kind == "one-way":
            node = rng.choice(ids)
            others = [o for o in ids if o != node]
            if rng.random() < 0.5:
                links = [(node, o) for o in others]
                detail = f"n{node} cannot send"
            else:
                links = [(o, node) for o in others]
                detail = f"n{node} cannot receive"
            return detail, self._cut(links)
        if kind == "isolate-leader":
            leaders = await self.cluster.leaders()
            if not leaders:
                return None
            shard = rng.choice(sorted(leaders))
            node = leaders[shard]
            return f"n{node} (leader of shard {shard}) alone", self._cut_groups([node])
        if kind in ("latency", "slow"):
            if self._shaping:
                return None
            return self._latency() if kind == "latency" else self._slow()
        if kind == "kill":
            return self._process_fault(kind, self.cluster.kill, self.cluster.start)
        if kind == "wipe":
            return await self._wipe()
        if kind == "pause":
            return await self._pause()
        if kind == "kill-all":
            if self._process_busy:
                return None
            for node_id in ids:
                self.cluster.kill(node_id)
            self._process_busy |= set(ids)

            async def restart_all() -> None:
                for node_id in ids:
                    self.cluster.start(node_id)
                self._process_busy -= set(ids)

            return "every node", restart_all
        if kind == "leader-storm":
            return self._leader_storm()
        if kind in ("clock", "clock-unsafe"):
            return self._clock(unsafe=kind == "clock-unsafe")
        if kind == "split":
            return await self._split()
        if kind == "merge":
            return await self._merge()
        if kind == "membership":
            return await self._membership()
        raise ValueError(kind)

    def _cut(self, links: list[tuple[int, int]]) -> End:
        for src, dst in links:
            self.network.link(src, dst).cut += 1

        async def heal() -> None:
            for src, dst in links:
                self.network.link(src, dst).cut -= 1

        return heal

    def _cut_groups(self, group: list[int]) -> End:
        rest = [n for n in self.cluster.ids if n not in group]
        links = [(a, b) for a in group for b in rest] + [(b, a) for a in group for b in rest]
        return self._cut(links)

    def _ring(self) -> tuple[str, End]:
        ids = self.rng.sample(self.cluster.ids, len(self.cluster.ids))
        n = len(ids)
        reach = -(-(n // 2) // 2)  # each node keeps its nearest ceil(n/4) on either side
        links = [
            (a, b)
            for i, a in enumerate(ids)
            for j, b in enumerate(ids)
            if a != b and min((i - j) % n, (j - i) % n) > reach
        ]
        if not links:  # three nodes: every pair is adjacent; cut one pair (a bridge)
            a, b = ids[0], ids[1]
            links = [(a, b), (b, a)]
        order = "-".join(f"n{i}" for i in ids)
        return f"ring {order}, {len(links) // 2} pairs cut", self._cut(links)

    def _shape(
        self, links: dict[tuple[int, int], tuple[float, float, float]], detail: str
    ) -> tuple[str, End]:
        self._shaping = True
        for (src, dst), (latency, jitter, loss) in links.items():
            faults = self.network.link(src, dst)
            faults.latency_ms, faults.jitter_ms, faults.loss = latency, jitter, loss

        async def heal() -> None:
            for src, dst in links:
                faults = self.network.link(src, dst)
                faults.latency_ms = faults.jitter_ms = faults.loss = 0.0
            self._shaping = False

        return detail, heal

    def _latency(self) -> tuple[str, End]:
        dcs = sorted({n.dc for n in self.cluster.nodes})
        one_way = {
            (a, b): self.rng.uniform(20, 80) for i, a in enumerate(dcs) for b in dcs[i + 1 :]
        }
        dc_of = {n.node_id: n.dc for n in self.cluster.nodes}
        links: dict[tuple[int, int], tuple[float, float, float]] = {}
        for src in self.cluster.ids:
            for dst in self.cluster.ids:
                if src == dst:
                    continue
                a, b = sorted((dc_of[src], dc_of[dst]))
                latency = one_way.get((a, b), 0.5)
                links[(src, dst)] = (latency, latency / 4, 0.0)
        detail = ", ".join(f"{a}-{b} {ms:.0f}ms" for (a, b), ms in one_way.items())
        return self._shape(links, detail)

    def _slow(self) -> tuple[str, End]:
        ids = self.cluster.ids
        slow = self.rng.sample(ids, self.rng.randint(1, len(ids)))
        loss = self.rng.uniform(0.1, 0.4)
        delay = self.rng.uniform(5, 50)
        links = {
            (a, b): (delay, delay, loss)
            for a in ids
            for b in ids
            if a != b and (a in slow or b in slow)
        }
        detail = f"{sorted(slow)}: {loss:.0%} loss, {delay:.0f}+-{delay:.0f}ms"
        return self._shape(links, detail)

    def _process_fault(
        self, kind: str, begin: Callable[[int], None], finish: Callable[[int], None]
    ) -> tuple[str, End] | None:
        free = [n for n in self.cluster.ids if n not in self._process_busy]
        if not free:
            return None
        node = self.rng.choice(free)
        return self._on_node(node, kind, begin, finish)

    def _on_node(
        self, node: int, kind: str, begin: Callable[[int], None], finish: Callable[[int], None]
    ) -> tuple[str, End]:
        begin(node)
        self._process_busy.add(node)

        async def end() -> None:
            finish(node)
            self._process_busy.discard(node)

        return f"{kind} n{node}", end

    async def _wipe(self) -> tuple[str, End] | None:
        """One lost disk at a time, and only with every other node up: a second lost disk
        among a shard's three replicas would lose acknowledged writes for real."""
        if self._process_busy or not await self._rejoined(self._wiped):
            return None
        node = self.rng.choice(self.cluster.ids)
        self._wiped = {node}
        return self._on_node(node, "wipe", self.cluster.wipe, self.cluster.start)

    async def _rejoined(self, nodes: set[int]) -> bool:
        """Every replica on ``nodes`` votes again (none reports the role "rejoining")."""
        for node in nodes:
            try:
                status = await self.cluster.admin(node).NodeStatus(
                    admin_pb2.NodeStatusRequest(), timeout=1.0
                )
            except grpc.aio.AioRpcError:
                return False
            if any(shard.role == "rejoining" for shard in status.shards):
                return False
        return True

    async def _pause(self) -> tuple[str, End] | None:
        leaders = await self.cluster.leaders()
        candidates = [n for n in leaders.values() if n not in self._process_busy]
        if candidates and self.rng.random() < 0.5:
            return self._on_node(
                self.rng.choice(sorted(candidates)),
                "pause leader",
                self.cluster.pause,
                self.cluster.resume,
            )
        return self._process_fault("pause", self.cluster.pause, self.cluster.resume)

    def _leader_storm(self) -> tuple[str, End]:
        transfers = 0

        async def storm() -> None:
            nonlocal transfers
            while True:
                await asyncio.sleep(self.rng.uniform(0.2, 0.6))
                leaders = await self.cluster.leaders()
                if not leaders:
                    continue
                shard = self.rng.choice(sorted(leaders))
                leader = leaders[shard]
                replicas = self.replicas.get(shard, self.cluster.ids)  # one split off: the same
                target = self.rng.choice([r for r in replicas if r != leader])
                try:
                    await self.cluster.admin(leader).TransferLeader(
                        admin_pb2.TransferLeaderRequest(shard_id=shard, to_node_id=target),
                        timeout=0.5,
                    )
                    transfers += 1
                except grpc.aio.AioRpcError:
                    pass

        task = asyncio.create_task(storm())

        async def end() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        return "transfer-leader every 0.2-0.6 s", end

    async def _split(self) -> tuple[str, End] | None:
        """Asked of each running node in turn (any finds the leaders); a split that finds
        no leader in time (a partition, a kill) is not a fault that happened: None."""
        rng = self.rng
        choice = rng.random()
        if choice < 0.4:
            at = f"k{rng.randint(0, 400)}".encode()  # the register's keys
        elif choice < 0.8:
            at = f"s{rng.randint(0, 3000)}".encode()  # the set's elements
        else:
            at = b""  # where the shard halves its bytes
        for node_id in rng.sample(self.cluster.ids, len(self.cluster.ids)):
            if not self.cluster.running(node_id) or node_id in self.cluster.paused:
                continue
            stub = self.cluster.admin(node_id)
            try:
                view = await stub.DescribeCluster(admin_pb2.DescribeClusterRequest(), timeout=1)
                shards = sorted(view.shards, key=lambda s: s.start)
                if at:
                    shard = next(
                        s for s in reversed(shards) if s.start <= at and (not s.end or at < s.end)
                    )
                else:
                    shard = rng.choice(shards)
                if at == shard.start:
                    return None  # already a boundary
                done = await stub.SplitRange(
                    admin_pb2.SplitRangeRequest(shard_id=shard.shard_id, at=at), timeout=5
                )
            except grpc.aio.AioRpcError:
                continue
            for new in (done.left, done.right):
                self.replicas[new.shard_id] = list(new.replicas)
            where = done.right.start.decode(errors="backslashreplace")
            detail = f"shard {done.left.shard_id} at {where!r}: new shard {done.right.shard_id}"
            return detail, _nothing
        return None

    async def _merge(self) -> tuple[str, End] | None:
        """Asked of each running node in turn, for a shard that has one after it; a merge
        that does not finish in time is not a fault that happened: None (a frozen shard
        left behind is merged by its leader, as after a coordinator that died)."""
        for node_id in self.rng.sample(self.cluster.ids, len(self.cluster.ids)):
            if not self.cluster.running(node_id) or node_id in self.cluster.paused:
                continue
            stub = self.cluster.admin(node_id)
            try:
                view = await stub.DescribeCluster(admin_pb2.DescribeClusterRequest(), timeout=1)
                shards = sorted(view.shards, key=lambda s: s.start)
                if len(shards) < 2:
                    return None
                left = self.rng.choice(shards[:-1])
                done = await stub.MergeRange(
                    admin_pb2.MergeRangeRequest(shard_id=left.shard_id), timeout=10
                )
            except grpc.aio.AioRpcError:
                continue
            merged = done.merged
            detail = (
                f"shard {merged.shard_id} now spans "
                f"{merged.start.decode(errors='backslashreplace')!r}.."
                f"{merged.end.decode(errors='backslashreplace')!r}"
            )
            return detail, _nothing
        return None

    async def _membership(self) -> tuple[str, End] | None:
        """A move, a drain or a replace (see the module's doc), asked of running nodes in
        turn (any forwards a change to the shard's leader). What was done is the fault's
        detail; a change that failed (no leader in time: a partition, a kill) is named
        there too, since it may still have taken effect. None: nothing could be asked."""
        view = await self._describe()
        if view is None:
            return None
        dc_of = {n.node_id: n.dc for n in view.nodes}
        movable = [s for s in view.shards if s.shard_id != META_SHARD]
        choice = self.rng.random()
        if choice < 0.6:
            shard = self.rng.choice(movable)
            leaving = self.rng.choice(list(shard.replicas))
            steps = [(shard, leaving, self._spare_for(shard, leaving, dc_of))]
            what = "move"
        else:
            node = self.rng.choice(self.cluster.ids)
            held = [s for s in movable if node in s.replicas]
            to = None
            if choice >= 0.8:
                others = [n for n in dc_of if dc_of[n] == dc_of[node] and n != node]
                to = self.rng.choice(others) if others else None
            steps = [
                (s, node, to if to is not None else self._spare_for(s, node, dc_of)) for s in held
            ]
            what = f"drain n{node}" if to is None else f"replace n{node} by n{to}"
        done: list[str] = []
        for shard, leaving, target in steps:
            if target is None or target in shard.replicas:
                continue
            step = f"shard {shard.shard_id} n{leaving}->n{target}"
            successor = await self._change_replicas(shard.shard_id, [target], [leaving])
            if successor is None:
                done.append(f"{step} failed")
                break  # the cluster cannot take changes now: the next one would fail too
            self.replicas[successor.shard_id] = list(successor.replicas)
            done.append(f"{step} as shard {successor.shard_id}")
        if not done:
            return None
        return f"{what}: {', '.join(done)}", _nothing

    async def _describe(self) -> admin_pb2.DescribeClusterResponse | None:
        for node_id in self.rng.sample(self.cluster.ids, len(self.cluster.ids)):
            if not self.cluster.running(node_id) or node_id in self.cluster.paused:
                continue
            try:
                view: admin_pb2.DescribeClusterResponse = await self.cluster.admin(
                    node_id
                ).DescribeCluster(admin_pb2.DescribeClusterRequest(), timeout=1)
            except grpc.aio.AioRpcError:
                continue
            return view
        return None

    def _spare_for(
        self, shard: admin_pb2.ShardInfo, leaving: int, dc_of: dict[int, str]
    ) -> int | None:
        free = [
            n
            for n, dc in sorted(dc_of.items())
            if dc == dc_of[leaving] and n != leaving and n not in shard.replicas
        ]
        return self.rng.choice(free) if free else None

    async def _change_replicas(
        self, shard_id: int, add: list[int], remove: list[int]
    ) -> admin_pb2.ShardInfo | None:
        request = admin_pb2.ChangeReplicasRequest(shard_id=shard_id, add=add, remove=remove)
        for node_id in self.rng.sample(self.cluster.ids, len(self.cluster.ids)):
            if not self.cluster.running(node_id) or node_id in self.cluster.paused:
                continue
            try:
                done = await self.cluster.admin(node_id).ChangeReplicas(request, timeout=10)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                    return None  # changed already (a retry of one that took effect), or refused
                continue
            successor: admin_pb2.ShardInfo = done.successor
            return successor
        return None

    def _clock(self, *, unsafe: bool) -> tuple[str, End] | None:
        free = [n for n in self.cluster.ids if n not in self._clock_busy]
        if not free:
            return None
        chosen = self.rng.sample(free, self.rng.randint(1, len(free)))
        settings: dict[int, tuple[float, float]] = {}
        for node in chosen:
            if not unsafe:
                settings[node] = (self.rng.uniform(1 - DRIFT_MAX, 1 + DRIFT_MAX), 0.0)
            elif self.rng.random() < 0.5:
                settings[node] = (self.rng.choice((0.5, 2.0, 3.0)), 0.0)
            else:
                settings[node] = (1.0, self.rng.uniform(200, 2000))  # a forward jump
            rate, offset = settings[node]
            self.cluster.set_clock(node, rate=rate, offset_ms=offset)
        self._clock_busy |= set(chosen)

        async def end() -> None:
            for node in chosen:
                # Rate back to 1; a jump is not undone (that would be a backward jump).
                self.cluster.set_clock(node, rate=1.0, offset_ms=settings[node][1])
            self._clock_busy -= set(chosen)

        detail = ", ".join(
            f"n{n} x{r:.2f}" + (f" +{o:.0f}ms" if o else "") for n, (r, o) in settings.items()
        )
        return detail, end
