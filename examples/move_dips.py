"""What one replica move costs a write load: the worst second of the load around each move.

    .venv/bin/python examples/move_dips.py [--duration 60] [--gap 3] [--which alternate]
                                           [--control] [--base-port 24500]

The load of ``membership_under_load.py`` (``kvstore bench --workload put --concurrency 16
--keys 1000`` on ``kvstore up --nodes-per-dc 2``), and every ``--gap`` seconds one replica
move (``Admin.ChangeReplicas``, the call behind ``kvstore replica move`` and the
rebalancer's moves) of the next shard: its leader's replica (``--which leader``: the
leadership is handed over first), another one (``follower``), or each in turn
(``alternate``, the default), to the other node of that replica's datacenter. The moves are
made from this process, as the rebalancer makes them from a node: a CLI process started
per move would cost a small machine's load more than the move does.

Each move's dip is the worst second from its start to 1.5 s after it returned, against the
median second before the first move. ``--control`` asks for the cluster's description
instead of each move (what finding the next move costs), to tell the moves' own cost apart.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc

from examples.membership_under_load import Demo
from kvstore.v1 import admin_pb2, admin_pb2_grpc

WHICH = ("alternate", "leader", "follower")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=60, help="seconds of load (>= 30)")
    parser.add_argument("--gap", type=float, default=3.0, help="seconds between moves")
    parser.add_argument("--which", choices=WHICH, default="alternate", help="replica to move")
    parser.add_argument("--control", action="store_true", help="no move: a description")
    parser.add_argument("--seconds", action="store_true", help="print every second's rate")
    parser.add_argument("--base-port", type=int, default=24500)
    args = parser.parse_args()
    if args.duration < 30:
        parser.error("--duration must be at least 30")
    with tempfile.TemporaryDirectory(prefix="kvstore-moves-") as tmp:
        demo = MoveDips(Path(tmp), args.base_port, args.duration, args.gap)
        demo.which, demo.control, demo.seconds = args.which, args.control, args.seconds
        return demo.run()


class MoveDips(Demo):
    which = "alternate"
    control = False
    seconds = False

    def _run(self) -> int:
        _, nodes = self._start_cluster()
        dc_of = {int(n["id"]): str(n["dc"]) for n in nodes.values()}
        addresses = [str(n["address"]) for n in nodes.values()]
        channels = {a: grpc.insecure_channel(a) for a in addresses}
        stubs = {a: admin_pb2_grpc.AdminStub(c) for a, c in channels.items()}
        bench = self._start_load()
        kinds: list[str] = []
        turn = 0
        try:
            while self._bench_s() < self.duration - self.gap_s - 4:
                started = self._bench_s()
                shards, leaders = _shards_and_leaders(stubs)
                shard = shards[turn % len(shards)]
                leader = leaders.get(shard.shard_id)
                want_leader = self.which == "leader" or (
                    self.which == "alternate" and turn % 2 == 0
                )
                movable = [r for r in shard.replicas if (r == leader) == want_leader]
                if self.control or leader is None or not movable:
                    kind = "control" if self.control else "skipped (no leader known)"
                    took = 0.0
                else:
                    source = movable[0]
                    target = next(
                        n
                        for n in sorted(dc_of)
                        if dc_of[n] == dc_of[source] and n not in shard.replicas
                    )
                    kind = "leader" if source == leader else "follower"
                    t0 = time.monotonic()
                    stubs[addresses[0]].ChangeReplicas(
                        admin_pb2.ChangeReplicasRequest(
                            shard_id=shard.shard_id, add=[target], remove=[source]
                        ),
                        timeout=30,
                    )
                    took = time.monotonic() - t0
                    print(
                        f"  shard {shard.shard_id}: n{source} -> n{target} ({kind}): {took:.2f} s",
                        flush=True,
                    )
                self.steps.append((kind, started, self._bench_s()))
                kinds.append(kind)
                turn += 1
                time.sleep(self.gap_s)
        finally:
            for channel in channels.values():
                channel.close()
        out, _ = bench.communicate(timeout=self.duration + 120)
        result = json.loads(out.decode())["results"][0]
        rates = self._per_second()
        steady = self._steady(rates)
        dips = {
            kind: [
                1 - min((r for t, r in rates if start < t <= end + 1.5), default=steady) / steady
                for k, start, end in self.steps
                if k == kind
            ]
            for kind in dict.fromkeys(kinds)
        }
        if self.seconds:
            print(_seconds_text(rates, [start for _, start, _ in self.steps]))
        print(f"steady {steady:.0f} ops/s")
        for kind, values in dips.items():
            print(
                f"  {len(values)} {kind} moves: dips "
                + " ".join(f"{d:.0%}" for d in values)
                + f"; mean {statistics.mean(values):.0%}, worst {max(values):.0%}"
            )
        latency = result["latency_ms"]["put"]
        print(
            f"{result['ops']} puts, p50 {latency['p50']} ms, p99 {latency['p99']} ms,"
            f" errors {result['errors']}"
        )
        return 0 if not result["errors"] else 1


def _seconds_text(rates: list[tuple[float, float]], starts: list[float]) -> str:
    """Each second's rate ("end of the second:ops"), a ``*`` on those a move started in."""
    words = []
    for t, r in rates:
        moved = any(t - 1 < start <= t for start in starts)
        words.append(f"{t:.0f}:{r:.0f}{'*' if moved else ''}")
    return " ".join(words)


def _shards_and_leaders(
    stubs: dict[str, admin_pb2_grpc.AdminStub],
) -> tuple[list[admin_pb2.ShardInfo], dict[int, int]]:
    """The shards (by key), and each one's leader as the node leading it says."""
    stub = next(iter(stubs.values()))
    view = stub.DescribeCluster(admin_pb2.DescribeClusterRequest(), timeout=10)
    leaders: dict[int, int] = {}
    for each in stubs.values():
        status = each.NodeStatus(admin_pb2.NodeStatusRequest(), timeout=10)
        for s in status.shards:
            if s.role == "leader":
                leaders[s.shard_id] = status.node_id
    return sorted(view.shards, key=lambda s: s.start), leaders


if __name__ == "__main__":
    sys.exit(main())
