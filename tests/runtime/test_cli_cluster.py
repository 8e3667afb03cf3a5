"""The command line against three real nodes (in-process, on their own event-loop thread):
a value near the 1 MiB limit round-trips from a file, a scan over the limit is one line, a
plain stale read shows that no bound was asked, and transfer-leader names unknown ids."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog

from kvstore.server import NodeServer
from tests.cli.harness import Ran, run
from tests.runtime.test_client import start_servers

VALUE_BYTES_MAX = 1 << 20  # the default [limits] value_bytes_max


@contextmanager
def cluster(tmp_path: Path) -> Iterator[str]:
    """Three nodes on a thread of their own (the CLI runs its own loop on this one). Their
    log events are captured: printed, they would land in the CLI's captured stdout."""
    with structlog.testing.capture_logs():
        yield from _cluster(tmp_path)


def _cluster(tmp_path: Path) -> Iterator[str]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    servers: list[NodeServer] = []
    try:
        servers, endpoints = asyncio.run_coroutine_threadsafe(
            start_servers(tmp_path), loop
        ).result()
        yield ",".join(endpoints)
    finally:
        for server in servers:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)


def until_ok(*argv: str) -> Ran:
    """The first writes may meet a cluster still electing its leaders."""
    deadline = time.monotonic() + 20
    while True:
        ran = run(*argv)
        if ran.code == 0 or time.monotonic() > deadline:
            assert ran.code == 0, ran.err
            return ran
        time.sleep(0.2)


def round_trip(tmp_path: Path, endpoints: str, size: int) -> None:
    value = bytes(range(256)) * (size // 256) + b"\xff" * (size % 256)
    path = tmp_path / "value.bin"
    path.write_bytes(value)
    until_ok("put", "big", "--file", str(path), "--endpoints", endpoints)
    got = run("get", "big", "-o", "json", "--endpoints", endpoints)
    assert got.code == 0, got.err
    assert base64.b64decode(json.loads(got.out)["value_base64"]) == value
    out = tmp_path / "got.bin"
    assert run("get", "big", "--output-file", str(out), "--endpoints", endpoints).code == 0
    assert out.read_bytes() == value


def test_the_command_line_against_three_nodes(tmp_path: Path) -> None:
    with cluster(tmp_path) as endpoints:
        # Just under the limit: the command's own encoding must fit the Paxos batch (below).
        round_trip(tmp_path, endpoints, VALUE_BYTES_MAX - 64)
        over = run("scan", "--limit", "100000", "--endpoints", endpoints)
        assert over.code == 2 and over.err.count("\n") == 1
        assert "INVALID_ARGUMENT: scan limit 100000 is over the maximum 10000" in over.err
        stale = json.loads(run("get", "big", "--stale", "-o", "json", "--endpoints", endpoints).out)
        assert stale["staleness_bound_ms"] == -1
        unknown = run("transfer-leader", "99", "1", "--endpoints", endpoints)
        assert unknown.code == 2 and unknown.err == "kvstore: NOT_FOUND: shard 99 does not exist\n"
        too_big = tmp_path / "too-big.bin"
        too_big.write_bytes(b"x" * (VALUE_BYTES_MAX + 1))
        refused = run("put", "big", "--file", str(too_big), "--endpoints", endpoints)
        assert refused.code == 2 and "INVALID_ARGUMENT: value over 1048576 bytes" in refused.err


def test_a_value_of_exactly_the_limit_round_trips(tmp_path: Path) -> None:
    with cluster(tmp_path) as endpoints:
        path = tmp_path / "limit.bin"
        path.write_bytes(b"v" * VALUE_BYTES_MAX)
        deadline = time.monotonic() + 20
        while True:
            ran = run("put", "big", "--file", str(path), "--endpoints", endpoints)
            if ran.code == 0 or "RESOURCE_EXHAUSTED" in ran.err or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert ran.code == 0, ran.err
