"""What one replica move costs a write load: the worst second of the load around each move.

    .venv/bin/python examples/move_dips.py [--duration 60] [--control] [--base-port 24500]

The load of ``membership_under_load.py`` (``kvstore bench --workload put --concurrency 16
--keys 1000`` on ``kvstore up --nodes-per-dc 2``), and every ``--gap`` seconds one
``kvstore replica move`` of the next shard's datacenter-2 replica to the other node there.
Each move's dip is the worst second from its start to 1.5 s after it returned, against the
median second before the first move.

``--control`` runs ``kvstore shards`` instead of each move: on a small machine the CLI's own
start (a Python process beside the cluster and the load) costs the load too, and the
difference between the two runs is what the moves themselves cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from examples.membership_under_load import Demo, _nodes_of, _shard_rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=60, help="seconds of load (>= 30)")
    parser.add_argument("--gap", type=float, default=3.0, help="seconds between moves")
    parser.add_argument("--control", action="store_true", help="a CLI call, not a move")
    parser.add_argument("--base-port", type=int, default=24500)
    args = parser.parse_args()
    if args.duration < 30:
        parser.error("--duration must be at least 30")
    with tempfile.TemporaryDirectory(prefix="kvstore-moves-") as tmp:
        return MoveDips(Path(tmp), args.base_port, args.duration, args.gap, args.control).run()


class MoveDips(Demo):
    def __init__(
        self, tmp: Path, base_port: int, duration: int, gap_s: float, control: bool
    ) -> None:
        super().__init__(tmp, base_port, duration, gap_s)
        self.control = control

    def _run(self) -> int:
        self._start_cluster()
        bench = self._start_load()
        turn = 0
        while self._bench_s() < self.duration - self.gap_s - 4:
            if self.control:
                self._step("kvstore shards", "shards", "-o", "json")
            else:
                rows = _shard_rows(json.loads(self._cli("shards", "-o", "json")))
                row = rows[turn % len(rows)]
                source = 3 if 3 in _nodes_of(row) else 4
                self._step(
                    f"shard {row['id']}: n{source} -> n{7 - source}",
                    "replica", "move", str(row["id"]),
                    "--from", str(source), "--to", str(7 - source),
                )  # fmt: skip
            turn += 1
        out, _ = bench.communicate(timeout=self.duration + 120)
        result = json.loads(out.decode())["results"][0]
        rates = self._per_second()
        steady = self._steady(rates)
        dips = [
            1 - min((r for t, r in rates if start < t <= end + 1.5), default=steady) / steady
            for _, start, end in self.steps
        ]
        what = "CLI calls (control)" if self.control else "moves"
        print(f"steady {steady:.0f} ops/s; {len(dips)} {what}; dips " + " ".join(
            f"{d:.0%}" for d in dips
        ))  # fmt: skip
        latency = result["latency_ms"]["put"]
        print(
            f"mean dip {statistics.mean(dips):.0%}, worst {max(dips):.0%}; {result['ops']} puts,"
            f" p50 {latency['p50']} ms, p99 {latency['p99']} ms, errors {result['errors']}"
        )
        return 0 if not result["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
