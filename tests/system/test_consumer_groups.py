"""Real processes: two `kvstore produce` from stdin while a node is SIGKILLed and restarted,
three `kvstore consume --group` sharing the topic, one of them SIGKILLed: the group's output
covers every record, each consumer prints each partition in offset order, and `kvstore group
describe` settles on lag 0 with the partitions split evenly between the two live members."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kvstore import AsyncClient
from kvstore.local_cluster import LocalCluster
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
