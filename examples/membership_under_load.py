"""Membership changes under a write load, end to end, with the load's dip at each step.

    .venv/bin/python examples/membership_under_load.py [--duration 60] [--base-port 24400]

What an operator does to a live cluster, scripted: ``kvstore up --nodes-per-dc 2`` (six
nodes), ``kvstore bench --workload put`` writing all along, and meanwhile:

1. ``kvstore node drain 4``: every replica of node 4 moves to the other node of its DC;
2. node 6 is SIGKILLed for good (``kvstore up --no-restart``: nothing brings it back);
3. a new node joins its datacenter: ``kvstore serve --join ... --dc dc3``;
4. ``kvstore node replace 6 7``: the dead node's replicas are rebuilt on the new one;
5. ``kvstore node remove 6``;
6. ``kvstore node undrain 4``: the automatic rebalancer (run by the meta range's leader)
   moves replicas back onto node 4, one at a time, by itself.

Then ``kvstore shards -o json`` must show no replica on node 6, and ``kvstore scan`` read
every key. It prints each step's time and the worst second of the load while it ran, against
the median second before the first step (steps are ``--gap`` seconds apart, so each dip is
its own), and the load's summary (errors included). Every
process it starts it stops by PID; the data lives in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from kvstore.v1 import admin_pb2, admin_pb2_grpc

KVSTORE = [sys.executable, "-m", "kvstore"]
PROGRESS = re.compile(r"(\d+\.\d)s\s+(\d+) ops")
REBALANCED_ONTO_4 = 1  # replicas the rebalancer gives node 4 back before the step ends


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=60, help="seconds of load (>= 40)")
    parser.add_argument("--base-port", type=int, default=24400)
    parser.add_argument(
        "--gap", type=float, default=3.0, help="seconds of load between steps (each dip its own)"
    )
    args = parser.parse_args()
    if args.duration < 30 + 6 * args.gap:
        parser.error(f"--duration must be at least {30 + 6 * args.gap:g} with --gap {args.gap:g}")
    with tempfile.TemporaryDirectory(prefix="kvstore-membership-") as tmp:
        return Demo(Path(tmp), args.base_port, args.duration, args.gap).run()


class Demo:
    def __init__(self, tmp: Path, base_port: int, duration: int, gap_s: float) -> None:
        self.gap_s = gap_s
        self.tmp = tmp
        self.base_port = base_port
        self.duration = duration
        self.procs: list[subprocess.Popen[bytes]] = []
        self.samples: list[tuple[float, int]] = []  # (bench seconds, ops so far)
        self.steps: list[tuple[str, float, float]] = []  # (step, started, ended) in bench time
        self.bench_started = 0.0

    def run(self) -> int:
        try:
            return self._run()
        finally:
            for proc in reversed(self.procs):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in self.procs:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()

    def _run(self) -> int:
        data, nodes = self._start_cluster()
        print(f"cluster up: {len(nodes)} nodes, endpoints {self.endpoints}", flush=True)
        bench = self._start_load()

        self._step("drain node 4", "node", "drain", "4")
        victim = _pid_of(6, data)
        self._step("SIGKILL node 6", action=lambda: os.kill(victim, signal.SIGKILL))
        join_port = self.base_port + 7
        address = f"127.0.3.3:{join_port}"
        self._step(
            "node 7 joins dc3",
            action=lambda: self._join(address),
        )
        self._step("replace node 6 by 7", "node", "replace", "6", "7")
        self._step("remove node 6", "node", "remove", "6")
        self._step(
            "undrain 4: rebalancer",
            "node",
            "undrain",
            "4",
            until=(lambda: self._replicas_of(4) >= REBALANCED_ONTO_4, "the rebalancer's moves"),
        )

        out, _ = bench.communicate(timeout=self.duration + 120)
        result = json.loads(out.decode())["results"][0]
        shards = json.loads(self._cli("shards", "-o", "json"))
        on_six = [s for s in _shard_rows(shards) if 6 in _nodes_of(s)]
        scanned = len(json.loads(self._cli("scan", "--limit", "0", "-o", "json"))["kvs"])
        self._report(result, on_six, scanned)
        on_four = self._replicas_of(4)
        print(f"replicas on node 4 after its undrain: {on_four}")
        return 0 if not on_six and scanned >= 1000 and on_four >= REBALANCED_ONTO_4 else 1

    def _start_cluster(self, *more: str) -> tuple[Path, dict[int, dict[str, Any]]]:
        """``kvstore up --nodes-per-dc 2`` (and ``more`` arguments) until every node answers:
        its directory and the nodes of its config by id."""
        data = self.tmp / "cluster"
        up = self._spawn(
            "up", "--dir", str(data), "--nodes-per-dc", "2", "--base-port", str(self.base_port),
            "--no-restart", *more, log="up.log",
        )  # fmt: skip
        config = tomllib.loads(_wait_for(data / "cluster.toml", up).read_text())
        nodes = {n["id"]: n for n in config["nodes"]}
        self.endpoints = ",".join(n["address"] for n in nodes.values())
        self._until(lambda: len(self._listed(up_only=True)) == len(nodes), "every node up")
        return data, nodes

    def _start_load(self) -> subprocess.Popen[bytes]:
        """The put load, its progress read meanwhile; returns after its first 10 s."""
        bench = self._spawn(
            "bench", "--endpoints", self.endpoints, "--workload", "put", "--concurrency", "16",
            "--duration", str(self.duration), "--keys", "1000", "-o", "json",
            log=None, stderr=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        self.bench_started = time.monotonic()
        threading.Thread(target=self._read_progress, args=(bench,), daemon=True).start()
        self._until(lambda: self._bench_s() >= 10, "10 s of load")
        return bench

    # ------------------------------------------------------------------ steps

    def _step(
        self,
        name: str,
        *cli: str,
        action: object = None,
        until: tuple[Callable[[], bool], str] | None = None,
    ) -> None:
        """``cli`` or ``action``, then ``until`` holds (if given): the step's time."""
        started = self._bench_s()
        t0 = time.monotonic()
        if cli:
            self._cli(*cli)
        elif callable(action):
            action()
        if until is not None:
            self._until(until[0], until[1], timeout_s=120.0)
        took = time.monotonic() - t0
        self.steps.append((name, started, self._bench_s()))
        print(f"  {name}: {took:.2f} s", flush=True)
        time.sleep(self.gap_s)  # the load alone for a while: the next dip is the next step's

    def _join(self, address: str) -> None:
        self._spawn(
            "serve", "--join", self.endpoints, "--dc", "dc3", "--address", address,
            "--data", str(self.tmp / "n7"), log="n7.log",
        )  # fmt: skip
        try:
            self._until(
                lambda: any(n["address"] == address for n in self._listed()), "node 7 listed"
            )
        except SystemExit:
            tail = (self.tmp / "n7.log").read_text(errors="replace").splitlines()[-15:]
            print("node 7's log ends:", *tail, sep="\n  ", file=sys.stderr)
            raise

    def _replicas_of(self, node: int) -> int:
        """The shards with a replica on ``node``, asked from this process: a CLI process
        per look, five a second, cost the load more than the rebalancer's moves did."""
        for address in self.endpoints.split(","):
            with grpc.insecure_channel(address) as channel:
                try:
                    view = admin_pb2_grpc.AdminStub(channel).DescribeCluster(
                        admin_pb2.DescribeClusterRequest(), timeout=10
                    )
                except grpc.RpcError:
                    continue
            return sum(1 for s in view.shards if node in s.replicas)
        return 0

    def _listed(self, up_only: bool = False) -> list[dict[str, object]]:
        try:
            nodes = json.loads(self._cli("node", "list", "-o", "json", check=False) or "{}")
        except json.JSONDecodeError:
            return []
        rows: list[dict[str, object]] = nodes.get("nodes", [])
        return [n for n in rows if n["state"] == "up"] if up_only else rows

    # ------------------------------------------------------------------ processes

    def _spawn(self, *argv: str, log: str | None, **kw: object) -> subprocess.Popen[bytes]:
        if log is not None:
            handle = (self.tmp / log).open("wb")
            kw = {"stdout": handle, "stderr": subprocess.STDOUT, **kw}
        proc = subprocess.Popen([*KVSTORE, *argv], **kw)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc  # type: ignore[no-any-return]

    def _cli(self, *argv: str, check: bool = True) -> str:
        done = subprocess.run(
            [*KVSTORE, *argv, "--endpoints", self.endpoints, "--timeout", "60"],
            capture_output=True,
            check=False,
        )
        if check and done.returncode != 0:
            raise SystemExit(f"kvstore {' '.join(argv)} failed: {done.stderr.decode().strip()}")
        return done.stdout.decode()

    def _until(self, ready: object, what: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise SystemExit(f"gave up waiting for {what}")
            time.sleep(0.2)

    # ------------------------------------------------------------------ the load

    def _bench_s(self) -> float:
        return time.monotonic() - self.bench_started

    def _read_progress(self, bench: subprocess.Popen[bytes]) -> None:
        assert bench.stderr is not None
        buffer = b""
        while chunk := bench.stderr.read1(4096):  # type: ignore[attr-defined]
            buffer += chunk
            *lines, buffer = re.split(rb"[\r\n]", buffer)
            for line in lines:
                match = PROGRESS.search(line.decode(errors="replace"))
                if match:
                    self.samples.append((float(match[1]), int(match[2])))

    def _per_second(self) -> list[tuple[float, float]]:
        """(end of the second, ops in it), from the progress lines (about one a second)."""
        out = []
        for (t0, n0), (t1, n1) in zip(self.samples, self.samples[1:], strict=False):
            if t1 > t0:
                out.append((t1, (n1 - n0) / (t1 - t0)))
        return out

    def _steady(self, rates: list[tuple[float, float]]) -> float:
        """The median second of the load from its third second to the first step."""
        first = self.steps[0][1]
        return statistics.median(r for t, r in rates if 3 <= t <= first) if rates else 0.0

    def _report(
        self, result: dict[str, object], on_six: list[dict[str, object]], scanned: int
    ) -> None:
        rates = self._per_second()
        steady = self._steady(rates)
        print(f"\nload: steady {steady:.0f} ops/s before the first step")
        for name, start, end in self.steps:
            during = [r for t, r in rates if start <= t <= end + 1]
            if during and steady:
                worst = min(during)
                print(f"  {name:<22} worst second {worst:6.0f} ops/s ({worst / steady - 1:+.0%})")
        latency = result["latency_ms"]
        print(
            f"bench: {result['ops']} puts, {result['ops_per_s']} ops/s, latency {latency},"
            f" errors {result['errors']}"
        )
        print(f"shards with a replica on node 6: {len(on_six)}; keys scanned: {scanned}")


def _shard_rows(shards: object) -> list[dict[str, object]]:
    rows = shards.get("shards", []) if isinstance(shards, dict) else shards
    if not isinstance(rows, list) or not rows:
        raise SystemExit(f"kvstore shards -o json listed no shards: {shards!r}")
    return rows


def _nodes_of(shard: dict[str, object]) -> list[int]:
    """The node ids of a ``kvstore shards -o json`` row (its replicas are objects)."""
    replicas = shard.get("replicas")
    if not isinstance(replicas, list):
        raise SystemExit(f"a shard row without replicas: {shard!r}")
    return [int(r["node"]) for r in replicas]


def _wait_for(path: Path, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> Path:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"kvstore up did not write {path}")
        time.sleep(0.1)
    return path


def _pid_of(node_id: int, data: Path) -> int:
    """The PID of the ``kvstore serve`` that ``kvstore up`` started for node ``node_id``
    (its command line names its node id and its data directory under ``data``)."""
    node = str(node_id)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = [a.decode(errors="replace") for a in argv]
        if (
            "serve" in text
            and "--node" in text
            and text[text.index("--node") + 1] == node
            and any(a.startswith(str(data)) for a in text)
        ):
            return int(entry.name)
    raise SystemExit(f"no kvstore serve process for node {node_id}")


if __name__ == "__main__":
    sys.exit(main())
