"""The ``kvstore`` command: run nodes, a local cluster, and talk to a cluster.

    kvstore up [--dir ./data] [--nodes-per-dc 1] [--base-port 7000]
    kvstore serve --config cluster.toml --node 1 --data ./data/n1
    kvstore put KEY VALUE|-|--file PATH | get KEY [--stale] [--rev N] [--output-file PATH] | del KEY
    kvstore scan [--prefix P | --start A --end B] [--limit N]
    kvstore topic create|list|describe|delete | produce TOPIC [VALUE] | consume TOPIC [--follow]
    kvstore counter take NAME --count N | counter get NAME
    kvstore config check FILE
    kvstore replica move SHARD --from N --to N | replica add|remove SHARD --node N
    kvstore node list | node drain NODE | node replace OLD NEW

Endpoints come from ``--endpoints host:port,...`` or ``KVSTORE_ENDPOINTS``; ``-o json`` prints
machine-readable output, the default ``-o table`` is for people. Errors are one line on stderr
(``kvstore: ...``) with exit code 2; ``get`` of a missing key and a failed ``txn`` exit 1.
"""

# Rules: this module builds the parser (``kvstore.cli_args``: standard library only) and
# imports a command's module only when that command runs, so ``kvstore get`` loads gRPC and
# the KV messages, never the server, bench or plotting stacks (a test checks the list).

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NoReturn

from kvstore import cli_args
from kvstore.cli_args import NodeFailedError, UserError


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parse(sys.argv[1:] if argv is None else argv)
        return int(args.run(args))
    except UserError as exc:
        print(f"kvstore: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except NodeFailedError as exc:
        print(f"kvstore: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`kvstore status | head`): stop quietly, as Python's docs advise.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _parse(argv: list[str]) -> argparse.Namespace:
    """``kvstore lock NAME [options] -- CMD ARGS...``: what follows ``--`` is the command,
    taken whole (its own options included), and the options before it are kvstore's."""
    if argv[:1] == ["lock"] and "--" in argv:
        cut = argv.index("--")
        args = _parser().parse_args(argv[:cut])
        args.command = argv[cut + 1 :]
        return args
    return _parser().parse_args(argv)


def _one_line(message: str) -> str:
    return " ".join(message.split())


class _Parser(argparse.ArgumentParser):
    """argparse, with its mistakes said in one line (``kvstore: scan: ...``, exit 2) like
    every other mistake, instead of a usage block; ``--help`` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("kvstore").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"kvstore: {where}{_one_line(message)} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="kvstore", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="run one node",
        description="Run one node: a configured one (--config), or a new one that joins a"
        " running cluster (--join ENDPOINTS --dc DC --address HOST:PORT --data DIR; it hosts"
        " nothing until replicas are placed on it, and restarts with the same command).",
    )
    serve.add_argument("--config", type=Path, help="the cluster config (not with --join)")
    serve.add_argument(
        "--join",
        metavar="ENDPOINTS",
        help="join the running cluster at these comma-separated endpoints as a new node",
    )
    serve.add_argument("--dc", help="with --join: the new node's datacenter")
    serve.add_argument("--address", help="with --join: HOST:PORT the new node listens on")
    serve.add_argument(
        "--node",
        type=cli_args.node_id,
        help="this node's id (default: KVSTORE_NODE_ID, else the node whose host is this machine)",
    )
    serve.add_argument("--data", type=Path, help="LMDB directory (default: data/n<ID>)")
    serve.add_argument("--log-format", choices=("json", "console"), default="json")
    serve.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="NODE=HOST:PORT",
        help="dial node NODE at HOST:PORT instead of its configured address (a fault proxy)",
    )
    serve.add_argument(
        "--initial-cluster-state",
        choices=("new", "existing"),
        default="existing",
        help="for a data directory created now: 'new' on the first start of a new cluster's"
        " nodes (they vote at once); 'existing' (default) for a node that joins or comes back"
        " without its data (it rejoins each group before it votes); ignored once DIR exists",
    )
    serve.set_defaults(run=_serve)

    up = sub.add_parser("up", help="run a local three-datacenter cluster")
    up.add_argument("--dir", type=Path, default=Path("data"))
    up.add_argument(
        "--nodes-per-dc",
        type=int,
        default=None,
        choices=(1, 2, 3),
        help="default 1 (a --dir that exists keeps its own)",
    )
    up.add_argument(
        "--base-port",
        type=cli_args.port,
        default=None,
        help="node i listens on BASE+i (default 7000; a --dir that exists keeps its ports)",
    )
    up.add_argument(
        "--wan-latency-ms",
        type=cli_args.wan_ms,
        default=None,
        help="emulate a WAN: one-way delay between datacenters (a round trip is twice it)",
    )
    up.add_argument("--wan-jitter-ms", type=cli_args.wan_ms, default=0.0, help="+- per message")
    up.add_argument(
        "--split-size-mb",
        type=cli_args.split_size_mb,
        default=None,
        help="a shard past this many MB of keys and values splits in two (default 64; 0: never)",
    )
    up.add_argument(
        "--shards",
        type=cli_args.shard_count,
        default=None,
        help="how many ranges the key space starts in (default 3: a*, b*, the rest; at most"
        " 10000; a --dir that exists keeps its own)",
    )
    up.add_argument(
        "--no-restart",
        action="store_true",
        help="leave a node that dies down (default: restart it, backing off if it keeps dying)",
    )
    up.set_defaults(run=_up)

    bench = sub.add_parser(
        "bench", help="load-test a cluster (or a local one): throughput, latency, server CPU"
    )
    cli_args.add_bench_arguments(bench)
    cli_args.add_output(bench)
    bench.set_defaults(run=_bench)

    config = sub.add_parser("config", help="cluster configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a cluster config and print its shards")
    check.add_argument("file", type=Path)
    cli_args.add_output(check)
    check.set_defaults(run=_config_check)

    shards = sub.add_parser("shards", help="the shard map: ranges, replicas, leaders")
    txn = sub.add_parser(
        "txn",
        help="compare-and-swap within one shard",
        description="e.g. kvstore txn --if 'value(k) = old' --then 'put k new' --else 'get k'."
        " Compares: value(K)|version(K)|create(K)|mod(K) with = != < >; absent is version(K) = 0."
        " Ops: 'put K V', 'del K', 'get K'.",
    )
    txn.add_argument("--if", dest="compares", action="append", default=[], metavar="COMPARE")
    txn.add_argument("--then", dest="success", action="append", default=[], metavar="OP")
    txn.add_argument("--else", dest="failure", action="append", default=[], metavar="OP")
    status = sub.add_parser("status", help="every node, and every shard's leader and replicas")
    transfer = sub.add_parser("transfer-leader", help="move a shard's leadership to a node")
    transfer.add_argument("shard", type=cli_args.shard_id)
    transfer.add_argument("node", type=cli_args.node_id)
    split = sub.add_parser(
        "split", help="cut a shard in two (by default where it halves its bytes)"
    )
    split.add_argument("shard", type=cli_args.shard_id)
    split.add_argument("--at", metavar="KEY", help="the first key of the new right-hand shard")
    merge = sub.add_parser(
        "merge", help="join a shard with the range right after it (on the same replicas)"
    )
    merge.add_argument("shard", type=cli_args.shard_id)
    for cmd, fn in (
        (split, _split),
        (merge, _merge),
        (shards, _shards),
        (txn, _txn),
        (status, _status),
        (transfer, _transfer_leader),
    ):
        cli_args.add_endpoints(cmd)
        cli_args.add_output(cmd)
        cmd.set_defaults(run=fn)

    _add_placement(sub)
    _add_membership(sub)
    _add_kv_commands(sub)
    return p


def _add_placement(sub: argparse._SubParsersAction[_Parser]) -> None:
    placement = sub.add_parser("placement", help="where each shard's leader should be")
    placement_sub = placement.add_subparsers(dest="placement_command", required=True)
    set_cmd = placement_sub.add_parser(
        "set", help="prefer a datacenter for a shard's leader (the leaders' balancer moves it)"
    )
    set_cmd.add_argument("shard", type=cli_args.shard_id)
    where = set_cmd.add_mutually_exclusive_group(required=True)
    where.add_argument("--leader-dc", help="the datacenter to lead from")
    where.add_argument(
        "--default", action="store_true", help="back to the config's choice (else spread evenly)"
    )
    plan_cmd = placement_sub.add_parser(
        "plan",
        help="expected latency per client DC for each possible leader DC, and each DC's loss",
    )
    for cmd, fn in ((set_cmd, _placement_set), (plan_cmd, _placement_plan)):
        cli_args.add_endpoints(cmd)
        cli_args.add_output(cmd)
        cmd.set_defaults(run=fn)


def _add_membership(sub: argparse._SubParsersAction[_Parser]) -> None:
    replica = sub.add_parser("replica", help="change which nodes hold one shard")
    replica_sub = replica.add_subparsers(dest="replica_command", required=True)
    move = replica_sub.add_parser("move", help="move a shard's replica from one node to another")
    move.add_argument("shard", type=cli_args.shard_id)
    move.add_argument("--from", dest="from_node", type=cli_args.node_id, required=True)
    move.add_argument("--to", dest="to_node", type=cli_args.node_id, required=True)
    add = replica_sub.add_parser("add", help="give a node a replica of a shard")
    add.add_argument("shard", type=cli_args.shard_id)
    add.add_argument("--node", type=cli_args.node_id, required=True)
    remove = replica_sub.add_parser("remove", help="take a node's replica of a shard away")
    remove.add_argument("shard", type=cli_args.shard_id)
    remove.add_argument("--node", type=cli_args.node_id, required=True)
    node = sub.add_parser(
        "node", help="the cluster's nodes: list, drain, undrain, replace, remove, rebalance"
    )
    node_sub = node.add_subparsers(dest="node_command", required=True)
    listing = node_sub.add_parser("list", help="every node: datacenter, state, replicas, leaders")
    drain = node_sub.add_parser(
        "drain", help="move every replica (and so leadership) off a node; it keeps running"
    )
    drain.add_argument("node", type=cli_args.node_id)
    undrain = node_sub.add_parser(
        "undrain", help="a drained node takes replicas again (the rebalancer spreads them)"
    )
    undrain.add_argument("node", type=cli_args.node_id)
    swap = node_sub.add_parser(
        "replace", help="move every replica of a node (dead or alive) to another node"
    )
    swap.add_argument("old", type=cli_args.node_id)
    swap.add_argument("new", type=cli_args.node_id)
    retire = node_sub.add_parser(
        "remove", help="take a node out of the cluster for good (it must hold no replica)"
    )
    retire.add_argument("node", type=cli_args.node_id)
    retire.add_argument(
        "--force",
        action="store_true",
        help="a node that still holds replicas (a dead one): rebuild them elsewhere in its"
        " datacenter first",
    )
    rebalance = node_sub.add_parser(
        "rebalance",
        help="spread replicas within each datacenter by count, one move at a time",
    )
    rebalance.add_argument(
        "--max-moves", type=cli_args.int_within(1, 10_000), default=100, help="stop after this many"
    )
    rebalance.add_argument(
        "--pause",
        type=cli_args.float_within(0, 3600),
        default=1.0,
        help="seconds between moves (the rate limit; default 1)",
    )
    rebalance.add_argument(
        "--replicas-per-dc", type=cli_args.int_within(1, 8), default=1, help="as [placement]"
    )
    rebalance.add_argument(
        "--auto",
        choices=("on", "off"),
        help="switch the automatic rebalancer (run by the meta range's leader) on or off,"
        " and move nothing now",
    )
    for cmd, name in (
        (move, "replica_move"),
        (add, "replica_add"),
        (remove, "replica_remove"),
        (listing, "node_list"),
        (drain, "node_drain"),
        (undrain, "node_undrain"),
        (swap, "node_replace"),
        (retire, "node_remove"),
        (rebalance, "node_rebalance"),
    ):
        cli_args.add_endpoints(cmd)
        cli_args.add_output(cmd)
        cmd.set_defaults(run=partial(_membership, name))


def _membership(name: str, args: argparse.Namespace) -> int:
    from kvstore import cli_replica  # noqa: PLC0415 - see the rules at the top

    return int(getattr(cli_replica, name)(args))


def _add_kv_commands(sub: argparse._SubParsersAction[_Parser]) -> None:
    put = sub.add_parser("put", help="write a key (the value: VALUE, - for stdin, or --file)")
    put.add_argument("key")
    put.add_argument("value", nargs="?", help="the value; - reads it from stdin (binary-safe)")
    put.add_argument("--file", type=Path, help="read the value from this file (binary-safe)")
    put.add_argument(
        "--lease",
        type=cli_args.int_within(1, (1 << 63) - 1),
        default=0,
        metavar="ID",
        help="attach the key to this lease (kvstore lease grant): it goes when the lease ends",
    )
    put.set_defaults(run=_put)

    get = sub.add_parser("get", help="read a key")
    get.add_argument("key")
    get.add_argument("--stale", action="store_true", help="read the nearest replica")
    get.add_argument(
        "--max-staleness-ms",
        type=cli_args.uint32,
        default=0,
        help="read the nearest replica if it can prove it is at most this stale",
    )
    get.add_argument(
        "--rev",
        type=cli_args.revision,
        default=0,
        help="read the key as it was at this revision of its shard",
    )
    get.add_argument(
        "--output-file",
        metavar="PATH",
        help="write the value's exact bytes to PATH (- : to stdout, nothing else printed)",
    )
    get.set_defaults(run=_get)

    delete = sub.add_parser("del", help="delete a key")
    delete.add_argument("key")
    delete.set_defaults(run=_del)

    scan = sub.add_parser("scan", help="list keys in a range")
    scan.add_argument("--prefix", default="", help="every key that starts with this")
    scan.add_argument("--start", default="", help="the first key (inclusive)")
    scan.add_argument("--end", default="", help="the end key (exclusive; empty: the last key)")
    scan.add_argument(
        "--limit", type=cli_args.uint32, default=100, help="at most this many keys (0: the most)"
    )
    scan.add_argument(
        "--rev",
        type=cli_args.revision,
        default=0,
        help="read each shard as it was at this revision of its own",
    )
    scan.set_defaults(run=_scan)
    watch = sub.add_parser(
        "watch",
        help="print every change to a range as it happens (until Ctrl-C)",
        description="Each line is one change; the last line of each revision ends with the"
        " token after it: --from TOKEN resumes there, missing and repeating nothing.",
    )
    watch.add_argument("prefix", nargs="?", help="watch every key that starts with this")
    watch.add_argument(
        "--range",
        nargs=2,
        metavar=("START", "END"),
        help="watch [START, END) (END '': to the last key)",
    )
    watch.add_argument(
        "--rev", type=cli_args.revision, default=0, help="from this revision of each shard on"
    )
    watch.add_argument(
        "--from",
        dest="from_token",
        default="",
        metavar="TOKEN",
        help="resume right after this token (printed by an earlier watch)",
    )
    watch.add_argument("--prev-kv", action="store_true", help="show each key's value before")
    watch.set_defaults(run=_watch)
    for cmd in (put, get, delete, scan, watch):
        cli_args.add_endpoints(cmd)
        cli_args.add_output(cmd)
    _add_lease_commands(sub)
    _add_lock_commands(sub)
    _add_stream_commands(sub)
    _add_counter_commands(sub)


def _add_lock_commands(sub: argparse._SubParsersAction[_Parser]) -> None:
    ttl = cli_args.float_within(0.1, 3600)
    lock = sub.add_parser(
        "lock",
        help="run a command holding a lock (its fencing token in KVSTORE_LOCK_TOKEN)",
        description="kvstore lock NAME -- CMD ARGS...: waits for the lock, runs CMD holding"
        " it, releases it when CMD exits, and exits with CMD's code.",
    )
    lock.add_argument("name", metavar="NAME")
    lock.add_argument(
        "command", nargs="*", metavar="CMD", help="after --: the command and its arguments"
    )
    elect = sub.add_parser(
        "elect",
        help="campaign in an election (or --listen: print each new leader)",
    )
    elect.add_argument("name", metavar="NAME")
    elect.add_argument(
        "proposal", nargs="?", metavar="PROPOSAL", help="what others see as the leader"
    )
    elect.add_argument(
        "--listen", action="store_true", help="print each new leader, do not campaign"
    )
    for cmd, name in ((lock, "lock"), (elect, "elect")):
        cmd.add_argument(
            "--ttl", type=ttl, default=10.0, help="seconds a dead holder keeps it (default 10)"
        )
        cmd.set_defaults(run=partial(_lock, name))
        cli_args.add_endpoints(cmd)
        cli_args.add_output(cmd)


def _add_stream_commands(sub: argparse._SubParsersAction[_Parser]) -> None:
    topic = sub.add_parser("topic", help="event streams: topics of ordered partitions")
    topic_sub = topic.add_subparsers(dest="topic_command", required=True, metavar="COMMAND")
    create = topic_sub.add_parser("create", help="make a topic of N partitions")
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--partitions", type=cli_args.int_within(1, 1024), required=True, metavar="N"
    )
    create.add_argument(
        "--retention-hours",
        type=cli_args.float_within(0, 1 << 20),
        default=0.0,
        metavar="H",
        help="trim records older than this (default 0: keep them)",
    )
    create.add_argument(
        "--retention-mb",
        type=cli_args.int_within(0, 1 << 30),
        default=0,
        metavar="M",
        help="per partition, trim the oldest past this size (default 0: no cap)",
    )
    listing = topic_sub.add_parser("list", help="every topic")
    describe = topic_sub.add_parser(
        "describe", help="each partition: shard, leader, DC, first and next offset, bytes"
    )
    delete = topic_sub.add_parser("delete", help="delete a topic and its records")
    for cmd in (describe, delete):
        cmd.add_argument("name", metavar="NAME")
    partition = cli_args.int_within(0, 1023)
    produce = sub.add_parser(
        "produce", help="append a record to a topic (without VALUE: one per stdin line)"
    )
    produce.add_argument("topic", metavar="TOPIC")
    produce.add_argument("value", nargs="?", metavar="VALUE")
    produce.add_argument("--key", help="same key, same partition")
    produce.add_argument("--partition", type=partition, metavar="P", help="this partition")
    consume = sub.add_parser("consume", help="print a topic's records, one per line")
    consume.add_argument("topic", metavar="TOPIC")
    consume.add_argument(
        "--partition", type=partition, metavar="P", help="this partition (default: every one)"
    )
    consume.add_argument(
        "--offset", type=cli_args.int_within(0, (1 << 63) - 1), default=0, metavar="O"
    )
    consume.add_argument("--follow", action="store_true", help="keep printing new records")
    consume.add_argument(
        "--max-staleness-ms",
        type=cli_args.uint32,
        default=0,
        metavar="MS",
        help="read from a replica at most this stale (one in --dc when there is one)",
    )
    consume.add_argument(
        "--group", metavar="G", help="as a member of consumer group G: the partitions it owns"
    )
    consume.add_argument(
        "--name", metavar="N", help="this member's name in the group (default: a random one)"
    )
    group = sub.add_parser("group", help="consumer groups of event processors")
    group_sub = group.add_subparsers(dest="group_command", required=True, metavar="COMMAND")
    group_describe = group_sub.add_parser(
        "describe", help="per partition: owner, its last heartbeat, checkpoint, lag"
    )
    group_describe.add_argument("group", metavar="G")
    for cmd, name in (
        (create, "topic_create"),
        (listing, "topic_list"),
        (describe, "topic_describe"),
        (delete, "topic_delete"),
        (produce, "produce"),
        (consume, "consume"),
        (group_describe, "group_describe"),
    ):
        cmd.set_defaults(run=partial(_streams, name))
        cli_args.add_endpoints(cmd)
        cli_args.add_output(cmd)


def _add_counter_commands(sub: argparse._SubParsersAction[_Parser]) -> None:
    counter = sub.add_parser("counter", help="counters that hand out ranges of ids")
    counter_sub = counter.add_subparsers(dest="counter_command", required=True, metavar="COMMAND")
    take = counter_sub.add_parser(
        "take", help="take N ids no one else gets; prints START END (the ids [START, END))"
    )
    take.add_argument("name", metavar="NAME")
    take.add_argument(
        "--count",
        type=cli_args.int_within(1, 1_000_000_000),
        default=1,
        metavar="N",
        help="how many ids (1..1000000000, default 1)",
    )
    get = counter_sub.add_parser("get", help="the counter's next id (0 if none was taken)")
    get.add_argument("name", metavar="NAME")
    for cmd, name in ((take, "take"), (get, "get")):
        cmd.set_defaults(run=partial(_counter, name))
        cli_args.add_endpoints(cmd)
        cli_args.add_output(cmd)


def _add_lease_commands(sub: argparse._SubParsersAction[_Parser]) -> None:
    lease = sub.add_parser("lease", help="leases: keys attached to one go when it ends")
    lease_sub = lease.add_subparsers(dest="lease_command", required=True, metavar="COMMAND")
    lease_id = cli_args.int_within(1, (1 << 63) - 1)
    grant = lease_sub.add_parser("grant", help="grant a lease of TTL seconds; prints its id")
    grant.add_argument("ttl", type=cli_args.float_within(0.001, 1 << 30), metavar="TTL")
    grant.add_argument("--id", type=lease_id, default=0, help="this id (default: a random one)")
    keep = lease_sub.add_parser("keep-alive", help="keep a lease alive until Ctrl-C")
    revoke = lease_sub.add_parser("revoke", help="end a lease now; its keys are deleted")
    for cmd in (keep, revoke):
        cmd.add_argument("id", type=lease_id, metavar="ID")
    listing = lease_sub.add_parser("list", help="every live lease and the time it has left")
    for cmd, name in (
        (grant, "grant"),
        (keep, "keep_alive"),
        (revoke, "revoke"),
        (listing, "listing"),
    ):
        cmd.set_defaults(run=partial(_lease, name))
        cli_args.add_endpoints(cmd)
        cli_args.add_output(cmd)


# ---------------------------------------------------------------------- the commands
# Each imports its module when it runs (see the rules at the top).


def _serve(args: argparse.Namespace) -> int:
    # A node's stderr is its log: one JSON event per line. gRPC's C core writes free-text
    # lines there (a failed bind, GOAWAYs), so they are off unless the operator asks for
    # them (GRPC_VERBOSITY=ERROR or DEBUG). Read when gRPC is imported: that comes next.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    from kvstore import cli_serve  # noqa: PLC0415 - the server stack, for serve alone

    return cli_serve.serve(args)


def _up(args: argparse.Namespace) -> int:
    from kvstore import cli_serve  # noqa: PLC0415 - the local cluster, for up alone

    return cli_serve.run_up(args)


def _bench(args: argparse.Namespace) -> int:
    from kvstore.bench import cli as bench_cli  # noqa: PLC0415 - hdrh, processes: bench alone

    bench_cli.install_sigterm()
    try:
        return bench_cli.run(args)
    except bench_cli.BenchError as exc:
        raise UserError(str(exc)) from None


def _config_check(args: argparse.Namespace) -> int:
    from kvstore import cli_admin  # noqa: PLC0415 - see the rules at the top

    return cli_admin.config_check(args)


def _status(args: argparse.Namespace) -> int:
    from kvstore import cli_admin  # noqa: PLC0415 - see the rules at the top

    return cli_admin.status(args)


def _transfer_leader(args: argparse.Namespace) -> int:
    from kvstore import cli_admin  # noqa: PLC0415 - see the rules at the top

    return cli_admin.transfer_leader(args)


def _split(args: argparse.Namespace) -> int:
    from kvstore import cli_admin  # noqa: PLC0415 - see the rules at the top

    return cli_admin.split(args)


def _merge(args: argparse.Namespace) -> int:
    from kvstore import cli_admin  # noqa: PLC0415 - see the rules at the top

    return cli_admin.merge(args)


def _shards(args: argparse.Namespace) -> int:
    from kvstore import cli_admin  # noqa: PLC0415 - see the rules at the top

    return cli_admin.shards(args)


def _placement_set(args: argparse.Namespace) -> int:
    from kvstore import geo_cli  # noqa: PLC0415 - see the rules at the top

    return geo_cli.placement_set(args)


def _placement_plan(args: argparse.Namespace) -> int:
    from kvstore import geo_cli  # noqa: PLC0415 - see the rules at the top

    return geo_cli.placement_plan(args)


def _put(args: argparse.Namespace) -> int:
    from kvstore import cli_kv  # noqa: PLC0415 - see the rules at the top

    return cli_kv.put(args)


def _get(args: argparse.Namespace) -> int:
    from kvstore import cli_kv  # noqa: PLC0415 - see the rules at the top

    return cli_kv.get(args)


def _del(args: argparse.Namespace) -> int:
    from kvstore import cli_kv  # noqa: PLC0415 - see the rules at the top

    return cli_kv.delete(args)


def _lock(name: str, args: argparse.Namespace) -> int:
    from kvstore import cli_lock  # noqa: PLC0415 - see the rules at the top

    run: Callable[[argparse.Namespace], int] = getattr(cli_lock, name)
    return run(args)


def _streams(name: str, args: argparse.Namespace) -> int:
    from kvstore import cli_streams  # noqa: PLC0415 - see the rules at the top

    run: Callable[[argparse.Namespace], int] = getattr(cli_streams, name)
    return run(args)


def _counter(name: str, args: argparse.Namespace) -> int:
    from kvstore import cli_counter  # noqa: PLC0415 - see the rules at the top

    run: Callable[[argparse.Namespace], int] = getattr(cli_counter, name)
    return run(args)


def _lease(name: str, args: argparse.Namespace) -> int:
    from kvstore import cli_lease  # noqa: PLC0415 - see the rules at the top

    run: Callable[[argparse.Namespace], int] = getattr(cli_lease, name)
    return run(args)


def _watch(args: argparse.Namespace) -> int:
    from kvstore import cli_watch  # noqa: PLC0415 - see the rules at the top

    return cli_watch.watch(args)


def _scan(args: argparse.Namespace) -> int:
    from kvstore import cli_kv  # noqa: PLC0415 - see the rules at the top

    return cli_kv.scan(args)


def _txn(args: argparse.Namespace) -> int:
    from kvstore import cli_kv  # noqa: PLC0415 - see the rules at the top

    return cli_kv.txn(args)


if __name__ == "__main__":
    sys.exit(main())
