"""What the automatic rebalancer costs a write load while it moves replicas by itself.

    .venv/bin/python examples/rebalance_dips.py [--duration 90] [--shards 12] [--base-port 24600]

``kvstore up --nodes-per-dc 2 --shards 12``, the rebalancer switched off, and every
datacenter-2 replica moved onto node 3 (before any load: node 4 holds none). Then
``kvstore bench --workload put --concurrency 16 --keys 1000`` writes all along; after its
first ``STEADY_S`` seconds the rebalancer is switched on (``Admin.SetRebalance``), and it
moves about half of node 3's replicas back to node 4, one at a time, at its own pace.

It prints the load's rate before the rebalance (the median second), then over the whole
rebalance (from switching it on until node 4's count last changed, plus a second): its mean,
its worst five-second window and its worst second, each against that steady rate; and every
second's rate with the seconds node 4's count changed in marked. Everything it asks the
cluster it asks from this process (a CLI process per question would cost a small machine's
load more than the moves do). Every process it starts it stops by PID.
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
from examples.move_dips import _seconds_text
from kvstore.v1 import admin_pb2, admin_pb2_grpc

STEADY_S = 15.0  # of load before the rebalancer is switched on
SETTLED_S = 15.0  # node 4's count unchanged this long (once it changed): the rebalance ended
POLL_S = 0.5
CONTROL_WINDOW_S = 25.0  # with --control: about what a rebalance of six moves takes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=90, help="seconds of load (>= 60)")
    parser.add_argument("--shards", type=int, default=12, help="ranges the key space starts in")
    parser.add_argument(
        "--control", action="store_true", help="leave the rebalancer off: the load alone"
    )
    parser.add_argument("--base-port", type=int, default=24600)
    args = parser.parse_args()
    if args.duration < 60:
        parser.error("--duration must be at least 60")
    with tempfile.TemporaryDirectory(prefix="kvstore-rebalance-") as tmp:
        demo = RebalanceDips(Path(tmp), args.base_port, args.duration, 0.0)
        demo.shards, demo.control = args.shards, args.control
        return demo.run()


class RebalanceDips(Demo):
    shards = 12
    control = False  # the rebalancer stays off; the window is as long as the last run's

    def _run(self) -> int:
        _, nodes = self._start_cluster("--shards", str(self.shards))
        addresses = {int(n["id"]): str(n["address"]) for n in nodes.values()}
        channels = {n: grpc.insecure_channel(a) for n, a in addresses.items()}
        stubs = {n: admin_pb2_grpc.AdminStub(c) for n, c in channels.items()}
        try:
            return self._measure(stubs)
        finally:
            for channel in channels.values():
                channel.close()

    def _measure(self, stubs: dict[int, admin_pb2_grpc.AdminStub]) -> int:
        admin = stubs[1]
        admin.SetRebalance(admin_pb2.SetRebalanceRequest(enabled=False), timeout=30)
        moved = _gather_onto(admin, source=4, target=3)
        print(f"rebalancer off; {moved} datacenter-2 replicas moved from node 4 to node 3")
        bench = self._start_load()
        while self._bench_s() < STEADY_S:
            time.sleep(0.1)
        on_at = self._bench_s()
        if not self.control:
            admin.SetRebalance(admin_pb2.SetRebalanceRequest(enabled=True), timeout=30)
        print(f"rebalancer {'left off' if self.control else 'on'} at {on_at:.1f} s", flush=True)
        counts = [(on_at, _replicas_on(stubs[4]) or 0)]
        while self._bench_s() < self.duration - 2:
            time.sleep(POLL_S)
            count = _replicas_on(stubs[4])
            if count is not None and count != counts[-1][1]:
                counts.append((self._bench_s(), count))
                print(f"  {counts[-1][0]:5.1f} s: node 4 holds {count}", flush=True)
            if len(counts) > 1 and self._bench_s() - counts[-1][0] > SETTLED_S:
                break
        if self.control:
            counts.append((on_at + CONTROL_WINDOW_S, counts[-1][1]))
        out, _ = bench.communicate(timeout=self.duration + 120)
        result = json.loads(out.decode())["results"][0]
        self._report_rebalance(result, on_at, counts)
        return 0 if not result["errors"] and (self.control or len(counts) > 2) else 1

    def _report_rebalance(
        self, result: dict[str, object], on_at: float, counts: list[tuple[float, int]]
    ) -> None:
        rates = self._per_second()
        steady = statistics.median(r for t, r in rates if 3 <= t <= on_at)
        end = counts[-1][0] + 1.0
        during = [r for t, r in rates if on_at < t <= end]
        print(_seconds_text(rates, [t for t, _ in counts]))
        print(
            f"steady {steady:.0f} ops/s; the rebalance: {len(counts) - 1} moves onto node 4 in"
            f" {end - on_at:.0f} s"
        )
        if during:
            fives = [statistics.mean(during[i : i + 5]) for i in range(max(1, len(during) - 4))]
            print(
                f"  mean {statistics.mean(during) / steady - 1:+.0%}, worst 5 s"
                f" {min(fives) / steady - 1:+.0%}, worst second {min(during) / steady - 1:+.0%}"
            )
        latency = result["latency_ms"]["put"]  # type: ignore[index]
        print(
            f"{result['ops']} puts, p50 {latency['p50']} ms, p99 {latency['p99']} ms,"
            f" errors {result['errors']}"
        )


def _gather_onto(admin: admin_pb2_grpc.AdminStub, source: int, target: int) -> int:
    """Move every replica of ``source`` to ``target`` (same datacenter): how many."""
    moved = 0
    view = admin.DescribeCluster(admin_pb2.DescribeClusterRequest(), timeout=30)
    for shard in view.shards:
        if source in shard.replicas and target not in shard.replicas:
            admin.ChangeReplicas(
                admin_pb2.ChangeReplicasRequest(
                    shard_id=shard.shard_id, add=[target], remove=[source]
                ),
                timeout=30,
            )
            moved += 1
    return moved


def _replicas_on(stub: admin_pb2_grpc.AdminStub) -> int | None:
    """The user ranges a node holds, as it says itself (the meta range, 0, not counted;
    None: it did not answer)."""
    try:
        status = stub.NodeStatus(admin_pb2.NodeStatusRequest(), timeout=5)
    except grpc.RpcError:
        return None
    return sum(1 for s in status.shards if s.shard_id != 0)


if __name__ == "__main__":
    sys.exit(main())
