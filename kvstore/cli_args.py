"""The command line's arguments: shared flags, value types with their ranges, bench's flags.

Rules:
- This module imports nothing but the standard library: every ``kvstore`` call builds the
  whole parser, and ``kvstore get`` must not pay for the server, bench or plotting stacks.
- Every number a flag takes is range-checked here, by its ``type=``, so a mistake is one
  argparse error line (exit 2) and never a traceback from protobuf or gRPC later.
- Keys and values arrive as ``str``; ``arg_bytes`` turns them back into the exact bytes of
  argv (``os.fsencode``: surrogate escapes become the original bytes, e.g. ``$'\\xff'``).
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path

UINT32_MAX = (1 << 32) - 1
NODE_ID_MAX = (1 << 63) - 1  # the cluster config's bound (cluster.config.NODE_ID_MAX)
TIMEOUT_S_MAX = 24 * 3600.0  # far beyond any sensible call; gRPC overflows on huge deadlines
DEFAULT_ENDPOINTS = "127.0.1.1:7001,127.0.2.1:7002,127.0.3.1:7003"
WORKLOADS = ("put", "get", "mixed", "cas", "load", "watch", "lease", "produce", "consume")


class NodeFailedError(Exception):
    """A running node hit a fatal error (a disk that failed): one line, exit code 1, so a
    supervisor restarts it (exit code 2 says it cannot start at all)."""


class UserError(Exception):
    """Something the user can fix; printed as one line (``kvstore: ...``), exit code 2."""


def arg_bytes(text: str) -> bytes:
    """The bytes the user typed: argv is decoded with surrogateescape, this undoes it."""
    return os.fsencode(text)


# ---------------------------------------------------------------------- value types


def int_within(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a decimal integer within ``low..high``."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be within {low}..{high}, not {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def float_within(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number within ``low..high`` (``(low..high`` if open)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        below = value <= low if low_open else value < low
        if not math.isfinite(value) or below or value > high:
            bounds = (
                f"above {low:g} and at most {high:g}" if low_open else f"within {low:g}..{high:g}"
            )
            raise argparse.ArgumentTypeError(f"must be {bounds}, not {text}")
        return value

    parse.__name__ = "number"
    return parse


shard_id = int_within(1, UINT32_MAX)
node_id = int_within(1, NODE_ID_MAX)
uint32 = int_within(0, UINT32_MAX)
revision = int_within(1, (1 << 64) - 1)  # ``--rev``: a shard's revision (0 is "now")
port = int_within(1, 65535)
timeout_s = float_within(0.0, TIMEOUT_S_MAX, low_open=True)
wan_ms = float_within(0.0, 10_000.0)
split_size_mb = float_within(0.0, 1 << 20)  # 0: never; up to a TiB
shard_count = int_within(1, 10_000)  # ``kvstore up --shards`` (local_cluster.SHARDS_MAX)


# ---------------------------------------------------------------------- shared flags


def add_endpoints(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--endpoints",
        default=os.environ.get("KVSTORE_ENDPOINTS") or DEFAULT_ENDPOINTS,
        help="host:port,... (default: KVSTORE_ENDPOINTS, else the kvstore up defaults)",
    )
    cmd.add_argument(
        "--timeout",
        type=timeout_s,
        default=10.0,
        help="seconds for the whole command, retries included (> 0)",
    )
    cmd.add_argument(
        "--dc",
        default=os.environ.get("KVSTORE_DC") or None,
        help="the client's datacenter: use gateways there first (default: KVSTORE_DC)",
    )


def add_output(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("-o", "--output", choices=("table", "json"), default="table")


# ---------------------------------------------------------------------- bench


def add_bench_arguments(bench: argparse.ArgumentParser) -> None:
    """``kvstore bench``'s flags (its code, in ``kvstore.bench``, is imported only to run)."""
    target = bench.add_mutually_exclusive_group()
    target.add_argument(
        "--local", action="store_true", help="start a local 3-DC cluster for the run"
    )
    target.add_argument(
        "--endpoints",
        help="comma-separated node addresses of a running cluster (default: KVSTORE_ENDPOINTS,"
        " unless --local or --wan-latency-ms; neither: a local cluster)",
    )
    bench.add_argument("--workload", choices=WORKLOADS, default="put")
    bench.add_argument(
        "--read-ratio", type=float_within(0.0, 1.0), default=0.5, help="mixed: share of gets"
    )
    bench.add_argument("--stale", action="store_true", help="gets read the nearest replica")
    bench.add_argument(
        "--max-staleness-ms",
        type=uint32,
        default=0,
        help="gets: bounded staleness; the client's DC serves them if it is fresh enough",
    )
    bench.add_argument("--dc", help="the clients' datacenter: they use gateways there")
    bench.add_argument(
        "--shard", type=shard_id, help="keys of this shard only (default: spread over all)"
    )
    bench.add_argument(
        "--wan-latency-ms",
        type=wan_ms,
        default=None,
        help="--local: emulated one-way delay between datacenters",
    )
    bench.add_argument(
        "--keys", type=int_within(1, 100_000_000), default=1000, help="key count, over shards"
    )
    bench.add_argument("--distribution", choices=("uniform", "zipfian"), default="uniform")
    bench.add_argument("--value-size", type=int_within(1, 1 << 20), default=100)
    bench.add_argument("--concurrency", type=int_within(1, 10_000), default=64)
    bench.add_argument(
        "--clients", type=int_within(1, 64), default=1, help="client processes (1..64)"
    )
    bench.add_argument(
        "--duration",
        type=float_within(0.0, 86_400.0, low_open=True),
        default=10.0,
        help="seconds per benchmark",
    )
    bench.add_argument(
        "--ops", type=int_within(0, 1 << 62), default=0, help="stop after this many ops (0: none)"
    )
    bench.add_argument("--calibrate", action="store_true", help="also time a gRPC echo server")
    bench.add_argument(
        "--watchers",
        type=int_within(1, 100_000),
        default=1000,
        help="--workload watch: watch streams of one shard's prefix",
    )
    bench.add_argument(
        "--rate",
        type=float_within(0.0, 1e6, low_open=True),
        default=1000.0,
        help="--workload watch: writes a second",
    )
    bench.add_argument(
        "--leases",
        type=int_within(1, 1_000_000),
        default=10_000,
        help="--workload lease: leases granted and kept alive",
    )
    bench.add_argument(
        "--ttl",
        type=float_within(1.0, 3600.0),
        default=10.0,
        help="--workload lease: their TTL in seconds (each kept alive every third of it)",
    )
    bench.add_argument(
        "--partitions",
        type=int_within(1, 1024),
        default=6,
        help="--workload produce/consume: the topic's partitions",
    )
    bench.add_argument(
        "--batch",
        type=int_within(1, 10_000),
        default=100,
        help="--workload produce: records a produce call sends",
    )
    bench.add_argument(
        "--records",
        type=int_within(1, 100_000_000),
        default=100_000,
        help="--workload consume: records produced first, then read back",
    )
    bench.add_argument(
        "--suite",
        choices=("standard", "geo"),
        help="standard: put/get/mixed at conc. 1 and 64; geo: put, get and bounded-stale get"
        " from a client in each DC (keys of --shard, default 1), concurrency 1",
    )
    bench.add_argument("--markdown", type=Path, help="write the results as markdown here")
    bench.add_argument("--dir", type=Path, help="--local: data directory (default: temporary)")
    bench.add_argument(
        "--base-port",
        type=int_within(1, 65535 - 100),
        default=7400,
        help="--local: first port (the nodes and the echo server take the next 100)",
    )
    bench.add_argument("--seed", type=int_within(0, (1 << 63) - 1), default=1)
    bench.add_argument("--quiet", action="store_true", help="no progress line")
