"""A consumer group through a node's crash and a member's crash, with the CLI alone.

    .venv/bin/python examples/consumer_group_failover.py [--lines 5000] [--base-port 7400]

Starts a local three-datacenter cluster, makes a 6-partition topic, and starts three
``kvstore consume t --group g`` members. Two ``kvstore produce t`` processes send LINES
stdin lines each (fed 50 at a time) while node 2 is SIGKILLed and restarted; member c0 is
SIGKILLed once half the records were printed. Then it waits until ``kvstore group describe
g`` shows lag 0 with the partitions split 3/3 between c1 and c2, and checks the members'
output: every record printed at least once, each partition in offset order within each
member's output. Prints what it saw; exits 1 if a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from kvstore import AsyncClient
from kvstore.local_cluster import LocalCluster


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=5000, help="per producer")
    parser.add_argument("--base-port", type=int, default=7400)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kvstore-group-"))
    local = LocalCluster(work / "data", base_port=args.base_port)
    local.start_all()
    kvstore = [sys.executable, "-m", "kvstore"]
    endpoints = ["--endpoints", ",".join(local.endpoints)]
    consumers: list[subprocess.Popen[bytes]] = []
    try:
        asyncio.run(_ready(local.endpoints))
        subprocess.run(
            [*kvstore, "topic", "create", "t", "--partitions", "6", *endpoints], check=True
        )
        outputs = [work / f"c{i}.jsonl" for i in range(3)]
        for i, out in enumerate(outputs):
            with out.open("wb") as sink:
                member = ["consume", "t", "--group", "g", "--name", f"c{i}", "-o", "json"]
                consumers.append(subprocess.Popen([*kvstore, *member, *endpoints], stdout=sink))
        producers = [
            subprocess.Popen([*kvstore, "produce", "t", *endpoints], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL)
            for _ in range(2)
        ]  # fmt: skip
        feeders = [
            threading.Thread(target=_feed, args=(p, [f"p{i}-{n}\n" for n in range(args.lines)]))
            for i, p in enumerate(producers)
        ]
        for feeder in feeders:
            feeder.start()
        time.sleep(1)
        local.kill(2)
        print("node 2 SIGKILLed")
        time.sleep(2)
        local.start(2)
        print("node 2 restarted")
        total = 2 * args.lines
        while (printed := sum(len(o.read_bytes().splitlines()) for o in outputs)) < total // 2:
            time.sleep(0.05)
        os.kill(consumers[0].pid, signal.SIGKILL)
        print(f"member c0 SIGKILLed with {printed} of {total} records printed")
        for feeder in feeders:
            feeder.join()
        for producer in producers:
            producer.wait(timeout=300)
        started = time.monotonic()
        rows: list[dict[str, object]] = []
        while time.monotonic() - started < 120:
            described = subprocess.run(
                [*kvstore, "group", "describe", "g", "-o", "json", *endpoints],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            rows = [json.loads(line) for line in described.stdout.splitlines()]
            owners = sorted(str(r["owner"]) for r in rows)
            if (
                rows
                and sum(int(str(r["lag"])) for r in rows) == 0
                and owners == ["c1"] * 3 + ["c2"] * 3
            ):
                break
            time.sleep(0.5)
        print(f"group settled in {time.monotonic() - started:.1f} s:")
        subprocess.run([*kvstore, "group", "describe", "g", *endpoints], check=True)
        return _check(outputs, args.lines)
    finally:
        for consumer in consumers:
            if consumer.poll() is None:
                consumer.send_signal(signal.SIGINT)
                consumer.wait(timeout=30)
        local.stop_all()


async def _ready(endpoints: list[str]) -> None:
    async with AsyncClient(endpoints, timeout_s=30) as kv:
        await kv.put("ready", "1")


def _feed(producer: subprocess.Popen[bytes], lines: list[str]) -> None:
    assert producer.stdin is not None
    for at in range(0, len(lines), 50):
        producer.stdin.write("".join(lines[at : at + 50]).encode())
        producer.stdin.flush()
        time.sleep(0.05)
    producer.stdin.close()


def _check(outputs: list[Path], lines: int) -> int:
    seen: set[str] = set()
    printed = 0
    out_of_order = 0
    for out in outputs:
        last: dict[int, int] = {}
        for line in out.read_text().splitlines():
            record = json.loads(line)
            partition, offset = record["partition"], record["offset"]
            out_of_order += offset <= last.get(partition, -1)
            last[partition] = offset
            seen.add(record["value"])
            printed += 1
    missing = {f"p{i}-{n}" for i in range(2) for n in range(lines)} - seen
    print(
        f"{printed} records printed, {len(seen)} distinct ({printed - len(seen)} again after"
        f" the crash: at least once), {len(missing)} missing, {out_of_order} out of order"
    )
    return 1 if missing or out_of_order else 0


if __name__ == "__main__":
    sys.exit(main())
