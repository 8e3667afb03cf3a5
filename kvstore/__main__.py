"""The ``kvstore`` command: run nodes, a local cluster, and talk to a cluster.

    kvstore up [--dir ./data] [--nodes-per-dc 1] [--base-port 7000]
    kvstore serve --config cluster.toml --node 1 --data ./data/n1
    kvstore put KEY VALUE | get KEY [--stale] | del KEY | scan [--prefix P] [--limit N]
    kvstore config check FILE

Endpoints come from ``--endpoints host:port,...`` or ``KVSTORE_ENDPOINTS``; ``-o json`` prints
machine-readable output, the default ``-o table`` is for people. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import grpc

from cluster import ClusterConfig, ClusterConfigError, parse_cluster_config
from kvstore import event_loop, geo_cli
from kvstore.bench import cli as bench_cli
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.cli_support import (
    UserError,
    add_endpoints,
    add_output,
    describe_cluster,
    endpoint_list,
    node_views,
    show,
    table,
)
from kvstore.client import new_client_id
from kvstore.local_cluster import up
from kvstore.logging import configure
from kvstore.server import NodeServer, StartupError
from kvstore.storage import StoreIdentityError
from kvstore.v1 import admin_pb2, admin_pb2_grpc, kv_pb2, kv_pb2_grpc


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except UserError as exc:
        print(f"kvstore: {exc}", file=sys.stderr)
        return 2
    except NodeFailedError as exc:
        print(f"kvstore: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`kvstore status | head`): stop quietly, as Python's docs advise.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


class NodeFailedError(Exception):
    """A running node hit a fatal error (a disk that failed): one line, exit code 1."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kvstore", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run one node")
    serve.add_argument("--config", required=True, type=Path)
    serve.add_argument(
        "--node",
        type=int,
        default=int(os.environ["KVSTORE_NODE_ID"]) if os.environ.get("KVSTORE_NODE_ID") else None,
        help="this node's id (default: KVSTORE_NODE_ID, else the node whose host is this machine)",
    )
    serve.add_argument("--data", type=Path, help="LMDB directory (default: data/n<ID>)")
    serve.add_argument("--log-format", choices=("json", "console"), default="json")
    serve.add_argument(
        "--initial-cluster-state",
        choices=("new", "existing"),
        default="existing",
        help="for a data directory created now: 'new' on the first start of a new cluster's"
        " nodes (they vote at once); 'existing' (default) for a node that joins or comes back"
        " without its data (it rejoins each group before it votes); ignored once DIR exists",
    )
    serve.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="NODE=HOST:PORT",
        help="dial node NODE at HOST:PORT instead of its configured address (a fault proxy)",
    )
    serve.set_defaults(run=_serve)

    up = sub.add_parser("up", help="run a local three-datacenter cluster")
    up.add_argument("--dir", type=Path, default=Path("data"))
    up.add_argument("--nodes-per-dc", type=int, default=1, choices=(1, 2, 3))
    up.add_argument("--base-port", type=int, default=7000)
    up.add_argument(
        "--wan-latency-ms",
        type=float,
        default=None,
        help="emulate a WAN: one-way delay between datacenters (a round trip is twice it)",
    )
    up.add_argument("--wan-jitter-ms", type=float, default=0.0, help="+- per message")
    up.add_argument(
        "--no-restart",
        action="store_true",
        help="leave a node that dies down (default: restart it, backing off if it keeps dying)",
    )
    up.set_defaults(run=_up)

    bench = sub.add_parser(
        "bench", help="load-test a cluster (or a local one): throughput, latency, server CPU"
    )
    bench_cli.add_arguments(bench)
    add_output(bench)
    bench.set_defaults(run=_bench)

    config = sub.add_parser("config", help="cluster configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a cluster config and print its shards")
    check.add_argument("file", type=Path)
    add_output(check)
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
    for cmd, fn in ((shards, _shards), (txn, _txn)):
        add_endpoints(cmd)
        add_output(cmd)
        cmd.set_defaults(run=fn)
    status = sub.add_parser("status", help="every node, and every shard's leader and replicas")
    transfer = sub.add_parser("transfer-leader", help="move a shard's leadership to a node")
    transfer.add_argument("shard", type=int)
    transfer.add_argument("node", type=int)
    for cmd, fn in ((status, _status), (transfer, _transfer_leader)):
        add_endpoints(cmd)
        add_output(cmd)
        cmd.set_defaults(run=fn)

    geo_cli.add_parsers(sub)

    for name, helptext, fn in (
        ("put", "write a key", _put),
        ("get", "read a key", _get),
        ("del", "delete a key", _del),
        ("scan", "list keys in a range", _scan),
    ):
        cmd = sub.add_parser(name, help=helptext)
        add_endpoints(cmd)
        add_output(cmd)
        if name in ("put", "get", "del"):
            cmd.add_argument("key")
        if name == "put":
            cmd.add_argument("value")
        if name == "get":
            cmd.add_argument("--stale", action="store_true", help="read the nearest replica")
            cmd.add_argument(
                "--max-staleness-ms",
                type=int,
                default=0,
                help="read the nearest replica if it can prove it is at most this stale",
            )
        if name == "scan":
            cmd.add_argument("--prefix", default="")
            cmd.add_argument("--start", default="")
            cmd.add_argument("--end", default="")
            cmd.add_argument("--limit", type=int, default=100)
        cmd.set_defaults(run=fn)
    return p


# ---------------------------------------------------------------------- node and cluster


def _load_config(path: Path) -> ClusterConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return parse_cluster_config(text)
    except ClusterConfigError as exc:
        raise UserError(f"{path}: {exc}") from None


def _serve(args: argparse.Namespace) -> int:
    cluster = _load_config(args.config)
    if args.node is None:
        args.node = _this_node(cluster)
    if args.node not in {n.node_id for n in cluster.nodes}:
        raise UserError(f"node {args.node} is not in {args.config}")
    if args.data is None:
        args.data = Path("data") / f"n{args.node}"
    routes = _routes(args.route, cluster)
    configure(json=args.log_format == "json")

    async def run() -> None:
        try:
            server = NodeServer(
                cluster,
                args.node,
                args.data,
                routes=routes,
                founding=args.initial_cluster_state == "new",
            )
            await server.start()
        except (StartupError, StoreIdentityError) as exc:
            raise UserError(str(exc)) from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        stopped = asyncio.create_task(stop.wait())
        failed = asyncio.create_task(server.runtime.failed.wait())
        await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
        if failed.done():
            # Fatal (e.g. fsync failed): exit at once; recovery from disk is the tested path.
            # Exit code 1, not 2: the node could start, so a supervisor may restart it.
            raise NodeFailedError(f"node {args.node} failed: {server.runtime.failure!r}")
        await server.stop()

    event_loop.run(run())
    return 0


def _routes(specs: list[str], cluster: ClusterConfig) -> dict[int, str]:
    routes: dict[int, str] = {}
    known = {n.node_id for n in cluster.nodes}
    for spec in specs:
        node, sep, address = spec.partition("=")
        if not sep or not node.isdigit() or int(node) not in known or ":" not in address:
            raise UserError(f"--route {spec!r}: expected NODE=HOST:PORT with a node of the cluster")
        routes[int(node)] = address
    return routes


def _this_node(cluster: ClusterConfig) -> int:
    names = {socket.gethostname(), socket.getfqdn()}
    mine = [n.node_id for n in cluster.nodes if n.address.rpartition(":")[0] in names]
    if len(mine) != 1:
        raise UserError(
            "cannot tell which node this is from the host name: pass --node ID"
            " (or set KVSTORE_NODE_ID)"
        )
    return mine[0]


def _bench(args: argparse.Namespace) -> int:
    bench_cli.install_sigterm()
    try:
        return bench_cli.run(args)
    except bench_cli.BenchError as exc:
        raise UserError(str(exc)) from None


def _up(args: argparse.Namespace) -> int:
    for flag, value in (
        ("--wan-latency-ms", args.wan_latency_ms),
        ("--wan-jitter-ms", args.wan_jitter_ms),
    ):
        if value is not None and not 0 <= value <= 10_000:
            raise UserError(f"{flag} must be within 0..10000 ms, not {value}")
    try:
        return up(
            args.dir,
            nodes_per_dc=args.nodes_per_dc,
            base_port=args.base_port,
            wan_latency_ms=args.wan_latency_ms,
            wan_jitter_ms=args.wan_jitter_ms,
            restart=not args.no_restart,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _config_check(args: argparse.Namespace) -> int:
    cluster = _load_config(args.file)
    dc_of = {n.node_id: n.dc for n in cluster.nodes}
    rows: list[dict[str, Any]] = [
        {
            "shard": s.shard_id,
            "range": str(s.span),
            "replicas": [f"n{r} ({dc_of[r]})" for r in s.replicas],
            "leader_dc": s.leader_dc or "",
        }
        for s in cluster.shards
    ]
    if args.output == "json":
        print(json.dumps({"cluster": cluster.name, "shards": rows}))
    else:
        table(
            ["shard", "range", "replicas", "leader_dc"],
            [[r["shard"], r["range"], ", ".join(r["replicas"]), r["leader_dc"]] for r in rows],
        )
    return 0


# ---------------------------------------------------------------------- client commands


def _call(args: argparse.Namespace, method: str, request: Any) -> Any:
    endpoints = endpoint_list(args)

    async def attempt() -> Any:
        last: grpc.aio.AioRpcError | None = None
        for endpoint in endpoints:
            async with grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS) as channel:
                stub = kv_pb2_grpc.KVStub(channel)
                try:
                    return await getattr(stub, method)(
                        request, timeout=args.timeout, wait_for_ready=False
                    )
                except grpc.aio.AioRpcError as err:
                    last = err
                    if err.code() not in (
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                    ):
                        break
        assert last is not None
        raise UserError(f"{last.code().name}: {last.details()}")

    return event_loop.run_in_cli_loop(attempt())


def _put(args: argparse.Namespace) -> int:
    request_id = kv_pb2.RequestId(client_id=new_client_id(), seq=1)
    response = _call(
        args,
        "Put",
        kv_pb2.PutRequest(key=args.key.encode(), value=args.value.encode(), request_id=request_id),
    )
    show(
        args,
        {"key": args.key, "revision": response.header.revision, "shard": response.header.shard_id},
        ["key", "shard", "revision"],
    )
    return 0


def _get(args: argparse.Namespace) -> int:
    if not 0 <= args.max_staleness_ms < 1 << 32:
        raise UserError("--max-staleness-ms must be a non-negative number of ms")
    stale = args.stale or args.max_staleness_ms > 0
    request = kv_pb2.GetRequest(
        key=args.key.encode(),
        consistency=kv_pb2.CONSISTENCY_STALE if stale else kv_pb2.CONSISTENCY_LINEARIZABLE,
        max_staleness_ms=args.max_staleness_ms,
    )
    response = _call(args, "Get", request)
    header = response.header
    served = {
        "served_by_node": header.served_by_node_id,
        "served_by_dc": header.served_by_dc,
        "staleness_bound_ms": header.staleness_bound_ms,
    }
    if not response.found:
        if args.output == "json":
            print(json.dumps({"key": args.key, "found": False, **served}))
        else:
            print(f"{args.key}: not found", file=sys.stderr)
        return 1
    columns = ["key", "value", "version", "mod_revision"]
    if stale:
        columns += ["served_by_dc", "staleness_bound_ms"]
    show(args, {**_kv_row(response.kv), **served}, columns)
    return 0


def _del(args: argparse.Namespace) -> int:
    request_id = kv_pb2.RequestId(client_id=new_client_id(), seq=1)
    request = kv_pb2.DeleteRequest(key=args.key.encode(), request_id=request_id)
    response = _call(args, "Delete", request)  # a retry on another node applies once
    show(
        args,
        {"key": args.key, "deleted": response.deleted, "revision": response.header.revision},
        ["key", "deleted", "revision"],
    )
    return 0


def _scan(args: argparse.Namespace) -> int:
    start = (args.prefix or args.start).encode()
    end = _prefix_end(args.prefix.encode()) if args.prefix else args.end.encode()
    response = _call(args, "Scan", kv_pb2.ScanRequest(start=start, end=end, limit=args.limit))
    rows = [_kv_row(kv) for kv in response.kvs]
    if args.output == "json":
        print(json.dumps({"kvs": rows, "more": response.more}))
    else:
        table(
            ["key", "value", "version", "mod_revision"],
            [[r["key"], r["value"], r["version"], r["mod_revision"]] for r in rows],
        )
        if response.more:
            print(f"(more keys after {rows[-1]['key']!r}; raise --limit)")
    return 0


def _status(args: argparse.Namespace) -> int:
    views = node_views(args)
    nodes = [
        {"node": v.node_id, "dc": v.dc, "address": v.address, "up": True}
        if v is not None
        else {"node": None, "dc": "", "address": e, "up": False}
        for e, v in views
    ]
    shards: dict[int, dict[str, Any]] = {}
    for _, view in views:
        if view is None:
            continue
        for s in view.shards:
            entry = shards.setdefault(
                s.shard_id,
                {
                    "shard": s.shard_id,
                    "range": _range(s.start, s.end),
                    "leader": None,
                    "leader_dc": "",
                    "preferred_dc": s.preferred_dc,
                    "ballot": "",
                    "replicas": [],
                },
            )
            if s.role == "leader":
                entry["leader"], entry["ballot"] = view.node_id, s.promised_ballot
                entry["leader_dc"], entry["preferred_dc"] = view.dc, s.preferred_dc
            entry["replicas"].append(
                {
                    "node": view.node_id,
                    "dc": view.dc,
                    "role": s.role,
                    "commit": s.chosen_through,
                    "applied": s.applied_slot,
                    "lease": s.lease,
                    "staleness_bound_ms": s.staleness_bound_ms
                    if s.staleness_bound_ms >= 0
                    else None,
                }
            )
    for entry in shards.values():
        top = max((r["commit"] for r in entry["replicas"]), default=0)
        for r in entry["replicas"]:
            r["lag"] = top - r["applied"]
        entry["conforms"] = entry["leader_dc"] == entry["preferred_dc"]
    rows = [shards[k] for k in sorted(shards)]
    rtt = geo_cli.rtt_matrix(views)
    if args.output == "json":
        print(json.dumps({"nodes": nodes, "shards": rows, "rtt": geo_cli.rtt_rows(rtt)}))
        return 0
    table(
        ["node", "dc", "address", "status"],
        [[n["node"] or "?", n["dc"], n["address"], "up" if n["up"] else "DOWN"] for n in nodes],
    )
    print()
    geo_cli.print_rtt_table(rtt)
    print()
    table(
        ["shard", "range", "leader", "ballot", "preferred", "replicas (node:commit/applied)"],
        [
            [
                r["shard"],
                r["range"],
                f"n{r['leader']} ({r['leader_dc']})" if r["leader"] else "none",
                r["ballot"],
                r["preferred_dc"] + ("" if r["conforms"] or not r["leader"] else " (moving)"),
                "  ".join(_replica_cell(x) for x in sorted(r["replicas"], key=lambda x: x["node"])),
            ]
            for r in rows
        ],
    )
    return 0


def _replica_cell(replica: dict[str, Any]) -> str:
    lag = f" (lag {replica['lag']})" if replica["lag"] else ""
    return f"n{replica['node']}:{replica['commit']}/{replica['applied']}{lag}"


def _transfer_leader(args: argparse.Namespace) -> int:
    views = node_views(args)
    leader = next(
        (
            v
            for _, v in views
            if v is not None
            for s in v.shards
            if s.shard_id == args.shard and s.role == "leader"
        ),
        None,
    )
    if leader is None:
        raise UserError(f"shard {args.shard}: no leader among the reachable nodes")
    if leader.node_id == args.node:
        print(f"shard {args.shard} is already led by n{args.node}")
        return 0

    async def transfer() -> Any:
        async with grpc.aio.insecure_channel(leader.address, options=CHANNEL_OPTIONS) as channel:
            try:
                return await admin_pb2_grpc.AdminStub(channel).TransferLeader(
                    admin_pb2.TransferLeaderRequest(shard_id=args.shard, to_node_id=args.node),
                    timeout=args.timeout,
                )
            except grpc.aio.AioRpcError as err:
                raise UserError(f"{err.code().name}: {err.details()}") from None

    response = event_loop.run_in_cli_loop(transfer())
    row = {
        "shard": args.shard,
        "from": leader.node_id,
        "to": args.node,
        "started": response.started,
    }
    show(args, row, ["shard", "from", "to", "started"])
    return 0 if response.started else 1


def _shards(args: argparse.Namespace) -> int:
    view = event_loop.run_in_cli_loop(describe_cluster(endpoint_list(args), args.timeout))
    dc_of = {n.node_id: n.dc for n in view.nodes}
    rows: list[dict[str, Any]] = [
        {
            "shard": s.shard_id,
            "range": _range(s.start, s.end),
            "replicas": [{"node": r, "dc": dc_of.get(r, "?")} for r in s.replicas],
            "leader": s.leader_node_id or None,
        }
        for s in view.shards
    ]
    if args.output == "json":
        print(json.dumps({"cluster": view.cluster, "shards": rows}))
        return 0
    table(
        ["shard", "range", "replicas", "leader"],
        [
            [
                r["shard"],
                r["range"],
                ", ".join(f"n{x['node']} ({x['dc']})" for x in r["replicas"]),
                f"n{r['leader']}" if r["leader"] else "unknown",
            ]
            for r in rows
        ],
    )
    return 0


_TARGETS = {
    "value": kv_pb2.Compare.TARGET_VALUE,
    "version": kv_pb2.Compare.TARGET_VERSION,
    "create": kv_pb2.Compare.TARGET_CREATE_REVISION,
    "mod": kv_pb2.Compare.TARGET_MOD_REVISION,
}
_OPS = {
    "=": kv_pb2.Compare.OP_EQUAL,
    "!=": kv_pb2.Compare.OP_NOT_EQUAL,
    "<": kv_pb2.Compare.OP_LESS,
    ">": kv_pb2.Compare.OP_GREATER,
}


def _parse_compare(text: str) -> kv_pb2.Compare:
    parts = text.split(maxsplit=2)
    if len(parts) != 3 or parts[1] not in _OPS:
        raise UserError(f"bad compare {text!r}: want e.g. 'value(k) = v' or 'version(k) > 0'")
    subject, op, operand = parts
    target = "value"
    if "(" in subject and subject.endswith(")"):
        target, _, key = subject[:-1].partition("(")
    else:
        key = subject
    if target not in _TARGETS:
        raise UserError(f"bad compare target {target!r}: one of {', '.join(_TARGETS)}")
    compare = kv_pb2.Compare(key=key.encode(), target=_TARGETS[target], op=_OPS[op])
    if target == "value":
        compare.value = operand.encode()
    elif operand.isdigit():
        compare.number = int(operand)
    else:
        raise UserError(f"{target}({key}) compares with a number, not {operand!r}")
    return compare


def _parse_op(text: str) -> kv_pb2.RequestOp:
    parts = text.split(maxsplit=2)
    if parts[:1] == ["put"] and len(parts) == 3:
        return kv_pb2.RequestOp(
            put=kv_pb2.PutRequest(key=parts[1].encode(), value=parts[2].encode())
        )
    if parts[:1] == ["del"] and len(parts) == 2:
        return kv_pb2.RequestOp(delete=kv_pb2.DeleteRequest(key=parts[1].encode()))
    if parts[:1] == ["get"] and len(parts) == 2:
        return kv_pb2.RequestOp(get=kv_pb2.GetRequest(key=parts[1].encode()))
    raise UserError(f"bad op {text!r}: want 'put K V', 'del K' or 'get K'")


def _txn(args: argparse.Namespace) -> int:
    request = kv_pb2.TxnRequest(
        compare=[_parse_compare(c) for c in args.compares],
        success=[_parse_op(o) for o in args.success],
        failure=[_parse_op(o) for o in args.failure],
        request_id=kv_pb2.RequestId(client_id=new_client_id(), seq=1),
    )
    response = _call(args, "Txn", request)
    results = []
    for op in response.responses:
        kind = op.WhichOneof("response")
        if kind == "get":
            results.append({"get": _kv_row(op.get.kv) if op.get.found else None})
        elif kind == "put":
            results.append({"put": {"revision": op.put.header.revision}})
        else:
            results.append({"del": {"deleted": op.delete.deleted}})
    row = {
        "succeeded": response.succeeded,
        "revision": response.header.revision,
        "results": results,
    }
    if args.output == "json":
        print(json.dumps(row))
    else:
        print(
            "SUCCESS" if response.succeeded else "FAILURE", f"(revision {response.header.revision})"
        )
        for result in results:
            print(" ", json.dumps(result))
    return 0 if response.succeeded else 1


def _range(start: bytes, end: bytes) -> str:
    shown_end = repr(end.decode(errors="replace")) if end else "∞"
    return f"[{start.decode(errors='replace')!r}, {shown_end})"


def _prefix_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with ``prefix`` (b"" when there is none)."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1]) if stripped else b""


def _kv_row(kv: kv_pb2.KeyValue) -> dict[str, Any]:
    return {
        "key": kv.key.decode(errors="replace"),
        "value": kv.value.decode(errors="replace"),
        "version": kv.version,
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
    }


if __name__ == "__main__":
    sys.exit(main())
