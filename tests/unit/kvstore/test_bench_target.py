"""Which cluster ``kvstore bench`` measures: ``--endpoints``, else ``KVSTORE_ENDPOINTS`` (as
every other command), unless the flags ask for a local one (``--local``,
``--wan-latency-ms``); else a local one. It measured a local cluster of its own while
``KVSTORE_ENDPOINTS``, which ``kvstore up`` tells people to set, named another."""

from __future__ import annotations

import argparse

from kvstore.bench.cli import target_endpoints
from kvstore.cli_args import add_bench_arguments

ENV = {"KVSTORE_ENDPOINTS": "127.0.0.1:7001"}


def target(*argv: str, environ: dict[str, str] = ENV) -> str | None:
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    return target_endpoints(parser.parse_args(list(argv)), environ)


def test_the_environment_names_the_cluster_unless_a_flag_does() -> None:
    assert target() == "127.0.0.1:7001"
    assert target("--endpoints", "127.0.0.2:7002") == "127.0.0.2:7002"


def test_flags_of_a_local_cluster_take_no_endpoints_from_the_environment() -> None:
    assert target("--local") is None
    assert target("--wan-latency-ms", "30") is None  # a local WAN cluster, as before


def test_without_either_the_bench_starts_its_own_cluster() -> None:
    assert target(environ={}) is None
    assert target(environ={"KVSTORE_ENDPOINTS": ""}) is None
