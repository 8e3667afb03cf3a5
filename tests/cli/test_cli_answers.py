"""What the command line sends and shows, against a fake node: argv bytes exactly, values
from stdin and files, values written exactly, non-UTF-8 shown escaped (never U+FFFD), and
the right words for each outcome."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.cli.harness import DEAD, Script, fake_node, run

SURROGATE_FF = b"\xff".decode("utf-8", "surrogateescape")  # how Python hands argv's \xff over


def test_argv_bytes_are_sent_exactly_and_shown_escaped() -> None:
    """``kvstore put $'\\xff' x`` raised UnicodeEncodeError; now the key is the byte 0xff."""
    with fake_node() as (node, script):
        ran = run("put", SURROGATE_FF, "v" + SURROGATE_FF, "--endpoints", node)
        assert ran.code == 0, ran.err
        assert (script.requests[0].key, script.requests[0].value) == (b"\xff", b"v\xff")
        assert "\\xff" in ran.out and "\ufffd" not in ran.out
        ran = run("put", SURROGATE_FF, "v", "--endpoints", node, "-o", "json")
        shown = json.loads(ran.out)
        assert shown["key"] == "\\xff" and base64.b64decode(shown["key_base64"]) == b"\xff"


def test_put_reads_the_value_from_stdin_or_a_file_byte_for_byte(tmp_path: Path) -> None:
    data = bytes(range(256)) * 600  # every byte value, 150 KiB: past argv's limit
    path = tmp_path / "value.bin"
    path.write_bytes(data)
    with fake_node() as (node, script):
        assert run("put", "k", "-", "--endpoints", node, stdin=data).code == 0
        assert run("put", "k", "--file", str(path), "--endpoints", node).code == 0
        assert run("put", "dash", "-", "--endpoints", node, stdin=b"").code == 0
    assert [r.value for r in script.requests] == [data, data, b""]


def test_get_writes_the_exact_value_to_a_file_and_json_carries_base64(tmp_path: Path) -> None:
    value = b"\x00\xffbinary\xfe\n"
    out = tmp_path / "got.bin"
    with fake_node(Script(value=value)) as (node, _):
        ran = run("get", "k", "--endpoints", node, "--output-file", str(out), "-o", "json")
        assert ran.code == 0, ran.err
        assert out.read_bytes() == value
        assert json.loads(ran.out)["value_bytes"] == len(value)
        shown = json.loads(run("get", "k", "--endpoints", node, "-o", "json").out)
        assert base64.b64decode(shown["value_base64"]) == value
        assert shown["value"] == "\x00\\xffbinary\\xfe\n"  # valid UTF-8 as is, \xNN the rest
        table = run("get", "k", "--endpoints", node).out
        assert "\\xff" in table and "\ufffd" not in table
        scan = run("scan", "--endpoints", node).out
        assert "k\\xff" in scan and "\ufffd" not in scan
    with fake_node(Script(value=b"plain")) as (node, _):
        shown = json.loads(run("get", "k", "--endpoints", node, "-o", "json").out)
        assert shown["value"] == "plain" and "value_base64" not in shown  # exact as it is
    with fake_node(Script(found=False)) as (node, _):
        missing = tmp_path / "missing.bin"
        ran = run("get", "k", "--endpoints", node, "--output-file", str(missing))
        assert ran.code == 1 and not missing.exists()


def test_a_plain_stale_get_shows_that_no_bound_was_asked() -> None:
    with fake_node(Script(staleness_bound_ms=-1)) as (node, script):
        ran = run("get", "k", "--stale", "--endpoints", node)
        assert "-1 (no bound asked)" in ran.out
        ran = run("get", "k", "--stale", "--endpoints", node, "-o", "json")
        assert json.loads(ran.out)["staleness_bound_ms"] == -1
        assert script.requests[0].max_staleness_ms == 0


def test_only_a_write_that_reached_a_node_says_its_outcome_is_unknown() -> None:
    with fake_node(Script(hang_s=1.0)) as (node, _):
        quick = ("--endpoints", node, "--timeout", "0.3")
        for argv in (("put", "k", "v"), ("del", "k"), ("txn", "--then", "put k v")):
            ran = run(*argv, *quick)
            assert ran.code == 2 and "DEADLINE_EXCEEDED" in ran.err
            assert "the write's outcome is unknown" in ran.err
        for argv in (("get", "k"), ("scan",)):
            ran = run(*argv, *quick)
            assert ran.code == 2 and "DEADLINE_EXCEEDED" in ran.err
            assert "outcome" not in ran.err


def test_status_with_a_partial_outage_exits_0_and_shows_the_down_node() -> None:
    with fake_node() as (node, _):
        ran = run("status", "--endpoints", f"{node},{DEAD}", "--timeout", "0.5")
        assert ran.code == 0, ran.err
        assert "DOWN" in ran.out and DEAD in ran.out
        nodes = json.loads(
            run("status", "--endpoints", f"{node},{DEAD}", "--timeout", "0.5", "-o", "json").out
        )["nodes"]
        assert [n["up"] for n in nodes] == [True, False]


def test_transfer_leader_names_an_unknown_shard_or_node() -> None:
    """It said "no leader among the reachable nodes" for a shard that does not exist."""
    with fake_node() as (node, _):
        ran = run("transfer-leader", "99", "1", "--endpoints", node)
        assert ran.code == 2 and ran.err == "kvstore: NOT_FOUND: shard 99 does not exist\n"
        ran = run("transfer-leader", "1", "99", "--endpoints", node)
        assert ran.code == 2 and ran.err == "kvstore: NOT_FOUND: node 99 does not exist\n"
        ran = run("transfer-leader", "1", "1", "--endpoints", node)
        assert ran.code == 0 and "already led by n1" in ran.out


def test_an_unknown_datacenter_is_named() -> None:
    with fake_node() as (node, script):
        ran = run("get", "k", "--dc", "mars", "--endpoints", node)
        assert (
            ran.code == 2 and ran.err == "kvstore: --dc mars: no such datacenter in the cluster\n"
        )
        assert not script.requests  # refused before any KV call
        assert run("get", "k", "--dc", "dc1", "--endpoints", node).code == 0


def test_split_sends_the_key_as_typed_and_shows_both_halves() -> None:
    with fake_node() as (node, _):
        ran = run("split", "1", "--at", "m" + SURROGATE_FF, "--endpoints", node, "-o", "json")
        assert ran.code == 0, ran.err
        shown = json.loads(ran.out)
        assert (shown["left"]["id"], shown["right"]["id"]) == (1, 4)
        assert base64.b64decode(shown["right"]["start_base64"]) == b"m\xff"
        assert shown["right"]["generation"] == 2
        ran = run("split", "1", "--endpoints", node)
        assert ran.code == 0, ran.err
        assert ran.out.startswith("shard 1 split at 'm': shard 1 ['', 'm'), shard 4 ['m', ∞)")
        ran = run("split", "7", "--endpoints", node)
        assert (ran.code, ran.err.strip()) == (2, "kvstore: NOT_FOUND: no shard 7")
        ran = run("split", "1", "--at", "", "--endpoints", node)
        assert ran.code == 2 and ran.err.count("\n") == 1, ran.err


def test_merge_shows_the_merged_range_in_json_and_words() -> None:
    with fake_node() as (node, _):
        ran = run("merge", "1", "--endpoints", node, "-o", "json")
        assert ran.code == 0, ran.err
        shown = json.loads(ran.out)["merged"]
        assert (shown["id"], shown["end"], shown["generation"]) == (1, "t", 3)
        ran = run("merge", "1", "--endpoints", node)
        assert ran.out == "shard 1 now spans ['', 't') (generation 3)\n"
        ran = run("merge", "7", "--endpoints", node)
        assert (ran.code, ran.err.strip()) == (2, "kvstore: NOT_FOUND: no shard 7")
        ran = run("merge", "x", "--endpoints", node)
        assert ran.code == 2 and ran.err.count("\n") == 1, ran.err


def test_shards_shows_generation_size_and_load_in_json_and_table() -> None:
    with fake_node() as (node, _):
        rows = json.loads(run("shards", "--endpoints", node, "-o", "json").out)["shards"]
        assert set(rows[0]) >= {
            "id", "start", "end", "generation", "replicas", "leader", "size_bytes", "keys",
            "ops_per_s",
        }  # fmt: skip
        table = run("shards", "--endpoints", node).out.splitlines()
        assert table[0].split() == [
            "shard",
            "range",
            "gen",
            "keys",
            "size",
            "ops/s",
            "replicas",
            "leader",
        ]


def test_lease_commands_print_ids_tables_and_json_and_name_an_unknown_lease() -> None:
    with fake_node() as (node, _):
        ran = run("lease", "grant", "5", "--endpoints", node)
        assert (ran.code, ran.out) == (0, "7\n"), ran.err  # the id alone: ID=$(...) works
        ran = run("lease", "grant", "2.5", "--id", "9", "--endpoints", node, "-o", "json")
        assert json.loads(ran.out) == {"id": 9, "ttl_ms": 2500}
        ran = run("lease", "list", "--endpoints", node)
        assert ran.code == 0 and ran.out.split("\n")[2].split() == ["7", "5000", "4200"]
        ran = run("lease", "list", "--endpoints", node, "-o", "json")
        assert json.loads(ran.out) == {"id": 7, "ttl_ms": 5000, "remaining_ms": 4200}
        ran = run("lease", "revoke", "7", "--endpoints", node, "-o", "json")
        assert json.loads(ran.out) == {"id": 7, "revoked": True}
        ran = run("lease", "revoke", "8", "--endpoints", node)
        assert (ran.code, ran.err.strip()) == (2, "kvstore: NOT_FOUND: no lease 8")
        ran = run("lease", "keep-alive", "8", "--endpoints", node)
        assert (ran.code, ran.err.strip()) == (2, "kvstore: NOT_FOUND: no lease 8")
