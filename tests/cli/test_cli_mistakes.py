"""Every mistake on the command line is one line on stderr (``kvstore: ...``) and exit 2,
never a traceback; each case here was a traceback or a wrong answer before."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvstore.local_cluster import default_config
from tests.cli.harness import DEAD, run

QUICK = ("--endpoints", DEAD, "--timeout", "0.3")


def one_line_error(ran_code: int, err: str, *needles: str) -> None:
    assert ran_code == 2, err
    assert err.count("\n") == 1 and err.startswith("kvstore: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (("scan", "--limit", "-1"), "--limit: must be within 0..4294967295, not -1"),
        (("scan", "--limit", str(1 << 32)), "--limit: must be within"),
        (("transfer-leader", "1", "-1"), "node: must be within 1..9223372036854775807"),
        (("transfer-leader", "0", "1"), "shard: must be within 1..4294967295"),
        (("transfer-leader", str(1 << 64), "1"), "shard: must be within"),
        (("placement", "set", "-3", "--default"), "shard: must be within"),
        (("get", "k", "--timeout", "0"), "--timeout: must be above 0"),
        (("get", "k", "--timeout", "-1"), "--timeout: must be above 0"),
        (("get", "k", "--timeout", "nan"), "--timeout: must be above 0"),
        (("get", "k", "--max-staleness-ms", "-5"), "--max-staleness-ms: must be within"),
        (("get",), "the following arguments are required: key"),
        (("scan", "--prefix", "a", "--start", "b"), "--prefix names the whole range"),
        (("scan", "--prefix", "a", "--end", "b"), "--prefix names the whole range"),
        (("put", "k"), "exactly one of VALUE, - (stdin) and --file PATH"),
        (("put", "k", "v", "--file", "/nonexistent"), "exactly one of VALUE"),
        (("put", "k", "--file", "/nonexistent/x"), "cannot read /nonexistent/x"),
        (("put", "k", "--file", "/"), "cannot read /"),
        (("txn", "--if", "version(k) = -1"), "compares with a number within 0..2**64-1"),
        (("txn", "--if", "version(k) = ²"), "compares with a number"),
        (("txn", "--if", f"mod(k) = {1 << 64}"), "compares with a number"),
        (("txn", "--then", "put k"), "bad op"),
        (("get", "k", "--endpoints", "nonsense"), "endpoint 'nonsense' is not host:port"),
        (("get", "k", "--endpoints", "host:99999"), "port must be within 1..65535"),
        (("get", "k", "--endpoints", ","), "no endpoints"),
        (("status", "--endpoints", "127.0.0.1:x"), "is not host:port"),
        (("up", "--shards", "0"), "--shards: must be within 1..10000, not 0"),
        (("up", "--shards", "10001"), "--shards: must be within 1..10000, not 10001"),
        (("up", "--shards", "x"), "--shards: not an integer"),
        (("lease", "grant", "0"), "must be within"),
        (("lease", "grant", "x"), "TTL"),
        (("lease", "revoke", "0"), "ID: must be within 1..9223372036854775807"),
        (("lease",), "required: COMMAND"),
        (("put", "k", "v", "--lease", "-1"), "--lease: must be within"),
        (("lock", "L"), "give the command to run holding the lock"),
        (("node", "undrain", "0"), "node: must be within 1..9223372036854775807"),
        (("node", "undrain"), "the following arguments are required: node"),
        (("node", "rebalance", "--auto", "maybe"), "argument --auto: invalid choice"),
        (("lock", "L", "--"), "give the command to run holding the lock"),
        (("lock", "L", "--ttl", "0", "--", "true"), "--ttl: must be within"),
        (("elect", "E"), "give a PROPOSAL"),
        (("elect", "E", "p", "--listen"), "--listen takes no PROPOSAL"),
        (("topic", "create", "t", "--partitions", "0"), "--partitions: must be within 1..1024"),
        (("topic", "create", "t", "--partitions", "1025"), "--partitions: must be within"),
        (("topic", "create", "t"), "required: --partitions"),
        (("topic",), "required: COMMAND"),
        (("produce", "t", "v", "--partition", "1024"), "--partition: must be within 0..1023"),
        (("consume", "t", "--offset", "-1"), "--offset: must be within"),
        (("group",), "required: COMMAND"),
        (("nonsense",), "invalid choice"),
        ((), "the following arguments are required: command"),
    ],
)
def test_a_mistake_is_one_line_and_exit_2(argv: tuple[str, ...], needle: str) -> None:
    quick = argv[:1] in (("get",), ("scan",), ("txn",)) and "--endpoints" not in argv
    ran = run(*argv, *(QUICK if quick else ()))
    one_line_error(ran.code, ran.err, needle)


def test_kvstore_node_id_is_read_by_serve_alone(tmp_path: Path) -> None:
    """``KVSTORE_NODE_ID=abc`` crashed every command's parser; now only serve reads it."""
    ran = run("get", "k", *QUICK, env={"KVSTORE_NODE_ID": "abc"})
    one_line_error(ran.code, ran.err, "UNAVAILABLE")  # the get ran, against a dead endpoint
    config = tmp_path / "cluster.toml"
    config.write_text(default_config(base_port=1000))
    for bad in ("abc", "-1", "0", "1e3", str(1 << 63)):
        ran = run("serve", "--config", str(config), env={"KVSTORE_NODE_ID": bad})
        one_line_error(ran.code, ran.err, f"KVSTORE_NODE_ID={bad!r}: expected a node id")


def test_a_binary_or_missing_config_file_is_one_line(tmp_path: Path) -> None:
    binary = tmp_path / "cluster.toml"
    binary.write_bytes(b"\x00\xff\xfe binary")
    one_line_error(*_code_err("config", "check", str(binary)), "not UTF-8 text")
    one_line_error(*_code_err("config", "check", str(tmp_path / "none.toml")), "cannot read")
    one_line_error(*_code_err("config", "check", str(tmp_path)), "cannot read")
    typo = tmp_path / "typo.toml"
    typo.write_text(default_config().replace("tick_ms", "tick_msx"))
    one_line_error(*_code_err("config", "check", str(typo)), "unknown key 'tick_msx'")


def test_status_with_no_node_answering_exits_2_naming_them() -> None:
    ran = run("status", "--endpoints", f"{DEAD},127.0.0.1:2", "--timeout", "0.3")
    one_line_error(ran.code, ran.err, "no node answered", DEAD, "127.0.0.1:2")
    assert ran.out == ""


def test_a_read_that_failed_never_says_an_outcome_is_unknown() -> None:
    for argv in (("get", "k"), ("scan",), ("get", "k", "--stale")):
        ran = run(*argv, *QUICK)
        one_line_error(ran.code, ran.err, "UNAVAILABLE")
        assert "outcome" not in ran.err


def test_a_write_that_never_connected_was_never_sent() -> None:
    """Connection refused everywhere: nothing left this process, so nothing is unknown."""
    for argv in (("put", "k", "v"), ("del", "k"), ("txn", "--then", "put k v")):
        ran = run(*argv, *QUICK)
        one_line_error(ran.code, ran.err, "UNAVAILABLE")
        assert "outcome" not in ran.err


def _code_err(*argv: str) -> tuple[int, str]:
    ran = run(*argv)
    return ran.code, ran.err


def test_serve_join_mistakes_are_one_line(tmp_path: Path) -> None:
    """``serve`` takes a config, or ``--join`` with the new node's datacenter, address and
    directory; a cluster that cannot be reached or an address that cannot be listened on
    is one line before anything is registered."""
    data = str(tmp_path / "n")
    join = ("serve", "--join", DEAD, "--dc", "dc1", "--data", data)
    for argv, needle in (
        (("serve",), "serve needs --config FILE, or --join ENDPOINTS"),
        (("serve", "--join", DEAD), "--join needs --dc DC, --address HOST:PORT and --data DIR"),
        ((*join, "--address", "127.0.0.1:1", "--config", "c.toml"), "--join takes no --config"),
        ((*join, "--address", "127.0.0.1:1", "--node", "3"), "--join takes no --config"),
        (("serve", "--config", "c.toml", "--dc", "dc1"), "--dc and --address are for a node"),
        ((*join, "--address", "256.1.1.1:7000"), "cannot listen on 256.1.1.1:7000"),
        ((*join, "--address", "127.0.0.1:x"), "cannot listen on 127.0.0.1:x"),
        ((*join, "--address", "127.0.0.1:0"), "could not join"),  # any free port: to the join
    ):
        one_line_error(*_code_err(*argv), needle)
