"""Three real NodeRuntimes (asyncio, LMDB, ticks from the clock) over an in-memory transport.

What it shows: writes commit through the shard leader and are readable linearizably; a
follower names the leader; a retried request id applies once; losing the leader elects
another and keeps every acknowledged write; stopping every node and restarting from the LMDB
directories alone keeps every acknowledged write.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cluster import parse_cluster_config
from kvstore.model import Command, Put, PutResult, Reconfigure, Reconfigured, RequestId
from kvstore.runtime import node as node_module
from kvstore.runtime.node import (
    NodeRuntime,
    NodeStoppedError,
    NotLeaderError,
    ProposalDroppedError,
    RangeMovedError,
)
from kvstore.storage import NodeStore
from paxos import Accepted, Message, Role

CONFIG = parse_cluster_config(
    """
[cluster]
name = "runtime-test"
tick_ms = 10
"""
    + "".join(f'[[datacenters]]\nname = "dc{d}"\n' for d in (1, 2, 3))
    + "".join(
        f'[[nodes]]\nid = {n}\ndc = "dc{n}"\naddress = "127.0.{n}.1:{7100 + n}"\n'
        for n in (1, 2, 3)
    )
    + '[[shards]]\nid = 1\nstart = ""\nend = "m"\nreplicas = [1, 2, 3]\n'
    + '[[shards]]\nid = 2\nstart = "m"\nend = ""\nreplicas = [1, 2, 3]\n'
)
PAXOS = {"heartbeat_ticks": 2, "election_ticks_min": 10, "election_ticks_max": 20, "lease_ticks": 7}
SHARDS = (1, 2)
WRITE_WAIT_S = 60.0  # a write commits well within this on a loaded machine


class LocalNet:
    """Delivers batches on the loop, like a stream would; ``cut`` links drop everything."""

    def __init__(self) -> None:
        self.nodes: dict[int, NodeRuntime] = {}
        self.cut: set[tuple[int, int]] = set()

    def sender(self, src: int) -> Callable[[int, list[tuple[int, Message]]], None]:
        def send(dst: int, batch: list[tuple[int, Message]]) -> None:
            target = self.nodes.get(dst)
            if target is None or (src, dst) in self.cut:
                return
            loop = asyncio.get_running_loop()
            loop.call_soon(lambda: [target.deliver(shard, msg) for shard, msg in batch])

        return send


class Cluster:
    def __init__(self, root: Path, compact_every_slots: int = 10_000) -> None:
        self.root = root
        self.compact_every = compact_every_slots
        self.net = LocalNet()
        self.stores: dict[int, NodeStore] = {}

    async def start(self, node: int) -> NodeRuntime:
        store = NodeStore(self.root / f"n{node}", map_size=64 << 20)
        store.claim(CONFIG.name, node, founding=True)
        self.stores[node] = store
        runtime = NodeRuntime(
            CONFIG,
            node,
            store,
            self.net.sender(node),
            seed=node,
            paxos_overrides=PAXOS,
            compact_every_slots=self.compact_every,
        )
        self.net.nodes[node] = runtime
        await runtime.start()
        return runtime

    async def stop(self, node: int) -> None:
        runtime = self.net.nodes.pop(node)
        await runtime.stop()
        self.stores.pop(node).close()

    async def leader(self, shard: int, timeout_s: float = 10.0) -> NodeRuntime:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            for runtime in self.net.nodes.values():
                if runtime.role(shard) is Role.LEADER:
                    try:
                        await asyncio.wait_for(runtime.linearizable_point(shard), 1.0)
                    except (NotLeaderError, TimeoutError):
                        continue
                    return runtime
            await asyncio.sleep(0.02)
        raise AssertionError(f"no leader for shard {shard} within {timeout_s}s")

    async def write(self, shard: int, command: Command) -> PutResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WRITE_WAIT_S
        attempt = 0
        while loop.time() < deadline:
            leader = await self.leader(shard)
            try:
                # A deposed leader drops its proposals at once; a slow one (a loaded
                # machine) is given longer each time rather than abandoned.
                wait_s = min(2.0 * (attempt + 1), 10.0)
                result = await asyncio.wait_for(leader.submit(shard, command), wait_s)
            except (NotLeaderError, ProposalDroppedError, TimeoutError):
                # A leader handing over (to its preferred DC) refuses until the new one is
                # elected, a round trip or more: retry until then, not a count of times.
                attempt += 1
                await asyncio.sleep(0.02)
                continue
            assert isinstance(result, PutResult), result
            return result
        raise AssertionError(f"write did not commit in {WRITE_WAIT_S}s")

    async def read(self, shard: int, key: bytes) -> bytes | None:
        leader = await self.leader(shard)
        await leader.linearizable_point(shard)
        kv = leader.get_local(shard, key)[0]
        return kv.value if kv else None


def shard_of(key: bytes) -> int:
    return 1 if key < b"m" else 2


def run(coro: Callable[[Cluster], object], tmp_path: Path, **options: int) -> None:
    async def main() -> None:
        cluster = Cluster(tmp_path, **options)
        for node in (1, 2, 3):
            await cluster.start(node)
        try:
            await coro(cluster)  # type: ignore[misc]
        finally:
            for node in list(cluster.net.nodes):
                await cluster.stop(node)

    asyncio.run(main())


KEYS = [b"apple", b"banana", b"kiwi", b"mango", b"peach", b"zucchini"]


def test_writes_commit_and_survive_stopping_every_node(tmp_path: Path) -> None:
    async def scenario(c: Cluster) -> None:
        for i, key in enumerate(KEYS):
            await c.write(shard_of(key), Put(RequestId(0, 0), key, b"v%d" % i))
        for i, key in enumerate(KEYS):
            assert await c.read(shard_of(key), key) == b"v%d" % i
        for node in (1, 2, 3):
            await c.stop(node)
        for node in (1, 2, 3):
            await c.start(node)
        for i, key in enumerate(KEYS):
            assert await c.read(shard_of(key), key) == b"v%d" % i
        await c.write(1, Put(RequestId(0, 0), b"after", b"restart"))
        assert await c.read(1, b"after") == b"restart"

    run(scenario, tmp_path)


def test_stop_takes_no_more_inputs_and_is_bounded_by_the_disk_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once stopping, a node takes no message and no turn (a node that kept taking them
    could keep its disk busy forever); and a job whose completion never came back holds
    ``stop()`` only until ``STOP_WAIT_S``, not for ever."""
    monkeypatch.setattr(node_module, "STOP_WAIT_S", 0.3)

    async def scenario(c: Cluster) -> None:
        await c.write(1, Put(RequestId(0, 0), b"apple", b"red"))
        follower = next(r for r in c.net.nodes.values() if r.role(1) is not Role.LEADER)
        seen: list[tuple[int, Message]] = []
        deliver = follower.deliver

        def recording(shard: int, msg: Message) -> None:
            seen.append((shard, msg))
            deliver(shard, msg)

        follower.deliver = recording  # type: ignore[method-assign]
        await c.write(1, Put(RequestId(0, 0), b"apple", b"green"))
        assert seen  # what its leader sends it
        follower._inflight_jobs += 1  # a job the disk never reported back
        stopping = asyncio.create_task(c.stop(follower.node_id))
        await asyncio.sleep(0)  # stop() has begun (its task ran first)
        # Watched from here on: a message already on its way when stop() was asked for may
        # have been taken just before (the same loop turn), which is not what is tested.
        stepped: list[Message] = []
        node = follower.node
        step = node.step
        node.step = lambda group, msg: (stepped.append(msg), step(group, msg))  # type: ignore[method-assign]
        submitted: list[object] = []
        submit = follower._submit
        follower._submit = lambda job: (submitted.append(job), submit(job))  # type: ignore[method-assign]
        for shard, msg in seen:  # the same messages again, while it stops
            deliver(shard, msg)
        follower.peer_restarted(1)
        await asyncio.wait_for(stopping, 5.0)
        assert stepped == [] and submitted == []

    run(scenario, tmp_path)


def test_followers_apply_every_write_in_order_when_replies_go_before_applies(
    tmp_path: Path,
) -> None:
    """An idle follower commits an Accept (and sends its Accepted) before applying the slot
    that Accept reported chosen; the applies it holds back must still all run, in slot
    order, ahead of later jobs (a follower that applied out of order would stop: the state
    machine asserts slot order), also when the jobs queued behind a slow disk are merged into
    one transaction. Overwrites of a few keys, one at a time and then many at once, end with
    every follower's state machine equal to the leader's."""

    async def scenario(c: Cluster) -> None:
        # Followers learn commits from the next Accept only, as a group of five would (with
        # three, the leader's own Accepted usually teaches them first, in a job of its own).
        for node in c.net.nodes.values():
            node.node.replica(1)._acceptor._voters = ()
        keys = [b"a", b"b", b"c"]
        for i in range(30):
            await c.write(1, Put(RequestId(0, 0), keys[i % 3], b"seq%d" % i))
        leader = await c.leader(1)
        # One follower on a slow disk: messages keep arriving while a split job's first
        # half is on its disk, so later jobs queue up behind the held-back applies.
        slow = next(r for r in c.net.nodes.values() if r is not leader)
        disk_job = slow._disk_job

        def slow_disk_job(*args: object) -> object:
            time.sleep(0.005)
            return disk_job(*args)  # type: ignore[arg-type]

        slow._disk_job = slow_disk_job  # type: ignore[method-assign]
        for wave in range(4):
            writes = []
            for i in range(20):  # staggered, so most get a slot of their own
                put = Put(RequestId(0, 0), keys[i % 3], b"w%d-%d" % (wave, i))
                writes.append(asyncio.create_task(c.write(1, put)))
                await asyncio.sleep(0.001)
            await asyncio.gather(*writes)
            await c.write(1, Put(RequestId(0, 0), keys[wave % 3], b"after%d" % wave))
        await c.write(1, Put(RequestId(0, 0), b"a", b"last"))
        leader = await c.leader(1)
        await leader.linearizable_point(1)
        followers = [r for r in c.net.nodes.values() if r is not leader]
        assert slow.jobs_split > 0, "the held-back path never ran"
        assert slow.jobs_merged > 0, "no jobs queued behind the slow disk were merged"
        target = leader.applied_slot(1)
        for _ in range(200):
            if all(f.applied_slot(1) >= target for f in followers):
                break
            await asyncio.sleep(0.01)
        for follower in followers:
            assert follower.applied_slot(1) >= target
            for key in keys:
                assert follower.get_local(1, key)[0] == leader.get_local(1, key)[0], key
        assert leader.get_local(1, b"a")[0].value == b"last"  # type: ignore[union-attr]

    run(scenario, tmp_path)


def test_an_idle_follower_commits_on_its_loop_and_answers_only_after_the_commit(
    tmp_path: Path,
) -> None:
    """A follower with nothing on its disk commits an Accept on the event loop (no hand-off
    to the disk thread and back), and its Accepted still leaves only once the accepted
    entries are in its LMDB log: every slot an Accepted names is read back from the store,
    at the Accepted's ballot (or, for a slot chosen already, with the ballot it keeps), at
    the moment it is sent."""

    async def scenario(c: Cluster) -> None:
        leader = await c.leader(1)
        followers = [r for r in c.net.nodes.values() if r is not leader]
        checked: list[int] = []
        early: list[str] = []
        for follower in followers:
            store, send = c.stores[follower.node_id], follower._send

            def checking(
                dst: int,
                batch: list[tuple[int, Message]],
                store: NodeStore = store,
                send: Callable[[int, list[tuple[int, Message]]], None] = send,
            ) -> None:
                for shard, msg in batch:
                    if isinstance(msg, Accepted):
                        state = store.load(shard)
                        for slot in msg.slots:
                            entry = state.log.get(slot)
                            # A slot already chosen here is acknowledged by its value, and
                            # keeps the ballot it was first accepted at (acceptor rules).
                            durable = entry is not None and (
                                entry.ballot == msg.ballot or slot <= state.chosen_through
                            )
                            if not durable:
                                early.append(f"slot {slot} of shard {shard}: {entry}")
                            checked.append(slot)
                send(dst, batch)

            follower._send = checking  # type: ignore[method-assign]
        on_loop_before = [f.jobs_on_loop for f in followers]
        for i in range(20):
            await c.write(1, Put(RequestId(0, 0), b"k%d" % (i % 4), b"v%d" % i))
        assert not early, f"Accepted sent before its entries were durable: {early[:3]}"
        assert len(checked) >= 20
        assert all(f.jobs_on_loop > n for f, n in zip(followers, on_loop_before, strict=True))

    run(scenario, tmp_path)


def test_followers_name_the_leader_and_retries_apply_once(tmp_path: Path) -> None:
    async def scenario(c: Cluster) -> None:
        leader = await c.leader(1)
        follower = next(r for r in c.net.nodes.values() if r is not leader)
        with pytest.raises(NotLeaderError) as info:
            await follower.submit(1, Put(RequestId(0, 0), b"k", b"v"))
        assert info.value.leader_hint == leader.node_id
        put = Put(RequestId(77, 1), b"k", b"once")
        first = await c.write(1, put)
        again = await c.write(1, put)
        assert first == again
        assert leader.get_local(1, b"k")[0].version == 1  # type: ignore[union-attr]

    run(scenario, tmp_path)


def test_losing_the_leader_elects_another_and_keeps_acknowledged_writes(tmp_path: Path) -> None:
    async def scenario(c: Cluster) -> None:
        for i in range(5):
            await c.write(1, Put(RequestId(0, 0), b"k%d" % i, b"v%d" % i))
        old = await c.leader(1)
        await c.stop(old.node_id)
        new = await c.leader(1)
        assert new.node_id != old.node_id
        await c.write(1, Put(RequestId(0, 0), b"k5", b"v5"))
        for i in range(6):
            assert await c.read(1, b"k%d" % i) == b"v%d" % i

    run(scenario, tmp_path)


class FailingStore:
    """A NodeStore whose commits start failing (fsync EIO, disk gone) after ``ok`` of them."""

    def __init__(self, store: NodeStore, ok: int) -> None:
        self._store = store
        self._ok = ok

    def load(self, shard_id: int):  # type: ignore[no-untyped-def]
        return self._store.load(shard_id)

    def read(self, shard_id: int):  # type: ignore[no-untyped-def]
        return self._store.read(shard_id)

    @property
    def founding(self) -> bool:
        return self._store.founding

    def ranges(self) -> dict[int, bytes]:
        return self._store.ranges()

    def write(self):  # type: ignore[no-untyped-def]
        if self._ok <= 0:
            raise OSError(5, "Input/output error")
        self._ok -= 1
        return self._store.write()


def test_a_failed_commit_is_fatal_and_releases_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        store = NodeStore(tmp_path / "n1", map_size=16 << 20)
        sent: list[Message] = []
        runtime = NodeRuntime(
            CONFIG,
            1,
            FailingStore(store, ok=0),
            lambda dst, batch: sent.extend(m for _, m in batch),
            seed=1,
            paxos_overrides=PAXOS,
        )
        await runtime.start()
        for _ in range(100):  # it campaigns; the promise write fails
            if runtime.failed.is_set():
                break
            await asyncio.sleep(0.01)
        assert runtime.failed.is_set()
        assert isinstance(runtime.failure, OSError)
        # The Prepares ride the failed write: none may have left.
        assert not any(type(m).__name__ == "Prepare" for m in sent)
        await runtime.stop()
        store.close()

    asyncio.run(main())


def test_a_broken_node_layer_invariant_is_fatal(tmp_path: Path) -> None:
    """An assertion of the node layer (its memory no longer to be trusted) stops the node as
    a failed commit does, for a restart to recover from disk: left running, a node of the
    fault suite logged the same assertion for every job and applied nothing more."""

    async def main() -> None:
        store = NodeStore(tmp_path / "n1", map_size=16 << 20)
        runtime = NodeRuntime(
            CONFIG, 1, store, lambda dst, batch: None, seed=1, paxos_overrides=PAXOS
        )
        await runtime.start()
        node = runtime.node
        planted = AssertionError("writes must complete in order")

        def job_done(*_: object) -> None:
            raise planted

        node.job_done = job_done  # type: ignore[method-assign]
        for _ in range(200):  # it campaigns; its promise's job completes
            if runtime.failed.is_set():
                break
            await asyncio.sleep(0.01)
        assert runtime.failed.is_set()
        assert runtime.failure is planted
        await runtime.stop()
        store.close()

    asyncio.run(main())


def _raises(error: BaseException) -> Callable[..., None]:
    def planted(*_: object) -> None:
        raise error

    return planted


async def _until_failed(runtime: NodeRuntime) -> None:
    for _ in range(500):
        if runtime.failed.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the node did not stop")


def test_every_entry_into_the_node_layer_treats_its_exceptions_as_fatal(tmp_path: Path) -> None:
    """Not only the three that carry its work: a tick, a proposal (whose caller is told
    the node stopped) and the answers applied before the fsync stop the node too."""

    async def scenario(c: Cluster) -> None:
        leader = await c.leader(1)
        applying, ticking = (r for r in c.net.nodes.values() if r is not leader)
        planted = AssertionError("a broken invariant")
        applying.node.applied_early = _raises(planted)  # type: ignore[method-assign]
        await c.write(1, Put(RequestId(0, 0), b"a", b"1"))  # applied everywhere, in time
        await _until_failed(applying)
        ticking.node.tick = _raises(planted)  # type: ignore[method-assign]
        await _until_failed(ticking)
        leader.node.submit = _raises(planted)  # type: ignore[method-assign]
        with pytest.raises(NodeStoppedError):
            await leader.submit(1, Put(RequestId(0, 0), b"b", b"2"))
        assert leader.failure is applying.failure is ticking.failure is planted

    run(scenario, tmp_path)


def test_a_node_that_missed_compacted_history_catches_up_by_snapshot(tmp_path: Path) -> None:
    """Logs are truncated after snapshots; a replica behind the truncation gets a snapshot."""

    async def scenario(c: Cluster) -> None:
        await c.write(1, Put(RequestId(0, 0), b"early", b"0"))
        await c.stop(3)
        for i in range(20):
            await c.write(1, Put(RequestId(31, i + 1), b"k%02d" % i, b"v%d" % i))
        leader = await c.leader(1)
        deadline = asyncio.get_running_loop().time() + 5
        while leader.node.replica(1).snapshot_slot == 0:
            assert asyncio.get_running_loop().time() < deadline, "the leader never compacted"
            await asyncio.sleep(0.02)
        node3 = await c.start(3)
        deadline = asyncio.get_running_loop().time() + 10
        while node3.applied_slot(1) < leader.applied_slot(1):
            assert asyncio.get_running_loop().time() < deadline, "node 3 did not catch up"
            await asyncio.sleep(0.02)
        assert node3.node.replica(1).snapshot_slot > 0
        for i in range(20):
            assert node3.get_local(1, b"k%02d" % i)[0].value == b"v%d" % i  # type: ignore[union-attr]
        assert node3.get_local(1, b"early")[0].value == b"0"  # type: ignore[union-attr]
        # The replicated session table came along: a retry applies once.
        await c.write(1, Put(RequestId(31, 20), b"k19", b"v19"))
        leader = await c.leader(1)
        await leader.linearizable_point(1)
        assert leader.get_local(1, b"k19")[0].version == 1  # type: ignore[union-attr]

    run(scenario, tmp_path, compact_every_slots=5)


def test_an_ended_shard_answers_no_read_with_the_state_it_ended_with(tmp_path: Path) -> None:
    """Node 3 leaves shard 1 (a stop sign, its successor 7 on nodes 1 and 2). Its replica
    of shard 1 keeps the state it ended with, and may even lead the ended group (its
    replicas still vote): a read of it there is refused with the successor, where the
    routing layer reads again (the fault suite's membership nemesis found reads of an ended
    replica missing every later write)."""

    async def scenario(c: Cluster) -> None:
        await c.write(1, Put(RequestId(0, 0), b"apple", b"before"))
        stop = Reconfigure(RequestId(0, 0), 7, (1, 2))
        deadline = asyncio.get_running_loop().time() + WRITE_WAIT_S
        while True:
            leader = await c.leader(1)
            try:
                done = await asyncio.wait_for(leader.submit(1, stop), 10)
                break
            except (NotLeaderError, ProposalDroppedError, TimeoutError):
                assert asyncio.get_running_loop().time() < deadline
        assert isinstance(done, Reconfigured) and done.successor.range_id == 7
        removed = c.net.nodes[3]
        while not removed.hosts(1) or removed.applied_slot(1) < done.slot:
            await asyncio.sleep(0.01)
        with pytest.raises(RangeMovedError) as moved:
            removed.get_local(1, b"apple")
        assert moved.value.descriptor.range_id == 7
        for staying in (c.net.nodes[1], c.net.nodes[2]):
            while not staying.hosts(7):
                await asyncio.sleep(0.01)
            with pytest.raises(RangeMovedError) as moved:
                staying.get_local(1, b"apple")  # a tombstone: its keys are the successor's
            assert moved.value.descriptor.range_id == 7

    run(scenario, tmp_path)
