"""Which cluster ``kvstore bench`` measures: ``--endpoints``, else ``KVSTORE_ENDPOINTS`` (as
every other command), else a local one. It measured a local cluster of its own while
``KVSTORE_ENDPOINTS``, which ``kvstore up`` tells people to set, named another."""

from __future__ import annotations

import argparse

import pytest

from kvstore.cli_args import add_bench_arguments


def parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_environment_names_the_cluster_unless_a_flag_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KVSTORE_ENDPOINTS", "127.0.0.1:7001")
    assert parsed().endpoints == "127.0.0.1:7001"
    assert parsed("--endpoints", "127.0.0.2:7002").endpoints == "127.0.0.2:7002"
    assert parsed("--local").local  # --local wins over the environment (bench.cli)


def test_without_either_the_bench_starts_its_own_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KVSTORE_ENDPOINTS", raising=False)
    args = parsed()
    assert args.endpoints is None and not args.local
