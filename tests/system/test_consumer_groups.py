"""Real processes: two `kvstore produce` from stdin while a node is SIGKILLed and restarted,
three `kvstore consume --group` sharing the topic, one of them SIGKILLed: the group's output
covers every record, each consumer prints each partition in offset order, and `kvstore group
describe` settles on lag 0 with the partitions split evenly between the two live members.
And a checkpoint never goes back, and a member whose partition was taken cannot move it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cluster.stream_keys import checkpoint_key, group_row, owner_key
from kvstore import AsyncClient
from kvstore.local_cluster import LocalCluster
from kvstore.streams.client import Record
from kvstore.streams.processor import EventProcessor
from tests.system.test_local_cluster import free_base_port

LINES = 400  # per producer


def kvstore(*args: str) -> list[str]:
    return [sys.executable, "-m", "kvstore", *args]


def test_a_consumer_group_shares_a_topic_and_survives_a_member_s_death(tmp_path: Path) -> None:
    local = LocalCluster(tmp_path / "data", base_port=free_base_port())
    local.start_all()
    endpoints = ["--endpoints", ",".join(local.endpoints)]
    consumers: list[subprocess.Popen[str]] = []
    try:

        async def ready() -> None:
            async with AsyncClient(local.endpoints, timeout_s=20) as kv:
                await kv.put("ready", "1")

        asyncio.run(ready())
        subprocess.run(
            kvstore("topic", "create", "t", "--partitions", "6", *endpoints), check=True, timeout=60
        )
        outputs = [tmp_path / f"c{i}.jsonl" for i in range(3)]
        for i, out in enumerate(outputs):
            command = kvstore("consume", "t", "--group", "g", "--name", f"c{i}", "-o", "json")
            with out.open("w") as sink:
                consumers.append(
                    subprocess.Popen(
                        [*command, *endpoints], stdout=sink, stderr=subprocess.DEVNULL, text=True
                    )
                )
        producers = []
        for i in range(2):
            lines = tmp_path / f"in{i}"
            lines.write_text("".join(f"p{i}-{n}\n" for n in range(LINES)))
            with lines.open() as source:
                producers.append(
                    subprocess.Popen(
                        kvstore("produce", "t", *endpoints),
                        stdin=source,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                )
        local.kill(2)
        local.start(2)
        for producer in producers:
            _, err = producer.communicate(timeout=120)
            assert producer.returncode == 0, err
        os.kill(consumers[0].pid, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while True:
            described = subprocess.run(
                kvstore("group", "describe", "g", "-o", "json", *endpoints),
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
            rows = [json.loads(line) for line in described.stdout.splitlines()]
            owners = sorted(row["owner"] for row in rows)
            if rows and sum(r["lag"] for r in rows) == 0 and owners == ["c1"] * 3 + ["c2"] * 3:
                break
            assert time.monotonic() < deadline, rows
            time.sleep(0.5)
        seen: set[str] = set()
        for out in outputs:
            last: dict[int, int] = {}
            for line in out.read_text().splitlines():
                record = json.loads(line)
                p, offset = record["partition"], record["offset"]
                assert offset > last.get(p, -1), (out.name, p, offset)
                last[p] = offset
                seen.add(record["value"])
        assert seen == {f"p{i}-{n}" for i in range(2) for n in range(LINES)}
    finally:
        for consumer in consumers:
            if consumer.poll() is None:
                consumer.send_signal(signal.SIGINT)
                consumer.wait(timeout=30)
        local.stop_all()


def test_a_deposed_owner_cannot_move_the_checkpoint_and_it_never_goes_back(
    tmp_path: Path,
) -> None:
    local = LocalCluster(tmp_path / "data", base_port=free_base_port())
    local.start_all()

    async def main() -> None:
        async with AsyncClient(local.endpoints, timeout_s=20) as kv:
            await kv.streams.create_topic("fenced", 1)
            await kv.streams.produce("fenced", [b"r%d" % i for i in range(10)])
            handed: list[Record] = []

            async def on_event(record: Record) -> None:
                handed.append(record)

            processor = EventProcessor(kv, "fenced", "g", on_event, cycle_s=0.1)
            running = asyncio.create_task(processor.run())
            while len(handed) < 10:
                await asyncio.sleep(0.05)
            assert await processor.checkpoint(handed[5])
            assert not await processor.checkpoint(handed[2])  # never backwards
            row = group_row(b"g", b"fenced", 0)
            stored = await kv.get(checkpoint_key(row))
            assert stored is not None and int(stored.value, 16) == 6
            # Another member takes the partition (its record made anew: a new token).
            took = await (
                kv.txn()
                .if_version(owner_key(row), ">", 0)
                .then_delete(owner_key(row))
                .then_put(owner_key(row), "usurper")
                .commit()
            )
            assert took.succeeded
            assert not await processor.checkpoint(handed[9])  # deposed: refused
            stored = await kv.get(checkpoint_key(row))
            assert stored is not None and int(stored.value, 16) == 6
            processor.stop()
            await running

    try:
        asyncio.run(main())
    finally:
        local.stop_all()
